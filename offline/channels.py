"""Telephone and VoIP channel simulation for 16 kHz mono float32 audio.

Every channel is a function ``(samples, rng) -> samples``: it takes mono float32 audio at 16 kHz
(``streamdet.audio.SAMPLE_RATE``) and returns audio at 16 kHz **of the same length, time-aligned
with the input** (known codec delays are removed), so that a window taken at offset t of the output
covers the same speech as the window at t of the input. Channels that involve chance (packet loss)
draw only from ``rng``; the others ignore it, so a channel is deterministic under a seed.

Narrowband codecs run at 8 kHz: the audio is resampled down and back up with libsoxr HQ (the same
resampler as the CMs' input, ``streamdet.audio.resample``), which also band-limits it to 4 kHz.

``CHANNELS`` maps the names used by ``--channel NAME`` to channels; :func:`get_channel` also accepts
any ``+``-joined chain of registered names (``ulaw+loss5``), applied left to right.

G.711 companding is implemented here in numpy, following the reference algorithm of ITU-T G.711
(segment search and truncation as in Sun Microsystems' public-domain ``g711.c``); its decoder is
identical to FFmpeg's on all 256 codes (tested). G.722 and Opus go through FFmpeg's codecs in PyAV.
"""

from __future__ import annotations

import fractions
import zlib
from collections.abc import Callable
from functools import partial

import numpy as np

from streamdet.audio import SAMPLE_RATE, resample
from streamdet.errors import ConfigError
from streamdet.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

Channel = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""A channel: (16 kHz float32 mono samples, random generator) -> 16 kHz samples of the same length."""

NARROWBAND_RATE = 8_000
PACKET_SECONDS = 0.020
"""RTP packets carry 20 ms of audio on nearly every VoIP call; packet loss drops whole packets."""

G722_DELAY_SAMPLES = 22
"""Algorithmic delay of FFmpeg's G.722 encoder + decoder (QMF analysis and synthesis) at 16 kHz,
measured by cross-correlation on speech; tests/offline/test_channels.py checks the alignment."""


# ---------------------------------------------------------------------------------------------
# Sample format helpers


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float [-1, 1] to int16 PCM, rounding and clipping as a sound card would."""
    return np.clip(np.round(samples.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def from_int16(pcm: np.ndarray) -> np.ndarray:
    return (pcm.astype(np.float32) / np.float32(32768.0)).astype(np.float32)


def _fit(samples: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad to ``length``: resampling round trips may gain or lose a sample at the end."""
    if samples.shape[0] >= length:
        return samples[:length]
    return np.pad(samples, (0, length - samples.shape[0]))


def _as_mono_float(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"channels take mono 1-D audio, got shape {samples.shape}")
    return samples


def _narrowband(samples: np.ndarray, codec: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Run an 8 kHz int16 -> int16 codec on 16 kHz float audio, back at 16 kHz, same length."""
    samples = _as_mono_float(samples)
    narrow = resample(samples, SAMPLE_RATE, NARROWBAND_RATE)
    coded = from_int16(codec(to_int16(narrow)))
    return _fit(resample(coded, NARROWBAND_RATE, SAMPLE_RATE), samples.shape[0])


def g711_ulaw(samples: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """G.711 μ-law at 8 kHz (North American and Japanese PSTN)."""
    return _narrowband(samples, lambda pcm: ulaw_decode(ulaw_encode(pcm)))


def g711_alaw(samples: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """G.711 A-law at 8 kHz (European and most other PSTN)."""
    return _narrowband(samples, lambda pcm: alaw_decode(alaw_encode(pcm)))


# ---------------------------------------------------------------------------------------------
# PyAV codecs


def _codec_round_trip(
    pcm: np.ndarray, encoder: str, decoder: str, rate: int, bit_rate: int | None = None,
    options: dict[str, str] | None = None, sample_format: str = "s16",
) -> np.ndarray:
    """Encode int16 mono PCM with an FFmpeg encoder and decode it again; returns the decoder's
    samples (float32, at the decoder's own rate, including any codec delay and end padding).
    ``sample_format="fltp"`` feeds the encoder float samples (FFmpeg's AAC encoder takes no s16)."""
    import av

    try:
        enc = av.CodecContext.create(encoder, "w")
        dec = av.CodecContext.create(decoder, "r")
    except (av.FFmpegError, ValueError) as exc:  # codec missing from this FFmpeg build
        raise ConfigError(f"this PyAV/FFmpeg build has no {encoder}/{decoder} codec ({exc})") from exc
    enc.sample_rate = rate
    enc.layout = "mono"
    enc.format = sample_format
    enc.time_base = fractions.Fraction(1, rate)
    if bit_rate:
        enc.bit_rate = bit_rate
    if options:
        enc.options = options
    enc.open()
    dec.sample_rate = rate
    dec.layout = "mono"
    if enc.extradata:  # Opus' header carries the pre-skip, so the decoder removes the encoder delay
        dec.extradata = enc.extradata
    frame_size = enc.frame_size or 160
    padded = np.pad(pcm, (0, -pcm.shape[0] % frame_size))
    decoded: list[np.ndarray] = []

    def drain(packets: list) -> None:
        for packet in packets:
            for frame in dec.decode(packet):
                decoded.append(frame.to_ndarray().reshape(-1))

    for start in range(0, padded.shape[0], frame_size):
        chunk = padded[None, start : start + frame_size]
        if sample_format != "s16":
            chunk = from_int16(chunk)
        frame = av.AudioFrame.from_ndarray(chunk, format=sample_format, layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = enc.time_base
        drain(enc.encode(frame))
    drain(enc.encode(None))
    for frame in dec.decode(None):
        decoded.append(frame.to_ndarray().reshape(-1))
    out = np.concatenate(decoded) if decoded else np.zeros(0)
    if out.dtype == np.int16:
        return from_int16(out)
    return out.astype(np.float32)


def g722(samples: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """G.722 at 64 kbit/s, 16 kHz (wideband 'HD voice' telephony)."""
    samples = _as_mono_float(samples)
    # Feed G722_DELAY_SAMPLES of extra silence so that the delay-compensated output is complete.
    pcm = to_int16(np.pad(samples, (0, G722_DELAY_SAMPLES)))
    out = _codec_round_trip(pcm, "g722", "g722", SAMPLE_RATE)
    return _fit(out[G722_DELAY_SAMPLES:], samples.shape[0])


def opus(samples: np.ndarray, rng: np.random.Generator | None = None, bit_rate: int = 16_000) -> np.ndarray:
    """Opus (libopus, VoIP mode, 20 ms frames) at ``bit_rate`` bit/s on 16 kHz input.

    libopus picks SILK narrow-, medium- or wideband from the bit rate, as on a real call. FFmpeg's
    decoder always outputs 48 kHz and applies the pre-skip from the encoder's header, so the output
    is aligned; it is resampled back to 16 kHz.
    """
    samples = _as_mono_float(samples)
    out = _codec_round_trip(to_int16(samples), "libopus", "opus", SAMPLE_RATE, bit_rate, {"application": "voip"})
    return _fit(resample(out, 48_000, SAMPLE_RATE), samples.shape[0])


# ---------------------------------------------------------------------------------------------
# Band limiting and packet loss


def _bandpass_taps(low_hz: float, high_hz: float, taps: int, rate: int) -> np.ndarray:
    """Linear-phase FIR band-pass: difference of two Hamming-windowed sinc low-passes."""
    n = np.arange(taps) - (taps - 1) / 2

    def lowpass(cutoff: float) -> np.ndarray:
        return 2 * cutoff / rate * np.sinc(2 * cutoff / rate * n)

    return (lowpass(high_hz) - lowpass(low_hz)) * np.hamming(taps)


def bandlimit(
    samples: np.ndarray, rng: np.random.Generator | None = None, low_hz: float = 300.0,
    high_hz: float = 3400.0, taps: int = 513,
) -> np.ndarray:
    """The 300-3400 Hz telephone band (ITU-T G.712), zero-phase so nothing moves in time.

    A 513-tap Hamming-windowed FIR (transitions about 100 Hz wide, stop band below -50 dB) applied
    by FFT convolution and centred: a symmetric FIR delays by exactly (taps - 1) / 2 samples, which
    is removed.
    """
    samples = _as_mono_float(samples)
    h = _bandpass_taps(low_hz, high_hz, taps, SAMPLE_RATE)
    size = samples.shape[0] + taps - 1
    nfft = 1 << (size - 1).bit_length()
    full = np.fft.irfft(np.fft.rfft(samples, nfft) * np.fft.rfft(h, nfft), nfft)[:size]
    delay = (taps - 1) // 2
    return full[delay : delay + samples.shape[0]].astype(np.float32)


def packet_loss(
    samples: np.ndarray, rng: np.random.Generator, rate: float = 0.05, concealment: str = "repeat",
    attenuation: float = 0.5,
) -> np.ndarray:
    """Drop 20 ms packets independently with probability ``rate`` and conceal the gaps.

    ``concealment="repeat"`` replays the last received packet, multiplied by ``attenuation`` for
    each consecutive lost packet (so a burst fades out within about 100 ms, as simple jitter-buffer
    PLCs do); before the first received packet, and with ``concealment="zeros"``, lost packets are
    silence. Losses are independent (Bernoulli), not bursty; a trailing partial packet can be lost
    like any other.
    """
    samples = _as_mono_float(samples)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"packet loss rate must be in [0, 1], got {rate}")
    if concealment not in ("repeat", "zeros"):
        raise ValueError(f"concealment must be 'repeat' or 'zeros', got {concealment!r}")
    size = round(PACKET_SECONDS * SAMPLE_RATE)
    count = -(-samples.shape[0] // size)
    lost = rng.random(count) < rate
    out = samples.copy()
    last: np.ndarray | None = None
    gain = 1.0
    for index in range(count):
        span = slice(index * size, (index + 1) * size)
        if not lost[index]:
            last, gain = samples[span], 1.0
            continue
        length = out[span].shape[0]
        if concealment == "repeat" and last is not None:
            gain *= attenuation
            out[span] = gain * _fit(last, length)
        else:
            out[span] = 0.0
    return out


def wideband(samples: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """No channel: the clip as recorded (at 16 kHz)."""
    return _as_mono_float(samples)


# ---------------------------------------------------------------------------------------------
# Composition and registry


def compose(*channels: Channel, name: str = "") -> Channel:
    """Apply channels left to right (e.g. a codec, then packet loss on its packets)."""

    def chain(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for channel in channels:
            samples = channel(samples, rng)
        return samples

    chain.__name__ = name or "+".join(getattr(c, "__name__", "channel") for c in channels)
    chain.__doc__ = " then ".join((c.__doc__ or "").strip().splitlines()[0] for c in channels if c.__doc__)
    return chain


def _named(function: Callable[..., np.ndarray], name: str, doc: str, **kwargs: object) -> Channel:
    """A registry entry: ``function`` with fixed parameters, named and documented for listings."""
    channel = partial(function, **kwargs)
    channel.__name__ = name  # type: ignore[attr-defined]
    channel.__doc__ = doc
    return channel  # type: ignore[return-value]


def _loss(percent: int) -> Channel:
    return _named(packet_loss, f"loss{percent}", f"{percent} % of 20 ms packets lost, repeat-and-fade concealment.",
                  rate=percent / 100)


def _opus(kbps: int) -> Channel:
    return _named(opus, f"opus{kbps}k", f"Opus at {kbps} kbit/s (VoIP mode, 20 ms frames).", bit_rate=kbps * 1000)


_ATOMS: dict[str, Channel] = {
    "wideband": wideband,
    "ulaw": g711_ulaw,
    "alaw": g711_alaw,
    "g722": g722,
    "opus12k": _opus(12),
    "opus16k": _opus(16),
    "opus24k": _opus(24),
    "bandlimit": bandlimit,
    "loss5": _loss(5),
    "loss10": _loss(10),
    "loss20": _loss(20),
}

_CHAINS = ("ulaw+loss5", "alaw+loss5", "g722+loss5", "opus16k+loss5", "bandlimit+ulaw", "bandlimit+ulaw+loss5")

CHANNELS: dict[str, Channel] = {
    **_ATOMS,
    **{chain: compose(*(_ATOMS[part] for part in chain.split("+")), name=chain) for chain in _CHAINS},
}
"""Channels by ``--channel`` name. ``wideband`` is the identity; any ``+`` chain of these names works
too through :func:`get_channel`."""


def get_channel(name: str) -> Channel:
    """The channel called ``name``: a registered name or a ``+``-joined chain of them."""
    if name in CHANNELS:
        return CHANNELS[name]
    parts = name.split("+")
    if len(parts) > 1 and all(part in CHANNELS for part in parts):
        return compose(*(CHANNELS[part] for part in parts), name=name)
    raise ConfigError(
        f"unknown channel {name!r}: known channels are {', '.join(CHANNELS)} "
        "(chain them with '+', e.g. ulaw+loss5)"
    )


def channel_rng(seed: int, key: str) -> np.random.Generator:
    """The generator for one clip: depends on the seed and the clip's name only, not on list order,
    so a clip gets the same packet losses whichever list or subset it is scored in."""
    return np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])


def apply_channel(name: str, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply the channel called ``name`` and check its contract (same length, float32)."""
    samples = _as_mono_float(samples)
    out = get_channel(name)(samples, rng)
    if out.shape != samples.shape:  # a channel bug, not a user error
        raise AssertionError(f"channel {name} changed the length {samples.shape} -> {out.shape}")
    return out.astype(np.float32, copy=False)
