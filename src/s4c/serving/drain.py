"""Graceful shutdown for BLS pipelines.

Triton's own drain on SIGTERM counts requests that a backend still holds, but the Python backend hands
requests to its stub and releases them early, so Triton sees no in-flight work, unloads the segmenters
at once and the pipeline requests in flight fail. ``s4c serve`` therefore drains first:

1. it creates ``<run dir>/draining``; the pipeline models answer new requests UNAVAILABLE from then on;
2. it waits until every pipeline stub reports zero requests in flight (``<run dir>/inflight-<pid>``,
   written by :class:`InflightTracker`) or the exit timeout passes;
3. only then does it send SIGTERM to tritonserver.

The run dir reaches the stubs through the ``S4C_RUN_DIR`` environment variable. Without it (a server
started some other way) tracking is off and Triton's own shutdown applies.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV = "S4C_RUN_DIR"
#: Request-id prefix of the dual-phase model's BLS calls to ``s4c``: parts of a request already accepted,
#: which must be served while draining.
INTERNAL_PREFIX = "s4c-internal:"


class ServerDraining(RuntimeError):
    """The server is shutting down and takes no new requests."""


class InflightTracker:
    """Per-stub count of requests in flight, mirrored to a file the launcher reads."""

    def __init__(self, run_dir: str | Path | None = None) -> None:
        run_dir = run_dir if run_dir is not None else os.environ.get(ENV)
        self.dir = Path(run_dir) if run_dir else None
        self.count = 0
        self._write()

    def _write(self) -> None:
        if self.dir is None:
            return
        path = self.dir / f"inflight-{os.getpid()}"
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(str(self.count))
            tmp.replace(path)
        except OSError:  # the launcher's run dir is gone: nothing to report to
            pass

    def draining(self) -> bool:
        return self.dir is not None and (self.dir / "draining").exists()

    def track(self, request_id: str = "") -> _Tracked:
        """Context manager around one request; refuses it when draining unless it is internal."""
        return _Tracked(self, request_id.startswith(INTERNAL_PREFIX))


class _Tracked:
    def __init__(self, tracker: InflightTracker, internal: bool) -> None:
        self.tracker, self.internal = tracker, internal

    def __enter__(self) -> _Tracked:
        if not self.internal and self.tracker.draining():
            raise ServerDraining("the server is shutting down and takes no new requests; retry on another replica")
        self.tracker.count += 1
        self.tracker._write()
        return self

    def __exit__(self, *exc) -> None:
        self.tracker.count -= 1
        self.tracker._write()


def inflight(run_dir: Path) -> int:
    """Requests in flight over all live stubs of a run dir."""
    total = 0
    for path in run_dir.glob("inflight-*"):
        if path.suffix == ".tmp":
            continue
        pid = int(path.name.split("-", 1)[1])
        if not Path(f"/proc/{pid}").exists():  # a dead stub holds nothing
            continue
        try:
            total += int(path.read_text() or 0)
        except (OSError, ValueError):
            continue
    return total


def drain(run_dir: Path, timeout_s: float, poll_s: float = 0.1) -> tuple[bool, float]:
    """Refuse new requests and wait for the in-flight ones; returns (drained, seconds waited)."""
    (run_dir / "draining").touch()
    t = time.monotonic()
    while time.monotonic() - t < timeout_s:
        if inflight(run_dir) == 0:
            return True, time.monotonic() - t
        time.sleep(poll_s)
    return False, time.monotonic() - t
