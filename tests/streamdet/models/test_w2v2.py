"""The five-layer W2V2 front-end must equal the full model's hidden_states[5]."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from streamdet.models.w2v2 import W2V2Frontend, normalize_waveform, truncate_to_layer


def tiny_config(**overrides) -> Wav2Vec2Config:
    """An XLS-R-shaped (stable layer norm) config, small enough for a unit test."""
    options = dict(
        hidden_size=32, num_hidden_layers=7, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, do_stable_layer_norm=True, feat_extract_norm="layer",
        hidden_dropout=0.1, attention_dropout=0.1, activation_dropout=0.1, feat_proj_dropout=0.1,
        mask_time_prob=0.5,
    )
    options.update(overrides)
    return Wav2Vec2Config(**options)


def test_normalize_matches_feature_extractor():
    from transformers import Wav2Vec2FeatureExtractor

    x = np.random.default_rng(0).normal(0.1, 0.3, 16000).astype(np.float32)
    extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    expected = extractor(x, sampling_rate=16000, return_tensors="np").input_values[0]
    got = normalize_waveform(torch.from_numpy(x)[None])[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_five_layers_equal_full_model_hidden_state_5():
    torch.manual_seed(0)
    full = Wav2Vec2Model(tiny_config()).eval()
    truncated = Wav2Vec2Model(tiny_config()).eval()
    truncated.load_state_dict(full.state_dict())
    frontend = W2V2Frontend.from_model(truncated, layer=5)
    x = torch.randn(2, 8000)
    with torch.no_grad():
        expected = full(normalize_waveform(x), output_hidden_states=True).hidden_states[5]
        got = frontend(x)
    assert len(frontend.model.encoder.layers) == 5
    assert got.shape == (2, 1, 32, expected.shape[1])
    torch.testing.assert_close(got[:, 0].transpose(1, 2), expected, atol=1e-5, rtol=1e-5)
    # The final norm must be skipped: the full model's last_hidden_state differs from layer 5.
    assert not torch.allclose(full(normalize_waveform(x)).last_hidden_state, expected)


def test_frontend_stays_frozen_and_in_eval_mode():
    frontend = W2V2Frontend.from_model(Wav2Vec2Model(tiny_config()))
    frontend.train()
    assert not frontend.model.training
    assert all(not p.requires_grad for p in frontend.parameters())
    x = torch.randn(1, 8000)
    torch.testing.assert_close(frontend(x), frontend(x))  # no dropout, no masking


def test_loads_from_local_directory(tmp_path):
    Wav2Vec2Model(tiny_config()).save_pretrained(tmp_path)
    frontend = W2V2Frontend(str(tmp_path))
    assert frontend.source == str(tmp_path)
    assert frontend(torch.randn(1, 8000)).shape[:3] == (1, 1, 32)


def test_truncation_refuses_post_norm_models():
    with pytest.raises(ValueError, match="stable_layer_norm"):
        truncate_to_layer(Wav2Vec2Model(tiny_config(do_stable_layer_norm=False, feat_extract_norm="group")))


def test_offline_hub_fails_at_once_with_the_remedy(monkeypatch):
    from huggingface_hub import constants

    from streamdet.errors import PretrainedModelError
    from streamdet.models.w2v2 import load_pretrained

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedModelError, match="HF_HUB_OFFLINE is set and it is not in the local cache") as info:
        load_pretrained("streamdet-tests/never-cached-model")
    assert "--w2v2-source DIR" in str(info.value) and "\n" not in str(info.value)


def test_directory_without_a_model_is_one_line_error(tmp_path):
    from streamdet.errors import PretrainedModelError
    from streamdet.models.w2v2 import load_pretrained

    with pytest.raises(PretrainedModelError, match=str(tmp_path)) as info:
        load_pretrained(str(tmp_path))
    assert "\n" not in str(info.value)


def test_local_directory_loads_without_asking_the_hub(monkeypatch, tmp_path):
    import streamdet.models.w2v2 as w2v2

    Wav2Vec2Model(tiny_config()).save_pretrained(tmp_path)
    monkeypatch.setattr(w2v2, "_hub_unreachable", lambda: pytest.fail("a local directory needs no hub"))
    assert len(w2v2.W2V2Frontend(str(tmp_path)).model.encoder.layers) == 5
