"""The ``s4c`` command line. Each subcommand parses flags and calls one library function."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from s4c.labels import DEFAULT_STRIDE


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum``, with an error that names the value."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_count = _int_at_least(0, "a count >= 0")


def _spacing(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of mm, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"spacing must be finite and > 0 mm, got {text}")
    return value


def _cmd_phantom(args: argparse.Namespace) -> int:
    from s4c.data.phantom import write_cohort

    manifest = write_cohort(args.out, n_normal=args.normal, n_abnormal=args.abnormal, seed=args.seed,
                            shape=tuple(args.shape), spacing=tuple(args.spacing))
    print(f"wrote {args.normal + args.abnormal} cases; manifest {manifest}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from s4c.demo import run_demo

    run_demo(args.out, seed=args.seed, models=args.models, stride=args.stride, batch_size=args.batch_size)
    return 0


def _cmd_classify(args: argparse.Namespace) -> int:
    import numpy as np

    from s4c.io import load_nifti
    from s4c.postprocess import classify

    vol = load_nifti(args.labels)
    arr = vol.array
    if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 3:
        raise ValueError(f"{Path(args.labels).name}: labels must be integers 0..3, got dtype {arr.dtype} "
                         f"range {arr.min()}..{arr.max()}")
    d = classify(arr.astype(np.uint8), vol.spacing)
    print(json.dumps(d.to_dict(), indent=2))
    return 0


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
    de.add_argument("--stride", type=_positive_int, default=DEFAULT_STRIDE)
    de.add_argument("--batch-size", type=_positive_int, default=8)
    de.set_defaults(func=_cmd_demo)

    cl = sub.add_parser("classify", help="apply the component filter and decision rule to a label NIfTI")
    cl.add_argument("--labels", required=True, type=Path)
    cl.set_defaults(func=_cmd_classify)
    return p


def main(argv: list[str] | None = None) -> int:
    from s4c.runtime import disable_numpy_hugepage_madvise

    disable_numpy_hugepage_madvise()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"s4c {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
