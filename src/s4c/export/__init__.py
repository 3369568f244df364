"""Export of a trained segmenter: ONNX, FP16 TensorRT engines and the Triton model repository."""
