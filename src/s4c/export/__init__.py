"""FP16 TensorRT engines for the patch models (``s4c export trt``, ``s4c serve --build-engines``).

The ONNX graphs and the Triton model repository they are built from belong to :mod:`s4c.repository`.
"""
