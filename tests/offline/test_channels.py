"""Channel simulation: contract (length, alignment, determinism), G.711 against FFmpeg, registry."""

from __future__ import annotations

import numpy as np
import pytest

from offline import channels
from offline.channels import CHANNELS, apply_channel, channel_rng, get_channel
from streamdet.errors import ConfigError

RATE = 16_000


def speechlike(seconds: float = 1.3, seed: int = 0) -> np.ndarray:
    """Harmonics of a gliding pitch, amplitude-modulated like syllables, plus a little noise:
    enough energy in the telephone band and above it for every channel to show."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 30))
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4 * t)) ** 2
    return (0.1 * voiced * envelope + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def lag_of(reference: np.ndarray, signal: np.ndarray, max_lag: int = 200) -> int:
    """The shift of ``signal`` against ``reference`` that maximises their cross-correlation."""
    n = 2 * (reference.size + signal.size)
    corr = np.fft.irfft(np.conj(np.fft.rfft(reference, n)) * np.fft.rfft(signal, n), n)
    corr = np.concatenate((corr[-max_lag:], corr[: max_lag + 1]))
    return int(np.argmax(corr)) - max_lag


def codec_available(name: str) -> bool:
    av = pytest.importorskip("av")
    return name in av.codecs_available


def skip_without_codecs(name: str) -> None:
    needs = {"g722": ["g722"], "opus": ["libopus", "opus"]}
    for key, codecs in needs.items():
        if key in name:
            missing = [c for c in codecs if not codec_available(c)]
            if missing:
                pytest.skip(f"this PyAV/FFmpeg build lacks {missing}")


@pytest.mark.parametrize("name", list(CHANNELS))
def test_channel_keeps_length_alignment_and_changes_audio(name: str) -> None:
    skip_without_codecs(name)
    x = speechlike()
    y = apply_channel(name, x, np.random.default_rng(1))
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.isfinite(y).all()
    if name == "wideband":
        np.testing.assert_array_equal(y, x)
        return
    assert not np.array_equal(y, x)
    # Aligned: codec delays are compensated, so speech stays where it was (within a sample or two;
    # packet-loss concealment moves no sample either).
    assert abs(lag_of(x, y)) <= 2


@pytest.mark.parametrize("length", [1, 37, 320, 16_001])
def test_odd_lengths_survive_every_codec(length: int) -> None:
    x = speechlike(2.0)[:length]
    for name in ("ulaw", "alaw", "bandlimit", "loss20", "g722", "opus16k"):
        if ("g722" in name and not codec_available("g722")) or ("opus" in name and not codec_available("libopus")):
            continue
        assert apply_channel(name, x, np.random.default_rng(0)).shape == (length,), name


def test_ulaw_and_alaw_round_trip_error_is_bounded() -> None:
    pcm = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    for encode, decode in ((channels.ulaw_encode, channels.ulaw_decode), (channels.alaw_encode, channels.alaw_decode)):
        back = decode(encode(pcm)).astype(np.int64)
        error = np.abs(back - pcm)
        # Companding: the error is at most half a quantisation step, and a step is 1/16 of its
        # segment, so the relative error stays below about 4 % above the first segments.
        assert error.max() <= 1024
        magnitude = np.abs(pcm.astype(np.int64))
        large = magnitude > 1024
        assert (error[large] / magnitude[large]).max() < 0.04
        # Decoding is exactly the inverse on the 256 code words.
        codes = np.arange(256, dtype=np.uint8)
        assert np.array_equal(decode(encode(decode(codes))), decode(codes))
    # Float round trip through the 8 kHz μ-law channel: ~38 dB SNR for in-band speech.
    x = speechlike()
    narrow = channels.resample(channels.resample(x, RATE, 8000), 8000, RATE)[: x.size]
    y = channels.g711_ulaw(x)
    snr = 10 * np.log10(np.sum(narrow**2) / np.sum((narrow - y) ** 2))
    assert snr > 30


@pytest.mark.parametrize("codec", ["pcm_mulaw", "pcm_alaw"])
def test_g711_matches_ffmpeg(codec: str) -> None:
    if not codec_available(codec):
        pytest.skip(f"no {codec} in this FFmpeg build")
    encode, decode = {
        "pcm_mulaw": (channels.ulaw_encode, channels.ulaw_decode),
        "pcm_alaw": (channels.alaw_encode, channels.alaw_decode),
    }[codec]
    pcm = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
    theirs = channels.to_int16(channels._codec_round_trip(pcm, codec, codec, 8000))[: pcm.size]
    ours = decode(encode(pcm))
    # Reconstruction levels are identical; FFmpeg's encoder rounds to the nearest level where the
    # G.711 reference's decision values differ at segment edges: a few % of inputs, one step apart.
    assert np.isin(ours, theirs).all()
    assert np.mean(ours == theirs) > 0.98
    assert np.abs(ours.astype(np.int64) - theirs).max() <= 1024


def test_deterministic_under_seed() -> None:
    x = speechlike()
    for name in ("loss10", "ulaw+loss5", "bandlimit+ulaw+loss5"):
        a = apply_channel(name, x, np.random.default_rng(7))
        b = apply_channel(name, x, np.random.default_rng(7))
        c = apply_channel(name, x, np.random.default_rng(8))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    assert np.array_equal(channel_rng(3, "a.wav").random(4), channel_rng(3, "a.wav").random(4))
    assert not np.array_equal(channel_rng(3, "a.wav").random(4), channel_rng(3, "b.wav").random(4))


def test_packet_loss_drops_whole_packets_and_conceals() -> None:
    x = np.ones(16_000, dtype=np.float32)
    zeros = channels.packet_loss(x, np.random.default_rng(0), rate=0.5, concealment="zeros")
    packets = zeros.reshape(-1, 320)
    lost = (packets == 0).all(axis=1)
    assert ((packets == 0) | (packets == 1)).all() and (lost | (packets == 1).all(axis=1)).all()
    assert 10 < lost.sum() < 40
    repeat = channels.packet_loss(x, np.random.default_rng(0), rate=0.5).reshape(-1, 320)
    assert np.array_equal(lost, (repeat < 1).any(axis=1))  # same packets lost under the same seed
    assert (repeat[lost] > 0).all() or not lost[1:].any()  # concealed, not silent, once a packet arrived
    assert np.array_equal(channels.packet_loss(x, np.random.default_rng(0), rate=0.0), x)


def test_bandlimit_removes_out_of_band_tones() -> None:
    t = np.arange(RATE) / RATE
    for freq, kept in ((100, False), (1000, True), (3000, True), (6000, False)):
        tone = np.sin(2 * np.pi * freq * t).astype(np.float32)
        rms = np.sqrt(np.mean(channels.bandlimit(tone)[2000:-2000] ** 2) / np.mean(tone**2))
        assert (rms > 0.9) if kept else (rms < 0.05), (freq, rms)


def test_chains_and_unknown_names() -> None:
    x = speechlike()
    rng = np.random.default_rng
    np.testing.assert_array_equal(
        get_channel("alaw+loss10")(x, rng(0)), CHANNELS["loss10"](CHANNELS["alaw"](x, rng(0)), rng(0))
    )
    with pytest.raises(ConfigError) as error:
        get_channel("gsm")
    assert "ulaw" in str(error.value) and "wideband" in str(error.value)
    with pytest.raises(ConfigError):
        get_channel("ulaw+nope")


def test_g722_delay_constant_is_the_codec_delay() -> None:
    if not codec_available("g722"):
        pytest.skip("no g722 in this FFmpeg build")
    x = speechlike()
    raw = channels._codec_round_trip(channels.to_int16(x), "g722", "g722", RATE)
    assert lag_of(x, raw[: x.size]) == channels.G722_DELAY_SAMPLES
