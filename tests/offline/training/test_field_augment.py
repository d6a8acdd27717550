"""Field augmentation: every function keeps the length, is seeded, and does what it says (SNR measured)."""

from __future__ import annotations

import numpy as np
import pytest

from offline.training.field_augment import (
    FieldAugmenter,
    babble,
    coloured_noise,
    lossy_codec,
    loudness,
    mix_at_snr,
    resample_chain,
    reverberate,
    room_impulse_response,
)

RATE = 16_000


def _speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    f0 = 140 * (1 + 0.05 * np.sin(2 * np.pi * 4 * t))
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    x += 0.01 * rng.standard_normal(t.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64)))


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
def test_noise_is_mixed_at_the_requested_snr(kind: str, snr_db: float) -> None:
    x = _speechlike()
    noise = coloured_noise(kind, x.size, np.random.default_rng(1))
    y = mix_at_snr(x, noise, snr_db)
    measured = 10 * np.log10(_power(x) / _power(y - x))
    assert y.shape == x.shape and y.dtype == np.float32
    assert measured == pytest.approx(snr_db, abs=0.2)


def test_noise_colours_differ_in_slope() -> None:
    rng = np.random.default_rng(0)
    low_share = {}
    for kind in ("white", "pink", "brown"):
        spectrum = np.abs(np.fft.rfft(coloured_noise(kind, RATE * 2, rng))) ** 2
        low_share[kind] = spectrum[: spectrum.size // 8].sum() / spectrum.sum()
    assert low_share["white"] < low_share["pink"] < low_share["brown"]


def test_babble_is_seeded_and_mixes_at_snr() -> None:
    sources = [_speechlike(3.0, seed) for seed in range(4)]
    a = babble(sources, RATE, np.random.default_rng(5))
    b = babble(sources, RATE, np.random.default_rng(5))
    assert np.array_equal(a, b) and a.shape == (RATE,)
    x = _speechlike(1.0, 9)
    y = mix_at_snr(x, a, 5.0)
    assert 10 * np.log10(_power(x) / _power(y - x)) == pytest.approx(5.0, abs=0.2)


def test_room_keeps_length_level_and_alignment_and_adds_a_tail() -> None:
    x = np.zeros(RATE, np.float32)
    x[1000] = 0.5  # a click: the output's peak stays where the click was (direct path at 0)
    ir = room_impulse_response(np.random.default_rng(2), rt60=0.5, drr_db=6.0)
    y = reverberate(x, ir)
    assert y.shape == x.shape
    assert int(np.argmax(np.abs(y))) == 1000
    assert np.abs(y[1000 + 2000 : 1000 + 4000]).max() > 0, "a reverberant tail after the click"
    speech = _speechlike()
    assert _power(reverberate(speech, ir)) == pytest.approx(_power(speech), rel=0.01)
    assert np.array_equal(room_impulse_response(np.random.default_rng(7)), room_impulse_response(np.random.default_rng(7)))


def test_loudness_changes_the_level_and_clips() -> None:
    x = _speechlike()
    assert 10 * np.log10(_power(loudness(x, -10.0)) / _power(x)) == pytest.approx(-10.0, abs=0.01)
    assert np.abs(loudness(x, 30.0)).max() <= 1.0


@pytest.mark.parametrize("codec", ["mp3", "aac"])
def test_lossy_codecs_round_trip_time_aligned(codec: str) -> None:
    x = _speechlike()
    y = lossy_codec(x, codec, 64_000)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.corrcoef(x[2000:-2000], y[2000:-2000])[0, 1] > 0.9, "aligned: the priming delay is removed"
    assert not np.array_equal(x, y)


def test_resampling_through_8k_removes_the_upper_band() -> None:
    x = coloured_noise("white", RATE, np.random.default_rng(0)) * 0.1
    y = resample_chain(x, [8_000])
    spectrum = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(y.size, 1 / RATE)
    assert y.shape == x.shape
    assert spectrum[freqs > 4_500].sum() < 1e-3 * spectrum[freqs < 3_500].sum()


def test_augmenter_is_seeded_and_keeps_the_length() -> None:
    x = _speechlike(4.0)
    augmenter = FieldAugmenter(babble_sources=[_speechlike(3.0, 4)], p_lossy=0.5)
    seen = set()
    for seed in range(12):
        y1, steps1 = augmenter(x, np.random.default_rng(seed))
        y2, steps2 = augmenter(x, np.random.default_rng(seed))
        assert np.array_equal(y1, y2) and steps1 == steps2
        assert y1.shape == x.shape and y1.dtype == np.float32
        seen.update(s.rstrip("0123456789.+-sdBkHz") for s in steps1)
    assert {"gain", "room"} <= seen
