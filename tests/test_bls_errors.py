"""Error codes through BLS on the real server: a segmenter's INVALID_ARG, INTERNAL or UNAVAILABLE
reaches the client as that code with the server's message, one and two BLS levels up, and the client
retries only UNAVAILABLE. The failing models are the session server's :data:`conftest.FAULT_MODELS`."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FAULT_DUAL, FAULT_PIPELINE, FAULT_SEGMENTER
from s4c import contract
from s4c.io import save_nifti
from s4c.serving.scans import Scan, read_scan

pytestmark = pytest.mark.server

grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

#: CT value -> the fault segmenter's answer (tests/models/segmenter_fault.py), and the gRPC status and
#: message text that must reach the client.
_SEG = f"segmenter {FAULT_SEGMENTER}: {FAULT_SEGMENTER}"
FAULTS = {
    "INVALID_ARG": (1111, "INVALID_ARGUMENT", f"{_SEG}: deliberate INVALID_ARG"),
    "INTERNAL": (2222, "INTERNAL", f"{_SEG}: internal error (RuntimeError); see the server log"),
    "UNAVAILABLE": (3333, "UNAVAILABLE", f"{_SEG}: deliberate UNAVAILABLE"),
}
SHAPE, SPACING = (64, 64, 64), (2.5, 2.5, 2.5)  # one window on the segmenter's grid: the batch is the CT


def _in(name, array, dtype):
    t = grpcclient.InferInput(name, list(array.shape), dtype)
    t.set_data_from_numpy(array)
    return t


def _ct(value):
    return np.full(SHAPE, value, np.int16)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_segmenter_code_reaches_the_caller_of_s4c(client, fault):
    value, status, message = FAULTS[fault]
    inputs = [_in(contract.CT, _ct(value), "INT16"), _in(contract.SPACING, np.asarray(SPACING, np.float32), "FP32"),
              _in(contract.PHASE, np.array([b"arterial"], dtype=np.object_), "BYTES")]
    with pytest.raises(InferenceServerException) as err:
        client.infer(FAULT_PIPELINE, inputs, client_timeout=120)
    assert str(err.value.status()) == f"StatusCode.{status}", err.value.message()
    assert err.value.message() == f"{FAULT_PIPELINE}: {message}"  # the server's message, no code tag left
    assert client.is_model_ready(FAULT_PIPELINE) and client.is_model_ready(FAULT_SEGMENTER)


@pytest.mark.parametrize("fault", list(FAULTS))
def test_segmenter_code_reaches_the_caller_of_the_dual_phase_model(client, fault):
    """Two BLS levels: s4c_dual_fault -> s4c_fault -> segmenter_fault (arterial); venous is served."""
    value, status, message = FAULTS[fault]
    sp = np.asarray(SPACING, np.float32)
    inputs = [_in("ARTERIAL", _ct(value), "INT16"), _in("ARTERIAL_SPACING", sp, "FP32"),
              _in("VENOUS", _ct(-100), "INT16"), _in("VENOUS_SPACING", sp, "FP32")]
    with pytest.raises(InferenceServerException) as err:
        client.infer(FAULT_DUAL, inputs, client_timeout=120)
    assert str(err.value.status()) == f"StatusCode.{status}", err.value.message()
    assert err.value.message() == f"{FAULT_DUAL}: arterial: {FAULT_PIPELINE}: {message}"
    assert client.is_model_ready(FAULT_DUAL)


def test_the_fault_models_serve_a_normal_request(client):
    """Not a broken setup: a CT without a fault value goes through both levels."""
    sp = np.asarray(SPACING, np.float32)
    inputs = [_in("ARTERIAL", _ct(-100), "INT16"), _in("ARTERIAL_SPACING", sp, "FP32"),
              _in("VENOUS", _ct(-100), "INT16"), _in("VENOUS_SPACING", sp, "FP32")]
    r = client.infer(FAULT_DUAL, inputs, client_timeout=300)
    assert r.as_numpy(contract.DUAL_LABELS["arterial"]).shape == SHAPE


@pytest.fixture(scope="module")
def scan_of(tmp_path_factory):
    """CT value -> a scan of that value, read as ``s4c infer`` reads files."""
    folder = tmp_path_factory.mktemp("fault_scans")

    def make(value) -> Scan:
        return read_scan(save_nifti(folder / f"ct_{value}.nii.gz", _ct(value), np.diag([*SPACING, 1.0])))

    return make


@pytest.mark.parametrize(("fault", "calls"), [("INVALID_ARG", 1), ("INTERNAL", 1), ("UNAVAILABLE", 3)])
@pytest.mark.parametrize("dual", [False, True], ids=["s4c", "dual"])
def test_client_retries_only_unavailable_and_prints_the_message(triton, scan_of, fault, calls, dual):
    """``s4c infer``'s client: one call for a deterministic error, retries (2 here) for UNAVAILABLE;
    the error names the code and carries the server's message."""
    from s4c.serving.client import ClientError, InferenceClient

    value, status, message = FAULTS[fault]
    with InferenceClient(triton.config.grpc_url, retries=2, backoff_s=0.05, timeout_s=120,
                         pipeline_model=FAULT_PIPELINE, dual_phase_model=FAULT_DUAL) as client:
        seen = []
        infer = client.client.infer
        client.client.infer = lambda *a, **k: seen.append(1) or infer(*a, **k)
        with pytest.raises(ClientError) as err:
            if dual:
                client.infer_dual(scan_of(value), scan_of(-100))
            else:
                client.infer_phase(scan_of(value), "arterial")
    assert len(seen) == calls
    text = str(err.value)
    assert message in text, text
    if fault == "UNAVAILABLE":
        assert "is unavailable (3 attempts)" in text and "cannot reach" not in text
    else:
        assert f"answered {status}" in text
