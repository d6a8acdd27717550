"""Audio constants and file input, exactly as the paper's countermeasures expect them.

Every CM sees mono float32 audio at 16 kHz, cut or tiled to a fixed 64,600-sample window
(paper recipe §1). This module is the one place those numbers are defined.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from streamdet.errors import AudioDecodeError

SAMPLE_RATE = 16_000
"""Every CM runs at 16 kHz; audio is resampled to it once, at the edge."""

WINDOW_SAMPLES = 64_600
"""The CMs' fixed input length: 64,600 samples = 4.0375 s at 16 kHz (the paper's recipe)."""

WINDOW_SECONDS = WINDOW_SAMPLES / SAMPLE_RATE

RESAMPLE_QUALITY = "HQ"
"""libsoxr's default quality; other resamplers shift some of the paper's EER cells (paper recipe §1)."""


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a (frames, channels) array; 1-D input is returned as is."""
    if samples.ndim == 1:
        return samples
    if samples.shape[1] == 1:  # the same values as the mean, without its cost on every mono frame
        return samples[:, 0].astype(np.float32, copy=False)
    return samples.mean(axis=1, dtype=np.float64).astype(np.float32)


def resample(samples: np.ndarray, sample_rate: int, target_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono float32 audio with libsoxr HQ (identity when the rates already agree)."""
    if sample_rate == target_rate:
        return samples.astype(np.float32, copy=False)
    return soxr.resample(samples, sample_rate, target_rate, quality=RESAMPLE_QUALITY).astype(
        np.float32, copy=False
    )


def _decode_with_pyav(path: Path) -> tuple[np.ndarray, int]:
    """Decode containers libsndfile cannot read (mp3, m4a, ogg/opus, webm...)."""
    import av

    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise AudioDecodeError(path, "no audio stream")
        sample_rate = stream.codec_context.sample_rate
        channels = stream.codec_context.channels
        # Convert every frame to packed float32 so planar and integer codecs look the same.
        resampler = av.AudioResampler(format="flt", layout=stream.layout.name, rate=sample_rate)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1, channels))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1, channels))
    if not chunks:
        raise AudioDecodeError(path, "no audio frames")
    return np.concatenate(chunks).astype(np.float32, copy=False), sample_rate


def decode(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file to float32 in [-1, 1], shape (frames, channels), and its sample rate."""
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(path, "no such file")
    try:
        samples, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    except sf.LibsndfileError:
        try:
            samples, sample_rate = _decode_with_pyav(path)
        except AudioDecodeError:
            raise
        except Exception as exc:  # PyAV raises many error types for broken containers
            raise AudioDecodeError(path, f"{type(exc).__name__}: {exc}") from exc
    if samples.shape[0] == 0:
        raise AudioDecodeError(path, "empty audio")
    return samples, int(sample_rate)


def load_audio(path: str | Path) -> np.ndarray:
    """Decode, mix to mono and resample to 16 kHz: the whole clip, as the CMs' front-ends expect."""
    samples, sample_rate = decode(path)
    return resample(to_mono(samples), sample_rate)


def fix_length(samples: np.ndarray, length: int = WINDOW_SAMPLES) -> np.ndarray:
    """Keep the first ``length`` samples, or tile a shorter clip end to end and cut it (paper recipe §1)."""
    if samples.shape[-1] == 0:
        raise ValueError("cannot fit an empty signal to a window")
    if samples.shape[-1] >= length:
        return samples[..., :length]
    repeats = -(-length // samples.shape[-1])
    return np.tile(samples, repeats)[..., :length]


def load_window(path: str | Path, length: int = WINDOW_SAMPLES) -> np.ndarray:
    """The paper's input for one test file: its first 4 s at 16 kHz, tiled if shorter."""
    return fix_length(load_audio(path), length)
