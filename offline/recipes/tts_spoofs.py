"""Classic synthetic speech as extra spoof types: espeak-ng, flite and festival voices.

These are classic formant (espeak-ng), diphone (festival kal/ked/lp/pc, flite kal) and statistical
parametric (festival's HTS slt, flite's clustergen awb/rms/slt) synthesisers, nothing like the neural
systems of ALM-ADD: they give a CM spoof *types* it has not seen, so that evaluation can hold out
whole systems. Each voice is one system, tagged ``<engine>-<voice>`` (``espeak-ng-fr-fr``,
``flite-slt``, ``festival-kal_diphone``).

Sentences: by default the texts of the Asterisk prompts in the voice's language (from the
:mod:`offline.recipes.asterisk` recipe's folder), so real and fake clips say the same things and
content is no cue; or a built-in English list (``texts="builtin"``). ``per_voice`` sentences are
drawn per language with a fixed seed, the same ones for every voice of that language.

Output under ``dest``: ``<system>/<language>_<prompt>.wav`` (16 kHz, 16-bit, resampled with soxr
HQ), ``tts-<system>.txt`` (``path fake`` lines), ``tts-<system>.tsv`` (path, label, system, engine,
voice, language, prompt, seconds, text) and ``tts-all.txt``, the lists of every system found in
``dest`` (so a later run for some systems does not shrink it). Existing wav files are kept (a rerun
resumes). The synthesisers are deterministic, so the same packages give the same files.

Debian packages: ``espeak-ng``, ``flite``, ``festival``, ``festvox-kallpc16k``,
``festvox-kdlpc16k``, ``festvox-us-slt-hts``, ``festvox-italp16k``, ``festvox-itapc16k``.
"""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from offline.recipes.asterisk import is_speech, read_prompt_texts
from streamdet.audio import SAMPLE_RATE, load_audio
from streamdet.errors import DatasetError

log = logging.getLogger(__name__)

FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")


@dataclass(frozen=True)
class Voice:
    engine: str
    voice: str
    language: str
    package: str

    @property
    def system(self) -> str:
        return f"{self.engine}-{self.voice}"


VOICES: tuple[Voice, ...] = (
    Voice("espeak-ng", "en-us", "en", "espeak-ng"),
    Voice("espeak-ng", "en-gb", "en", "espeak-ng"),
    Voice("espeak-ng", "fr-fr", "fr", "espeak-ng"),
    Voice("espeak-ng", "es", "es", "espeak-ng"),
    Voice("espeak-ng", "it", "it", "espeak-ng"),
    Voice("espeak-ng", "ru", "ru", "espeak-ng"),
    Voice("flite", "kal", "en", "flite"),
    Voice("flite", "kal16", "en", "flite"),
    Voice("flite", "awb", "en", "flite"),
    Voice("flite", "rms", "en", "flite"),
    Voice("flite", "slt", "en", "flite"),
    Voice("festival", "kal_diphone", "en", "festvox-kallpc16k"),
    Voice("festival", "ked_diphone", "en", "festvox-kdlpc16k"),
    Voice("festival", "cmu_us_slt_arctic_hts", "en", "festvox-us-slt-hts"),
    Voice("festival", "lp_diphone", "it", "festvox-italp16k"),
    Voice("festival", "pc_diphone", "it", "festvox-itapc16k"),
)
"""Every voice the recipe knows; each is one spoofing system."""

BUILTIN_SENTENCES: tuple[str, ...] = (
    "Thank you for calling. Your call is important to us.",
    "Please enter your account number followed by the pound key.",
    "I am calling from your bank about a suspicious transaction.",
    "Could you confirm your date of birth for security purposes?",
    "The person you are trying to reach is not available.",
    "Please hold while I transfer you to the next available agent.",
    "Your payment of two hundred dollars has been received.",
    "We need you to verify the code we just sent to your phone.",
    "Hi, it's me. I lost my wallet and I need you to send me some money.",
    "The meeting has been moved to Thursday at three in the afternoon.",
    "For billing questions, press one. For technical support, press two.",
    "This call may be recorded for quality and training purposes.",
    "Your parcel could not be delivered. Please call us back to reschedule.",
    "I will read the reference number slowly: four, seven, nine, two, one.",
    "Your subscription will renew automatically at the end of the month.",
    "Please do not share this code with anyone, not even our staff.",
    "Hello grandma, it's your grandson. I'm in trouble and need help.",
    "The weather tomorrow will be cloudy with a chance of light rain.",
    "You have three new messages. First message, received at nine fifteen.",
    "To speak with an operator, stay on the line.",
    "We have detected unusual activity on your account.",
    "Can you approve the wire transfer before the end of the day?",
    "The conference will begin when the leader arrives.",
    "Sorry, I did not understand your response. Please try again.",
    "Your appointment is confirmed for Monday morning at ten thirty.",
    "Please say or enter the last four digits of your card.",
    "Goodbye, and thank you for your patience.",
    "The system is currently undergoing maintenance.",
    "I'm stuck at the airport and my phone is almost out of battery.",
    "Press star to return to the main menu.",
)
"""Call-centre and fraud-call style sentences, used when no Asterisk texts are wanted or available."""

# Festival reads ISO-8859-1: typographic characters outside it become their ASCII counterparts.
_LATIN1_FIXES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": "-", "…": "..."})


def missing_voices(voices: Sequence[Voice]) -> list[str]:
    """Human-readable reasons why some voices cannot be synthesised here (empty when all can)."""
    problems = []
    for voice in voices:
        binary = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}[voice.engine]
        if shutil.which(binary) is None:
            problems.append(f"{voice.system}: no {binary} (apt-get install {voice.engine})")
        elif voice.engine == "festival" and not any(FESTIVAL_VOICE_DIR.glob(f"*/{voice.voice}")):
            problems.append(f"{voice.system}: festival voice not installed (apt-get install {voice.package})")
    return problems


def _synthesize_raw(voice: Voice, text: str, out: Path) -> None:
    """Run the engine once, writing its native-rate wav to ``out``. Text goes through a file or
    stdin, never the command line, so that no sentence can be read as an option."""
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "text.txt"
        if voice.engine == "espeak-ng":
            command = ["espeak-ng", "-v", voice.voice, "-w", str(out), "-f", str(text_file)]
            text_file.write_text(text, encoding="utf-8")
        elif voice.engine == "flite":
            command = ["flite", "-voice", voice.voice, "-f", str(text_file), "-o", str(out)]
            text_file.write_text(text, encoding="utf-8")
        else:
            command = ["text2wave", "-eval", f"(voice_{voice.voice})", str(text_file), "-o", str(out)]
            text_file.write_bytes(text.translate(_LATIN1_FIXES).encode("latin-1", errors="ignore"))
        result = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if result.returncode != 0 or not out.is_file():
        detail = (result.stderr or result.stdout).strip()[-200:]
        raise DatasetError(f"{voice.system} failed on {text!r}: {detail or result.returncode}")


def synthesize(voice: Voice, text: str, out: Path) -> float:
    """Synthesise ``text`` to a 16 kHz 16-bit wav at ``out``; returns its duration in seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        _synthesize_raw(voice, text, raw)
        try:
            samples = load_audio(raw)  # mono, soxr HQ to 16 kHz
        except Exception as exc:  # an engine that wrote a broken or empty file
            raise DatasetError(f"{voice.system} wrote no usable audio for {text!r}: {exc}") from exc
    if not np.any(samples):
        raise DatasetError(f"{voice.system} produced silence for {text!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    sf.write(out, samples, SAMPLE_RATE, subtype="PCM_16")
    return samples.shape[0] / SAMPLE_RATE


def asterisk_sentences(asterisk_root: Path, language: str, min_chars: int = 8,
                       max_chars: int = 200) -> dict[str, str]:
    """Prompt name → text of the Asterisk prompts of ``language`` that read as sentences.

    Texts of tones, fragments (``... participants``) and very short or long ones are left out.
    """
    found = sorted(Path(asterisk_root, language).rglob(f"core-sounds-{language}.txt*"))
    if not found:
        raise DatasetError(
            f"no core-sounds-{language}.txt under {Path(asterisk_root, language)}: "
            "run `offline data asterisk` first, or use the built-in sentences (--texts builtin)"
        )
    texts = read_prompt_texts(found[0])
    return {
        name: text for name, text in sorted(texts.items())
        if is_speech(name) and "[" not in text and not text.startswith(".")
        and min_chars <= len(text) <= max_chars
    }


def choose(sentences: dict[str, str], count: int | None, seed: int) -> dict[str, str]:
    """``count`` of the sentences, drawn with ``seed`` and returned in name order (all if None)."""
    names = sorted(sentences)
    if count is not None and count < len(names):
        picked = np.random.default_rng(seed).choice(len(names), size=count, replace=False)
        names = sorted(names[i] for i in picked)
    return {name: sentences[name] for name in names}


@dataclass(frozen=True)
class SpoofClip:
    path: str
    system: str
    voice: Voice
    prompt: str
    text: str
    seconds: float


@dataclass
class SpoofSet:
    clips: list[SpoofClip]
    failures: dict[str, str]
    list_files: dict[str, Path]


def _file_name(language: str, prompt: str) -> str:
    return f"{language}_{prompt.replace('/', '_')}.wav"


def prepare_tts_spoofs(
    dest: Path,
    voices: Sequence[Voice] = VOICES,
    texts: str = "asterisk",
    asterisk_root: Path | None = None,
    per_voice: int | None = 100,
    seed: int = 0,
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> SpoofSet:
    """Synthesise the sentences with every voice into ``dest``; see the module docstring."""
    problems = missing_voices(voices)
    if problems:
        raise DatasetError("cannot synthesise with:\n  " + "\n  ".join(problems))
    if texts not in ("asterisk", "builtin"):
        raise DatasetError(f"texts must be 'asterisk' or 'builtin', got {texts!r}")
    dest = Path(dest)
    sentences: dict[str, dict[str, str]] = {}
    for language in sorted({v.language for v in voices}):
        if texts == "asterisk":
            pool = asterisk_sentences(Path(asterisk_root or "data/asterisk"), language)
        else:
            pool = {f"builtin{i:03d}": s for i, s in enumerate(BUILTIN_SENTENCES)}
        sentences[language] = choose(pool, per_voice, seed)
    jobs = [(voice, prompt, text) for voice in voices for prompt, text in sentences[voice.language].items()]

    def run(job: tuple[Voice, str, str]) -> SpoofClip | tuple[str, str]:
        voice, prompt, text = job
        relative = f"{voice.system}/{_file_name(voice.language, prompt)}"
        out = dest / relative
        try:
            if out.is_file():
                seconds = sf.info(out).duration
            else:
                seconds = synthesize(voice, text, out)
        except DatasetError as exc:
            return relative, str(exc)
        finally:
            if on_progress:
                on_progress(1)
        return SpoofClip(relative, voice.system, voice, prompt, text, seconds)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(run, jobs))
    clips = [r for r in results if isinstance(r, SpoofClip)]
    failures = dict(r for r in results if not isinstance(r, SpoofClip))
    return SpoofSet(clips, failures, _write_lists(dest, voices, clips))


def _write_lists(dest: Path, voices: Sequence[Voice], clips: list[SpoofClip]) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    lists: dict[str, Path] = {}
    for voice in voices:
        mine = [c for c in clips if c.system == voice.system]
        path = dest / f"tts-{voice.system}.txt"
        path.write_text("".join(f"{c.path} fake\n" for c in mine), encoding="utf-8")
        lists[voice.system] = path
        with (dest / f"tts-{voice.system}.tsv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
            writer.writerow(["path", "label", "system", "engine", "voice", "language", "prompt", "seconds", "text"])
            for c in mine:
                writer.writerow([c.path, "fake", c.system, c.voice.engine, c.voice.voice, c.voice.language,
                                 c.prompt, f"{c.seconds:.3f}", c.text])
    known = [dest / f"tts-{voice.system}.txt" for voice in VOICES]
    (dest / "tts-all.txt").write_text(
        "".join(path.read_text(encoding="utf-8") for path in known if path.is_file()), encoding="utf-8"
    )
    return lists
