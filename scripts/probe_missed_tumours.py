"""How sure a segmenter is on a case's reference tumour: one 64^3 window centred on the tumour, the
mean tumour / pancreas / background probability over the reference tumour voxels, and the tumour
voxels found with the window flipped along each axis.

    python scripts/probe_missed_tumours.py --data COHORT --phase arterial --cases case_0060 case_0021 \
        [--model src/s4c/models/default_arterial.pt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from s4c.checkpoint import load_checkpoint
from s4c.data.cohort import read_manifest
from s4c.io import load_canonical
from s4c.labels import PATCH_SIZE, TUMOR
from s4c.models import checkpoint_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--phase", default="arterial")
    ap.add_argument("--cases", nargs="+", required=True)
    ap.add_argument("--model", type=Path, default=None, help="default: the embedded model of the phase")
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, spec = load_checkpoint(args.model or checkpoint_path(args.phase))
    model.eval()

    def softmax(xi: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.softmax(model(torch.from_numpy(xi)), 1)[0].numpy()

    entries = {e.case_id: e for e in read_manifest(args.data)}
    for cid in args.cases:
        e = entries[cid]
        ct = load_canonical(e.path(args.data, args.phase))
        lab = load_canonical(e.path(args.data, f"{args.phase}_label")).array
        if ct.spacing != tuple(spec.spacing):
            raise SystemExit(f"{cid}: spacing {ct.spacing} is not the model's {spec.spacing}")
        centre = np.argwhere(lab == TUMOR).mean(0).astype(int)
        starts = [max(0, min(c - PATCH_SIZE // 2, n - PATCH_SIZE)) for c, n in zip(centre, lab.shape, strict=True)]
        sl = tuple(slice(s0, s0 + PATCH_SIZE) for s0 in starts)
        x = spec.normalization.apply(np.asarray(ct.array[sl], np.float32)[None, None])
        ref = lab[sl] == TUMOR
        p = softmax(x)
        probs = p[:, ref].mean(1)
        found = [int((p.argmax(0)[ref] == TUMOR).sum())]
        for axis in (2, 3, 4):  # z, y, x of the (N, C, Z, Y, X) input; flipped back before counting
            p = np.flip(softmax(np.flip(x, axis).copy()), axis - 1)
            found.append(int((p.argmax(0)[ref] == TUMOR).sum()))
        print(f"{cid}: {int(ref.sum())} tumour voxels; mean p(background, pancreas, tumour) "
              f"{probs[0]:.3f} {probs[1]:.3f} {probs[2]:.3f}; found {found[0]}, flipped z/y/x {found[1:]}")


if __name__ == "__main__":
    main()
