"""A corpus of bad inputs: NIfTI files the client must refuse, and raw tensors the server must refuse.

    python benchmarks/bad_inputs.py --out build/bad_inputs     # writes the files, prints the list

Each entry says where the typed error must come from: ``client`` (``s4c infer`` exits 2 with a message
naming the problem) or ``server`` (gRPC INVALID_ARG). The reliability suite sends every entry and then
checks that the server is still ready.
"""

from __future__ import annotations

import argparse
import gzip
import struct
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from s4c.io import save_nifti


@dataclass
class BadInput:
    name: str
    where: str  # "client" or "server"
    needle: str  # a fragment the error message must contain
    path: Path | None = None  # for client entries: the NIfTI file (or a missing path)
    model: str = "s4c"  # for server entries
    tensors: dict = field(default_factory=dict)  # name -> (array, triton dtype)


def _hdr_only(path: Path, shape, dtype=np.int16) -> Path:
    """A header with ``shape`` and almost no data after it (the loader must not trust the header)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr.set_sform(np.eye(4), code=1)
    raw = hdr.binaryblock + b"\0" * 4 + b"\1\2\3\4" * 16
    path.write_bytes(gzip.compress(raw))
    return path


def write_corpus(out: str | Path) -> list[BadInput]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    good = np.full((48, 64, 64), -100, np.int16)
    eye = np.diag([2.5, 2.5, 2.5, 1.0])
    items: list[BadInput] = []

    p = save_nifti(out / "truncated.nii.gz", good, eye)
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 3])
    items.append(BadInput("truncated .nii.gz", "client", "cannot read", p))

    items.append(BadInput("header dimensions far beyond the limit", "client", "more than",
                          _hdr_only(out / "huge_dims.nii.gz", (32000, 32000, 32000))))

    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16, 3), np.int16), eye), str(out / "four_d.nii.gz"))
    items.append(BadInput("4-D volume", "client", "3-D", out / "four_d.nii.gz"))

    for name, value in (("nan", np.nan), ("inf", np.inf)):
        data = np.zeros((16, 16, 16), np.float32)
        data[3, 4, 5] = value
        nib.save(nib.Nifti1Image(data, eye), str(out / f"{name}_voxels.nii.gz"))
        items.append(BadInput(f"{name.upper()} voxels", "client", "NaN or Inf", out / f"{name}_voxels.nii.gz"))

    shear = eye.copy()
    shear[0, 1] = 0.8  # x grows with j: a sheared (tilted) grid
    nib.save(nib.Nifti1Image(good.transpose(2, 1, 0), shear), str(out / "shear_affine.nii.gz"))
    items.append(BadInput("sheared affine", "client", "sheared", out / "shear_affine.nii.gz"))

    for name, rows in (("zero", ([0] * 4, [0] * 4, [0] * 4)), ("singular", ([1, 0, 0, 0], [2, 0, 0, 0], [0, 0, 1, 0]))):
        hdr = nib.Nifti1Header()
        hdr.set_data_shape(good.shape)
        hdr.set_data_dtype(np.int16)
        hdr["sform_code"], hdr["qform_code"] = 1, 0
        hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = rows
        nib.save(nib.Nifti1Image(good, None, hdr), str(out / f"{name}_affine.nii.gz"))
        items.append(BadInput(f"{name} affine", "client", "singular", out / f"{name}_affine.nii.gz"))

    img = nib.Nifti1Image(good, None)
    img.header["pixdim"][1:4] = [0.0, 1.0, 1.0]
    img.header["sform_code"], img.header["qform_code"] = 0, 0
    nib.save(img, str(out / "zero_voxel_size.nii.gz"))
    # nibabel rewrites pixdim on save; patch the stored header so the file says what it should.
    raw = bytearray(gzip.decompress((out / "zero_voxel_size.nii.gz").read_bytes()))
    raw[80:84] = struct.pack("<f", 0.0)  # pixdim[1]
    (out / "zero_voxel_size.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    items.append(BadInput("zero voxel size", "client", "voxel size", out / "zero_voxel_size.nii.gz"))

    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.complex64), eye), str(out / "complex_dtype.nii.gz"))
    items.append(BadInput("complex voxels", "client", "unsupported voxel type", out / "complex_dtype.nii.gz"))
    rgb = np.zeros((16, 16, 16), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, eye), str(out / "rgb_dtype.nii.gz"))
    items.append(BadInput("RGB voxels", "client", "unsupported voxel type", out / "rgb_dtype.nii.gz"))
    nib.save(nib.Nifti1Image(np.full((16, 16, 16), 1e6, np.float64), eye), str(out / "float_out_of_range.nii.gz"))
    items.append(BadInput("float64 beyond int16", "client", "do not fit int16", out / "float_out_of_range.nii.gz"))

    img = nib.Nifti1Image(np.full((16, 16, 16), 30000, np.int16), eye)
    img.header.set_slope_inter(8.0, 0.0)
    nib.save(img, str(out / "slope_overflow.nii.gz"))
    items.append(BadInput("scl_slope that overflows int16", "client", "do not fit int16",
                          out / "slope_overflow.nii.gz"))

    items.append(BadInput("missing phase file", "client", "no such file", out / "absent_venous.nii.gz"))

    sp = (np.full(3, 2.5, np.float32), "FP32")
    phase = (np.array([b"venous"], dtype=np.object_), "BYTES")
    items += [
        BadInput("CT as float32, sent to the server", "server", "CT",
                 tensors={"CT": (good.astype(np.float32), "FP32"), "SPACING": sp, "PHASE": phase}),
        BadInput("CT of rank 2, sent to the server", "server", "CT",
                 tensors={"CT": (good[0], "INT16"), "SPACING": sp, "PHASE": phase}),
        BadInput("CT of rank 4, sent to the server", "server", "CT",
                 tensors={"CT": (good[None], "INT16"), "SPACING": sp, "PHASE": phase}),
        BadInput("SPACING as int32, sent to the server", "server", "SPACING",
                 tensors={"CT": (good, "INT16"), "SPACING": (np.full(3, 2, np.int32), "INT32"), "PHASE": phase}),
        BadInput("no PHASE, sent to the server", "server", "PHASE",
                 tensors={"CT": (good, "INT16"), "SPACING": sp}),
        BadInput("dual phase without VENOUS_SPACING", "server", "VENOUS_SPACING", model="s4c_dual_phase",
                 tensors={"ARTERIAL": (good, "INT16"), "VENOUS": (good, "INT16"), "ARTERIAL_SPACING": sp}),
    ]
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("build/bad_inputs"))
    args = ap.parse_args()
    for item in write_corpus(args.out):
        print(f"{item.where:6s} {item.name:40s} {item.path or item.model}")


if __name__ == "__main__":
    main()
