"""Broken CM and engine files end in a one-line ManifestError, never a traceback: invalid ONNX, a
graph with its batch fixed to 1, truncated or huge-header safetensors, and a CM manifest without
``weights_sha256`` (refused unless trusted: altered weights used to load without a word)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from streamdet.cm import load_cm
from streamdet.errors import ManifestError
from streamdet.manifest import MANIFEST_NAME, WEIGHTS_NAME
from streamdet.scoring import open_scorer


def one_line_manifest_error(call, match: str) -> ManifestError:
    with pytest.raises(ManifestError, match=match) as excinfo:
        call()
    assert "\n" not in str(excinfo.value)
    return excinfo.value


@pytest.fixture
def engine_copy(mel_onnx_engine: Path, tmp_path: Path) -> Path:
    """A copy of the exported engine whose manifest records no file hash (so the file is opened)."""
    directory = tmp_path / "engine"
    shutil.copytree(mel_onnx_engine, directory)
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    manifest["file_sha256"] = ""
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return directory


@pytest.fixture
def cm_copy(random_mel_cm: Path, tmp_path: Path) -> Path:
    directory = tmp_path / "cm"
    shutil.copytree(random_mel_cm, directory)
    return directory


@pytest.mark.parametrize("content", [b"", b"not a protobuf at all \xff\xfe" * 50], ids=["empty", "garbage"])
def test_invalid_onnx_is_a_manifest_error(engine_copy: Path, content: bytes) -> None:
    (engine_copy / "model.onnx").write_bytes(content)
    one_line_manifest_error(lambda: open_scorer(engine_copy, device="cpu"), "not a usable ONNX graph")


def test_onnx_with_batch_fixed_to_1_is_refused(engine_copy: Path) -> None:
    onnx = pytest.importorskip("onnx")
    path = engine_copy / "model.onnx"
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(path))
    one_line_manifest_error(lambda: open_scorer(engine_copy, device="cpu"), "fixed batch of 1")


def test_truncated_safetensors_is_a_manifest_error(cm_copy: Path) -> None:
    weights = cm_copy / WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    one_line_manifest_error(lambda: load_cm(cm_copy), "truncated|damaged")


def test_huge_header_safetensors_is_a_manifest_error(cm_copy: Path) -> None:
    weights = cm_copy / WEIGHTS_NAME
    weights.write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    one_line_manifest_error(lambda: load_cm(cm_copy), "not a safetensors file")


def test_safetensors_with_a_bad_header_is_a_manifest_error(cm_copy: Path) -> None:
    header = b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 999]}}'
    (cm_copy / WEIGHTS_NAME).write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    one_line_manifest_error(lambda: load_cm(cm_copy), "damaged safetensors")


def test_a_manifest_without_weights_sha256_is_refused_unless_trusted(cm_copy: Path) -> None:
    """Deleting ``weights_sha256`` from a manifest used to load altered weights without a word."""
    manifest = json.loads((cm_copy / MANIFEST_NAME).read_text())
    del manifest["weights_sha256"]
    (cm_copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    one_line_manifest_error(lambda: load_cm(cm_copy), "--trust-unhashed")
    one_line_manifest_error(lambda: open_scorer(cm_copy, device="cpu"), "--trust-unhashed")
    assert load_cm(cm_copy, trust_unhashed=True).manifest.weights_sha256 == ""
    open_scorer(cm_copy, device="cpu", trust_unhashed=True).close()
