"""Training augmentation (channels, crops, gain) and fine-tuning from an existing CM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from offline.cli import main
from offline.datasets import list_file
from offline.training.augment import AugmentedWaveformDataset, draw_window
from offline.training.config import AugmentConfig, load_config
from offline.training.data import ShardSampler, build_split
from streamdet.cm import save_cm
from streamdet.errors import ConfigError
from streamdet.manifest import CMManifest
from streamdet.models.lcnn import LCNN, MEL_FLAT_FEATURES

CHANNELS = ["wideband", "ulaw", "alaw", "g722", "opus16k", "bandlimit", "ulaw+loss5"]


def test_draws_depend_only_on_seed_epoch_and_index(synthetic_lists) -> None:
    train, _dev = synthetic_lists
    augment = AugmentConfig(channels=CHANNELS, random_crop=True, gain_db=(-6.0, 3.0))
    dataset = AugmentedWaveformDataset(list_file(train), augment, seed=5)
    a, label, draw = dataset.item(3, epoch=2)
    b, _, again = dataset.item(3, epoch=2)
    assert np.array_equal(a, b) and draw == again and label == dataset.utterances[3].label
    assert a.shape == (64_600,) and a.dtype == np.float32
    other = [dataset.item(3, epoch=e)[2] for e in range(8)]
    assert len({d.channel for d in other}) > 1 and len({d.gain_db for d in other}) == 8
    # The loader's key carries the epoch; a bare index is epoch 0 (validation's fixed draw).
    assert torch.equal(dataset[(3, 2)][0], torch.from_numpy(a))
    assert torch.equal(dataset[3][0], dataset[(3, 0)][0])


def test_crop_and_channel_of_one_window() -> None:
    rng = np.random.default_rng(0)
    audio = np.sin(np.arange(200_000) / 10).astype(np.float32) * 0.5
    x, draw = draw_window(audio, AugmentConfig(random_crop=True), rng)
    assert np.array_equal(x, audio[draw.crop_start : draw.crop_start + 64_600]) and draw.channel == "wideband"
    x, draw = draw_window(audio, AugmentConfig(channels=["ulaw"]), rng)
    assert draw.crop_start == 0 and draw.channel == "ulaw" and not np.array_equal(x, audio[:64_600])
    x, draw = draw_window(audio, AugmentConfig(channels=["ulaw"], probability=0.0, gain_db=(20, 20)), rng)
    assert draw.channel == "wideband" and np.abs(x).max() <= 1.0  # gained up, clipped


def test_keyed_sampler_yields_index_and_epoch() -> None:
    sampler = ShardSampler(5, 0, 1, shuffle=True, seed=1, keyed=True)
    sampler.set_epoch(3)
    keys = list(sampler)
    assert sorted(i for i, _ in keys) == list(range(5)) and {e for _, e in keys} == {3}
    assert list(ShardSampler(3, 0, 1, shuffle=False, seed=1)) == [0, 1, 2]


def test_config_checks(tmp_path, synthetic_lists, make_config) -> None:
    train, dev = synthetic_lists
    path = make_config(tmp_path / "a.toml", "mel_lcnn", train, dev, tmp_path / "run",
                       augment={"channels": ["ulaw", "nosuch"]})
    with pytest.raises(ConfigError, match=r"augment\.channels.*unknown channel 'nosuch'"):
        load_config(path)
    path = make_config(tmp_path / "b.toml", "w2v2_lcnn", train, dev, tmp_path / "run",
                       augment={"channels": ["ulaw"]})
    with pytest.raises(ConfigError, match="augment works on waveforms"):
        load_config(path)
    path = make_config(tmp_path / "c.toml", "mel_lcnn", train, dev, tmp_path / "run",
                       augment={"channels": ["ulaw"], "dev": False})
    config = load_config(path)
    assert isinstance(build_split(config, "train").dataset, AugmentedWaveformDataset)
    assert not isinstance(build_split(config, "dev").dataset, AugmentedWaveformDataset)


def test_fine_tuning_with_augmentation_starts_from_the_cm(tmp_path, synthetic_lists, make_config, capsys) -> None:
    train, dev = synthetic_lists
    torch.manual_seed(123)
    start = LCNN(MEL_FLAT_FEATURES).state_dict()
    save_cm(tmp_path / "start", start, CMManifest(name="start", architecture="mel_lcnn"))
    config = make_config(
        tmp_path / "ft.toml", "mel_lcnn", train, dev, tmp_path / "run",
        augment={"channels": ["ulaw", "g722"], "random_crop": True},
        schedule={"epochs": 1}, optim={"lr": 1e-9, "weight_decay": 0.0},
    )
    text = config.read_text().replace('name = "test_mel_lcnn"',
                                      f'name = "test_mel_lcnn"\ninit_from = "{tmp_path / "start"}"')
    config.write_text(text)
    assert main(["train", "--config", str(config)]) == 0
    tuned = load_file(tmp_path / "run" / "cm" / "model.safetensors")
    weights = [k for k in start if k.endswith("weight")]
    assert all(torch.allclose(tuned[k], start[k], atol=1e-6) for k in weights)
    manifest = (tmp_path / "run" / "cm" / "manifest.json").read_text()
    assert "fine-tuned from start@" in manifest and "augmented: channels" in manifest

    mismatch = make_config(tmp_path / "bad.toml", "mel_lcnn", train, dev, tmp_path / "run2")
    mismatch.write_text(mismatch.read_text().replace('name = "test_mel_lcnn"',
                                                     f'name = "test_mel_lcnn"\ninit_from = "{tmp_path / "none"}"'))
    assert main(["train", "--config", str(mismatch)]) == 2
