"""Shared fixtures.

Reference-data tests read the authors' checkpoints, scores and audio from the folder named by
``STREAMDET_REFERENCE_DATA`` (``.ci/run`` points it at ``../shared``). Without it they skip, so a
fresh clone passes its own tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REFERENCE_ENV = "STREAMDET_REFERENCE_DATA"


@pytest.fixture(autouse=True)
def _event_journal_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Services a test starts (in process or as ``streamdet serve``) journal their events under the
    test's tmp_path, not in the user's state directory; a test running two at once gives each its own."""
    monkeypatch.setenv("STREAMDET_EVENTS__JOURNAL_PATH", str(tmp_path / "journal" / "events.sqlite"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    root = os.environ.get(REFERENCE_ENV)
    if not root:
        pytest.skip(f"reference data not configured: set {REFERENCE_ENV} to the shared/ folder")
    path = Path(root)
    if not (path / "codecfake").is_dir():
        pytest.fail(f"{REFERENCE_ENV}={root} does not hold the reference data (no codecfake/ inside)")
    return path


@pytest.fixture(scope="session")
def released_checkpoint(shared_dir: Path):
    """Path of one released checkpoint, by CM name (e.g. ``codec_mellcnn``)."""

    def path(name: str) -> Path:
        return shared_dir / "codecfake" / "pretrained" / name / "anti-spoofing_feat_model.pt"

    return path


def xlsr_shaped_config(num_hidden_layers: int = 5):
    """A randomly initialised config with XLS-R's interface, made cheap where the shape allows.

    Hidden size 1024 and the seven-layer convolutional feature encoder are XLS-R's, so 64,600
    samples give the (1024, 201) features the W2V2 backends expect; everything else is small.
    """
    from transformers import Wav2Vec2Config

    return Wav2Vec2Config(
        hidden_size=1024,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=16,
        intermediate_size=256,
        conv_dim=(32,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=16,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )


@pytest.fixture(scope="session")
def tiny_xlsr_dir(tmp_path_factory) -> Path:
    """A local directory holding a random XLS-R-shaped ``Wav2Vec2Model`` (hub downloads are impossible here)."""
    import torch
    from transformers import Wav2Vec2Model

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny_xlsr")
    Wav2Vec2Model(xlsr_shaped_config()).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def random_mel_cm(tmp_path_factory) -> Path:
    """A Mel-LCNN CM directory with random weights (export and scorer tests)."""
    from offline.export.random_cm import save_random_cm

    directory = tmp_path_factory.mktemp("random_mel_cm")
    save_random_cm(directory, "mel_lcnn", name="random_mel")
    return directory


@pytest.fixture(scope="session")
def random_w2v2_hub_cm(tmp_path_factory) -> Path:
    """A W2V2-LCNN CM with random weights whose manifest names XLS-R by its hub id (not downloadable here)."""
    from offline.export.random_cm import save_random_cm
    from streamdet.models.w2v2 import XLSR_300M

    directory = tmp_path_factory.mktemp("random_w2v2_hub_cm")
    save_random_cm(directory, "w2v2_lcnn", name="random_w2v2", w2v2_source=XLSR_300M)
    return directory


@pytest.fixture()
def hub_unreachable_env(tmp_path: Path) -> dict[str, str]:
    """The environment of a subprocess whose model hub refuses connections and whose hub cache is empty."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf-home"),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return env
