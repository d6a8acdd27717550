"""One pass of a CM's frozen trunk over everything cross-validation scores or trains on.

Cross-validation retrains only the CM's head (``head.py``); the trunk (mel front-end and the LCNN's
convolutions) is the same in every fold. So each window is run through the trunk once, and its
trunk output (the input of the head's first layer, ``backend.out``) is kept; every fold's head then
scores it in microseconds. This is what makes a grouped cross-validation of a Mel-LCNN affordable on
a CPU.

Held-out replays go through ``offline.streaming_eval.replay`` (the service's windower, alert machine
and policy) with a :class:`RecordingScorer`: it returns each window's *row number* in the feature
store as its "score", so that the replayed streams say which row each of their windows is; the
CM's own P(bona fide) for each row is kept beside the features. Rescoring a stream with a fold's
head is then ``stream.scores = head_scores[rows]`` followed by ``run_alerts``.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from offline.recipes.field import FieldClip
from offline.streaming_eval import StreamResult, replay
from streamdet.cm import Countermeasure, load_cm
from streamdet.manifest import InputContract
from streamdet.scoring.base import Scorer
from streamdet.stream.policy import StreamPolicy

HEAD_INPUT = "out"
"""The backend module whose input is the trunk's output (LCNN: the flattened conv9 activations)."""


class Trunk:
    """A CM split at its head: windows → (trunk features, the CM's own P(bona fide))."""

    def __init__(self, cm: Countermeasure, threads: int = 1) -> None:
        if not hasattr(cm.backend, HEAD_INPUT):
            raise ValueError(f"{cm.manifest.architecture}: backend has no {HEAD_INPUT!r} head to split at")
        self.cm = cm.eval()
        self.cm.backend.to(memory_format=torch.channels_last)
        self.threads = threads
        self._captured: list[torch.Tensor] = []
        getattr(cm.backend, HEAD_INPUT).register_forward_pre_hook(lambda _m, args: self._captured.append(args[0]))

    @classmethod
    def load(cls, cm_dir: str | Path, threads: int = 1) -> Trunk:
        return cls(load_cm(cm_dir), threads)

    @torch.inference_mode()
    def __call__(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        torch.set_num_threads(self.threads)
        self._captured.clear()
        x = self.cm.frontend(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)))
        logits, _ = self.cm.backend(x.contiguous(memory_format=torch.channels_last))
        features = self._captured.pop().float().numpy().astype(np.float16)
        return features, torch.softmax(logits, -1)[:, 0].double().numpy()


class LogMelTrunk:
    """The trunk of CMs trained from scratch on log-mel (``logmel_cnn``): the mel front-end and the log.

    Features are stored flattened as float16 (log-mel fits its range; mel power would not).
    """

    def __init__(self, threads: int = 1) -> None:
        from streamdet.models.mel import MelFrontend

        self.frontend = MelFrontend().eval()
        self.threads = threads

    @torch.inference_mode()
    def __call__(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from streamdet.models.logmel_cnn import log_mel

        torch.set_num_threads(self.threads)
        mel = self.frontend(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)))
        features = log_mel(mel).flatten(1).numpy().astype(np.float16)
        return features, np.full(len(windows), np.nan)  # no head of its own


TrunkLike = Trunk | LogMelTrunk


class RecordingScorer(Scorer):
    """A scorer for ``replay`` that stores trunk features and answers each window's row number."""

    model_id = "crossval-recorder"

    def __init__(self, trunk: TrunkLike) -> None:
        self.trunk = trunk
        self.contract = InputContract()
        self.features: list[np.ndarray] = []
        self.own: list[np.ndarray] = []
        self.rows = 0

    def score_batch(self, windows: np.ndarray) -> np.ndarray:
        features, own = self.trunk(self.check_windows(windows))
        self.features.append(features)
        self.own.append(own)
        first, self.rows = self.rows, self.rows + len(windows)
        return np.arange(first, self.rows, dtype=np.float64)


@dataclass
class GroupReplay:
    """One held-out group replayed under one channel: its streams (scores = feature rows) and features."""

    group: str
    streams: list[StreamResult]
    features: np.ndarray
    own_p_bonafide: np.ndarray
    failures: dict[str, str]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)  # a killed run leaves no half-written group behind

    @staticmethod
    def load(path: Path) -> GroupReplay:
        with Path(path).open("rb") as handle:
            return pickle.load(handle)


def replay_group(trunk: TrunkLike, group: str, clips: Sequence[FieldClip], policy: StreamPolicy, channel: str,
                 *, real_call_seconds: float, fake_call_seconds: float, seed: int = 0) -> GroupReplay:
    """Replay a group's clips as calls (real: ``real_call_seconds``; fake: ``fake_call_seconds``)."""
    recorder = RecordingScorer(trunk)
    streams: list[StreamResult] = []
    failures: dict[str, str] = {}
    for label, seconds in ((0, real_call_seconds), (1, fake_call_seconds)):
        utterances = [c.utterance() for c in clips if c.label == label]
        if utterances:
            found, failed = replay(recorder, group, utterances, policy, channel=channel, seed=seed,
                                   calls_seconds=seconds, workers=1)
            streams += found
            failures.update(failed)
    features = np.concatenate(recorder.features) if recorder.features else np.zeros((0, 0), np.float16)
    own = np.concatenate(recorder.own) if recorder.own else np.zeros(0)
    return GroupReplay(group, streams, features, own, failures)
