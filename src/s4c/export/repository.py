"""``s4c export repository``: the segmenter models of both phases in Triton's repository layout.

For each phase it writes ``segmenter_<phase>/1/model.onnx`` (exported from the phase's checkpoint)
and ``segmenter_<phase>/config.pbtxt`` generated from :mod:`s4c.contract`, for Triton's
``onnxruntime`` backend, or for ``tensorrt_plan`` when an engine per phase is supplied. The Python
backend pipeline models join the repository with the serving work.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from s4c import contract
from s4c.labels import PHASES

FORMS = {"onnxruntime": ("onnxruntime_onnx", "model.onnx"), "tensorrt": ("tensorrt_plan", "model.plan")}


def segmenter_name(phase: str) -> str:
    """Triton model name of a phase's segmenter."""
    return f"segmenter_{phase}"


def _dims(d) -> str:
    return "[ " + ", ".join(str(x) for x in d) + " ]"


def segmenter_config(phase: str, *, form: str = "onnxruntime", max_batch: int = 16,
                     kind: str = "KIND_GPU") -> str:
    """config.pbtxt text for a segmenter: batched CT_PATCHES float32 in, LABELS uint8 out."""
    platform, filename = FORMS[form]
    return (
        f'name: "{segmenter_name(phase)}"\n'
        f'platform: "{platform}"\n'
        f'default_model_filename: "{filename}"\n'
        f"max_batch_size: {max_batch}\n"
        f"input [\n  {{\n    name: \"{contract.SEG_INPUT}\"\n    data_type: TYPE_FP32\n"
        f"    dims: {_dims(contract.SEG_INPUT_DIMS)}\n  }}\n]\n"
        f"output [\n  {{\n    name: \"{contract.SEG_LABELS}\"\n    data_type: TYPE_UINT8\n"
        f"    dims: {_dims(contract.SEG_LABELS_DIMS)}\n  }}\n]\n"
        f"dynamic_batching {{ }}\n"
        f"instance_group [\n  {{\n    kind: {kind}\n    count: 1\n  }}\n]\n"
    )


def export_repository(out: str | Path, *, models: str | Path | None = None, form: str = "onnxruntime",
                      engines: Mapping[str, str | Path] | None = None, max_batch: int = 16) -> Path:
    """Write both phases' segmenters into the repository ``out``; returns ``out``."""
    from s4c.export.onnx import export_onnx
    from s4c.models import checkpoint_path

    if form not in FORMS:
        raise ValueError(f"form must be one of {sorted(FORMS)}, got {form!r}")
    out = Path(out)
    for phase in PHASES:
        ckpt = checkpoint_path(phase, models)
        if not ckpt.exists():
            raise FileNotFoundError(f"no {phase} model at {ckpt}")
        model_dir = out / segmenter_name(phase)
        version = model_dir / "1"
        version.mkdir(parents=True, exist_ok=True)
        if form == "tensorrt":
            if not engines or phase not in engines:
                raise ValueError(f"form 'tensorrt' needs an engine for {phase} (build it with s4c export trt)")
            shutil.copyfile(engines[phase], version / "model.plan")
        else:
            export_onnx(ckpt, version / "model.onnx")
        (model_dir / "config.pbtxt").write_text(segmenter_config(phase, form=form, max_batch=max_batch))
    return out
