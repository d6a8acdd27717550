"""TritonScorer: URL parsing, manifest from the model config, and scores from a real Triton server."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import numpy as np
import pytest

from offline.export.common import verification_windows
from streamdet.errors import ManifestError
from streamdet.manifest import TRITON_MANIFEST_PARAMETER, CMManifest, EngineManifest, TritonInfo
from streamdet.scoring.triton_scorer import TritonScorer, TritonTarget, manifest_from_config, parse_triton_url


def test_parse_urls():
    assert parse_triton_url("triton://triton:8001/codec_mellcnn") == TritonTarget("triton", 8001, "codec_mellcnn")
    assert parse_triton_url("triton://10.0.0.5/mel/3") == TritonTarget("10.0.0.5", 8001, "mel", "3")
    assert parse_triton_url("triton://[::1]:9001/m").address == "::1:9001"
    assert str(parse_triton_url("triton://h:1/m/2")) == "triton://h:1/m/2"
    for bad in ("http://h:1/m", "triton://h:1", "triton://h:x/m", "triton://h:1/m/v2", "triton:///m"):
        with pytest.raises(ManifestError):
            parse_triton_url(bad)


def config_with(manifest: EngineManifest, **changes) -> dict:
    config = {
        "name": "mel", "max_batch_size": 8,
        "input": [{"name": "waveform", "data_type": "TYPE_FP32", "dims": ["64600"]}],
        "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": ["2"]},
                   {"name": "bonafide_prob", "data_type": "TYPE_FP32", "dims": ["1"], "reshape": {}}],
        "parameters": {TRITON_MANIFEST_PARAMETER: {"string_value": manifest.model_dump_json()}},
    }
    config.update(changes)
    return config


def test_manifest_from_config_checks_the_config():
    manifest = EngineManifest(name="mel", engine="triton", cm=CMManifest(name="mel", architecture="mel_lcnn"),
                              triton=TritonInfo(model_name="mel", backend="python", max_batch_size=8))
    assert manifest_from_config(config_with(manifest), "t") == manifest
    with pytest.raises(ManifestError, match="no streamdet_manifest"):
        manifest_from_config(config_with(manifest, parameters={}), "t")
    with pytest.raises(ManifestError, match="invalid"):
        manifest_from_config(config_with(manifest, parameters={TRITON_MANIFEST_PARAMETER: {"string_value": "{"}}), "t")
    with pytest.raises(ManifestError, match=r"TYPE_FP32 \[64600\]"):
        manifest_from_config(config_with(manifest, input=[{"name": "waveform", "data_type": "TYPE_FP32",
                                                            "dims": ["48000"]}]), "t")
    with pytest.raises(ManifestError, match="must batch"):
        manifest_from_config(config_with(manifest, max_batch_size=0), "t")
    with pytest.raises(ManifestError, match="no output 'bonafide_prob'"):
        manifest_from_config(config_with(manifest, output=[{"name": "logits", "dims": ["2"]}]), "t")


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ManifestError, match="cannot reach"):
        TritonScorer(f"triton://127.0.0.1:{port}/mel", timeout_s=2)


@pytest.fixture(scope="module")
def expected(random_mel_cm: Path):
    from streamdet.scoring.torch_scorer import TorchScorer

    windows = verification_windows(batch=11, seed=21)
    return windows, TorchScorer(random_mel_cm, device="cpu").score_batch(windows)


def test_scores_from_a_real_triton_server(triton_url: str, mel_onnx_engine: Path, expected):
    windows, torch_scores = expected
    scorer = TritonScorer(triton_url)
    onnx_manifest = json.loads((mel_onnx_engine / "manifest.json").read_text())
    assert scorer.model_id == onnx_manifest["cm"]["name"] + "@" + onnx_manifest["source_cm_sha256"][:12] + ":triton-fp32"
    assert scorer.max_batch == 8  # capped by the model's max_batch_size
    scorer.contract.check_compatible(16000, 64600)
    got = scorer.score_batch(windows)  # 11 windows: two requests (8 + 3)
    assert got.shape == (11,) and got.dtype == np.float32
    np.testing.assert_allclose(got, torch_scores, rtol=0, atol=1e-4)
    scorer.close()


async def test_async_scores_from_several_clients_at_once(triton_url: str, expected):
    windows, torch_scores = expected
    scorers = [TritonScorer(triton_url, max_batch=2) for _ in range(3)]  # three "ingest nodes"
    parts = np.array_split(np.arange(len(windows)), 6)
    results = await asyncio.gather(*(scorers[i % 3].score(windows[idx]) for i, idx in enumerate(parts)))
    np.testing.assert_allclose(np.concatenate(results), torch_scores, rtol=0, atol=1e-4)
    for scorer in scorers:
        await scorer.aclose()
        scorer.close()


def test_unknown_model_on_a_real_server(triton_url: str):
    with pytest.raises(ManifestError, match="nonexistent"):
        TritonScorer(triton_url.rsplit("/", 1)[0] + "/nonexistent")
