"""Request tensors in system shared memory, for a client on the same host as the server.

Over plain gRPC the server holds a request's CT twice before the pipeline runs: the gRPC message and
the Python backend's copy. With the tensors in POSIX shared memory (``tritonclient.utils.shared_memory``,
registered with ``register_system_shared_memory``) the message carries only region names; Triton reads
the CT from the region and writes the labels straight into one. Registering a region is Triton's
``shared-memory`` protocol, which the server restricts to holders of the admin key.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence

import numpy as np

#: Seconds to wait for the server to let go of a region after the response.
UNREGISTER_WAIT_S = 10.0
#: Bytes per element of the fixed-size Triton types used here.
_ITEMSIZE = {"INT16": 2, "UINT8": 1, "BOOL": 1, "INT64": 8, "FP32": 4, "FP64": 8}


class SystemSharedMemory:
    """Shared-memory regions for one request's fixed-size tensors; a context manager that unregisters
    and removes every region it made, also when the request fails.

    ``client`` is a ``tritonclient.grpc.InferenceServerClient``; ``headers`` carry the admin key.
    """

    def __init__(self, client, headers: Mapping[str, str] | None = None) -> None:
        import tritonclient.utils.shared_memory as shm

        self._shm = shm
        self.client = client
        self.headers = dict(headers or {})
        self._tag = f"s4c_{os.getpid()}_{uuid.uuid4().hex[:12]}"
        self._regions: dict[str, tuple[object, str, tuple[int, ...]]] = {}

    def _region(self, tensor: str, nbytes: int):
        name = f"{self._tag}_{tensor.lower()}"
        handle = self._shm.create_shared_memory_region(name, f"/{name}", nbytes)
        try:
            self.client.register_system_shared_memory(name, f"/{name}", nbytes, headers=self.headers)
        except Exception:
            self._shm.destroy_shared_memory_region(handle)
            raise
        return name, handle

    def input(self, tensor: str, array: np.ndarray, dtype: str):
        """A ``tritonclient.grpc.InferInput`` whose data is ``array``, copied once into a new region."""
        import tritonclient.grpc as grpcclient

        array = np.ascontiguousarray(array)
        name, handle = self._region(tensor, array.nbytes)
        self._regions[tensor] = (handle, dtype, array.shape)
        self._shm.set_shared_memory_region(handle, [array])
        t = grpcclient.InferInput(tensor, list(array.shape), dtype)
        t.set_shared_memory(name, array.nbytes)
        return t

    def output(self, tensor: str, shape: Sequence[int], dtype: str):
        """A ``tritonclient.grpc.InferRequestedOutput`` the server writes into a region of ``shape``."""
        import tritonclient.grpc as grpcclient

        shape = tuple(int(n) for n in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE[dtype]
        name, handle = self._region(tensor, nbytes)
        self._regions[tensor] = (handle, dtype, shape)
        out = grpcclient.InferRequestedOutput(tensor)
        out.set_shared_memory(name, nbytes)
        return out

    def read(self, tensor: str) -> np.ndarray:
        """A copy of an output region's contents (the region is gone after :meth:`close`)."""
        from tritonclient.utils import triton_to_np_dtype

        handle, dtype, shape = self._regions[tensor]
        return np.array(self._shm.get_contents_as_numpy(handle, triton_to_np_dtype(dtype), shape), copy=True)

    def close(self) -> None:
        regions, self._regions = self._regions, {}
        for tensor, (handle, _, _) in regions.items():
            try:
                self._unregister(f"{self._tag}_{tensor.lower()}")
            finally:
                self._shm.destroy_shared_memory_region(handle)

    def _unregister(self, name: str) -> None:
        """Unregister a region, waiting while the server still holds it: Triton releases a request's
        input buffers shortly after its response is sent (a dual-phase request's inputs also feed its
        BLS children), and refuses to unregister a region "currently in use" until then."""
        from tritonclient.utils import InferenceServerException

        deadline = time.monotonic() + UNREGISTER_WAIT_S
        while True:
            try:
                self.client.unregister_system_shared_memory(name, headers=self.headers)
                return
            except InferenceServerException as exc:
                if "in use" not in str(exc.message()) or time.monotonic() > deadline:
                    raise
            time.sleep(0.02)

    def __enter__(self) -> SystemSharedMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
