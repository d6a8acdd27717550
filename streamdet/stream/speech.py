"""How much speech a window holds: Silero VAD over 32 ms frames, run once per sample of a stream.

The model is Silero VAD's sequence ONNX export (``silero_vad_16k_sequence.onnx``, shipped inside the
``silero-vad`` wheel; run here with ONNX Runtime, without importing the package's torch code): one call takes
any number of 512-sample frames, each prefixed with the 64 samples before it, and carries the LSTM
state in and out. It tells speech from silence, tones, DTMF, white and pink noise and music far
better than an energy or GMM detector (``webrtcvad`` calls all of those speech).

A stream's frames are ``[512 j, 512 (j + 1))`` from its first sample. :class:`SpeechTracker` keeps
one stream's frame verdicts (speech probability >= 0.5): samples are appended as they arrive (cheap),
and the model runs when a window's fraction is asked for, on the frames up to that window's end that
have not been judged yet. Windows overlap, so this costs a quarter of judging every window afresh,
and since windows are asked for in order and their ends are fixed by the window geometry, the
frames are judged in the same blocks live and offline: the same samples give the same fractions.

A window's speech fraction is the share of its complete frames judged speech (0 for a window
without one).
"""

from __future__ import annotations

import importlib.util
import threading
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from streamdet.errors import ConfigError

FRAME = 512
"""Samples per VAD frame at 16 kHz (32 ms)."""
CONTEXT = 64
"""Samples of the previous frame the model sees in front of each frame."""
SPEECH_PROBABILITY = 0.5
"""A frame is speech when the model's speech probability reaches this (Silero's own default)."""
STATE_SHAPE = (1, 1, 128)


@cache
def _session() -> Any:
    """The ONNX Runtime session, loaded once per process (one thread: the VAD is small)."""
    # Found without importing the package: its __init__ imports torch, which a Triton-fed service lacks.
    package = importlib.util.find_spec("silero_vad")
    try:
        import onnxruntime
    except ImportError:
        onnxruntime = None
    if package is None or onnxruntime is None or not package.submodule_search_locations:
        raise ConfigError("the speech gate needs the silero-vad and onnxruntime packages; install them, "
                          "or turn the gate off with alerts.min_speech = 0")
    path = Path(package.submodule_search_locations[0]) / "data" / "silero_vad_16k_sequence.onnx"
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def frame_speech_probabilities(frames: np.ndarray, previous: np.ndarray, state: tuple[np.ndarray, np.ndarray]
                               ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Speech probabilities of consecutive (n, 512) frames; ``previous``: the 64 samples before the
    first; ``state``: the LSTM's (h, c) before them. Returns the probabilities and the state after."""
    contexts = np.empty((frames.shape[0], CONTEXT), dtype=np.float32)
    contexts[0] = previous
    contexts[1:] = frames[:-1, -CONTEXT:]
    probabilities, h, c = _session().run(
        ["speech_probs", "hn", "cn"],
        {"input": np.concatenate([contexts, frames], axis=1), "h": state[0], "c": state[1]},
    )
    return np.asarray(probabilities, dtype=np.float32).reshape(-1), (h, c)


def speech_fraction(samples: np.ndarray) -> float:
    """Share of speech frames in one 16 kHz signal judged on its own (fresh state): for tests and tools."""
    tracker = SpeechTracker()
    tracker.push(samples)
    return tracker.fraction(0, int(np.asarray(samples).size))


class SpeechTracker:
    """One stream's frame verdicts. ``push`` from the thread that receives audio, ``fraction`` from one
    other thread (the service's scoring thread); the lock guards only the hand-over of pending samples,
    so the receiving thread never waits for the model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[np.ndarray] = []  # samples not yet cut into judged frames, in order
        self._pending_samples = 0
        # The rest belongs to the thread that calls ``fraction``.
        self._judged_frames = 0  # frames judged since the stream began
        self._previous = np.zeros(CONTEXT, dtype=np.float32)
        self._state = (np.zeros(STATE_SHAPE, np.float32), np.zeros(STATE_SHAPE, np.float32))
        self._verdicts = np.zeros(0, dtype=bool)  # speech verdicts of frames [_first_kept, _judged_frames)
        self._first_kept = 0

    def push(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono samples (the stream's, in order)."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        if samples.size:
            with self._lock:
                self._pending.append(samples)
                self._pending_samples += samples.size

    def fraction(self, start: int, end: int) -> float:
        """Speech share of the complete frames inside stream samples ``[start, end)``; judges the
        frames up to ``end`` first. Asks must come with non-decreasing ``start``: the verdicts of frames
        before it are forgotten."""
        first, last = -(-start // FRAME), end // FRAME  # frames [first, last) lie inside
        self._judge_until(last)
        drop = min(first, self._judged_frames) - self._first_kept
        if drop > 0:
            self._verdicts = self._verdicts[drop:]
            self._first_kept += drop
        if last <= first:
            return 0.0
        verdicts = self._verdicts[first - self._first_kept:last - self._first_kept]
        return float(np.count_nonzero(verdicts)) / (last - first)

    def _judge_until(self, last: int) -> None:
        with self._lock:
            count = min(last - self._judged_frames, self._pending_samples // FRAME)
            if count <= 0:
                return
            pending = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
            rest = pending[count * FRAME:]
            self._pending, self._pending_samples = ([rest] if rest.size else []), rest.size
        frames = pending[:count * FRAME].reshape(count, FRAME)
        probabilities, self._state = frame_speech_probabilities(frames, self._previous, self._state)
        self._previous = frames[-1, -CONTEXT:].copy()
        self._verdicts = np.concatenate([self._verdicts, probabilities >= SPEECH_PROBABILITY])
        self._judged_frames += count
