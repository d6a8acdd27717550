"""The Asterisk recipe on a small package built here (no network): unpack, filter, lists, errors."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from offline.datasets import list_file
from offline.recipes import asterisk
from streamdet.errors import DatasetError

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs Debian's dpkg-deb")


def _build_deb(root: Path, package: str, files: dict[str, bytes], out_dir: Path) -> Path:
    """A minimal binary package holding ``files`` (paths relative to /)."""
    tree = root / package
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\nMaintainer: test <t@example.org>\n"
        "Description: test package\n"
    )
    for relative, data in files.items():
        path = tree / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    deb = out_dir / f"{package}_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)], check=True, capture_output=True)
    return deb


def _wav(seconds: float, tmp: Path) -> bytes:
    path = tmp / "clip.wav"
    sf.write(path, (0.1 * np.sin(np.arange(int(seconds * 8000)) / 5)).astype(np.float32), 8000, subtype="PCM_16")
    return path.read_bytes()


@pytest.fixture
def cached_debs(tmp_path: Path) -> Path:
    """A cache folder holding fake asterisk-core-sounds-en(-wav) packages, as apt-get download leaves them."""
    cache = tmp_path / "cache"
    cache.mkdir()
    sounds = "usr/share/asterisk/sounds/en_US_f_Test"
    _build_deb(tmp_path / "build", "asterisk-core-sounds-en-wav", {
        f"{sounds}/hello.wav": _wav(1.5, tmp_path),
        f"{sounds}/digits/1.wav": _wav(0.5, tmp_path),
        f"{sounds}/letters/zed.wav": _wav(0.25, tmp_path),
        f"{sounds}/silence/1.wav": _wav(1.0, tmp_path),
        f"{sounds}/beep.wav": _wav(0.2, tmp_path),
        f"{sounds}/empty.wav": _wav(0.0, tmp_path),
    }, cache)
    text = "\ufeff; Core Asterisk Sounds\n\nhello: Hello: welcome.\ndigits/1: one\nbeep: [beep]\nsilence/1: [silence]\n"
    _build_deb(tmp_path / "build", "asterisk-core-sounds-en", {
        "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz": gzip.compress(text.encode("utf-8")),
    }, cache)
    return cache


def test_recipe_unpacks_filters_and_lists(cached_debs: Path, tmp_path: Path) -> None:
    dest = tmp_path / "asterisk"
    (result,) = asterisk.prepare_asterisk(dest, ("en",), cache=cached_debs, apt_get="/nonexistent/apt-get")
    assert [p.name for p in result.prompts] == ["digits/1", "hello", "letters/zed"]
    assert result.dropped == 3 and result.untexted == 1
    assert result.seconds == pytest.approx(2.25)
    assert {p.text for p in result.prompts} == {"one", "Hello: welcome.", ""}
    listed = list_file(dest / "asterisk-en.txt")
    assert [u.label for u in listed] == [0, 0, 0] and all(u.path.is_file() for u in listed)
    assert list_file(dest / "asterisk-all.txt") == listed
    header, *rows = (dest / "asterisk-en.tsv").read_text().splitlines()
    assert header.split("\t")[:4] == ["path", "label", "language", "speaker"]
    assert len(rows) == 3 and rows[0].split("\t")[3] == "en_US_f_Test"


def test_missing_package_errors_name_the_fix(tmp_path: Path) -> None:
    fake_apt = tmp_path / "apt-get"
    fake_apt.write_text("#!/bin/sh\necho 'E: Unable to locate package '$2 >&2\nexit 100\n")
    fake_apt.chmod(0o755)
    with pytest.raises(DatasetError, match="apt-get update"):
        asterisk.prepare_asterisk(tmp_path / "out", ("en",), apt_get=str(fake_apt))
    with pytest.raises(DatasetError, match="choose from"):
        asterisk.prepare_asterisk(tmp_path / "out", ("de",))


def test_prompt_texts_parse_comments_colons_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "core-sounds-it.txt"
    path.write_text("\ufeff; comment\n\nvm-x: Premere 1: per ascoltare\nbeep: [bip]\n", encoding="utf-8")
    assert asterisk.read_prompt_texts(path) == {"vm-x": "Premere 1: per ascoltare", "beep": "[bip]"}
    assert asterisk.is_speech("digits/1") and not asterisk.is_speech("silence/10") and not asterisk.is_speech("beep")
