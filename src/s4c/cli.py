"""The ``s4c`` command line. Each subcommand parses flags and calls one library function."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from s4c import contract
from s4c.labels import ARCHITECTURES, COMPARE_METHODS, DEFAULT_MODE, DEFAULT_STRIDE, MODES, ROI_MARGIN_MM
from s4c.training.stop import TrainingStopped


class CommandError(Exception):
    """A subcommand's failure, printed as ``s4c <command>: error: <message>``; exits with ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum``; its errors name ``what`` (the unit included)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


def _number(what: str, unit: str = "", *, low: float = 0.0, low_ok: bool = False, high: float | None = None):
    """An argparse type: a finite number above ``low`` (or at it, ``low_ok``) and at most ``high``; its
    errors name ``what`` and ``unit``, so each flag says what it wanted (NaN and inf are refused)."""
    shown = f"{what} in {unit}" if unit else what
    bound = f"{'>=' if low_ok else '>'} {low:g}" + (f" and <= {high:g}" if high is not None else "")
    suffix = f" {unit}" if unit else ""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {shown}, got {text!r}") from None
        ok = math.isfinite(value) and (value > low or (low_ok and value == low)) and (high is None or value <= high)
        if not ok:
            raise argparse.ArgumentTypeError(f"expected {what} {bound}{suffix}, got {text}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_count = _int_at_least(0, "an integer count >= 0")
_seconds_int = _int_at_least(1, "a whole number of seconds >= 1")
_spacing = _number("a spacing", "mm")
_mm = _number("a distance", "mm", low_ok=True)
_seconds = _number("a time", "seconds")
_learning_rate = _number("a learning rate")
_fraction = _number("a fraction", low_ok=True, high=1.0)
_weight = _number("a class weight", low_ok=True)


def _port(text: str) -> int:
    """An argparse type: a TCP port number."""
    value = _int_at_least(1, "a TCP port 1-65535")(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 1-65535, got {value}")
    return value


#: Why evaluate and demo refuse ``--batch-size``: it is the training batch everywhere else.
INFERENCE_BATCH_HINT = ("is the training batch (s4c train, s4c cv); the sliding window's batch here is "
                        "--inference-batch-size")


class _Renamed(argparse.Action):
    """A flag that meant something else here: stop with a message naming the flag to use instead."""

    def __init__(self, option_strings, dest, *, hint: str, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs="?", help=argparse.SUPPRESS, **kwargs)
        self.hint = hint

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        parser.error(f"{option_string} {self.hint}")


def _cmd_phantom(args: argparse.Namespace) -> int:
    from s4c.data.phantom import write_cohort

    manifest = write_cohort(args.out, n_normal=args.normal, n_abnormal=args.abnormal, seed=args.seed,
                            shape=tuple(args.shape), spacing=tuple(args.spacing))
    print(f"wrote {args.normal + args.abnormal} cases; manifest {manifest}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from s4c.demo import run_demo, run_demo_in_process

    if args.in_process:
        run_demo_in_process(args.out, seed=args.seed, models=args.models, stride=args.stride,
                            batch_size=args.inference_batch_size, mode=args.mode, normal=args.normal)
    else:
        run_demo(args.out, seed=args.seed, models=args.models, repository=args.model_repository, mode=args.mode,
                 normal=args.normal)
    return 0


def _cmd_classify(args: argparse.Namespace) -> int:
    from s4c.io import load_canonical
    from s4c.postprocess import classify
    from s4c.validation import as_label_volume

    vol = load_canonical(args.labels)
    d = classify(as_label_volume(vol.array, Path(args.labels).name), vol.spacing)
    print(json.dumps(d.to_dict(), indent=2))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.nproc > 1:
        import os
        import subprocess

        # Data parallel: torchrun starts --nproc copies of this command (without --nproc) on this host.
        argv = [a for a in _train_argv(args.argv) if a]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "s4c.training", *argv]
        print(" ".join(cmd), file=sys.stderr)
        return subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": str(args.threads or 1)}).returncode
    from s4c.training.train import config_from_preset, train

    cfg = config_from_preset(
        args.preset, data=str(args.data), phase=args.phase, out=str(args.out), fold=args.fold, folds=args.folds,
        iterations=args.iterations, batch_size=args.batch_size, width=args.width, seed=args.seed,
        spacing=tuple(args.spacing) if args.spacing else None, checkpoint_every=args.checkpoint_every,
        device=args.device, threads=args.threads, lr=args.lr,
        class_weights=tuple(args.class_weights) if args.class_weights else None,
        init=str(args.init) if args.init else None, snapshot_every=args.snapshot_every,
        roi_margin_mm=args.roi_margin, roi_jitter_mm=args.roi_jitter, lesion_fraction=args.lesion_fraction,
        normal_fraction=args.normal_fraction, architecture=args.architecture)
    if cfg.role == "classifier":
        from s4c.training.classifier import train_classifier

        path = train_classifier(cfg, progress=not args.no_progress)
    else:
        path = train(cfg, progress=not args.no_progress)
    print(f"model written to {path}")
    return 0


def _train_argv(argv: list[str]) -> list[str]:
    """``s4c train``'s arguments without ``--nproc K`` (each rank is one process)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from s4c.evaluation.evaluate import evaluate

    report = evaluate(args.data, args.out, models=args.models, stride=args.stride,
                      batch_size=args.inference_batch_size,
                      threads=args.threads, progress=not args.no_progress, mode=args.mode,
                      roi_margin_mm=args.roi_margin, write_cases=args.write_cases)
    _print_summary(report, args.out)
    return 0


def _cmd_cv(args: argparse.Namespace) -> int:
    from s4c.training.cv import cross_validate

    overrides = {k: v for k, v in (("iterations", args.iterations), ("batch_size", args.batch_size),
                                   ("width", args.width)) if v is not None}
    locator = {k: v for k, v in (("iterations", args.locator_iterations),) if v is not None}
    report = cross_validate(args.data, args.out, folds=args.folds, seed=args.seed, stride=args.stride,
                            eval_batch_size=args.inference_batch_size, threads=args.threads,
                            progress=not args.no_progress,
                            mode=args.mode, preset=args.preset, roi_margin_mm=args.roi_margin,
                            locator_kwargs=locator, **overrides)
    _print_summary(report, args.out)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from s4c.training.compare import compare, parse_methods, parse_widths

    try:
        methods = parse_methods(args.methods)
        widths = parse_widths(args.widths)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    result = compare(args.data, args.out, methods=methods, test=args.test, folds=args.folds, preset=args.preset,
                     iterations=args.iterations, batch_size=args.batch_size, width=args.width, widths=widths,
                     classifier_iterations=args.classifier_iterations, lesion_fraction=args.lesion_fraction,
                     normal_fraction=args.normal_fraction, locator=args.locator,
                     locator_iterations=args.locator_iterations, seed=args.seed, mode=args.mode, stride=args.stride,
                     batch_size_inference=args.inference_batch_size, threads=args.threads,
                     roi_margin_mm=args.roi_margin, progress=not args.no_progress)
    for m, r in result["methods"].items():
        f = r["fused"]
        print(f"{m:10s} fused sensitivity {f['sensitivity']:.3f} specificity {f['specificity']:.3f}")
    print(f"tables in {args.out / 'report.md'}")
    return 0


def _print_summary(report: dict, out: Path) -> None:
    for name in ("arterial", "venous", "fused"):
        r = report[name]
        print(f"{name:9s} sensitivity {r['sensitivity']:.3f} ({r['n_abnormal'] - r['misses']}/{r['n_abnormal']}) "
              f"specificity {r['specificity']:.3f} ({r['n_normal'] - r['wrong_calls']}/{r['n_normal']})"
              + (f" tumour DSC {r['dsc_tumor']:.3f}" if "dsc_tumor" in r else ""))
    print(f"reports in {out}")


def _cmd_export(args: argparse.Namespace) -> int:
    if args.target == "onnx":
        from s4c.repository.onnx import export_onnx

        path = export_onnx(args.checkpoint, args.out, probabilities=args.probabilities)
    elif args.target == "trt":
        from s4c.export.tensorrt import build_engine

        path = build_engine(args.onnx, args.out, min_batch=args.min_batch, opt_batch=args.opt_batch,
                            max_batch=args.max_batch)
    else:
        from s4c.repository.export import ENGINE_KEYS, export_repository

        engines = {key: Path(plan) for key, plan in (args.engine or [])}
        bad = sorted(set(engines) - set(ENGINE_KEYS))
        if bad:
            raise ValueError(f"--engine takes {', '.join(ENGINE_KEYS)}, got {', '.join(bad)}")
        path = export_repository(args.model_repository, models=args.models, engines=engines, mode=args.mode)
    print(f"wrote {path}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from s4c.serving.server import ServerConfig, serve

    cfg = ServerConfig(args.model_repository, grpc_port=args.grpc_port, http_port=args.http_port,
                       metrics_port=args.metrics_port, address=args.address, config_name=args.form,
                       exit_timeout_s=args.exit_timeout, tls_cert=args.tls_cert, tls_key=args.tls_key,
                       tls_client_ca=args.tls_client_ca)
    if args.admin_key_file:
        cfg.admin_key = args.admin_key_file.read_text().strip()
    return serve(cfg, models=args.models, build_engines=args.build_engines)


def _cmd_infer(args: argparse.Namespace) -> int:
    from s4c.serving.client import ClientError, InferenceClient, TlsConfig
    from s4c.serving.server import ServerError

    modes = [bool(args.arterial or args.venous), bool(args.ct), bool(args.manifest)]
    if sum(modes) != 1:
        raise CommandError("give --arterial and --venous, or --ct with --phase, or --manifest")
    if modes[0] and not (args.arterial and args.venous):
        raise CommandError("dual phase needs both --arterial and --venous (or use --ct with --phase)")
    if modes[1] and not args.phase:
        raise CommandError("--ct needs --phase arterial|venous")
    for flag, uid, scan in (("--arterial-series", args.arterial_series, "--arterial"),
                            ("--venous-series", args.venous_series, "--venous"), ("--series", args.series, "--ct")):
        if uid and not getattr(args, scan.lstrip("-")):
            raise CommandError(f"{flag} picks a series of the DICOM folder given with {scan}; give {scan}")
    urls = [u.strip() for given in (args.url or []) for u in given.split(",") if u.strip()]
    if len(urls) > 1 and not args.manifest:
        raise CommandError("several --url endpoints are for --manifest (one case goes to one server)")
    headers = {}
    if urls and args.shared_memory:
        from s4c.serving.server import grpc_admin_header

        key = args.admin_key_file.read_text().strip() if args.admin_key_file else ""
        if not key:
            raise CommandError("--shared-memory with --url needs the server's admin key (--admin-key-file, "
                               "as given to s4c serve): registering shared memory is a restricted protocol")
        headers = {grpc_admin_header(): key}
    scans = None
    if not args.manifest:
        from s4c.serving.client import read_scans
        from s4c.serving.scans import ScanError

        paths = ({"arterial": args.arterial, "venous": args.venous} if modes[0] else {args.phase: args.ct})
        series = ({"arterial": args.arterial_series, "venous": args.venous_series} if modes[0]
                  else {args.phase: args.series})
        try:
            # Read before any server starts or file is written: a bad scan ends here, with nothing written.
            scans = read_scans(paths, series)
        except ScanError as exc:
            raise CommandError(str(exc), 2) from exc
        for phase, scan in scans.items():
            for note in scan.volume.dicom.notes if scan.volume.dicom is not None else ():
                print(f"s4c infer: note: {phase}: {note}", file=sys.stderr)
    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        if not urls:
            raise CommandError("the TLS flags are for a running server: give its --url")
        tls = TlsConfig(args.tls_ca, args.tls_key, args.tls_cert)
    try:
        if urls:
            clients = [InferenceClient(u, timeout_s=args.timeout, retries=args.retries, tls=tls, headers=headers,
                                       shared_memory=args.shared_memory) for u in urls]
            try:
                return _infer_with(clients, args, scans)
            finally:
                for c in clients:
                    c.close()
        from s4c.serving.local import local_server

        # No server given: one of our own on free loopback ports, for this command only.
        with local_server(args.model_repository, models=args.models, log_path=args.out / "tritonserver.log",
                          echo=lambda line: print(line, file=sys.stderr)) as server:
            from s4c.serving.server import grpc_admin_header

            headers = {grpc_admin_header(): server.config.admin_key} if args.shared_memory else {}
            with InferenceClient(server.config.grpc_url, timeout_s=args.timeout, retries=args.retries,
                                 headers=headers, shared_memory=args.shared_memory) as client:
                return _infer_with([client], args, scans)
    except (ClientError, ServerError) as exc:
        raise CommandError(str(exc), 3) from exc


def _infer_with(clients: list, args: argparse.Namespace, scans: dict | None) -> int:
    """``s4c infer``'s work once the clients are connected (``scans``: the case's scans, read; None for
    --manifest)."""
    from s4c.serving.client import infer_case, infer_cohort

    if args.manifest:
        rows = infer_cohort(clients, args.manifest, args.out, concurrency=args.concurrency,
                            progress=not args.no_progress, resume=args.resume)
        _print_cohort(rows, args.out)
        return 0 if all(r["status"] == "ok" for r in rows) else 1
    answer, written = infer_case(clients[0], scans, args.out)
    for phase, rep in answer.report["phases"].items():
        t = max(rep["tumors"], key=lambda c: c["voxels"]) if rep["tumors"] else None
        where = (f"; largest tumour {t['volume_ml']:.2f} mL at world (x, y, z) "
                 f"{', '.join(f'{v:.1f}' for v in t['centroid_world_xyz_mm'])} mm") if t else ""
        print(f"{phase:9s} abnormal={rep['abnormal']!s:5s} tumour={rep['tumor_voxels']} "
              f"duct={rep['duct_voxels']}{where}")
    print(f"DECISION: {'ABNORMAL' if answer.abnormal else 'normal'} ({answer.seconds:.1f} s)")
    for name, path in written.items():
        print(f"  {name:16s} {path}")
    return 0


def _print_cohort(rows: list[dict], out: Path) -> None:
    ok = [r for r in rows if r["status"] == "ok"]
    resumed = sum(bool(r.get("resumed")) for r in rows)
    print(f"{len(ok)}/{len(rows)} cases answered; {sum(bool(r['abnormal']) for r in ok)} abnormal"
          + (f"; {resumed} kept from an earlier run" if resumed else ""))
    for r in rows:
        print(f"  {r['case_id']:20s} {r['status']:5s} " + (f"abnormal={r['abnormal']}" if r["status"] == "ok"
                                                         else r["error"]))
    print(f"summary: {out / 'summary.csv'}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s4c", description="S4C screening for pancreatic neuroendocrine tumours "
                                "in dual-phase CT.")
    sub = p.add_subparsers(dest="command", required=True)

    ph = sub.add_parser("phantom", help="generate a synthetic dual-phase CT cohort")
    ph.add_argument("--out", required=True, type=Path, help="output folder (manifest.csv + cases/)")
    ph.add_argument("--normal", required=True, type=_count, help="number of normal cases")
    ph.add_argument("--abnormal", required=True, type=_count, help="number of cases with a PNET")
    ph.add_argument("--seed", required=True, type=int, help="random seed; same seed, same cohort")
    ph.add_argument("--shape", type=_positive_int, nargs=3, default=[96, 128, 128], metavar=("Z", "Y", "X"))
    ph.add_argument("--spacing", type=_spacing, nargs=3, default=[2.5, 2.5, 2.5], metavar=("Z", "Y", "X"),
                    help="voxel size in mm")
    ph.set_defaults(func=_cmd_phantom)

    de = sub.add_parser("demo", help="run one generated case through the whole pipeline")
    de.add_argument("--out", type=Path, default=Path("demo_out"))
    de.add_argument("--seed", type=int, default=7)
    de.add_argument("--models", type=Path, default=None, help="folder with default_{arterial,venous}.pt")
    de.add_argument("--stride", type=_positive_int, default=DEFAULT_STRIDE, help="--in-process only (the "
                    "server's stride is a config.pbtxt parameter)")
    de.add_argument("--inference-batch-size", type=_positive_int, default=8,
                    help="sliding-window patches per network call; --in-process only")
    de.add_argument("--batch-size", action=_Renamed, hint=INFERENCE_BATCH_HINT)
    de.add_argument("--model-repository", type=Path, default=Path("model_repository"),
                    help="the Triton model repository to serve (default: ./model_repository)")
    de.add_argument("--in-process", action="store_true", help="run the library pipeline without the server")
    de.add_argument("--mode", choices=list(MODES), default=DEFAULT_MODE,
                    help="roi: locator then segmenter on the pancreas region (default); full: whole volume")
    de.add_argument("--normal", action="store_true", help="a normal case (no tumour) instead of a PNET case")
    de.set_defaults(func=_cmd_demo)

    tr = sub.add_parser("train", help="train one model from a named recipe (default: the paper's)")
    tr.add_argument("--data", required=True, type=Path, help="cohort folder with manifest.csv")
    tr.add_argument("--preset", choices=["paper", "roi", "locator", "classifier"], default="paper",
                    help="paper: the paper's whole-volume recipe; roi: the default models' ROI segmenter; "
                    "locator: stage 1 of roi mode, both phases; classifier: the paper's section 2.3 network on "
                    "the frozen S4C segmenter given as --init (flags below override the preset)")
    tr.add_argument("--architecture", choices=list(ARCHITECTURES), default=None,
                    help="segmenter network: s4c (the paper's, default), or the baselines unet3d (MONAI BasicUNet) "
                         "and vnet (MONAI V-Net)")
    tr.add_argument("--phase", choices=["arterial", "venous", "any"], default=None,
                    help="the segmenter's phase (required except for --preset locator, which is 'any')")
    tr.add_argument("--out", required=True, type=Path,
                    help="run folder (resumes if it holds state.pt; the recipe flags must match the run's)")
    tr.add_argument("--fold", type=_count, default=None, help="hold out this fold (default: train on all cases)")
    tr.add_argument("--folds", type=_positive_int, default=None)
    tr.add_argument("--iterations", type=_positive_int, default=None, help="paper: 80,000")
    tr.add_argument("--batch-size", type=_positive_int, default=None, help="paper: 16")
    tr.add_argument("--width", type=_positive_int, default=None, help="base channels w (paper: 32)")
    tr.add_argument("--lr", type=_learning_rate, default=None, help="base learning rate, poly decay 0.9 (paper: 0.01)")
    tr.add_argument("--seed", type=int, default=None)
    tr.add_argument("--spacing", type=_spacing, nargs=3, default=None, metavar=("Z", "Y", "X"),
                    help="working spacing in mm (default: the preset's, else the first case's)")
    tr.add_argument("--roi-margin", type=_mm, default=None, help="roi preset: ROI margin in mm")
    tr.add_argument("--roi-jitter", type=_mm, default=None, help="roi preset: +- jitter of each side in mm")
    tr.add_argument("--lesion-fraction", type=_fraction, default=None,
                    help="roi preset: share of all patches centred on a lesion (default: drawn per case)")
    tr.add_argument("--normal-fraction", type=_fraction, default=None,
                    help="roi preset: share of all patches in the ROI of a normal case (default: as the cohort "
                         "holds them)")
    tr.add_argument("--checkpoint-every", type=_positive_int, default=None)
    tr.add_argument("--snapshot-every", type=_count, default=None,
                    help="keep snapshots/model_<iteration>.pt every N iterations (learning curves)")
    tr.add_argument("--class-weights", type=_weight, nargs=4, default=None, metavar=("BG", "PANC", "TUM", "DUCT"),
                    help="per-class cross-entropy weights (default: none, as in the paper)")
    tr.add_argument("--init", type=Path, default=None,
                    help="warm start from this checkpoint's weights (same --width); a resumed run ignores it. "
                         "--preset classifier: the frozen S4C segmenter of the phase")
    tr.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    tr.add_argument("--threads", type=_positive_int, default=None, help="CPU threads for torch (per process)")
    tr.add_argument("--nproc", type=_positive_int, default=1,
                    help="data-parallel processes on this host (torchrun; gloo on CPU, NCCL on CUDA); --batch-size "
                         "is the global batch, split over them")
    tr.add_argument("--no-progress", action="store_true")
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser("evaluate", help="run S4C on a labelled cohort and write report.json / report.md")
    ev.add_argument("--data", required=True, type=Path)
    ev.add_argument("--models", type=Path, default=None, help="folder with default_{arterial,venous}.pt")
    ev.add_argument("--out", required=True, type=Path)
    ev.add_argument("--stride", type=_positive_int, default=DEFAULT_STRIDE)
    ev.add_argument("--mode", choices=list(MODES), default=DEFAULT_MODE,
                    help="roi: locator, then the segmenter on the pancreas region (default); full: the paper's "
                    "whole-volume sliding window")
    ev.add_argument("--roi-margin", type=_mm, default=ROI_MARGIN_MM, help="roi mode: margin around the "
                    "locator's pancreas box, mm")
    ev.add_argument("--inference-batch-size", type=_positive_int, default=8,
                    help="sliding-window patches per network call")
    ev.add_argument("--batch-size", action=_Renamed, hint=INFERENCE_BATCH_HINT)
    ev.add_argument("--write-cases", action="store_true", help="also write each case's labels, report.json and "
                    "overlay.png into OUT/cases/<case_id>/ (the files s4c infer writes)")
    ev.add_argument("--threads", type=_positive_int, default=None)
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=_cmd_evaluate)

    cv = sub.add_parser("cv", help="k-fold cross-validation: train folds x phases, evaluate each case once")
    cv.add_argument("--data", required=True, type=Path)
    cv.add_argument("--folds", type=_positive_int, default=4)
    cv.add_argument("--out", required=True, type=Path)
    cv.add_argument("--mode", choices=list(MODES), default="full",
                    help="roi: also train a locator per fold and evaluate coarse-to-fine")
    cv.add_argument("--preset", choices=["paper", "roi"], default="paper", help="the segmenters' recipe")
    cv.add_argument("--roi-margin", type=_mm, default=ROI_MARGIN_MM)
    cv.add_argument("--iterations", type=_positive_int, default=None, help="segmenters (default: the preset's)")
    cv.add_argument("--locator-iterations", type=_positive_int, default=None)
    cv.add_argument("--batch-size", type=_positive_int, default=None, help="training batch (default: the preset's)")
    cv.add_argument("--inference-batch-size", "--eval-batch-size", type=_positive_int, default=8,
                    help="sliding-window patches per network call when evaluating")
    cv.add_argument("--width", type=_positive_int, default=None)
    cv.add_argument("--seed", type=int, default=0)
    cv.add_argument("--stride", type=_positive_int, default=DEFAULT_STRIDE)
    cv.add_argument("--threads", type=_positive_int, default=None)
    cv.add_argument("--no-progress", action="store_true")
    cv.set_defaults(func=_cmd_cv)

    co = sub.add_parser("compare", help="the paper's comparison: S4C, 3D U-Net, V-Net and the classification "
                        "network trained alike and evaluated on the same cases (Tables 1 and 2)")
    co.add_argument("--data", required=True, type=Path, help="training cohort (manifest.csv)")
    co.add_argument("--out", required=True, type=Path,
                    help="folder: train/ (run folders, resumed), eval/, report.md, report.json, roc.png")
    co.add_argument("--methods", default=",".join(COMPARE_METHODS),
                    help=f"comma-separated subset of {','.join(COMPARE_METHODS)} (default: all)")
    protocol = co.add_mutually_exclusive_group(required=True)
    protocol.add_argument("--test", type=Path, default=None, help="held-out cohort every method is evaluated on")
    protocol.add_argument("--folds", type=_positive_int, default=None,
                          help="k-fold cross-validation on --data instead (the paper: 4)")
    co.add_argument("--preset", choices=["roi", "paper"], default="roi", help="the segmenters' recipe")
    co.add_argument("--iterations", type=_positive_int, default=None, help="segmenters (default: the preset's)")
    co.add_argument("--batch-size", type=_positive_int, default=None, help="segmenters' training batch")
    co.add_argument("--width", type=_positive_int, default=None, help="segmenters' base channels")
    co.add_argument("--widths", default=None, metavar="NET=W,...",
                    help="base channels of single segmenters, e.g. vnet=4 (V-Net's 5^3 kernels cost more per width)")
    co.add_argument("--classifier-iterations", type=_positive_int, default=None,
                    help="classifier (default: the paper's 20,000)")
    co.add_argument("--lesion-fraction", type=_fraction, default=None,
                    help="roi preset: every segmenter's share of patches centred on a lesion")
    co.add_argument("--normal-fraction", type=_fraction, default=None,
                    help="roi preset: every segmenter's share of patches in the ROI of a normal case")
    co.add_argument("--locator", type=Path, default=None, help="stage-1 checkpoint shared by every method "
                    "(default: the embedded locator)")
    co.add_argument("--locator-iterations", type=_positive_int, default=None,
                    help="train a locator per fold (or on --data) instead")
    co.add_argument("--mode", choices=list(MODES), default=DEFAULT_MODE)
    co.add_argument("--roi-margin", type=_mm, default=ROI_MARGIN_MM)
    co.add_argument("--seed", type=int, default=0)
    co.add_argument("--stride", type=_positive_int, default=DEFAULT_STRIDE)
    co.add_argument("--inference-batch-size", type=_positive_int, default=8)
    co.add_argument("--threads", type=_positive_int, default=None)
    co.add_argument("--no-progress", action="store_true")
    co.set_defaults(func=_cmd_compare)

    ex = sub.add_parser("export", help="export a segmenter: onnx, trt (FP16 engine) or repository")
    exs = ex.add_subparsers(dest="target", required=True)
    eo = exs.add_parser("onnx")
    eo.add_argument("--checkpoint", required=True, type=Path)
    eo.add_argument("--out", required=True, type=Path)
    eo.add_argument("--probabilities", action="store_true", help="also output class probabilities")
    et = exs.add_parser("trt")
    et.add_argument("--onnx", required=True, type=Path)
    et.add_argument("--out", required=True, type=Path)
    et.add_argument("--min-batch", type=_positive_int, default=1)
    et.add_argument("--opt-batch", type=_positive_int, default=8)
    et.add_argument("--max-batch", type=_positive_int, default=16)
    er = exs.add_parser("repository", help="weights and configs into a Triton model repository")
    er.add_argument("--model-repository", "--out", dest="model_repository", type=Path,
                    default=Path("model_repository"),
                    help="repository holding the model_repository/ layout (default: ./model_repository; "
                    "--out is the former name)")
    er.add_argument("--models", type=Path, default=None,
                    help="folder with default_{arterial,venous,locator}.pt (default: the embedded models)")
    er.add_argument("--engine", nargs=2, action="append", metavar=("MODEL", "PLAN"), default=None,
                    help="also install a TensorRT engine for MODEL: arterial, venous (their segmenters) or "
                    "locator (repeatable)")
    er.add_argument("--mode", choices=list(MODES), default=DEFAULT_MODE,
                    help="the s4c model's mode: roi (locator, then the segmenter on the pancreas region; "
                    "default) or full (the paper's whole-volume sliding window)")
    ex.set_defaults(func=_cmd_export)

    sv = sub.add_parser("serve", help="run the real tritonserver on the model repository (foreground)")
    sv.add_argument("--model-repository", type=Path, default=Path("model_repository"),
                    help="the Triton model repository to serve (default: ./model_repository)")
    sv.add_argument("--models", type=Path, default=None, help="checkpoints to export if the repository is stale")
    sv.add_argument("--grpc-port", type=_port, default=contract.GRPC_PORT)
    sv.add_argument("--http-port", type=_port, default=contract.HTTP_PORT)
    sv.add_argument("--metrics-port", type=_port, default=contract.METRICS_PORT)
    sv.add_argument("--address", default="127.0.0.1", help="listen address (default loopback only)")
    sv.add_argument("--form", choices=["tensorrt", "onnxruntime"], default=None,
                    help="segmenter form: configs/<form>.pbtxt (GPU server); default the CPU form")
    sv.add_argument("--admin-key-file", type=Path, default=None,
                    help="file holding the key for the restricted admin APIs (default: a random key)")
    sv.add_argument("--tls-cert", type=Path, default=None, help="gRPC over TLS: server certificate (PEM)")
    sv.add_argument("--tls-key", type=Path, default=None, help="gRPC over TLS: server private key (PEM)")
    sv.add_argument("--tls-client-ca", type=Path, default=None, help="mutual TLS: CA that signs client certificates")
    sv.add_argument("--build-engines", action="store_true",
                    help="build missing or stale FP16 TensorRT plans first (GPU server, --form tensorrt)")
    sv.add_argument("--exit-timeout", type=_seconds_int, default=30,
                    help="seconds in-flight requests get to finish on SIGTERM")
    sv.set_defaults(func=_cmd_serve)

    inf = sub.add_parser("infer", help="send scans to the server over gRPC and write the results (without "
                         "--url: start a local server for this command)")
    inf.add_argument("--url", action="append", default=None,
                     help="HOST:PORT of a running server's gRPC endpoint (default: start tritonserver on free "
                     "loopback ports for this command and stop it afterwards); --manifest takes several "
                     "(repeated or comma-separated): cases go round robin, and to the next one while an "
                     "endpoint is unavailable")
    inf.add_argument("--model-repository", type=Path, default=Path("model_repository"),
                     help="without --url: the repository the local server serves (default: ./model_repository)")
    inf.add_argument("--models", type=Path, default=None,
                     help="without --url: checkpoints to export if the repository is stale")
    inf.add_argument("--arterial", type=Path, help="arterial-phase scan: a NIfTI file or a DICOM series folder")
    inf.add_argument("--venous", type=Path, help="venous-phase scan: a NIfTI file or a DICOM series folder")
    inf.add_argument("--ct", type=Path, help="one scan, NIfTI or DICOM folder (with --phase)")
    inf.add_argument("--phase", choices=["arterial", "venous"])
    inf.add_argument("--arterial-series", metavar="UID", default=None,
                     help="the SeriesInstanceUID to read when the --arterial folder holds several series")
    inf.add_argument("--venous-series", metavar="UID", default=None,
                     help="the SeriesInstanceUID to read when the --venous folder holds several series")
    inf.add_argument("--series", metavar="UID", default=None,
                     help="the SeriesInstanceUID to read when the --ct folder holds several series")
    inf.add_argument("--manifest", type=Path, help="cohort manifest.csv (case_id, arterial, venous columns: NIfTI "
                     "files or DICOM folders)")
    inf.add_argument("--concurrency", type=_positive_int, default=1, help="cases in flight (--manifest)")
    inf.add_argument("--no-resume", dest="resume", action="store_false",
                     help="--manifest: infer every case again (default: cases already written whole are kept)")
    inf.add_argument("--out", required=True, type=Path, help="folder for <phase>_labels.nii.gz, report.json, "
                     "overlay.png, and <phase>_seg.dcm for a DICOM input (--manifest: one folder per case and "
                     "summary.csv)")
    inf.add_argument("--timeout", type=_seconds, default=600.0, help="seconds per call")
    inf.add_argument("--retries", type=_count, default=3, help="retries when the server is UNAVAILABLE")
    # TLS flags: the server's spelling (s4c serve --tls-*); the former client names stay as aliases.
    inf.add_argument("--tls", "--ssl", dest="tls", action="store_true",
                     help="gRPC over TLS (with --tls-ca for a private CA)")
    inf.add_argument("--tls-ca", "--root-cert", dest="tls_ca", type=Path, default=None,
                     help="CA certificate (PEM) that signed the server's certificate")
    inf.add_argument("--tls-cert", "--cert-chain", dest="tls_cert", type=Path, default=None,
                     help="mutual TLS: this client's certificate chain (PEM)")
    inf.add_argument("--tls-key", "--private-key", dest="tls_key", type=Path, default=None,
                     help="mutual TLS: this client's private key (PEM)")
    inf.add_argument("--shared-memory", action="store_true",
                     help="a server on this host: pass the CTs and labels through system shared memory instead of "
                     "the gRPC message (less server memory per request); with --url it needs the admin key")
    inf.add_argument("--admin-key-file", type=Path, default=None,
                     help="--shared-memory with --url: the file holding the server's admin key")
    inf.add_argument("--no-progress", action="store_true")
    inf.set_defaults(func=_cmd_infer)

    cl = sub.add_parser("classify", help="apply the component filter and decision rule to a label NIfTI")
    cl.add_argument("--labels", required=True, type=Path)
    cl.set_defaults(func=_cmd_classify)
    return p


def main(argv: list[str] | None = None) -> int:
    from s4c.runtime import disable_numpy_hugepage_madvise

    disable_numpy_hugepage_madvise()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv[argv.index(args.command) + 1:]  # the subcommand's own arguments
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        return _fail(args.command, exc, exc.code)
    except (ValueError, FileNotFoundError) as exc:  # bad input named by the library (ScanError included)
        return _fail(args.command, exc, 2)
    except TrainingStopped as exc:  # checkpointed; exits as a process ended by that signal does
        print(f"s4c {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code


def _fail(command: str, exc: BaseException, code: int) -> int:
    """Every subcommand's errors look alike: ``s4c <command>: error: <message>`` (argparse's too)."""
    print(f"s4c {command}: error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
