"""The FP16 ONNX graph that a TensorRT 11 build starts from, checked in ONNX Runtime on the CPU.

For each phase's default model and the ``roi`` mode locator: export FP32 ONNX, convert to FP16 (I/O
types kept), and run both on phantom cases. Reported per phase: in ``full`` mode (the segmenter's
stride-20 windows over the volume) and in ``roi`` mode (FP32 locator and segmenter against FP16 locator
and segmenter), the per-voxel agreement of the voted labels and of the case decisions; for the
locator, how many of the ROIs the pipeline used (on the input grid) are identical and the largest
difference of a box edge in mm. Writes
``benchmarks/results/fp16_onnx_cpu.json``.

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
    from s4c.models import checkpoint_path, locator_path
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
        loc32 = OnnxPredictor(export_onnx(locator_path(), Path(tmp) / "locator.onnx"))
        loc16 = OnnxPredictor(to_fp16_onnx(Path(tmp) / "locator.onnx", Path(tmp) / "locator.fp16.onnx"))
        boxes_same = boxes = found_by_one = 0
        edge_mm = 0.0
        for phase in PHASES:
            fp32 = export_onnx(checkpoint_path(phase), Path(tmp) / f"{phase}.onnx")
            fp16 = to_fp16_onnx(fp32, Path(tmp) / f"{phase}.fp16.onnx")
            p32, p16 = OnnxPredictor(fp32), OnnxPredictor(fp16)
            same, decisions_same = {"full": 0, "roi": 0}, {"full": 0, "roi": 0}
            total = 0
            for e in entries:
                vol = load_nifti(e.path(args.data, phase))
                total += vol.array.size
                for mode in ("full", "roi"):  # the locator is used in roi mode only
                    r32, r16 = (run_phase(vol.array, vol.spacing, seg, seg.spec, mode=mode, locator=(loc, loc.spec))
                                for seg, loc in ((p32, loc32), (p16, loc16)))
                    same[mode] += int(np.count_nonzero(r32.raw_labels == r16.raw_labels))
                    decisions_same[mode] += int(r32.decision.abnormal == r16.decision.abnormal)
                box32, box16 = r32.roi_zyx, r16.roi_zyx  # the roi-mode runs': the boxes the segmenter tiled
                if box32 is None or box16 is None:  # a fall-back to the whole volume
                    boxes_same += int(box32 is None and box16 is None)
                    found_by_one += int((box32 is None) != (box16 is None))
                else:
                    diff = float((np.abs(np.subtract(box32, box16)) * np.asarray(vol.spacing)[:, None]).max())
                    boxes_same += int(diff == 0.0)
                    edge_mm = max(edge_mm, diff)
                boxes += 1
            agreement = {mode: {"voted_label_agreement": same[mode] / total,
                                "decisions_identical": f"{decisions_same[mode]}/{len(entries)}"} for mode in same}
            result["phases"][phase] = {**agreement["full"], "roi_mode": agreement["roi"], "input": contract.SEG_INPUT}
        result["locator"] = {"boxes_identical": f"{boxes_same}/{boxes}", "max_box_edge_difference_mm": edge_mm,
                             "found_by_one_form_only": found_by_one}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
