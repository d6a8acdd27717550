"""Export CMs for serving: ONNX graphs, TensorRT plans and Triton model repositories.

- ``onnx.export_onnx``: ``engines/<name>/model.onnx`` + ``manifest.json``, checked with ONNX Runtime.
- ``tensorrt.export_tensorrt``: ``model.plan`` (TensorRT 10, fp32/fp16, one batch profile).
- ``triton.export_triton``: a Triton model repository entry with dynamic batching.

Every engine carries an ``EngineManifest`` (``streamdet.manifest``) that the scorers check.
"""

from streamdet.errors import ExportError

__all__ = ["ExportError"]
