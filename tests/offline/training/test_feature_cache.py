"""Feature caches: resumable, consistent after failures, checked against their dataset.

Mel caches exercise the shared machinery cheaply; the W2V2 cache is covered by the AASIST smoke test.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from offline.cli import main
from offline.features.cache import FeatureCache
from offline.training.config import load_config
from offline.training.data import build_split
from streamdet.audio import load_window
from streamdet.errors import FeatureCacheError
from streamdet.models.mel import MelFrontend


@pytest.fixture()
def broken_list(tmp_path, make_audio_set):
    """Seven listed files: five readable, one missing (position 2), one corrupt (position 5)."""
    listing = make_audio_set(tmp_path / "audio", 3, 2, seed=3, seconds=0.5)
    lines = listing.read_text().splitlines()
    (tmp_path / "audio" / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 50)
    lines.insert(2, "missing.wav real")
    lines.insert(5, "corrupt.wav fake")
    listing.write_text("\n".join(lines) + "\n")
    return listing


def _prepare(listing, out, *extra):
    return main([
        "prepare-features", "--kind", "list", "--list", str(listing), "--frontend", "mel", "--out", str(out),
        "--shard-size", "2", "--num-workers", "0", *extra,
    ])


def _shard_files(out):
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.glob("shard-*.npy")}


def test_bad_audio_is_reported_by_path_and_redone_on_rerun(broken_list, tmp_path, capsys):
    out = tmp_path / "cache"
    assert _prepare(broken_list, out) == 1
    captured = capsys.readouterr()
    assert "utt/s" in captured.err  # the progress bar (rate, ETA) ran
    assert "missing.wav: no such file" in captured.err
    assert "corrupt.wav" in captured.err and "2 file(s) could not be read" in captured.err

    # Consistent: every shard committed, the two failures recorded in their shards, nothing dropped.
    cache = FeatureCache.open(out)
    assert cache.complete and cache.index.num_items == 7 and cache.index.num_shards == 4
    assert {u: f["path"].rsplit("/", 1)[1] for u, f in cache.failures().items()} == {
        "missing.wav": "missing.wav", "corrupt.wav": "corrupt.wav",
    }
    assert sorted(s for s, r in cache.records.items() if r.failed) == [1, 2]
    expected = MelFrontend()(torch.from_numpy(load_window(broken_list.parent / "real_000.wav"))[None])[0]
    np.testing.assert_array_equal(cache.read(0), expected.numpy())
    assert main(["check-features", str(out)]) == 1
    assert "failed: " in capsys.readouterr().out

    # Fix the audio: a rerun redoes only the two shards holding failures.
    before = _shard_files(out)
    shutil.copy(broken_list.parent / "real_000.wav", broken_list.parent / "missing.wav")
    shutil.copy(broken_list.parent / "fake_003.wav", broken_list.parent / "corrupt.wav")
    assert _prepare(broken_list, out, "--no-progress") == 0
    assert "2 shard(s) computed, 2 already done, 0 failed" in capsys.readouterr().out
    after = _shard_files(out)
    assert sorted(n for n in before if before[n] == after[n]) == ["shard-00000.npy", "shard-00003.npy"]
    assert main(["check-features", str(out)]) == 0


def test_unfinished_shards_stay_invisible_and_are_completed(tmp_path, capsys, make_audio_set):
    listing = make_audio_set(tmp_path / "audio", 2, 3, seed=4, seconds=0.5)
    out = tmp_path / "cache"
    assert _prepare(listing, out, "--no-progress") == 0
    # Simulate crashes: shard 1's array renamed but its record never written; a half-written temp file.
    (out / "shard-00001.json").unlink()
    (out / "shard-00002.npy.tmp").write_bytes(b"half")
    cache = FeatureCache.open(out)
    assert not cache.complete and sorted(cache.records) == [0, 2]
    with pytest.raises(FeatureCacheError, match="not committed"):
        cache.read(2)
    assert main(["check-features", str(out)]) == 1
    assert "1 shard(s) not written yet: 1" in capsys.readouterr().out

    assert _prepare(listing, out, "--no-progress") == 0
    assert "1 shard(s) computed, 2 already done" in capsys.readouterr().out
    assert not list(out.glob("*.tmp"))
    assert main(["check-features", str(out)]) == 0


def test_a_changed_dataset_is_refused_unless_overwritten(tmp_path, capsys, make_audio_set):
    listing = make_audio_set(tmp_path / "audio", 2, 2, seed=5, seconds=0.5)
    out = tmp_path / "cache"
    assert _prepare(listing, out, "--no-progress") == 0
    listing.write_text("\n".join(listing.read_text().splitlines()[:3]) + "\n")
    assert main(["check-features", str(out)]) == 1
    assert "dataset has 3 items, cache index 4" in capsys.readouterr().out
    assert _prepare(listing, out, "--no-progress") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _prepare(listing, out, "--no-progress", "--overwrite") == 0
    assert json.loads((out / "index.json").read_text())["utt_ids"] == ["real_000.wav", "real_001.wav", "fake_002.wav"]
    assert main(["check-features", str(out)]) == 0


def test_training_refuses_failed_items_before_starting(broken_list, tmp_path, make_audio_set, make_config):
    cache_root = tmp_path / "caches"
    dev = make_audio_set(tmp_path / "dev", 1, 1, seed=6, seconds=0.5)
    config_path = make_config(
        tmp_path / "c.toml", "mel_lcnn", broken_list, dev, tmp_path / "run",
        features={"cache_mel": True, "cache_root": cache_root},
    )
    assert main(["prepare-features", "--config", str(config_path), "--no-progress", "--num-workers", "0"]) == 1
    config = load_config(config_path)
    assert len(build_split(config, "dev")) == 2  # the clean dev cache is usable
    with pytest.raises(FeatureCacheError, match=r"2 item\(s\) failed to decode.*missing.wav"):
        build_split(config, "train")
    assert main(["train", "--config", str(config_path)]) == 2
    assert not (tmp_path / "run").exists()


def test_training_without_prepared_caches_says_what_to_run(tmp_path, make_audio_set, make_config, capsys):
    listing = make_audio_set(tmp_path / "audio", 1, 1, seed=7, seconds=0.5)
    config = make_config(tmp_path / "c.toml", "w2v2_lcnn", listing, listing, tmp_path / "run",
                         features={"cache_root": tmp_path / "nowhere"})
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "no feature cache here" in err and "offline prepare-features --config" in err
    assert not (tmp_path / "run").exists()
