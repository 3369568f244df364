"""``s4c export repository``: fill a Triton model repository with the weights and configs.

The layout (the ``model.py`` of each Python-backend model) is the committed ``model_repository/``.
This writes into it, for each phase, ``segmenter_<phase>/1/model.onnx`` exported from the phase's
checkpoint (and ``model.plan`` when an engine is given), ``s4c/1/segmenters.json`` describing them,
and every ``config.pbtxt`` / ``configs/<form>.pbtxt`` from :mod:`s4c.serving.configs`.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from s4c import contract
from s4c.labels import PHASES

#: Files the layout must already hold (the Python-backend code).
LAYOUT = tuple(f"{m}/1/model.py" for m in (contract.PIPELINE_MODEL, contract.DUAL_PHASE_MODEL,
                                           *(contract.segmenter_model(p) for p in PHASES)))


def segmenter_name(phase: str) -> str:
    """Triton model name of a phase's segmenter."""
    return contract.segmenter_model(phase)


def check_layout(root: str | Path) -> Path:
    root = Path(root)
    missing = [f for f in LAYOUT if not (root / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{root} is not an s4c model repository (missing {', '.join(missing)}); copy "
                                f"model_repository/ from the s4c source tree first")
    return root


def write_configs(root: str | Path) -> list[Path]:
    """Write every config file of :func:`s4c.serving.configs.repository_configs` under ``root``."""
    from s4c.serving.configs import repository_configs

    paths = []
    for rel, text in repository_configs().items():
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


def export_repository(out: str | Path, *, models: str | Path | None = None,
                      engines: Mapping[str, str | Path] | None = None) -> Path:
    """Export both phases' segmenters into the repository ``out`` (which must hold the layout)."""
    from s4c.checkpoint import sha256_file
    from s4c.export.onnx import export_onnx, read_spec
    from s4c.models import checkpoint_path
    from s4c.serving.service import SEGMENTERS_FILE, SegmenterInfo, write_segmenters_file

    out = check_layout(out)
    infos = {}
    for phase in PHASES:
        ckpt = checkpoint_path(phase, models)
        if not ckpt.exists():
            raise FileNotFoundError(f"no {phase} model at {ckpt}")
        name = segmenter_name(phase)
        version = out / name / "1"
        onnx_path = export_onnx(ckpt, version / "model.onnx")
        if engines and phase in engines:
            shutil.copyfile(engines[phase], version / "model.plan")
        infos[name] = SegmenterInfo(name, "1", read_spec(onnx_path), sha256_file(onnx_path), sha256_file(ckpt))
    write_segmenters_file(out / contract.PIPELINE_MODEL / "1" / SEGMENTERS_FILE, infos)
    write_configs(out)
    return out


def repository_is_current(root: str | Path, models: str | Path | None = None) -> bool:
    """True when ``root`` holds weights exported from the current checkpoints (by checksum)."""
    from s4c.checkpoint import sha256_file
    from s4c.models import checkpoint_path
    from s4c.serving.service import SEGMENTERS_FILE, read_segmenters_file

    root = Path(root)
    try:
        infos = read_segmenters_file(root / contract.PIPELINE_MODEL / "1" / SEGMENTERS_FILE)
    except (FileNotFoundError, ValueError, KeyError):
        return False
    for phase in PHASES:
        info = infos.get(segmenter_name(phase))
        onnx_path = root / segmenter_name(phase) / "1" / "model.onnx"
        if info is None or not onnx_path.exists() or sha256_file(onnx_path) != info.onnx_sha256:
            return False
        if sha256_file(checkpoint_path(phase, models)) != info.checkpoint_sha256:
            return False
    return True
