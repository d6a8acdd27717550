"""Write a Triton Inference Server model repository for a CM.

Layout (``--out DIR``, one model per export)::

    DIR/<model>/config.pbtxt            platform onnxruntime_onnx | tensorrt_plan, or backend python
    DIR/<model>/1/model.onnx|model.plan the engine (plus model.py for the Python backend)
    DIR/<model>/streamdet_manifest.json the engine manifest (also inside config.pbtxt's parameters)

The manifest travels inside ``config.pbtxt`` as the string parameter ``streamdet_manifest`` so that a
client can read it through Triton's model-config API: ``TritonScorer`` checks the input contract and
takes its model id from there. Dims in the config exclude the batch axis; the per-window probability
is declared ``dims: [1]`` with ``reshape: { shape: [] }``, Triton's idiom for one value per batch item.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from pathlib import Path

from offline.export.common import load_source_cm, sha256_file
from offline.export.onnx import DEFAULT_OPSET, DEFAULT_TOLERANCE, build_manifest, export_graph, verify_graph
from streamdet.cm import Countermeasure
from streamdet.errors import ExportError
from streamdet.manifest import (
    ENGINE_FILES,
    MANIFEST_NAME,
    TRITON_MANIFEST_PARAMETER,
    BatchProfile,
    EngineManifest,
    TritonInfo,
    write_manifest,
)

log = logging.getLogger(__name__)

CONFIG_NAME = "config.pbtxt"
TRITON_MANIFEST_FILE = "streamdet_manifest.json"
VERSION = "1"
PLATFORMS = {"onnxruntime": 'platform: "onnxruntime_onnx"', "tensorrt": 'platform: "tensorrt_plan"',
             "python": 'backend: "python"'}
KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
PYTHON_MODEL_TEMPLATE = Path(__file__).with_name("triton_python_model.py")


def model_name_for(name: str) -> str:
    """A Triton-safe model name (letters, digits, ``_``, ``-``, ``.``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._-")
    if not cleaned:
        raise ExportError(f"cannot make a Triton model name from {name!r}; pass --model-name")
    return cleaned


def default_preferred_sizes(max_batch: int) -> tuple[int, ...]:
    """Powers of two from 4 up to ``max_batch``, plus ``max_batch`` itself."""
    sizes = [size for size in (4, 8, 16, 32, 64, 128, 256, 512) if size < max_batch]
    return (*sizes, max_batch)


def pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal (JSON here: escape backslashes and quotes only)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def render_config(manifest: EngineManifest) -> str:
    """``config.pbtxt`` for an engine manifest with its ``triton`` section filled in."""
    triton = manifest.triton
    if triton is None:
        raise ExportError("render_config needs a manifest with a triton section")
    sizes = ", ".join(str(s) for s in triton.preferred_batch_sizes)
    kind = f"\n    kind: {KINDS[triton.instance_kind]}" if triton.instance_kind in KINDS else ""
    manifest_json = json.dumps(manifest.model_dump(mode="json"), separators=(",", ":"), ensure_ascii=False)
    return f"""name: "{triton.model_name}"
{PLATFORMS[triton.backend]}
max_batch_size: {triton.max_batch_size}
input [
  {{
    name: "{manifest.input_name}"
    data_type: TYPE_FP32
    dims: [ {manifest.window_samples} ]
  }}
]
output [
  {{
    name: "{manifest.logits_name}"
    data_type: TYPE_FP32
    dims: [ {len(manifest.class_order)} ]
  }},
  {{
    name: "{manifest.prob_name}"
    data_type: TYPE_FP32
    dims: [ 1 ]
    reshape: {{ shape: [ ] }}
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {sizes} ]
  max_queue_delay_microseconds: {triton.max_queue_delay_us}
}}
instance_group [
  {{
    count: {triton.instance_count}{kind}
  }}
]
version_policy: {{ latest: {{ num_versions: 1 }} }}
parameters: {{
  key: "{TRITON_MANIFEST_PARAMETER}"
  value: {{ string_value: {pbtxt_string(manifest_json)} }}
}}
"""


def prepare_model_dir(repository: str | Path, model_name: str) -> Path:
    """``repository/<model>`` emptied of a previous export; refuses to write into a CM directory."""
    repository = Path(repository)
    if (repository / MANIFEST_NAME).is_file():
        raise ExportError(f"{repository} holds a {MANIFEST_NAME} (a CM or engine): --out must be a model repository")
    model_dir = repository / model_name
    if model_dir.exists():
        if not (model_dir / CONFIG_NAME).is_file():
            raise ExportError(f"{model_dir} exists and is not a Triton model directory; not overwriting it")
        shutil.rmtree(model_dir)
    (model_dir / VERSION).mkdir(parents=True)
    return model_dir


def export_triton(
    cm: Countermeasure | str | Path,
    repository: str | Path,
    model_name: str | None = None,
    backend: str = "onnxruntime",
    w2v2_source: str | None = None,
    max_batch: int = 64,
    preferred_batch_sizes: tuple[int, ...] | None = None,
    max_queue_delay_us: int = 2000,
    instance_count: int = 1,
    instance_kind: str = "auto",
    fp16: bool = False,
    opt_batch: int | None = None,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
) -> EngineManifest:
    """Export a CM into a Triton model repository; returns the manifest placed in its config."""
    if backend not in PLATFORMS:
        raise ExportError(f"unknown Triton backend {backend!r} ({', '.join(PLATFORMS)})")
    if fp16 and backend != "tensorrt":
        raise ExportError("--fp16 applies to TensorRT plans; use --triton-backend tensorrt")
    if not isinstance(cm, Countermeasure):
        cm = load_source_cm(cm, w2v2_source)
    name = model_name_for(model_name or cm.manifest.name)
    triton = TritonInfo(
        model_name=name,
        backend=backend,  # type: ignore[arg-type]
        max_batch_size=max_batch,
        preferred_batch_sizes=preferred_batch_sizes or default_preferred_sizes(max_batch),
        max_queue_delay_us=max_queue_delay_us,
        instance_count=instance_count,
        instance_kind=instance_kind,  # type: ignore[arg-type]
    )
    if any(size > max_batch for size in triton.preferred_batch_sizes):
        raise ExportError(f"preferred batch sizes {triton.preferred_batch_sizes} exceed max batch {max_batch}")
    model_dir = prepare_model_dir(repository, name)
    if backend == "tensorrt":
        manifest = _tensorrt_engine(cm, model_dir, max_batch, opt_batch, fp16, opset, verify)
    else:
        path = export_graph(cm, model_dir / VERSION / ENGINE_FILES["onnx"], opset)
        verification = verify_graph(cm, path, DEFAULT_TOLERANCE) if verify else {}
        manifest = build_manifest(cm, path, opset, verification)
        if backend == "python":
            shutil.copyfile(PYTHON_MODEL_TEMPLATE, model_dir / VERSION / "model.py")
    engine_file = model_dir / VERSION / Path(manifest.file).name
    manifest = manifest.model_copy(
        update={"engine": "triton", "file": f"{VERSION}/{engine_file.name}",
                "file_sha256": sha256_file(engine_file), "triton": triton}
    )
    (model_dir / CONFIG_NAME).write_text(render_config(manifest))
    write_manifest(model_dir / TRITON_MANIFEST_FILE, manifest)
    log.info("wrote Triton model %s (%s) to %s", name, backend, model_dir)
    return manifest


def _tensorrt_engine(
    cm: Countermeasure, model_dir: Path, max_batch: int, opt_batch: int | None, fp16: bool, opset: int, verify: bool
) -> EngineManifest:
    """Build the plan in a scratch directory (verified there), then move it into the version directory."""
    from offline.export.tensorrt import export_tensorrt, make_profile

    profile: BatchProfile = make_profile(max_batch, opt_batch)
    with tempfile.TemporaryDirectory(prefix="streamdet-trt-") as tmp:
        manifest = export_tensorrt(cm, tmp, fp16=fp16, profile=profile, opset=opset, verify=verify)
        shutil.move(str(Path(tmp) / manifest.file), model_dir / VERSION / manifest.file)
    return manifest
