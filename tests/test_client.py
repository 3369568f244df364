"""The gRPC client's scan handling and its errors, without a server."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from s4c.cli import main
from s4c.io import save_nifti
from s4c.serving.scans import ScanError, read_scan, to_int16


def _write(path, data, affine, dtype=None, slope=None, inter=None):
    img = nib.Nifti1Image(data, affine)
    if dtype is not None:
        img.header.set_data_dtype(dtype)
    if slope is not None:
        img.header.set_slope_inter(slope, inter or 0.0)
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("codes", [("R", "A", "S"), ("L", "P", "S"), ("P", "I", "R"), ("S", "L", "A")])
def test_canonical_round_trip(tmp_path, codes):
    rng = np.random.default_rng(0)
    zyx = rng.integers(-1000, 1500, size=(7, 9, 11)).astype(np.int16)
    ornt = nib.orientations.axcodes2ornt(codes)
    affine = nib.orientations.inv_ornt_aff(ornt, (11, 9, 7))  # voxel axes pointing along ``codes``
    affine[:3, :3] *= np.array([0.8, 0.9, 2.0])
    path = save_nifti(tmp_path / "ct.nii.gz", zyx, affine)
    scan = read_scan(path)
    assert nib.orientations.aff2axcodes(scan.affine) == ("R", "A", "S")
    assert scan.ct.dtype == np.int16 and scan.ct.size == zyx.size
    assert np.array_equal(scan.to_file(scan.ct), zyx)
    # Every voxel keeps its world position: canonical index -> world equals file index -> world.
    z, y, x = 3, 4, 5
    fz, fy, fx = scan.canonical_to_file_index((z, y, x))
    assert scan.ct[z, y, x] == zyx[round(fz), round(fy), round(fx)]


def test_scaled_float_storage_becomes_int16(tmp_path):
    raw = np.arange(-500, 500, dtype=np.int16).reshape(10, 10, 10)
    path = _write(tmp_path / "s.nii.gz", raw, np.eye(4), np.int16, slope=2.0, inter=-1024.0)
    scan = read_scan(path)
    assert scan.ct.dtype == np.int16
    assert int(scan.ct.min()) == -2024 and int(scan.ct.max()) == -26


@pytest.mark.parametrize("problem", ["truncated", "garbage", "4-D", "NaN", "singular", "slope overflow",
                                     "complex", "missing"])
def test_bad_scans_are_refused_clearly(tmp_path, problem):
    good = np.zeros((8, 8, 8), np.int16)
    path = tmp_path / "scan.nii.gz"
    if problem == "truncated":
        save_nifti(path, good + 1, np.eye(4))
        path.write_bytes(path.read_bytes()[:60])
        needle = "cannot read"
    elif problem == "garbage":
        path.write_bytes(gzip.compress(b"not a nifti file at all" * 20))
        needle = "cannot read"
    elif problem == "4-D":
        _write(path, np.zeros((8, 8, 8, 3), np.int16), np.eye(4))
        needle = "3-D"
    elif problem == "NaN":
        data = np.zeros((8, 8, 8), np.float32)
        data[1, 2, 3] = np.nan
        _write(path, data, np.eye(4))
        needle = "NaN"
    elif problem == "singular":
        # nibabel will not build an image from a singular affine, so write the header rows directly.
        hdr = nib.Nifti1Header()
        hdr.set_data_shape(good.shape)
        hdr.set_data_dtype(np.int16)
        hdr["sform_code"], hdr["qform_code"] = 1, 0
        hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]
        nib.save(nib.Nifti1Image(good, None, hdr), str(path))
        needle = "singular"
    elif problem == "slope overflow":
        _write(path, np.full((8, 8, 8), 30000, np.int16), np.eye(4), np.int16, slope=4.0)
        needle = "do not fit int16"
    elif problem == "complex":
        _write(path, np.zeros((8, 8, 8), np.complex64), np.eye(4))
        needle = "complex64"
    else:
        path = tmp_path / "absent.nii.gz"
        needle = "no such file"
    with pytest.raises(ScanError, match=needle):
        read_scan(path)


def test_to_int16_rounds_and_refuses():
    assert to_int16(np.array([1.4, -2.6]), "x").tolist() == [1, -3]
    with pytest.raises(ScanError, match="do not fit"):
        to_int16(np.array([40000.0]), "x")
    with pytest.raises(ScanError, match="NaN or Inf"):
        to_int16(np.array([np.inf]), "x")


def test_infer_cli_bad_scan_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"\x1f\x8b junk")
    code = main(["infer", "--url", "127.0.0.1:9", "--ct", str(bad), "--phase", "venous", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "bad.nii.gz" in capsys.readouterr().err


def test_infer_cli_unreachable_server_exits_3(tmp_path, capsys):
    from s4c.serving.server import free_ports

    path = save_nifti(tmp_path / "ct.nii.gz", np.zeros((8, 8, 8), np.int16), np.eye(4))
    (port,) = free_ports(1)
    code = main(["infer", "--url", f"127.0.0.1:{port}", "--ct", str(path), "--phase", "venous", "--retries", "1",
                 "--timeout", "10", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "cannot reach the S4C server" in err


@pytest.mark.parametrize("argv", [["--arterial", "a.nii.gz"], ["--ct", "a.nii.gz"], []])
def test_infer_cli_argument_errors(tmp_path, argv, capsys):
    assert main(["infer", *argv, "--out", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(("status", "calls", "needle"), [
    ("StatusCode.INVALID_ARGUMENT", 1, "answered INVALID_ARGUMENT: s4c: SPACING must be > 0"),
    ("StatusCode.INTERNAL", 1, "answered INTERNAL: s4c: SPACING must be > 0"),
    ("StatusCode.UNAVAILABLE", 3, "cannot reach the S4C server"),
])
def test_client_retries_only_unavailable(status, calls, needle):
    """Deterministic errors are reported at once with the server's message; UNAVAILABLE is retried
    (here: ``retries=2``, so 3 calls) and, with nothing listening, named as an unreachable server."""
    from tritonclient.utils import InferenceServerException

    from s4c.serving.client import ClientError, InferenceClient
    from s4c.serving.server import free_ports

    (port,) = free_ports(1)
    seen = []

    def answer():
        seen.append(1)
        raise InferenceServerException("s4c: SPACING must be > 0", status=status)

    with InferenceClient(f"127.0.0.1:{port}", retries=2, backoff_s=0.01, timeout_s=5) as client:
        with pytest.raises(ClientError, match=needle) as err:
            client._call("s4c venous", answer)
    assert len(seen) == calls
    assert "s4c: SPACING must be > 0" in str(err.value)


def test_client_names_a_live_but_unavailable_server(monkeypatch):
    """UNAVAILABLE from a server that is up (queue full, draining) is reported with its message, not as
    'cannot reach'."""
    from tritonclient.utils import InferenceServerException

    from s4c.serving.client import ClientError, InferenceClient

    with InferenceClient("127.0.0.1:9", retries=1, backoff_s=0.01, timeout_s=5) as client:
        monkeypatch.setattr(client.client, "is_server_live", lambda **kw: True)

        def full():
            raise InferenceServerException("Exceeds maximum queue size", status="StatusCode.UNAVAILABLE")

        with pytest.raises(ClientError) as err:
            client._call("s4c_dual_phase", full)
    assert "is unavailable (2 attempts): Exceeds maximum queue size" in str(err.value)
    assert "cannot reach" not in str(err.value)
