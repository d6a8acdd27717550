"""Mel-LCNN end to end: two epochs, the loss goes down, the selected CM loads, scores and evaluates."""

from __future__ import annotations

import csv
import json
import random

import torch

from offline.cli import main
from streamdet.audio import load_window
from streamdet.cm import load_cm


def _train_and_check(config_path, run_dir, dev_list, capsys) -> dict:
    assert main(["train", "--config", str(config_path)]) == 0
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert [float(r["lr"]) for r in rows] == [5e-4, 2.5e-4]  # halved every epoch in this tiny schedule
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    resolved = json.loads((run_dir / "config.json").read_text())
    assert resolved["optim"]["weight_decay"] == 5e-4 and resolved["runtime"]["run_dir"] == str(run_dir)

    cm = load_cm(run_dir / "cm")
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert f"epoch {best['epoch']} of 2" in cm.manifest.source
    assert cm.manifest.architecture == "mel_lcnn" and cm.manifest.w2v2_source is None
    first = next(line.split()[0] for line in dev_list.read_text().splitlines())
    window = torch.from_numpy(load_window(dev_list.parent / first))[None]
    probability = cm.bonafide_probability(window)
    assert probability.shape == (1,) and 0.0 <= float(probability) <= 1.0

    capsys.readouterr()
    assert main(["evaluate", str(run_dir / "cm"), "--list", str(dev_list), "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    (condition,) = report["eer"]
    assert report["counts"][condition] == len(dev_list.read_text().splitlines())
    return report


def test_mel_lcnn_trains_two_epochs_on_generated_audio(tmp_path, synthetic_lists, make_config, capsys):
    train_list, dev_list = synthetic_lists
    run_dir = tmp_path / "run"
    config = make_config(tmp_path / "mel.toml", "mel_lcnn", train_list, dev_list, run_dir)
    report = _train_and_check(config, run_dir, dev_list, capsys)
    assert report["eer"]["list"] < 50.0


def _list_file(path, utterances) -> None:
    path.write_text("".join(f"{u.path} {'real' if u.label == 0 else 'fake'}\n" for u in utterances))


def test_mel_lcnn_trains_on_alm_add(tmp_path, shared_dir, make_config, capsys):
    """The same on real recordings: a small balanced split of ../shared/alm-add."""
    from offline.datasets import alm_add

    conditions = alm_add(shared_dir / "alm-add")
    rng = random.Random(0)

    def pick(condition: str, per_class: int):
        items = conditions[condition]
        return [u for label in (0, 1) for u in rng.sample([u for u in items if u.label == label], per_class)]

    train_list, dev_list = tmp_path / "train.txt", tmp_path / "dev.txt"
    _list_file(train_list, pick("A01", 4) + pick("A09", 1))
    _list_file(dev_list, pick("A07", 2))
    run_dir = tmp_path / "run"
    config = make_config(tmp_path / "mel.toml", "mel_lcnn", train_list, dev_list, run_dir)
    _train_and_check(config, run_dir, dev_list, capsys)
