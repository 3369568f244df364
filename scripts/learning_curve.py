"""Validation learning curves of the ROI segmenters: every snapshot of a pair of runs, evaluated
with `s4c evaluate`'s code on a validation cohort in roi mode, with one locator.

    python scripts/learning_curve.py --data VALIDATION_COHORT --arterial RUN_A --venous RUN_V \
        --locator LOCATOR.pt --out DIR [--every 2]

Either of --arterial / --venous may be a checkpoint file instead of a run folder: it is held fixed.

Writes DIR/curve.json and DIR/curve.md: per snapshot iteration, per phase, pancreas DSC, tumour DSC,
sensitivity and specificity, and the fused sensitivity and specificity. The phases are decided
independently, so DIR/pairs.md also lists the fused figures of every arterial snapshot with every
venous one (from the evaluations' cases.json), and of each with --baseline's phases (an `s4c
evaluate` folder of the models in use), best fused sensitivity + specificity first.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from s4c.evaluation.evaluate import evaluate


def snapshots(run: Path) -> dict[int, Path] | Path:
    """A run folder's snapshots by iteration, or a checkpoint file held fixed at every iteration."""
    if run.is_file():
        return run
    return {int(p.stem.split("_")[1]): p for p in sorted((run / "snapshots").glob("model_*.pt"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--arterial", required=True, type=Path)
    ap.add_argument("--venous", required=True, type=Path)
    ap.add_argument("--locator", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--every", type=int, default=1, help="evaluate every k-th common snapshot")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline", type=Path, default=None,
                    help="an s4c evaluate folder (cases.json) of the models in use, on the same cohort")
    args = ap.parse_args()
    a, v = snapshots(args.arterial), snapshots(args.venous)
    runs = [r for r in (a, v) if isinstance(r, dict)]
    if not runs:
        ap.error("--arterial and --venous are both fixed checkpoints: give at least one run folder")
    its = sorted(set.intersection(*(set(r) for r in runs)))[:: args.every]
    a = a if isinstance(a, dict) else dict.fromkeys(its, a)
    v = v if isinstance(v, dict) else dict.fromkeys(its, v)
    args.out.mkdir(parents=True, exist_ok=True)
    curve_path = args.out / "curve.json"
    curve = json.loads(curve_path.read_text()) if curve_path.exists() else {}
    for it in its:
        if str(it) in curve:
            continue
        models = args.out / f"models_{it}"
        models.mkdir(exist_ok=True)
        shutil.copyfile(a[it], models / "default_arterial.pt")
        shutil.copyfile(v[it], models / "default_venous.pt")
        shutil.copyfile(args.locator, models / "default_locator.pt")
        rep = evaluate(args.data, args.out / f"eval_{it}", models=models, threads=args.threads, progress=False)
        curve[str(it)] = {p: {k: rep[p].get(k) for k in ("dsc_normal_pancreas", "dsc_abnormal_pancreas", "dsc_tumor",
                                                          "sensitivity", "specificity", "visible_tumors")}
                          for p in ("arterial", "venous")} | {"fused": {k: rep["fused"][k] for k in
                                                                        ("sensitivity", "specificity")}}
        curve_path.write_text(json.dumps(curve, indent=1) + "\n")
        print(it, json.dumps(curve[str(it)]), flush=True)
    lines = ["| iteration | phase | A.pancreas DSC | tumour DSC | sensitivity | specificity | visible detected |",
             "|---|---|---|---|---|---|---|"]
    for it in sorted(curve, key=int):
        for p in ("arterial", "venous"):
            r = curve[it][p]
            vis = r.get("visible_tumors") or {}
            lines.append(f"| {it} | {p} | {r['dsc_abnormal_pancreas']:.3f} | {r['dsc_tumor']:.3f} | "
                         f"{r['sensitivity']:.3f} | {r['specificity']:.3f} | "
                         f"{vis.get('detected', '-')}/{vis.get('visible', '-')} |")
        f = curve[it]["fused"]
        lines.append(f"| {it} | fused | | | {f['sensitivity']:.3f} | {f['specificity']:.3f} | |")
    (args.out / "curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    pairs = pair_table({f"{it}": args.out / f"eval_{it}" / "cases.json" for it in sorted(curve, key=int)},
                       args.baseline / "cases.json" if args.baseline else None)
    (args.out / "pairs.md").write_text(pairs)
    print(pairs)


def pair_table(evals: dict[str, Path], baseline: Path | None) -> str:
    """Fused sensitivity and specificity of every (arterial, venous) choice, best sum first."""
    preds = {}
    for name, path in [*evals.items(), *([("baseline", baseline)] if baseline else [])]:
        rows = json.loads(path.read_text())
        preds[name] = {p: {r["case_id"]: int(r[p]["abnormal_pred"]) for r in rows} for p in ("arterial", "venous")}
        truth = {r["case_id"]: int(r["abnormal"]) for r in rows}
    out = []
    for a in preds:
        for v in preds:
            fused = {c: preds[a]["arterial"][c] or preds[v]["venous"][c] for c in truth}
            pos = [c for c in truth if truth[c]]
            neg = [c for c in truth if not truth[c]]
            sens = sum(fused[c] for c in pos) / len(pos)
            spec = sum(1 - fused[c] for c in neg) / len(neg)
            out.append((sens + spec, a, v, sens, spec))
    out.sort(key=lambda t: -t[0])
    lines = ["| arterial | venous | fused sensitivity | fused specificity |", "|---|---|---|---|"]
    lines += [f"| {a} | {v} | {sens:.3f} | {spec:.3f} |" for _, a, v, sens, spec in out]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
