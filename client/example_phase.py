"""One phase through the ``s4c`` model with plain tritonclient (no s4c import), with the retry policy a
PACS bridge should use.

    python client/example_phase.py 127.0.0.1:8001 [--phase venous]

Sends a synthetic int16 volume (Z, Y, X) with its voxel size (Z, Y, X mm) and its 4x4 NIfTI-style
affine, and prints the decision. Only UNAVAILABLE (server unreachable, queue full, starting or
draining) is worth retrying; INVALID_ARG (a bad scan or request) and INTERNAL are deterministic and are
reported with the server's message. Exit codes: 0 answered, 2 refused (INVALID_ARG), 3 any other error.
"""

import argparse
import json
import sys
import time

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def infer(client, inputs, outputs, retries: int = 3, backoff_s: float = 1.0):
    """``client.infer`` on the ``s4c`` model, retrying UNAVAILABLE only."""
    for attempt in range(retries + 1):
        try:
            return client.infer("s4c", inputs, outputs=outputs, client_timeout=600)
        except InferenceServerException as exc:
            if "UNAVAILABLE" in str(exc.status()) and attempt < retries:
                time.sleep(backoff_s * 2**attempt)
                continue
            raise


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url", nargs="?", default="127.0.0.1:8001")
    ap.add_argument("--phase", default="venous", help="arterial or venous (anything else is refused)")
    args = ap.parse_args(argv)
    ct = np.full((48, 64, 64), -50, np.int16)
    spacing = np.array([3.0, 2.5, 2.5], np.float32)  # Z, Y, X mm
    affine = np.diag([2.5, 2.5, 3.0, 1.0])  # (i, j, k) = (X, Y, Z) index -> world mm, as in the NIfTI file
    tensors = [("CT", ct, "INT16"), ("SPACING", spacing, "FP32"),
               ("PHASE", np.array([args.phase.encode()], dtype=np.object_), "BYTES"), ("AFFINE", affine, "FP64")]
    inputs = []
    for name, array, dtype in tensors:
        t = grpcclient.InferInput(name, list(array.shape), dtype)
        t.set_data_from_numpy(array)
        inputs.append(t)
    outputs = [grpcclient.InferRequestedOutput(n) for n in ("LABELS", "ABNORMAL", "REPORT")]
    client = grpcclient.InferenceServerClient(args.url)
    try:
        result = infer(client, inputs, outputs)
    except InferenceServerException as exc:
        print(f"server answered {exc.status()}: {exc.message()}", file=sys.stderr)
        return 2 if "INVALID_ARG" in str(exc.status()) else 3
    finally:
        client.close()
    report = json.loads(result.as_numpy("REPORT")[0])
    print("abnormal:", bool(result.as_numpy("ABNORMAL")[0]), "labels:", result.as_numpy("LABELS").shape,
          "tumour voxels:", report["tumor_voxels"], "mode:", report["mode"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
