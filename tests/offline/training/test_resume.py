"""Resume: a run stopped after epoch 1 and resumed ends with exactly the weights of an uninterrupted run."""

from __future__ import annotations

import csv

import torch
from safetensors.torch import load_file

from offline.cli import main
from offline.training.snapshot import load_snapshot


def _metrics(run_dir) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    for row in rows:
        row.pop("seconds")
    return rows


def test_resumed_run_equals_uninterrupted_run(tmp_path, make_audio_set, make_config, capsys):
    # Two steps per epoch, so the shuffle order and dropout draws both matter, on as little data as that.
    train_list = make_audio_set(tmp_path / "train", 2, 2, seed=21, seconds=0.5)
    dev_list = make_audio_set(tmp_path / "dev", 1, 1, seed=22, seconds=0.5)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    config = make_config(tmp_path / "c.toml", "mel_lcnn", train_list, dev_list, straight, train={"batch_size": 2})

    assert main(["train", "--config", str(config)]) == 0
    assert main(["train", "--config", str(config), "--run-dir", str(resumed), "--stop-after", "1"]) == 0
    assert not (resumed / "cm").exists() and len(_metrics(resumed)) == 1
    assert "continue with --resume" in capsys.readouterr().out

    # Guards: a fresh run will not overwrite it, and the recipe cannot change under a resume.
    assert main(["train", "--config", str(config), "--run-dir", str(resumed)]) == 2
    assert main(["train", "--config", str(config), "--run-dir", str(resumed), "--resume",
                 "--set", "optim.lr=0.001"]) == 2
    assert "optim.lr: 0.0005 -> 0.001" in capsys.readouterr().err

    assert main(["train", "--config", str(config), "--run-dir", str(resumed), "--resume"]) == 0
    a, b = load_snapshot(straight / "checkpoint.safetensors"), load_snapshot(resumed / "checkpoint.safetensors")
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for pid, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][pid][key]), (pid, key)
    cm_a, cm_b = load_file(straight / "cm" / "model.safetensors"), load_file(resumed / "cm" / "model.safetensors")
    assert all(torch.equal(cm_a[k], cm_b[k]) for k in cm_a)
    assert _metrics(straight) == _metrics(resumed)
    assert len(list(resumed.glob("best-epoch-*.safetensors"))) == 1
