"""``offline pull`` and ``offline evaluate`` end to end, through the command line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from offline.cli import main
from offline.tables import cell_matches, paper_cell

ALM_CONDITIONS = ("A01", "A07", "A09", "A10")


@pytest.fixture(scope="module")
def pulled(shared_dir, tmp_path_factory):
    """The two released Mel-LCNNs, pulled from the local mirror of the authors' repository."""
    root = tmp_path_factory.mktemp("cms")
    source = shared_dir / "codecfake" / "pretrained"
    for name in ("codec_mellcnn", "vocoder_mellcnn"):
        assert main(["pull", name, "--out", str(root / name), "--source", str(source)]) == 0
    return root


@pytest.mark.reference
@pytest.mark.parametrize("name, table", [("codec_mellcnn", "Codecfake"), ("vocoder_mellcnn", "19LA")])
def test_mel_lcnn_reproduces_paper_cells_from_audio(name, table, pulled, shared_dir, tmp_path, capsys):
    code = main(["evaluate", str(pulled / name), "--alm-add", str(shared_dir / "alm-add"),
                 "--out", str(tmp_path), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    for condition in ALM_CONDITIONS:
        printed = paper_cell(shared_dir / "paper" / "tables.json", table, "Mel-LCNN", condition)
        assert cell_matches(report["eer"][condition], printed), (condition, report["eer"][condition], printed)
        assert (tmp_path / f"{condition}_result.txt").is_file()
        assert (tmp_path / f"{condition}_confusion.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.reference
def test_table_output_has_the_paper_layout(pulled, shared_dir, capsys):
    assert main(["evaluate", str(pulled / "codec_mellcnn"), "--alm-add", str(shared_dir / "alm-add")]) == 0
    out = capsys.readouterr().out
    assert "Feature | Backbone | 19LA | ITW |" in out
    assert "31.696" in out and "(4/12)" in out


@pytest.mark.reference
def test_corrupt_audio_is_named_and_the_rest_scored(pulled, shared_dir, tmp_path, capsys):
    clips = sorted((shared_dir / "alm-add" / "audio" / "RALL-E").glob("*.wav"))[:4]
    lines = []
    for clip in clips:
        shutil.copy(clip, tmp_path / clip.name)
        lines.append(f"{clip.name} {'fake' if 'fake' in clip.name else 'real'}")
    (tmp_path / "broken_real.wav").write_bytes(b"RIFF....WAVEnot really audio")
    lines.append("broken_real.wav real")
    (tmp_path / "set.txt").write_text("\n".join(lines) + "\n")
    code = main(["evaluate", str(pulled / "codec_mellcnn"), "--list", str(tmp_path / "set.txt"),
                 "--json", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1
    assert "broken_real.wav" in captured.err
    report = json.loads(captured.out)
    assert report["counts"]["set"] == len(clips)
    assert list(report["failures"]) == [str(tmp_path / "broken_real.wav")]
    assert len((tmp_path / "out" / "set_result.txt").read_text().splitlines()) == len(clips)


@pytest.mark.reference
def test_evaluate_from_score_files(shared_dir, capsys):
    files = sorted((shared_dir / "codecfake" / "scores" / "codec_w2v2aasist").glob("L*_result.txt"))
    assert main(["evaluate", "--scores", *map(str, files), "--json"]) == 0
    eer = json.loads(capsys.readouterr().out)["eer"]
    assert set(eer) == {"A03", "A04"}
    assert cell_matches(eer["A03"], 0.225) and cell_matches(eer["A04"], 0.135)


def test_evaluate_without_test_sets_is_a_usage_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "at least one test set" in capsys.readouterr().err


def test_serve_less_engine_path_is_a_clear_error(tmp_path, capsys):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    (tmp_path / "set.txt").write_text("a.wav real\n")
    assert main(["evaluate", str(tmp_path / "nope"), "--list", str(tmp_path / "set.txt")]) == 2
    assert "offline pull" in capsys.readouterr().err


def test_w2v2_cm_without_reachable_hub_fails_in_one_line(random_w2v2_hub_cm, hub_unreachable_env, tmp_path):
    """No traceback, no half a minute of retries: one line that names --w2v2-source."""
    import subprocess
    import sys

    sf.write(tmp_path / "a.wav", np.zeros(16000, dtype=np.float32), 16000)
    (tmp_path / "set.txt").write_text("a.wav real\n")
    done = subprocess.run([sys.executable, "-m", "offline", "evaluate", str(random_w2v2_hub_cm), "--device", "cpu",
                           "--list", str(tmp_path / "set.txt")],
                          env=hub_unreachable_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "http://127.0.0.1:9 is not reachable" in lines[0] and "--w2v2-source DIR" in lines[0]


def test_pull_refuses_unknown_and_tampered_files(tmp_path, capsys):
    import torch

    from streamdet.models.lcnn import LCNN

    (tmp_path / "src" / "codec_mellcnn").mkdir(parents=True)
    torch.save(LCNN(), tmp_path / "src" / "codec_mellcnn" / "anti-spoofing_feat_model.pt")
    assert main(["pull", "codec_mellcnn", "--out", str(tmp_path / "cm"), "--source", str(tmp_path / "src")]) == 2
    assert "does not match the pinned" in capsys.readouterr().err
    assert not (tmp_path / "cm").exists()


@pytest.fixture
def tiny_list(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a_real", "b_fake"):
        sf.write(tmp_path / f"{name}.wav", (0.1 * rng.standard_normal(16_000)).astype(np.float32), 16_000)
    (tmp_path / "tiny.txt").write_text("a_real.wav real\nb_fake.wav fake\n")
    return tmp_path / "tiny.txt"


def _streaming(capsys, cm, listing, *args: str) -> tuple[dict, str]:
    assert main(["evaluate", str(cm), "--list", str(listing), "--streaming", "--device", "cpu", "--json",
                 *args]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_streaming_threshold_flags_and_serve_config(random_mel_cm, tiny_list, tmp_path, capsys) -> None:
    from streamdet.stream.policy import spoof_probability

    report, err = _streaming(capsys, random_mel_cm, tiny_list, "--spoof-threshold", "0.25")
    assert (report["spoof_threshold"], report["threshold_source"]) == (0.25, "--spoof-threshold") and not err
    # the old flag was a bona fide probability: converted once, with a warning
    report, err = _streaming(capsys, random_mel_cm, tiny_list, "--threshold", "0.3")
    assert report["spoof_threshold"] == spoof_probability(0.3) and "deprecated" in err
    # --serve-config's threshold is the service's, and honoured; the flag still wins
    config = tmp_path / "serve.toml"
    config.write_text("[alerts]\nspoof_threshold = 0.75\nk = 1\nn = 1\nm = 2\n[window]\nhop_samples = 8000\n")
    report, _ = _streaming(capsys, random_mel_cm, tiny_list, "--serve-config", str(config))
    assert report["spoof_threshold"] == 0.75 and report["threshold_source"].startswith("serve config")
    assert (report["k"], report["n"], report["m"], report["hop"]) == (1, 1, 2, 8000)
    report, _ = _streaming(capsys, random_mel_cm, tiny_list, "--serve-config", str(config),
                           "--spoof-threshold", "0.5")
    assert report["spoof_threshold"] == 0.5
    report, _ = _streaming(capsys, random_mel_cm, tiny_list)
    assert (report["spoof_threshold"], report["threshold_source"]) == (0.5, "paper default")
