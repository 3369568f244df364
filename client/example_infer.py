"""The smallest call of the s4c_dual_phase model with plain tritonclient (no s4c import).

    python client/example_infer.py 127.0.0.1:8001

Sends two synthetic int16 volumes of different grids and prints the decision and tumour volumes.
A real bridge sends each series' HU array in Z, Y, X order with its voxel size in mm (Z, Y, X).
"""

import json
import sys

import numpy as np
import tritonclient.grpc as grpcclient


def main(url: str) -> None:
    client = grpcclient.InferenceServerClient(url)
    arrays = {
        "ARTERIAL": np.full((64, 96, 96), -50, np.int16), "ARTERIAL_SPACING": np.array([2.5, 2.5, 2.5], np.float32),
        "VENOUS": np.full((60, 90, 90), -50, np.int16), "VENOUS_SPACING": np.array([3.0, 2.5, 2.5], np.float32),
    }
    inputs = []
    for name, array in arrays.items():
        t = grpcclient.InferInput(name, list(array.shape), "INT16" if array.dtype == np.int16 else "FP32")
        t.set_data_from_numpy(array)
        inputs.append(t)
    result = client.infer("s4c_dual_phase", inputs, client_timeout=600)
    report = json.loads(result.as_numpy("REPORT")[0])
    print("abnormal:", bool(result.as_numpy("ABNORMAL")[0]))
    for phase, rep in report["phases"].items():
        print(phase, "tumour mL:", [t["volume_ml"] for t in rep["tumors"]], "labels:",
              result.as_numpy(f"LABELS_{phase.upper()}").shape)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8001")
