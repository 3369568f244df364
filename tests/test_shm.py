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

from s4c.serving.server import grpc_admin_header  # noqa: E402
from s4c.serving.shm import SystemSharedMemory  # noqa: E402


@pytest.fixture(scope="module")
def client(triton):
    c = grpcclient.InferenceServerClient(triton.config.grpc_url)
    yield c
    c.close()


def _small(name, array, dtype):
    t = grpcclient.InferInput(name, list(array.shape), dtype)
    t.set_data_from_numpy(array)
    return t


def _meta(phase):
    return [_small(contract.SPACING, np.asarray((2.5, 2.5, 2.5), np.float32), "FP32"),
            _small(contract.PHASE, np.array([phase.encode()], dtype=np.object_), "BYTES")]


def test_shared_memory_answer_equals_the_grpc_answer_and_leaves_nothing(triton, client):
    ct = generate_case(4, abnormal=True, shape=(48, 80, 72), spacing=(2.5, 2.5, 2.5)).arterial.astype(np.int16)
    plain = client.infer(contract.PIPELINE_MODEL, [_small(contract.CT, ct, "INT16"), *_meta("arterial")],
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
