"""W2V2-AASIST backend: shapes and checkpoint layout without data, exact outputs with reference data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamdet.models.aasist import W2V2AASIST

W2V2_AASIST_CMS = ["codec_w2v2aasist", "vocoder_w2v2aasist", "cotrain_w2v2aasist_CSAM"]

# A sample of the released checkpoints' keys and shapes (see docs/paper-recipe.md §4).
EXPECTED_SHAPES = {
    "pos_S": (1, 42, 64),
    "master1": (1, 1, 64),
    "master2": (1, 1, 64),
    "LL.weight": (128, 1024),
    "first_bn.running_var": (1,),
    "encoder.0.0.conv1.weight": (32, 1, 2, 3),
    "encoder.0.0.conv_downsample.weight": (32, 1, 1, 3),
    "encoder.2.0.conv_downsample.weight": (64, 32, 1, 3),
    "encoder.5.0.bn1.num_batches_tracked": (),
    "encoder.5.0.conv2.weight": (64, 64, 2, 3),
    "attention.2.running_mean": (128,),
    "attention.3.weight": (64, 128, 1, 1),
    "GAT_layer_S.att_weight": (64, 1),
    "HtrgGAT_layer_ST11.proj_type1.weight": (64, 64),
    "HtrgGAT_layer_ST22.proj_with_attM.weight": (32, 32),
    "HtrgGAT_layer_ST22.att_weightM": (32, 1),
    "pool_hT2.proj.weight": (1, 32),
    "out_layer.weight": (2, 160),
}
# Keys the checkpoints do NOT have: block 0 has no bn1, equal-width blocks no conv_downsample.
ABSENT_KEYS = [
    "encoder.0.0.bn1.weight",
    "encoder.1.0.conv_downsample.weight",
    "encoder.3.0.conv_downsample.weight",
]
NUM_STATE_KEYS = 245  # as in each released W2V2-AASIST checkpoint


def test_random_init_shapes_and_layout() -> None:
    torch.manual_seed(0)
    model = W2V2AASIST().eval()
    with torch.no_grad():
        logits, hidden = model(torch.randn(2, 1, 1024, 201))
    assert logits.shape == (2, 2)
    assert hidden.shape == (2, 160)
    assert torch.isfinite(logits).all() and torch.isfinite(hidden).all()

    state = model.state_dict()
    assert len(state) == NUM_STATE_KEYS
    for name, shape in EXPECTED_SHAPES.items():
        assert tuple(state[name].shape) == shape, name
    assert not set(ABSENT_KEYS) & set(state)


@pytest.mark.reference
@pytest.mark.parametrize("cm", W2V2_AASIST_CMS)
def test_matches_released_model(cm: str, released_checkpoint, shared_dir: Path) -> None:
    from offline.checkpoint import read_released_state_dict

    state, top = read_released_state_dict(released_checkpoint(cm))
    assert top == "model.W2VAASIST"
    model = W2V2AASIST()
    model.load_state_dict(state, strict=True)
    model.eval()

    vectors = shared_dir / "codecfake" / "test_vectors"
    features = torch.from_numpy(np.load(vectors / "w2v2_features.npz")["features"])
    reference = np.load(vectors / f"{cm}.npz")
    with torch.no_grad():
        logits, hidden = model(features)
    np.testing.assert_allclose(logits.numpy(), reference["logits"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(hidden.numpy(), reference["hidden"], rtol=0, atol=1e-4)
