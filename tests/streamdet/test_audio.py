"""Audio input as paper recipe §1: decode, mono, soxr HQ to 16 kHz, the 64,600-sample window."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr

from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES, decode, fix_length, load_audio, load_window
from streamdet.errors import AudioDecodeError


def test_window_constants():
    assert SAMPLE_RATE == 16_000
    assert WINDOW_SAMPLES == 64_600


def test_fix_length_keeps_the_first_samples():
    x = np.arange(70_000, dtype=np.float32)
    np.testing.assert_array_equal(fix_length(x), x[:WINDOW_SAMPLES])


def test_fix_length_tiles_short_clips_whole():
    x = np.arange(30_000, dtype=np.float32)
    y = fix_length(x)
    assert y.shape == (WINDOW_SAMPLES,)
    np.testing.assert_array_equal(y[:30_000], x)
    np.testing.assert_array_equal(y[30_000:60_000], x)
    np.testing.assert_array_equal(y[60_000:], x[: WINDOW_SAMPLES - 60_000])


def test_fix_length_rejects_empty():
    with pytest.raises(ValueError):
        fix_length(np.zeros(0, dtype=np.float32))


def test_stereo_24k_int16_is_mixed_and_resampled_with_soxr_hq(tmp_path):
    rng = np.random.default_rng(0)
    stereo = (rng.uniform(-0.5, 0.5, (24_000, 2)) * 32767).astype(np.int16)
    sf.write(tmp_path / "x.wav", stereo, 24_000, subtype="PCM_16")
    got = load_audio(tmp_path / "x.wav")
    mono = (stereo.astype(np.float32) / 32768.0).mean(axis=1)
    expected = soxr.resample(mono, 24_000, 16_000, quality="HQ")
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_flac_and_float_wav_decode_the_same(tmp_path):
    x = np.sin(np.linspace(0, 100, 16_000)).astype(np.float32) * 0.5
    sf.write(tmp_path / "a.wav", x, 16_000, subtype="FLOAT")
    sf.write(tmp_path / "a.flac", x, 16_000, subtype="PCM_24")
    np.testing.assert_allclose(load_audio(tmp_path / "a.wav"), load_audio(tmp_path / "a.flac"), atol=1e-6)


def test_container_soundfile_cannot_read_goes_through_pyav(tmp_path):
    import av

    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16_000, layout="mono")
        tone = (np.sin(np.arange(16_000) * 0.05) * 0.3).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
        frame.sample_rate = 16_000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    samples, rate = decode(path)
    assert rate == 16_000 and samples.shape[1] == 1
    assert abs(samples.shape[0] - 16_000) < 3000


def test_corrupt_and_missing_files_are_named(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(AudioDecodeError, match="corrupt.wav"):
        load_window(bad)
    with pytest.raises(AudioDecodeError, match="missing.wav: cannot decode audio \\(no such file\\)"):
        load_window(tmp_path / "missing.wav")


def test_to_mono_of_one_channel_is_that_channel_exactly_as_the_mean_would_give() -> None:
    from streamdet.audio import to_mono

    for dtype in (np.float32, np.float64):
        frames = np.random.default_rng(0).standard_normal((1_000, 1)).astype(dtype)
        mono = to_mono(frames)
        assert mono.dtype == np.float32 and mono.shape == (1_000,)
        np.testing.assert_array_equal(mono, frames.mean(axis=1, dtype=np.float64).astype(np.float32))
    stereo = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(to_mono(stereo), [0.5, 0.5])
