"""The cohort manifest: ``DIR/manifest.csv`` lists one dual-phase case per row.

Columns: ``case_id,arterial,arterial_label,venous,venous_label,abnormal``. The four path columns are
relative to ``DIR``; ``abnormal`` is 0 or 1. The label columns may be empty for unlabelled cohorts.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

MANIFEST_NAME = "manifest.csv"
COLUMNS = ("case_id", "arterial", "arterial_label", "venous", "venous_label", "abnormal")


@dataclass(frozen=True)
class CaseEntry:
    """One manifest row; paths are as written (relative to the cohort folder)."""

    case_id: str
    arterial: str
    arterial_label: str
    venous: str
    venous_label: str
    abnormal: int

    def path(self, root: Path, column: str) -> Path | None:
        """Absolute path of ``column`` ('arterial', 'venous_label', ...) under ``root``, or None if empty."""
        value = getattr(self, column)
        return (root / value) if value else None


def write_manifest(root: str | Path, entries: Iterable[CaseEntry]) -> Path:
    """Write ``root/manifest.csv`` from ``entries`` and return its path."""
    path = Path(root) / MANIFEST_NAME
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        for e in entries:
            writer.writerow([getattr(e, c) for c in COLUMNS])
    return path


def read_manifest(path: str | Path) -> list[CaseEntry]:
    """Read a manifest (a ``manifest.csv`` file or the folder holding one).

    Raises ``ValueError`` naming the row and column for a missing column, a duplicate case id, an
    ``abnormal`` value other than 0/1, or an absolute or escaping path.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    entries: list[CaseEntry] = []
    seen: set[str] = set()
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path.name}: missing column(s) {', '.join(missing)}")
        for lineno, row in enumerate(reader, start=2):
            case_id = (row["case_id"] or "").strip()
            if not case_id:
                raise ValueError(f"{path.name} line {lineno}: empty case_id")
            if case_id in seen:
                raise ValueError(f"{path.name} line {lineno}: duplicate case_id {case_id!r}")
            seen.add(case_id)
            flag = (row["abnormal"] or "").strip()
            if flag not in ("0", "1"):
                raise ValueError(f"{path.name} line {lineno}: abnormal must be 0 or 1, got {flag!r}")
            values = {}
            for col in COLUMNS[1:5]:
                value = (row[col] or "").strip()
                if value and (Path(value).is_absolute() or ".." in Path(value).parts):
                    raise ValueError(f"{path.name} line {lineno}: {col} must be relative to the cohort, "
                                     f"got {value!r}")
                if col in ("arterial", "venous") and not value:
                    raise ValueError(f"{path.name} line {lineno}: empty {col} path")
                values[col] = value
            entries.append(CaseEntry(case_id=case_id, abnormal=int(flag), **values))
    return entries
