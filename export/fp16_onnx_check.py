"""The FP16 ONNX graph that a TensorRT 11 build starts from, checked in ONNX Runtime on the CPU.

For each phase's default model: export FP32 ONNX, convert to FP16 (I/O types kept), run both on
stride-20 patches of phantom cases and report the per-voxel label agreement and the agreement of the
case decisions. Writes ``benchmarks/results/fp16_onnx_cpu.json``.

    python export/fp16_onnx_check.py --data build/eval_cohort --cases 6
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def main() -> None:
    import onnxruntime as ort

    from s4c import contract
    from s4c.data.cohort import read_manifest
    from s4c.export.tensorrt import to_fp16_onnx
    from s4c.inference.pipeline import run_phase
    from s4c.inference.predictor import OnnxPredictor
    from s4c.io import load_nifti
    from s4c.labels import PHASES
    from s4c.models import checkpoint_path
    from s4c.repository.onnx import export_onnx

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--cases", type=int, default=6)
    ap.add_argument("--out", type=Path, default=RESULTS / "fp16_onnx_cpu.json")
    args = ap.parse_args()

    entries = read_manifest(args.data)[: args.cases]
    result = {"onnxruntime": ort.__version__, "cpu": platform.processor() or platform.machine(),
              "cases": [e.case_id for e in entries], "phases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for phase in PHASES:
            fp32 = export_onnx(checkpoint_path(phase), Path(tmp) / f"{phase}.onnx")
            fp16 = to_fp16_onnx(fp32, Path(tmp) / f"{phase}.fp16.onnx")
            p32, p16 = OnnxPredictor(fp32), OnnxPredictor(fp16)
            same = total = decisions_same = 0
            for e in entries:
                vol = load_nifti(e.path(args.data, phase))
                r32 = run_phase(vol.array, vol.spacing, p32, p32.spec)
                r16 = run_phase(vol.array, vol.spacing, p16, p16.spec)
                same += int(np.count_nonzero(r32.raw_labels == r16.raw_labels))
                total += r32.raw_labels.size
                decisions_same += int(r32.decision.abnormal == r16.decision.abnormal)
            result["phases"][phase] = {"voted_label_agreement": same / total,
                                       "decisions_identical": f"{decisions_same}/{len(entries)}",
                                       "input": contract.SEG_INPUT}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
