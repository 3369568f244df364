"""Triton Python-backend locator (CPU form) of ``roi`` mode: the exported ONNX graph in ONNX Runtime.
The GPU forms of this model are configs/tensorrt.pbtxt and configs/onnxruntime.pbtxt."""

from s4c.serving.onnx_segmenter import OnnxSegmenterModel as TritonPythonModel  # noqa: F401
