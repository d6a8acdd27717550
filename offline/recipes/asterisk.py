"""Real telephone speech: the Asterisk PBX prompt sets that Debian packages.

Each language has one professional speaker recorded for telephony, shipped as 8 kHz 16-bit wav
files in ``asterisk-core-sounds-<lang>-wav``; the companion package ``asterisk-core-sounds-<lang>``
holds ``core-sounds-<lang>.txt.gz``, the text of every prompt (``name: text`` lines).

Recipe (no system install, no root: ``apt-get download`` only needs the package lists, which an
``apt-get update`` refreshes):

1. ``apt-get download`` both packages into ``<dest>/debs/`` (skipped when a ``.deb`` is already there);
2. ``dpkg-deb -x`` each into ``<dest>/<lang>/``;
3. keep the prompts that are speech: drop ``silence/`` and the five tone/effect prompts
   (``beep``, ``beeperr``, ``ascending-2tone``, ``descending-2tone``, ``tt-monkeys``: the ones the
   text files describe in brackets, e.g. ``[this is a simple beep tone]``). Prompts missing from a
   text file are speech too (letters, digits) and are kept, with an empty text; empty files
   (Russian ships a zero-length ``is.wav``) are dropped;
4. write ``<dest>/asterisk-<lang>.txt`` (``path real`` lines, relative to ``<dest>``) and
   ``asterisk-<lang>.tsv`` (path, label, language, speaker, prompt, seconds, text), then
   ``asterisk-all.txt``: every language's list found in ``<dest>`` (so running the recipe for one
   language later does not shrink it).

One speaker per language, so holding out a language holds out a speaker.
"""

from __future__ import annotations

import csv
import gzip
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from streamdet.errors import DatasetError

log = logging.getLogger(__name__)

LANGUAGES = ("en", "fr", "es", "it", "ru")
"""Languages whose prompt sets Debian packages as wav (the speakers: en-US, fr-CA, es-MX, it-IT, ru-RU)."""

SOUNDS_DIR = Path("usr/share/asterisk/sounds")
NON_SPEECH_DIRS = frozenset({"silence"})
NON_SPEECH_PROMPTS = frozenset({"beep", "beeperr", "ascending-2tone", "descending-2tone", "tt-monkeys"})
"""Tones and sound effects. Named rather than detected from bracketed texts, because some texts
bracket parts of real speech (Italian ``[tentativo di] Parcheggio della chiamata``) and some
languages' texts omit ``beep``."""


def packages(language: str) -> tuple[str, str]:
    """The Debian packages of one language: (wav prompts, prompt texts)."""
    return f"asterisk-core-sounds-{language}-wav", f"asterisk-core-sounds-{language}"


@dataclass(frozen=True)
class Prompt:
    """One prompt recording: ``path`` relative to the recipe's root."""

    path: str
    language: str
    speaker: str
    name: str
    seconds: float
    text: str


def _run(command: list[str], cwd: Path | None = None) -> None:
    try:
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise DatasetError(f"{command[0]} not found: the Asterisk recipe needs Debian's apt-get and dpkg-deb") from exc
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        detail = message[-1] if message else f"exit status {result.returncode}"
        hint = " (run `apt-get update` once so that apt knows the package)" if "locate package" in detail else ""
        raise DatasetError(f"{' '.join(command)} failed: {detail}{hint}")


def download_package(package: str, cache: Path, apt_get: str = "apt-get") -> Path:
    """The package's ``.deb`` in ``cache``, fetched with ``apt-get download`` unless already there."""
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        log.info("apt-get download %s", package)
        _run([apt_get, "download", package], cwd=cache)
        found = sorted(cache.glob(f"{package}_*.deb"))
    if not found:
        raise DatasetError(f"apt-get download {package} left no {package}_*.deb in {cache}")
    return found[-1]


def unpack(deb: Path, dest: Path) -> None:
    """Extract a package's files under ``dest`` (``dpkg-deb -x``: no maintainer scripts, no root)."""
    dest.mkdir(parents=True, exist_ok=True)
    _run(["dpkg-deb", "-x", str(deb), str(dest)])


def read_prompt_texts(path: Path) -> dict[str, str]:
    """``name: text`` lines of a core-sounds text file (gzipped or not) → {name: text}.

    ``;`` lines are comments; a UTF-8 byte-order mark (the Italian file has one) is ignored.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    texts: dict[str, str] = {}
    with opener(path, "rt", encoding="utf-8-sig") as handle:  # type: ignore[operator]
        for line in handle:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, text = line.split(":", 1)
            texts[name.strip()] = text.strip()
    return texts


def is_speech(name: str) -> bool:
    """False for the silence files and the tone/effect prompts."""
    return name.split("/", 1)[0] not in NON_SPEECH_DIRS and name not in NON_SPEECH_PROMPTS


def _prompts_of(root: Path, language: str, texts: dict[str, str]) -> tuple[list[Prompt], int, int]:
    """Speech prompts of one unpacked language; also how many were dropped and how many lack text."""
    sounds = root / language / SOUNDS_DIR
    speakers = sorted(d for d in sounds.iterdir() if d.is_dir()) if sounds.is_dir() else []
    if not speakers:
        raise DatasetError(f"no prompt folder under {sounds}: is {packages(language)[0]} unpacked there?")
    prompts: list[Prompt] = []
    dropped = untexted = 0
    for speaker in speakers:
        for wav in sorted(speaker.rglob("*.wav")):
            name = wav.relative_to(speaker).with_suffix("").as_posix()
            text = texts.get(name)
            if not is_speech(name):
                dropped += 1
                continue
            info = sf.info(wav)
            if info.frames == 0:  # ru ships an empty is.wav
                dropped += 1
                continue
            untexted += text is None
            prompts.append(Prompt(wav.relative_to(root).as_posix(), language, speaker.name, name,
                                  info.frames / info.samplerate, text or ""))
    return prompts, dropped, untexted


@dataclass(frozen=True)
class LanguageSet:
    """What the recipe produced for one language."""

    language: str
    list_file: Path
    prompts: list[Prompt]
    dropped: int
    untexted: int
    package_files: tuple[str, ...]

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.prompts)


def _write_list(path: Path, prompts: list[Prompt]) -> None:
    path.write_text("".join(f"{p.path} real\n" for p in prompts), encoding="utf-8")


def _write_metadata(path: Path, prompts: list[Prompt]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["path", "label", "language", "speaker", "prompt", "seconds", "text"])
        for p in prompts:
            writer.writerow([p.path, "real", p.language, p.speaker, p.name, f"{p.seconds:.3f}", p.text])


def prepare_asterisk(dest: Path, languages: tuple[str, ...] = LANGUAGES, cache: Path | None = None,
                     apt_get: str = "apt-get") -> list[LanguageSet]:
    """Run the recipe into ``dest``; returns one :class:`LanguageSet` per language, in order."""
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown:
        raise DatasetError(f"no Asterisk wav prompts for {unknown}: choose from {', '.join(LANGUAGES)}")
    dest = Path(dest)
    cache = Path(cache) if cache else dest / "debs"
    sets: list[LanguageSet] = []
    for language in languages:
        debs = [download_package(package, cache, apt_get) for package in packages(language)]
        for deb in debs:
            unpack(deb, dest / language)
        text_files = sorted((dest / language).rglob(f"core-sounds-{language}.txt*"))
        texts = read_prompt_texts(text_files[0]) if text_files else {}
        prompts, dropped, untexted = _prompts_of(dest, language, texts)
        list_path = dest / f"asterisk-{language}.txt"
        _write_list(list_path, prompts)
        _write_metadata(dest / f"asterisk-{language}.tsv", prompts)
        sets.append(LanguageSet(language, list_path, prompts, dropped, untexted, tuple(d.name for d in debs)))
        log.info("%s: %d prompts, %.1f min", language, len(prompts), sets[-1].seconds / 60)
    lists = [dest / f"asterisk-{language}.txt" for language in LANGUAGES]
    (dest / "asterisk-all.txt").write_text(
        "".join(path.read_text(encoding="utf-8") for path in lists if path.is_file()), encoding="utf-8"
    )
    return sets
