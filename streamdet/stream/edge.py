"""The edge: any (rate, channels) float32 audio → mono float32 at 16 kHz, chunk by chunk.

Mixdown averages the channels with ``streamdet.audio.to_mono`` and resampling uses libsoxr's
streaming resampler at the same HQ quality as ``streamdet.audio.resample``. Fed in chunks of any
size and flushed at the end, it produces the same samples as the one-shot resampler on the whole
file (bit-identical in our tests at 8-48 kHz), which is what makes a streamed file and the same file
read by ``offline evaluate`` reach the CM identically.
"""

from __future__ import annotations

import numpy as np
import soxr

from streamdet.audio import RESAMPLE_QUALITY, SAMPLE_RATE, to_mono


class EdgeResampler:
    """Mono mixdown and resampling for one stream of fixed input rate and channel count."""

    def __init__(self, sample_rate: int, channels: int, target_rate: int = SAMPLE_RATE) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.target_rate = target_rate
        # At the target rate the offline path does not resample, so neither may we.
        self._stream = (
            None
            if sample_rate == target_rate
            else soxr.ResampleStream(sample_rate, target_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY)
        )
        self._flushed = False

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Convert one chunk, float32 (frames, channels) or (frames,); may return fewer samples
        than proportional (the resampler holds some back until it sees more input or ``flush``)."""
        if self._flushed:
            raise RuntimeError("edge resampler already flushed")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 2 and samples.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {samples.shape[1]}")
        mono = np.ascontiguousarray(to_mono(samples), dtype=np.float32)
        if self._stream is None:
            return mono
        if mono.size == 0:
            return mono
        return self._stream.resample_chunk(mono, last=False)

    def flush(self) -> np.ndarray:
        """The samples held back; call once at end of stream."""
        self._flushed = True
        if self._stream is None:
            return np.zeros(0, dtype=np.float32)
        return self._stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
