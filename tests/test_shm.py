"""System shared memory between a same-host client and the real tritonserver (s4c.serving.shm)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from s4c import contract
from s4c.data.phantom import generate_case

pytestmark = pytest.mark.server
grpcclient = pytest.importorskip("tritonclient.grpc")
shm_utils = pytest.importorskip("tritonclient.utils.shared_memory")
from tritonclient.utils import InferenceServerException  # noqa: E402

from s4c.serving.client import make_inputs  # noqa: E402
from s4c.serving.server import grpc_admin_header  # noqa: E402
from s4c.serving.shm import SystemSharedMemory  # noqa: E402


def _meta(phase):
    return make_inputs({contract.SPACING: (np.asarray((2.5, 2.5, 2.5), np.float32), "FP32"),
                        contract.PHASE: (np.array([phase.encode()], dtype=np.object_), "BYTES")})


def test_shared_memory_answer_equals_the_grpc_answer_and_leaves_nothing(triton, client):
    ct = generate_case(4, abnormal=True, shape=(48, 80, 72), spacing=(2.5, 2.5, 2.5)).arterial.astype(np.int16)
    plain = client.infer(contract.PIPELINE_MODEL, [*make_inputs({contract.CT: (ct, "INT16")}), *_meta("arterial")],
                         client_timeout=300)
    headers = {grpc_admin_header(): triton.config.admin_key}
    before = ct.copy()
    with SystemSharedMemory(client, headers) as shm:
        inputs = [shm.input(contract.CT, ct, "INT16"), *_meta("arterial")]
        outputs = [shm.output(contract.LABELS, ct.shape, "UINT8"), grpcclient.InferRequestedOutput(contract.REPORT)]
        r = client.infer(contract.PIPELINE_MODEL, inputs, outputs=outputs, client_timeout=300)
        labels = shm.read(contract.LABELS)
        status = client.get_system_shared_memory_status(headers=headers, as_json=True)
        assert len(status.get("regions", {})) == 2
    assert np.array_equal(ct, before)
    ref = plain.as_numpy(contract.LABELS)
    assert (ref > 0).any()
    assert np.array_equal(labels, ref)
    assert json.loads(r.as_numpy(contract.REPORT)[0])["abnormal"] == json.loads(plain.as_numpy(contract.REPORT)[0])[
        "abnormal"]
    # Every region is unregistered on the server and removed from this host.
    assert not client.get_system_shared_memory_status(headers=headers, as_json=True).get("regions")
    assert shm_utils.mapped_shared_memory_regions() == []


def test_shared_memory_without_the_admin_key_is_refused_and_cleaned_up(client):
    with pytest.raises(InferenceServerException, match="restricted"):
        with SystemSharedMemory(client, {}) as shm:
            shm.input(contract.CT, np.zeros((8, 8, 8), np.int16), "INT16")
    assert shm_utils.mapped_shared_memory_regions() == []


def _infer_cli(args, timeout=600):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "s4c.cli", "infer", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_infer_cli_with_shared_memory_writes_what_the_grpc_path_writes(triton, tmp_path):
    from s4c.io import load_nifti, save_nifti

    case = generate_case(6, abnormal=True, shape=(40, 72, 64), spacing=(3.0, 2.5, 2.5), case_id="shm")
    affine = case.affine.copy()
    affine[0, 0] = -affine[0, 0]  # stored non-canonically: the labels must come back on this grid
    paths = {p: str(save_nifti(tmp_path / f"{p}.nii.gz", getattr(case, p).astype(np.int16), affine))
             for p in ("arterial", "venous")}
    key = tmp_path / "admin.key"
    key.write_text(triton.config.admin_key + "\n")
    common = ["--url", triton.config.grpc_url, "--arterial", paths["arterial"], "--venous", paths["venous"]]
    plain = _infer_cli([*common, "--out", str(tmp_path / "plain")])
    shared = _infer_cli([*common, "--out", str(tmp_path / "shm"), "--shared-memory", "--admin-key-file", str(key)])
    assert plain.returncode == 0, plain.stderr
    assert shared.returncode == 0, shared.stderr
    for phase in ("arterial", "venous"):
        a = load_nifti(tmp_path / "plain" / f"{phase}_labels.nii.gz")
        b = load_nifti(tmp_path / "shm" / f"{phase}_labels.nii.gz")
        assert np.array_equal(a.array, b.array) and np.array_equal(a.affine, b.affine)
    assert (load_nifti(tmp_path / "plain" / "arterial_labels.nii.gz").array > 0).any()
    # One phase too.
    one = _infer_cli(["--url", triton.config.grpc_url, "--ct", paths["venous"], "--phase", "venous",
                      "--out", str(tmp_path / "one"), "--shared-memory", "--admin-key-file", str(key)])
    assert one.returncode == 0, one.stderr
    assert np.array_equal(load_nifti(tmp_path / "one" / "venous_labels.nii.gz").array,
                          load_nifti(tmp_path / "plain" / "venous_labels.nii.gz").array)
    assert shm_utils.mapped_shared_memory_regions() == []


def test_infer_cli_shared_memory_needs_the_key(triton, tmp_path):
    res = _infer_cli(["--url", triton.config.grpc_url, "--ct", "x.nii.gz", "--phase", "venous",
                      "--out", str(tmp_path / "o"), "--shared-memory"], timeout=120)
    assert res.returncode == 2
    assert "admin key" in res.stderr
    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-key")
    from s4c.data.phantom import generate_case as gen
    from s4c.io import save_nifti

    ct = save_nifti(tmp_path / "ct.nii.gz", gen(2, abnormal=False, shape=(32, 48, 48)).venous.astype(np.int16),
                    np.diag([2.5, 2.5, 2.5, 1.0]))
    res = _infer_cli(["--url", triton.config.grpc_url, "--ct", str(ct), "--phase", "venous",
                      "--out", str(tmp_path / "o"), "--shared-memory", "--admin-key-file", str(wrong)], timeout=120)
    assert res.returncode != 0
    assert "restricted" in res.stderr or "admin" in res.stderr, res.stderr
