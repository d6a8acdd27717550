"""Experiment configs: the paper's files validate, defaults are the recipe, bad files fail early by key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from offline.cli import main
from offline.training.config import load_config, validate_config
from streamdet.errors import ConfigError

PAPER_CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "paper"
EXPECTED = {
    "mel_lcnn_19la", "mel_lcnn_codecfake", "w2v2_lcnn_19la", "w2v2_lcnn_codecfake",
    "w2v2_aasist_19la", "w2v2_aasist_codecfake", "w2v2_aasist_cotrain",
}
MINIMAL = {
    "name": "x",
    "architecture": "mel_lcnn",
    "data": {"train": [{"kind": "list", "path": "train.txt"}], "dev": [{"kind": "list", "path": "dev.txt"}]},
}


def test_paper_configs_all_load_with_the_recipe():
    paths = sorted(PAPER_CONFIGS.glob("*.toml"))
    assert {p.stem for p in paths} == EXPECTED
    for path in paths:
        config = load_config(path)
        assert config.name == path.stem
        # Experiment files override only what differs: the optimiser and loss come from the defaults.
        assert not {"optim", "train"} & set(tomllib.loads(path.read_text()))
        assert (config.optim.lr, config.optim.betas, config.optim.eps, config.optim.weight_decay) == (
            5e-4, (0.9, 0.999), 1e-8, 5e-4
        )
        assert (config.train.batch_size, config.train.class_weights, config.train.seed) == (128, (10.0, 1.0), 688)
        kinds = {spec.kind for spec in (*config.data.train, *config.data.dev)}
        if "codecfake" in path.stem or "cotrain" in path.stem:
            assert (config.schedule.epochs, config.schedule.decay_every) == (10, 2)
        else:
            assert (config.schedule.epochs, config.schedule.decay_every) == (100, 10)
            assert kinds == {"asvspoof2019_la"}
        assert config.is_w2v2 == path.stem.startswith("w2v2")
    cotrain = load_config(PAPER_CONFIGS / "w2v2_aasist_cotrain.toml")
    assert [s.kind for s in cotrain.data.train] == ["codecfake", "asvspoof2019_la"]


def test_step_schedule_halves_every_interval():
    config = validate_config({**MINIMAL, "schedule": {"epochs": 10, "decay_every": 2}})
    lrs = [config.schedule.lr(config.optim.lr, epoch) for epoch in range(10)]
    assert lrs == [5e-4 * 0.5 ** (e // 2) for e in range(10)]
    assert lrs[1] == 5e-4 and lrs[2] == 2.5e-4


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    return str(info.value)


def test_unknown_keys_are_named():
    message = _error({**MINIMAL, "optim": {"learning_rate": 1e-3}, "epochs": 3})
    assert "optim.learning_rate: unknown key" in message
    assert "epochs: unknown key" in message
    message = _error({**MINIMAL, "data": {"train": [{"kind": "list", "pth": "a"}], "dev": MINIMAL["data"]["dev"]}})
    assert "data.train[0].pth: unknown key" in message


def test_wrong_types_are_named_and_never_coerced():
    message = _error({**MINIMAL, "train": {"batch_size": "128"}})
    assert "train.batch_size" in message and "'128'" in message
    assert "schedule.epochs" in _error({**MINIMAL, "schedule": {"epochs": 2.5}})
    assert "runtime.amp" in _error({**MINIMAL, "runtime": {"amp": "yes"}})
    assert "architecture" in _error({**MINIMAL, "architecture": "resnet"})
    assert "data.dev[0].part" in _error(
        {**MINIMAL, "data": {**MINIMAL["data"], "dev": [{"kind": "codecfake", "root": "r", "part": "test"}]}}
    )


def test_cli_fails_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'name = "x"\narchitecture = "mel_lcnn"\n'
        '[data]\ntrain = [{ kind = "list", path = "t.txt" }]\ndev = [{ kind = "list", path = "d.txt" }]\n'
        '[train]\nbatch_size = "128"\nbatch = 3\n'
    )
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(bad), "--run-dir", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "train.batch_size" in err and "train.batch: unknown key" in err
    assert not run_dir.exists()
    cache_root = tmp_path / "cache"
    assert main(["prepare-features", "--config", str(bad), "--set", f"features.cache_root={cache_root}"]) == 2
    assert not cache_root.exists()


def test_overrides_are_validated_like_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        'name = "x"\narchitecture = "w2v2_aasist"\n'
        '[data]\ntrain = [{ kind = "list", path = "t.txt" }]\ndev = [{ kind = "list", path = "d.txt" }]\n'
    )
    config = load_config(path, ["schedule.epochs=3", "features.w2v2_source=some/dir", "runtime.device=cpu"])
    assert (config.schedule.epochs, config.features.w2v2_source, config.runtime.device) == (3, "some/dir", "cpu")
    with pytest.raises(ConfigError, match="schedule.epochs"):
        load_config(path, ['schedule.epochs="3"'])
    with pytest.raises(ConfigError, match="schedule.epoch: unknown key"):
        load_config(path, ["schedule.epoch=3"])


def test_relative_paths_resolve_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = validate_config({**MINIMAL, "architecture": "w2v2_lcnn"})
    assert config.data.train[0].path == tmp_path / "train.txt"
    assert config.run_dir == tmp_path / "runs" / "x"
    assert config.cache_dir(config.data.train[0]).parent == tmp_path / "data" / "features"


def test_two_datasets_cannot_share_a_cache_directory(tmp_path):
    shared = {"cache": str(tmp_path / "c")}
    data = {"train": [{"kind": "list", "path": "a.txt", **shared}], "dev": [{"kind": "list", "path": "b.txt", **shared}]}
    assert "would share the feature cache" in _error({**MINIMAL, "architecture": "w2v2_lcnn", "data": data})
    validate_config({**MINIMAL, "data": data})  # mel on the fly reads no caches
