"""The ring buffer and the windower: pure, counted in samples."""

from __future__ import annotations

import numpy as np
import pytest

from streamdet.audio import fix_length
from streamdet.stream.ring import SampleRing
from streamdet.stream.windower import Windower

W, HOP = 100, 30  # small numbers, same rules as 64,600 / 16,000


def ramp(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32)


def push_in_chunks(windower: Windower, samples: np.ndarray, chunk: int):
    out = []
    for i in range(0, len(samples), chunk):
        out += windower.push(samples[i:i + chunk])
    return out


def test_ring_keeps_latest_in_order() -> None:
    ring = SampleRing(5)
    ring.extend(ramp(3))
    np.testing.assert_array_equal(ring.latest(3), [0, 1, 2])
    ring.extend(ramp(4) + 3)  # wraps
    np.testing.assert_array_equal(ring.latest(5), [2, 3, 4, 5, 6])
    ring.extend(ramp(12) + 7)  # larger than capacity
    np.testing.assert_array_equal(ring.latest(5), [14, 15, 16, 17, 18])
    assert ring.total == 19 and len(ring) == 5
    with pytest.raises(ValueError):
        ring.latest(6)


@pytest.mark.parametrize("chunk", [1, 7, 30, 100, 1000])
def test_first_window_then_every_hop(chunk: int) -> None:
    signal = ramp(250)
    windower = Windower(HOP, W)
    windows = push_in_chunks(windower, signal, chunk)
    assert [(w.start, w.end) for w in windows] == [(0, 100), (30, 130), (60, 160), (90, 190), (120, 220),
                                                     (150, 250)]
    for w in windows:
        np.testing.assert_array_equal(w.samples, signal[w.start:w.end])
    assert [w.index for w in windows] == list(range(6))


def test_first_window_waits_for_a_full_window() -> None:
    windower = Windower(HOP, W)
    assert windower.push(ramp(99)) == []
    (first,) = windower.push(ramp(1) + 99)
    np.testing.assert_array_equal(first.samples, ramp(100))


def test_tail_window_covers_the_last_samples() -> None:
    signal = ramp(145)
    windower = Windower(HOP, W)
    windows = windower.push(signal)
    assert [(w.start, w.end) for w in windows] == [(0, 100), (30, 130)]
    tail = windower.finish()
    assert (tail.start, tail.end, tail.final, tail.index) == (45, 145, True, 2)
    np.testing.assert_array_equal(tail.samples, signal[45:])


def test_no_tail_when_the_last_window_ended_at_the_end() -> None:
    windower = Windower(HOP, W)
    windower.push(ramp(130))
    assert windower.finish() is None


def test_short_stream_is_tiled_like_the_paper() -> None:
    signal = ramp(37) + 1
    windower = Windower(HOP, W)
    assert windower.push(signal) == []
    tail = windower.finish()
    assert (tail.start, tail.end, tail.final) == (0, 37, True)
    np.testing.assert_array_equal(tail.samples, fix_length(signal, W))


def test_empty_stream_has_no_window() -> None:
    assert Windower(HOP, W).finish() is None


def test_hop_longer_than_window_skips_samples() -> None:
    windower = Windower(150, W)
    windows = windower.push(ramp(400))
    assert [(w.start, w.end) for w in windows] == [(0, 100), (150, 250), (300, 400)]


def test_memory_is_bounded_by_one_window() -> None:
    windower = Windower(HOP, W)
    for _ in range(200):
        windower.push(ramp(53))
    assert windower._ring._buf.nbytes == W * 4  # only the ring, whatever was pushed
    assert windower.total == 200 * 53


def test_push_after_finish_is_an_error() -> None:
    windower = Windower(HOP, W)
    windower.finish()
    with pytest.raises(RuntimeError):
        windower.push(ramp(3))


def random_chunks(rng: np.random.Generator, samples: np.ndarray, largest: int) -> list[np.ndarray]:
    """``samples`` cut at random places: empty chunks, single samples, and chunks past a window."""
    cuts = np.sort(rng.integers(0, samples.size + 1, size=samples.size // max(1, largest // 2)))
    return np.split(samples, cuts)


@pytest.mark.parametrize("seed", range(5))
def test_ring_holds_the_tail_of_everything_written_whatever_the_chunks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(5_000).astype(np.float32)
    ring, written = SampleRing(97), 0
    for chunk in random_chunks(rng, signal, 250):  # up to ~2.5 capacities: wraps, exact fills, overflows
        ring.extend(chunk)
        written += chunk.size
        assert ring.total == written
        np.testing.assert_array_equal(ring.latest(len(ring)), signal[max(0, written - 97):written])


@pytest.mark.parametrize("seed", range(5))
def test_windows_are_the_signal_itself_bit_for_bit(seed: int) -> None:
    """Fed in any chunks (a service's 20-ms frames, a file's blocks), every window is exactly the
    slice of the whole signal it spans: the scores cannot depend on how the audio was cut."""
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(3_000).astype(np.float32)
    windower = Windower(HOP, W, early=(40, 70))
    windows = [w for chunk in random_chunks(rng, signal, 3 * W) for w in windower.push(chunk)]
    whole = Windower(HOP, W, early=(40, 70)).push(signal)
    assert [(w.index, w.start, w.end, w.early) for w in windows] == [(w.index, w.start, w.end, w.early) for w in whole]
    for window in windows:
        expected = fix_length(signal[:window.end], W) if window.early else signal[window.start:window.end]
        assert window.samples.dtype == np.float32
        np.testing.assert_array_equal(window.samples, expected)
