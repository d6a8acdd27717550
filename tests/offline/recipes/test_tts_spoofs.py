"""The synthetic-spoof recipe with whichever of espeak-ng, flite and festival is installed.

CI installs them (Debian: espeak-ng flite festival festvox-kallpc16k); elsewhere these tests skip.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import soundfile as sf

from offline.datasets import list_file
from offline.recipes import tts_spoofs
from offline.recipes.tts_spoofs import VOICES, Voice
from streamdet.errors import DatasetError


def _installed(*systems: str) -> list[Voice]:
    voices = [v for v in VOICES if v.system in systems]
    return [v for v in voices if not tts_spoofs.missing_voices([v])]


@pytest.fixture(scope="module")
def voices() -> list[Voice]:
    found = _installed("espeak-ng-en-us", "espeak-ng-fr-fr", "flite-kal16", "festival-kal_diphone")
    if not found:
        pytest.skip("none of espeak-ng, flite, festival (+festvox-kallpc16k) is installed")
    return found


def test_builtin_sentences_make_16k_fake_lists_per_system(voices, tmp_path: Path) -> None:
    result = tts_spoofs.prepare_tts_spoofs(tmp_path / "a", voices, texts="builtin", per_voice=2, seed=3)
    assert not result.failures
    assert len(result.clips) == 2 * len(voices)
    for voice in voices:
        listed = list_file(result.list_files[voice.system])
        assert len(listed) == 2 and {u.label for u in listed} == {1}
        assert all(u.utt_id.startswith(voice.system + "/") for u in listed)
        info = sf.info(listed[0].path)
        assert info.samplerate == 16_000 and info.channels == 1 and info.duration > 0.5
    assert len(list_file(tmp_path / "a" / "tts-all.txt")) == len(result.clips)
    # A later run for one system keeps the others in tts-all.txt.
    tts_spoofs.prepare_tts_spoofs(tmp_path / "a", voices[:1], texts="builtin", per_voice=1, seed=3)
    assert len(list_file(tmp_path / "a" / "tts-all.txt")) == len(result.clips) - 1
    header = (tmp_path / "a" / f"tts-{voices[0].system}.tsv").read_text().splitlines()[0].split("\t")
    assert header[:3] == ["path", "label", "system"]


def test_deterministic(voices, tmp_path: Path) -> None:
    one = tts_spoofs.prepare_tts_spoofs(tmp_path / "a", voices[:1], texts="builtin", per_voice=1, seed=5)
    two = tts_spoofs.prepare_tts_spoofs(tmp_path / "b", voices[:1], texts="builtin", per_voice=1, seed=5)
    assert [c.text for c in one.clips] == [c.text for c in two.clips]
    path = one.clips[0].path
    assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()


def test_asterisk_texts_in_the_voice_language(tmp_path: Path) -> None:
    voices = _installed("espeak-ng-fr-fr")
    if not voices:
        pytest.skip("espeak-ng is not installed")
    doc = tmp_path / "ast" / "fr" / "usr/share/doc/asterisk-core-sounds-fr"
    doc.mkdir(parents=True)
    (doc / "core-sounds-fr.txt").write_text(
        "; fr\nbonjour: Bonjour, composez votre numéro.\nbeep: [bip]\nfrag: ... participants.\nok: Oui.\n"
        "merci: Merci de votre appel.\n", encoding="utf-8")
    sentences = tts_spoofs.asterisk_sentences(tmp_path / "ast", "fr")
    assert sentences == {"bonjour": "Bonjour, composez votre numéro.", "merci": "Merci de votre appel."}
    result = tts_spoofs.prepare_tts_spoofs(tmp_path / "out", voices, asterisk_root=tmp_path / "ast", per_voice=None)
    assert sorted(c.path for c in result.clips) == ["espeak-ng-fr-fr/fr_bonjour.wav", "espeak-ng-fr-fr/fr_merci.wav"]
    with pytest.raises(DatasetError, match="offline data asterisk"):
        tts_spoofs.asterisk_sentences(tmp_path / "ast", "ru")


def test_missing_engines_and_voices_are_named() -> None:
    problems = tts_spoofs.missing_voices([Voice("festival", "no_such_voice", "en", "festvox-nothing")])
    if shutil.which("text2wave") is None:
        assert "apt-get install festival" in problems[0]
    else:
        assert "festvox-nothing" in problems[0]
    with pytest.raises(DatasetError, match="cannot synthesise"):
        tts_spoofs.prepare_tts_spoofs(Path("unused"), [Voice("festival", "no_such_voice", "en", "festvox-x")])
