"""Triton model repository: layout, a config.pbtxt that Triton's own schema parses, the manifest inside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format, text_format

from offline.export.triton import (
    default_preferred_sizes,
    export_triton,
    model_name_for,
    pbtxt_string,
    prepare_model_dir,
)
from streamdet.errors import ExportError
from streamdet.manifest import EngineManifest
from streamdet.scoring.triton_scorer import manifest_from_config


def parse_config(path: Path) -> dict:
    """config.pbtxt parsed with Triton's ModelConfig schema, as JSON the way the gRPC client returns it."""
    from tritonclient.grpc import model_config_pb2

    message = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    return json.loads(json_format.MessageToJson(message, preserving_proto_field_name=True))


@pytest.fixture(scope="module")
def python_repo(random_mel_cm: Path, tmp_path_factory) -> tuple[Path, EngineManifest]:
    """Exported through the command line: ``offline export CM --format triton ...``."""
    from offline.cli import main

    repo = tmp_path_factory.mktemp("triton_repo")
    assert main(["export", str(random_mel_cm), "--format", "triton", "--out", str(repo), "--triton-backend",
                 "python", "--max-batch", "16", "--instances", "2", "--instance-kind", "cpu",
                 "--max-queue-delay-us", "500"]) == 0
    manifest = EngineManifest.model_validate_json((repo / "random_mel" / "streamdet_manifest.json").read_text())
    return repo, manifest


def test_repository_layout(python_repo):
    repo, manifest = python_repo
    model = repo / "random_mel"
    assert sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file()) == [
        "1/model.onnx", "1/model.py", "config.pbtxt", "streamdet_manifest.json"]
    assert manifest.engine == "triton" and manifest.file == "1/model.onnx"
    assert manifest.triton is not None and manifest.triton.model_name == "random_mel"
    assert manifest.verification["max_abs_prob_diff"] <= 1e-4


def test_config_follows_triton_schema(python_repo):
    repo, manifest = python_repo
    config = parse_config(repo / "random_mel" / "config.pbtxt")
    assert config["name"] == "random_mel" and config["backend"] == "python"
    assert config["max_batch_size"] == 16
    assert config["input"] == [{"name": "waveform", "data_type": "TYPE_FP32", "dims": ["64600"]}]
    logits, prob = config["output"]
    assert (logits["name"], logits["dims"]) == ("logits", ["2"])
    assert (prob["name"], prob["dims"], prob["reshape"]) == ("bonafide_prob", ["1"], {})
    assert config["dynamic_batching"] == {"preferred_batch_size": [4, 8, 16], "max_queue_delay_microseconds": "500"}
    assert config["instance_group"] == [{"count": 2, "kind": "KIND_CPU"}]
    # The manifest rides in the config, readable through Triton's model-config API.
    assert manifest_from_config(config, "test") == manifest


def test_onnxruntime_platform(random_mel_cm: Path, tmp_path: Path):
    manifest = export_triton(random_mel_cm, tmp_path, model_name="mel v2", max_batch=8, verify=False)
    assert manifest.triton.model_name == "mel_v2" and manifest.triton.instance_kind == "auto"
    config = parse_config(tmp_path / "mel_v2" / "config.pbtxt")
    assert config["platform"] == "onnxruntime_onnx" and "backend" not in config
    assert config["instance_group"] == [{"count": 1}]  # kind left to Triton (GPU when it has one)
    assert not (tmp_path / "mel_v2" / "1" / "model.py").exists()


def test_exporting_again_replaces_the_model_directory(tmp_path: Path):
    model = tmp_path / "mel"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text('name: "mel"')
    (model / "2").mkdir()
    assert prepare_model_dir(tmp_path, "mel") == model
    assert [p.name for p in model.iterdir()] == ["1"] and not any((model / "1").iterdir())


def test_refusals(random_mel_cm: Path, tmp_path: Path):
    with pytest.raises(ExportError, match="model repository"):
        export_triton(random_mel_cm, random_mel_cm)
    with pytest.raises(ExportError, match="fp16"):
        export_triton(random_mel_cm, tmp_path, fp16=True)
    (tmp_path / "random_mel").mkdir()
    with pytest.raises(ExportError, match="not a Triton model directory"):
        export_triton(random_mel_cm, tmp_path)
    with pytest.raises(ExportError, match="exceed"):
        export_triton(random_mel_cm, tmp_path / "r", max_batch=4, preferred_batch_sizes=(8,))


def test_helpers():
    assert model_name_for("codec mel/lcnn!") == "codec_mel_lcnn"
    assert default_preferred_sizes(64) == (4, 8, 16, 32, 64)
    assert default_preferred_sizes(3) == (3,)
    assert pbtxt_string('{"a":"b\\\\c"}') == '"{\\"a\\":\\"b\\\\\\\\c\\"}"'
