"""``s4c export repository``: fill a Triton model repository with the weights and configs.

The layout (the ``model.py`` of each Python-backend model) is the committed ``model_repository/``.
This writes into it, for each phase, ``segmenter_<phase>/1/model.onnx`` exported from the phase's
checkpoint, ``locator/1/model.onnx`` from the ``roi`` mode locator's checkpoint (and ``model.plan``
for each when an engine is given), ``s4c/1/segmenters.json`` describing them, and every
``config.pbtxt`` / ``configs/<form>.pbtxt`` from :mod:`s4c.repository.configs`, with the ``s4c`` model's
``mode`` parameter set as asked.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from s4c import contract
from s4c.checkpoint import load_checkpoint, sha256_file
from s4c.labels import DEFAULT_MODE, MODES, PHASES
from s4c.models import checkpoint_path, locator_path
from s4c.repository.configs import parse_parameters, repository_configs
from s4c.repository.onnx import export_onnx, read_spec
from s4c.repository.segmenters import SEGMENTERS_FILE, SegmenterInfo, read_segmenters_file, write_segmenters_file

#: Files the layout must already hold (the Python-backend code).
LAYOUT = tuple(f"{m}/1/model.py" for m in (contract.PIPELINE_MODEL, contract.DUAL_PHASE_MODEL,
                                           *contract.PATCH_MODELS))
#: ``--engine`` keys: a phase (its segmenter) or ``locator``.
ENGINE_KEYS = (*PHASES, contract.LOCATOR_MODEL)


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


def configured_mode(root: str | Path) -> str | None:
    """The ``mode`` parameter of ``root``'s ``s4c`` config as written there, or None when there is no
    config, it has no mode (one from before ``roi`` mode) or not a known one."""
    try:
        text = (Path(root) / contract.PIPELINE_MODEL / "config.pbtxt").read_text()
    except (OSError, UnicodeDecodeError):
        return None
    mode = parse_parameters(text)["parameters"].get("mode", {}).get("string_value")
    return mode if mode in MODES else None


def write_configs(root: str | Path, mode: str = DEFAULT_MODE) -> list[Path]:
    """Write every config file of :func:`s4c.repository.configs.repository_configs` under ``root``."""
    paths = []
    for rel, text in repository_configs(mode).items():
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        paths.append(path)
    return paths


def _checkpoints(models: str | Path | None) -> dict[str, Path]:
    """Model name -> checkpoint, for every model of :data:`s4c.contract.PATCH_MODELS`."""
    out = {segmenter_name(p): checkpoint_path(p, models) for p in PHASES}
    out[contract.LOCATOR_MODEL] = locator_path(models)
    return out


def export_repository(out: str | Path, *, models: str | Path | None = None,
                      engines: Mapping[str, str | Path] | None = None, mode: str | None = None) -> Path:
    """Export both phases' segmenters and the locator into the repository ``out`` (which must hold the
    layout). ``engines`` maps a phase or ``locator`` to a TensorRT plan to install. ``mode`` is the
    ``s4c`` model's mode; None keeps the one ``out``'s config already has (default ``roi``), so a
    re-export after a checkpoint change does not switch a deployment's mode."""
    out = check_layout(out)
    mode = mode or configured_mode(out) or DEFAULT_MODE
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    engines = dict(engines or {})
    bad = sorted(set(engines) - set(ENGINE_KEYS))
    if bad:
        raise ValueError(f"engines are for {', '.join(ENGINE_KEYS)}; got {', '.join(bad)}")
    plans = {segmenter_name(k) if k in PHASES else k: Path(v) for k, v in engines.items()}
    for name, plan in plans.items():
        if not plan.is_file():
            raise FileNotFoundError(f"no TensorRT engine for {name} at {plan}")
    checkpoints = _checkpoints(models)
    for name, ckpt in checkpoints.items():  # every checkpoint checked before anything is written
        role = "locator" if name == contract.LOCATOR_MODEL else "segmenter"
        if not ckpt.exists():
            what = "locator (the repository serves it in both modes)" if role == "locator" else name
            raise FileNotFoundError(f"no {what} model at {ckpt}")
        spec = load_checkpoint(ckpt)[1]
        if spec.role != role:
            raise ValueError(f"{ckpt.name} holds a {spec.role} model; {name} needs a {role}")
    infos = {}
    for name, ckpt in checkpoints.items():
        version = out / name / "1"
        onnx_path = export_onnx(ckpt, version / "model.onnx")
        if name in plans:
            shutil.copyfile(plans[name], version / "model.plan")
        infos[name] = SegmenterInfo(name, "1", read_spec(onnx_path), sha256_file(onnx_path), sha256_file(ckpt))
    write_segmenters_file(out / contract.PIPELINE_MODEL / "1" / SEGMENTERS_FILE, infos)
    write_configs(out, mode)
    return out


def repository_is_current(root: str | Path, models: str | Path | None = None) -> bool:
    """True when ``root`` holds weights exported from the current checkpoints (by checksum): both
    segmenters and the locator."""
    root = Path(root)
    try:
        infos = read_segmenters_file(root / contract.PIPELINE_MODEL / "1" / SEGMENTERS_FILE)
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return False
    for name, ckpt in _checkpoints(models).items():
        info = infos.get(name)
        onnx_path = root / name / "1" / "model.onnx"
        if info is None or not onnx_path.exists() or sha256_file(onnx_path) != info.onnx_sha256:
            return False
        if not ckpt.exists() or sha256_file(ckpt) != info.checkpoint_sha256:
            return False
    return True
