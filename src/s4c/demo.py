"""The demo: one generated dual-phase phantom case through the real Triton server.

:func:`run_demo`: phantom -> a DICOM CT series per phase on disk -> start ``tritonserver`` on this repository -> ``s4c``
gRPC client (``s4c_dual_phase``: tiling, segmenter over BLS, vote, component filter, rule, fusion)
-> labels NIfTI + DICOM SEG + report.json + overlay.png -> stop the server -> summary.

:func:`run_demo_in_process`: the same case through the in-process library pipeline (no server), read
and written the same way (:func:`s4c.io.load_canonical`, :func:`s4c.outputs.write_results`).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from s4c.data.phantom import generate_case
from s4c.dicom import derived_uid, write_ct_series
from s4c.inference.pipeline import run_case
from s4c.inference.predictor import load_locator, load_predictors
from s4c.io import load_canonical, save_nifti
from s4c.labels import DEFAULT_MODE, DEFAULT_STRIDE, PHASES
from s4c.outputs import write_results
from s4c.postprocess import classify, fuse
from s4c.report import phase_report


def _write_phantom(out: Path, seed: int, shape, spacing, echo, abnormal: bool = True):
    """The demo case as a scanner would hand it over: each phase a DICOM CT series (one study, a
    fictitious patient), plus NIfTI copies of the CTs and the reference labels."""
    case = generate_case(seed, abnormal=abnormal, shape=shape, spacing=spacing, case_id="demo")
    inputs, niftis = {}, {}
    patient = {"PatientName": "PHANTOM^DEMO", "PatientID": f"S4C-DEMO-{seed}"}
    study = derived_uid("s4c demo", seed, "study")
    for phase in PHASES:
        folder = out / "input" / f"{phase}_dicom"
        shutil.rmtree(folder, ignore_errors=True)  # a rerun into the same folder: one series, not two
        write_ct_series(folder, getattr(case, phase), case.affine, patient=patient, study_uid=study,
                        uid_seed=f"s4c demo {seed} {phase}", description=f"s4c phantom {phase}")
        inputs[phase] = folder
        niftis[phase] = save_nifti(out / "input" / f"{phase}.nii.gz", getattr(case, phase), case.affine)
        save_nifti(out / "input" / f"{phase}_label.nii.gz", getattr(case, f"{phase}_label"), case.affine)
    tumor = case.meta.get("tumor")
    if tumor is None:
        echo(f"phantom case (seed {seed}): normal pancreas, no tumour; written to {out / 'input'}")
    else:
        echo(f"phantom case (seed {seed}): PNET in the {tumor['location']}, {tumor['diameter_mm']:.0f} mm, "
             f"pattern {tumor['pattern']}, duct {'yes' if case.meta['duct']['present'] else 'no'}; "
             f"written to {out / 'input'}")
    return case, inputs, niftis


def _roi_line(phase_report: dict) -> str:
    """How a phase was searched, as the report states it."""
    if phase_report.get("mode") != "roi":
        return f"full volume, {phase_report.get('patches', '?')} segmenter windows"
    if phase_report.get("roi_fallback"):
        return f"ROI mode: the locator found no pancreas, so the whole volume ({phase_report['patches']} windows)"
    box = " x ".join(f"{a}:{b}" for a, b in phase_report["roi_zyx"])
    return f"ROI mode: box (z, y, x) {box}, {phase_report['patches']} segmenter windows"


def run_demo(out: str | Path, *, seed: int = 7, repository: str | Path = "model_repository",
             models: str | Path | None = None, shape=(96, 128, 128), spacing=(2.5, 2.5, 2.5), echo=print,
             mode: str = DEFAULT_MODE, normal: bool = False) -> dict:
    """Run the demo through a local tritonserver; returns the report (also in ``out/report.json``).

    ``mode`` is the ``s4c`` model's: a repository configured otherwise is copied into ``out`` and
    exported there in ``mode``, so the demo never rewrites the repository it was given.
    """
    import json

    from s4c.serving.client import InferenceClient, infer_case
    from s4c.serving.local import local_server

    out = Path(out)
    t_all = time.perf_counter()
    case, inputs, _ = _write_phantom(out, seed, shape, spacing, echo, abnormal=not normal)
    with local_server(repository, models=models, mode=mode, workdir=out, log_path=out / "tritonserver.log",
                      echo=echo) as server:
        with InferenceClient(server.config.grpc_url) as client:
            answer, paths = infer_case(client, inputs, out)
    ref = {p: classify(getattr(case, f"{p}_label"), case.spacing) for p in PHASES}
    ref_abnormal = fuse(*ref.values())
    report = json.loads(paths["report"].read_text())
    report["reference_rule"] = {"abnormal": ref_abnormal, **{p: d.to_dict() for p, d in ref.items()}}
    paths["report"].write_text(json.dumps(report, indent=2) + "\n")
    for p in PHASES:
        d, r = report["phases"][p], ref[p]
        echo(f"{p:9s} server: abnormal={d['abnormal']!s:5s} tumour={d['tumor_voxels']:6d} duct={d['duct_voxels']:6d} "
             f"| rule on reference labels: abnormal={r.abnormal!s:5s} tumour={r.tumor_voxels:6d}")
        echo(f"          {_roi_line(d)}")
        for t in sorted(d["tumors"], key=lambda c: -c["voxels"])[:1]:
            echo(f"          largest tumour {t['volume_ml']:.2f} mL at world (x, y, z) "
                 f"{', '.join(f'{v:.1f}' for v in t['centroid_world_xyz_mm'])} mm")
    echo(f"DECISION (either phase abnormal): {'ABNORMAL' if answer.abnormal else 'normal'}; reference labels give "
         f"{'ABNORMAL' if ref_abnormal else 'normal'}")
    echo(f"inference {answer.seconds:.1f} s through the server (gRPC, both phases); "
         f"demo {time.perf_counter() - t_all:.1f} s")
    for name, path in paths.items():
        echo(f"  {name:16s} {path}")
    return report


def run_demo_in_process(out: str | Path, *, seed: int = 7, models: str | Path | None = None,
                        stride: int = DEFAULT_STRIDE, batch_size: int = 8, shape=(96, 128, 128),
                        spacing=(2.5, 2.5, 2.5), echo=print, mode: str = DEFAULT_MODE, normal: bool = False) -> dict:
    """Run the demo in-process into ``out`` and return the report dict (also in ``out/report.json``).
    The library reads the NIfTI copies (the served demo sends the DICOM series)."""
    out = Path(out)
    case, _, inputs = _write_phantom(out, seed, shape, spacing, echo, abnormal=not normal)

    predictors = load_predictors(models, allow_untrained=True)
    locator = load_locator(models) if mode == "roi" else None
    untrained = [p for p, (_, spec) in predictors.items() if not spec.trained]
    if untrained:
        echo("WARNING: no trained model found for " + ", ".join(untrained) + "; using a randomly initialised "
             "network, so the network's labels and decision below are meaningless. The pipeline still runs "
             "end to end.")

    volumes = {p: load_canonical(path) for p, path in inputs.items()}  # the one reader: the frame served
    t = time.perf_counter()
    abnormal, results = run_case({p: (v.array, v.spacing) for p, v in volumes.items()}, predictors,
                                 stride=stride, batch_size=batch_size, mode=mode, locator=locator)
    seconds = time.perf_counter() - t

    reference = {p: getattr(case, f"{p}_label") for p in PHASES}
    ref_decisions = {p: classify(lab, case.spacing) for p, lab in reference.items()}
    report_extra = {
        "input": {"kind": "phantom", "seed": seed, "shape_zyx": list(shape), "spacing_zyx": list(case.spacing)},
        "reference_rule": {"abnormal": fuse(*ref_decisions.values()),
                           **{p: d.to_dict() for p, d in ref_decisions.items()}},
        "seconds_total": round(seconds, 3), "stride": stride, "mode": mode,
    }
    report = {"abnormal": bool(abnormal),
              "phases": {p: phase_report(r, volumes[p].affine, predictors[p][1]) for p, r in results.items()},
              **report_extra}
    paths = write_results(out, volumes, {p: r.decision.labels for p, r in results.items()}, report)

    for p in PHASES:
        d, r = results[p].decision, ref_decisions[p]
        echo(f"{p:9s} network: abnormal={d.abnormal!s:5s} tumour={d.tumor_voxels:6d} duct={d.duct_voxels:6d} "
             f"| rule on reference labels: abnormal={r.abnormal!s:5s} tumour={r.tumor_voxels:6d} "
             f"duct={r.duct_voxels:6d}")
        echo(f"          {_roi_line(results[p].roi_report())}")
    echo(f"DECISION (either phase abnormal): {'ABNORMAL' if abnormal else 'normal'}"
         f"{'  [untrained network]' if untrained else ''}; reference labels give "
         f"{'ABNORMAL' if report_extra['reference_rule']['abnormal'] else 'normal'}")
    echo(f"pipeline time {seconds:.1f} s for both phases (stride {stride})")
    for name, path in paths.items():
        echo(f"  {name:16s} {path}")
    import json

    return json.loads(paths["report"].read_text())
