"""Triton Python-backend model: serves ``model.onnx`` beside it with ONNX Runtime.

``offline export --format triton --triton-backend python`` copies this file to ``<model>/1/model.py``.
Use it where the Triton server has no ONNX Runtime backend (PyTriton's bundled ``tritonserver``, which
ships only the Python backend) or where pre/post-processing must run in Python. Triton's Python
environment needs ``numpy`` and ``onnxruntime`` (``onnxruntime-gpu`` for KIND_GPU instances).
This file runs inside Triton, not inside streamdet: it imports nothing from the project.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Batches every request Triton hands over into one ONNX Runtime call, then splits the results."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        version_dir = Path(args["model_repository"]) / args["model_version"]
        providers = ["CPUExecutionProvider"]
        if args.get("model_instance_kind") == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers():
            device_id = int(args.get("model_instance_device_id", 0))
            providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        options = ort.SessionOptions()
        threads = config.get("parameters", {}).get("intra_op_threads", {}).get("string_value")
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = ort.InferenceSession(str(version_dir / "model.onnx"), sess_options=options, providers=providers)
        self.input_name = config["input"][0]["name"]
        # The model-side shape of each output: ``reshape`` when the config has one, else ``dims``.
        self.outputs = [
            (out["name"], [int(d) for d in out.get("reshape", {}).get("shape", out["dims"])])
            for out in config["output"]
        ]
        self.output_dtypes = {
            out["name"]: pb_utils.triton_string_to_numpy(out["data_type"]) for out in config["output"]
        }

    def execute(self, requests: list) -> list:
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [len(a) for a in arrays]
        results = self.session.run([name for name, _ in self.outputs], {self.input_name: np.concatenate(arrays)})
        responses = []
        start = 0
        for size in sizes:
            tensors = []
            for (name, dims), value in zip(self.outputs, results, strict=True):
                part = np.asarray(value[start : start + size], dtype=self.output_dtypes[name])
                tensors.append(pb_utils.Tensor(name, part.reshape([size, *dims])))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses

    def finalize(self) -> None:
        self.session = None
