"""Fuzz target for the NIfTI loader: random byte edits of a valid file (header and data, gzipped or not)
must give either a valid 3-D volume or a ValueError, never another exception or a runaway allocation.
Runs briefly in CI (the hypothesis 'ci' profile); HYPOTHESIS_PROFILE=dev for a longer run."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from s4c.io import Volume, load_nifti
from s4c.serving.scans import ScanError, canonical

_rng = np.random.default_rng(0)
_IMG = nib.Nifti1Image(_rng.integers(-1000, 1000, size=(9, 8, 7)).astype(np.int16), np.diag([0.8, 0.9, 2.5, 1]))
_BUF = io.BytesIO()
_IMG.to_file_map({"image": nib.FileHolder(fileobj=_BUF), "header": nib.FileHolder(fileobj=_BUF)})
RAW = _BUF.getvalue()

edits = st.lists(st.tuples(st.integers(0, len(RAW) - 1), st.integers(0, 255)), min_size=1, max_size=12)


@given(edits=edits, gz=st.booleans(), cut=st.one_of(st.none(), st.integers(0, len(RAW))))
def test_loader_survives_corrupted_files(tmp_path_factory, edits, gz, cut):
    data = bytearray(RAW)
    for pos, value in edits:
        data[pos] = value
    if cut is not None:
        data = data[:cut]
    path = tmp_path_factory.mktemp("fuzz") / ("x.nii.gz" if gz else "x.nii")
    path.write_bytes(gzip.compress(bytes(data)) if gz else bytes(data))
    try:
        vol = load_nifti(path)
    except ValueError:
        return
    assert isinstance(vol, Volume) and vol.array.ndim == 3
    assert all(np.isfinite(vol.spacing)) and min(vol.spacing) > 0
    try:
        scan = canonical(vol, path.name)
    except ScanError:
        return
    assert scan.ct.dtype == np.int16 and scan.ct.size == vol.array.size
