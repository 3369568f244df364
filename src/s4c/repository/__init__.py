"""The Triton model repository as one layer: what its files say and how they are written.

* :mod:`s4c.repository.params`: the pipeline models' ``parameters`` (:class:`ServingParams`), parsed once
  at model load;
* :mod:`s4c.repository.configs`: every ``config.pbtxt`` / ``configs/<form>.pbtxt``, rendered from
  :mod:`s4c.contract` and those parameters (the committed ``model_repository/`` is its output);
* :mod:`s4c.repository.segmenters`: ``s4c/1/segmenters.json``, what each patch model holds;
* :mod:`s4c.repository.onnx`: the exported ONNX graph, its :class:`~s4c.checkpoint.ModelSpec` metadata
  and the type lint that TensorRT's rules ask for;
* :mod:`s4c.repository.export`: ``export_repository`` (weights, segmenters.json and configs).

Export, serving and inference stand on this package; it imports none of them (a test holds it to that).
"""
