"""Field augmentation: rooms, noise, babble, loudness, broadcast codecs and resampling chains.

The telephone channels (``offline.channels``) cover the network; these cover what happens before it:
the room a voice is recorded in, what else is audible, how loud it is, and how the clip travelled
(MP3/AAC at broadcast bit rates, a trip through a lower sample rate). Every function takes 16 kHz mono
float32 audio and returns audio of the same length, and draws only from the ``rng`` it is given, so
an augmented example is reproducible from its seed (``FieldAugmenter`` below, keyed per example as
``offline.training.augment`` is).

Room impulse responses are simulated (no measured responses ship with the project): a direct path,
a few sparse early reflections, and an exponentially decaying noise tail whose decay time is the
drawn RT60 -- the statistical model of a diffuse reverberant field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from offline.channels import _codec_round_trip, _fit, apply_channel, from_int16, to_int16
from streamdet.audio import SAMPLE_RATE, resample

NOISE_KINDS = ("white", "pink", "brown")


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    n = x.shape[0] + h.shape[0] - 1
    size = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]


# ---------------------------------------------------------------------------------------------
# Rooms


def room_impulse_response(rng: np.random.Generator, rt60: float | None = None, drr_db: float | None = None,
                          rate: int = SAMPLE_RATE) -> np.ndarray:
    """A simulated room impulse response (direct path at sample 0), ``rt60`` seconds of decay."""
    rt60 = float(rng.uniform(0.15, 0.9)) if rt60 is None else rt60
    drr_db = float(rng.uniform(-3.0, 12.0)) if drr_db is None else drr_db
    length = max(int(rt60 * rate), 16)
    t = np.arange(length) / rate
    tail = rng.standard_normal(length) * np.exp(-6.9078 * t / rt60)  # -60 dB at t = rt60
    onset = int(rng.uniform(0.002, 0.01) * rate)  # the first reflection comes a few ms after the direct path
    tail[:onset] = 0.0
    for _ in range(int(rng.integers(2, 6))):  # sparse early reflections
        at = int(rng.integers(onset, min(length, int(0.05 * rate))))
        tail[at] += rng.uniform(-1.0, 1.0) * np.exp(-6.9078 * at / rate / rt60) * 3.0
    tail *= 10.0 ** (-drr_db / 20.0) / max(np.sqrt(np.sum(tail**2)), 1e-12)
    ir = tail
    ir[0] = 1.0
    return ir.astype(np.float64)


def reverberate(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """``x`` in the room ``ir`` (direct path at 0: time-aligned), same length, same RMS as ``x``."""
    wet = _fft_convolve(x.astype(np.float64), ir)[: x.shape[0]]
    scale = _rms(x) / max(_rms(wet), 1e-12)
    return np.clip(wet * scale, -1.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Noise and babble


def coloured_noise(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: white (flat), pink (1/f power) or brown (1/f^2 power)."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")
    white = rng.standard_normal(length)
    if kind != "white":
        spectrum = np.fft.rfft(white)
        f = np.maximum(np.fft.rfftfreq(length), 1.0 / length)
        spectrum /= np.sqrt(f) if kind == "pink" else f
        white = np.fft.irfft(spectrum, length)
    return (white / max(_rms(white), 1e-12)).astype(np.float32)


def mix_at_snr(x: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``x`` plus ``noise`` (tiled or cut to length) scaled to ``snr_db`` dB below ``x``'s power."""
    noise = np.resize(noise.astype(np.float64), x.shape[0])
    signal_rms, noise_rms = _rms(x), _rms(noise)
    if signal_rms == 0.0 or noise_rms == 0.0:
        return x.astype(np.float32, copy=True)
    noise *= signal_rms / noise_rms / 10.0 ** (snr_db / 20.0)
    return np.clip(x + noise, -1.0, 1.0).astype(np.float32)


def babble(sources: Sequence[np.ndarray], length: int, rng: np.random.Generator, talkers: int | None = None) -> np.ndarray:
    """Several talkers at once: random stretches of ``sources`` (real speech), each at unit RMS, summed."""
    if not sources:
        raise ValueError("babble needs at least one source clip")
    talkers = int(rng.integers(3, 7)) if talkers is None else talkers
    out = np.zeros(length, np.float64)
    for _ in range(talkers):
        clip = sources[int(rng.integers(len(sources)))]
        clip = np.resize(clip, max(length, clip.shape[0]))
        start = int(rng.integers(0, clip.shape[0] - length + 1))
        part = clip[start : start + length].astype(np.float64)
        out += part / max(_rms(part), 1e-12)
    return (out / max(_rms(out), 1e-12)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Loudness, codecs, resampling


def loudness(x: np.ndarray, gain_db: float) -> np.ndarray:
    """A level change, clipped like a recorder that overloads."""
    return np.clip(x * np.float32(10.0 ** (gain_db / 20.0)), -1.0, 1.0).astype(np.float32)


def _align(reference: np.ndarray, delayed: np.ndarray, max_lag: int = 4096) -> int:
    """The lag (samples, >= 0) at which ``delayed`` best matches ``reference`` (codec priming delay)."""
    n = min(reference.shape[0], delayed.shape[0])
    if n < 64:
        return 0
    size = 1 << (2 * n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(delayed[:n], size) * np.conj(np.fft.rfft(reference[:n], size)), size)
    return int(np.argmax(corr[: min(max_lag, n)]))


LOSSY_CODECS = {"mp3": ("libmp3lame", "mp3", "s16"), "aac": ("aac", "aac", "fltp")}


def lossy_codec(x: np.ndarray, codec: str, bit_rate: int) -> np.ndarray:
    """An MP3 or AAC round trip at ``bit_rate`` bit/s (16 kHz mono), priming delay removed."""
    encoder, decoder, sample_format = LOSSY_CODECS[codec]
    pcm = to_int16(x)
    out = _codec_round_trip(np.pad(pcm, (0, 4096)), encoder, decoder, SAMPLE_RATE, bit_rate,
                            sample_format=sample_format)
    lag = _align(from_int16(pcm), out)
    return _fit(out[lag:], x.shape[0]).astype(np.float32)


def resample_chain(x: np.ndarray, rates: Sequence[int]) -> np.ndarray:
    """Through each rate in turn and back to 16 kHz (e.g. an 8 kHz recording upsampled for a website)."""
    y = x
    current = SAMPLE_RATE
    for rate in rates:
        y = resample(y, current, rate)
        current = rate
    return _fit(resample(y, current, SAMPLE_RATE), x.shape[0]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The augmenter


@dataclass
class FieldAugmenter:
    """Draws a chain per example: room? → noise or babble? → loudness → codec or resampling? → channel.

    ``babble_sources``: real clips to make babble from; they must come from the training side only
    (the cross-validation passes clips of groups that train in every fold the example trains in).
    """

    p_room: float = 0.4
    p_noise: float = 0.4
    p_babble: float = 0.2
    snr_db: tuple[float, float] = (0.0, 25.0)
    gain_db: tuple[float, float] = (-20.0, 6.0)
    p_lossy: float = 0.3
    bit_rates: tuple[int, ...] = (32_000, 48_000, 64_000, 96_000)
    p_resample: float = 0.2
    resample_rates: tuple[int, ...] = (8_000, 11_025, 22_050)
    channels: tuple[str, ...] = ("wideband", "wideband", "ulaw", "alaw", "g722", "opus16k", "bandlimit")
    babble_sources: list[np.ndarray] = field(default_factory=list)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
        steps: list[str] = []
        y = x.astype(np.float32, copy=True)

        def step(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> None:
            nonlocal y
            y = fn(y)
            steps.append(name)

        if rng.random() < self.p_room:
            ir = room_impulse_response(rng)
            step(f"room{ir.shape[0] / SAMPLE_RATE:.2f}s", lambda a: reverberate(a, ir))
        snr = float(rng.uniform(*self.snr_db))
        draw = rng.random()
        if draw < self.p_babble and self.babble_sources:
            noise = babble(self.babble_sources, y.shape[0], rng)
            step(f"babble{snr:.0f}dB", lambda a: mix_at_snr(a, noise, snr))
        elif draw < self.p_babble + self.p_noise:
            kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
            noise = coloured_noise(kind, y.shape[0], rng)
            step(f"{kind}{snr:.0f}dB", lambda a: mix_at_snr(a, noise, snr))
        gain = float(rng.uniform(*self.gain_db))
        step(f"gain{gain:+.0f}dB", lambda a: loudness(a, gain))
        draw = rng.random()
        if draw < self.p_lossy:
            codec = "mp3" if rng.random() < 0.5 else "aac"
            rate = self.bit_rates[int(rng.integers(len(self.bit_rates)))]
            step(f"{codec}{rate // 1000}k", lambda a: lossy_codec(a, codec, rate))
        elif draw < self.p_lossy + self.p_resample:
            via = self.resample_rates[int(rng.integers(len(self.resample_rates)))]
            step(f"via{via}Hz", lambda a: resample_chain(a, [via]))
        channel = self.channels[int(rng.integers(len(self.channels)))]
        if channel != "wideband":
            step(channel, lambda a: apply_channel(channel, a, rng))
        return y, steps
