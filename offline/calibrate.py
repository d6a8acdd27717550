"""Calibration: choose a CM's operating point on real (and fake) speech and store it in its manifest.

The service alerts on a window when its bona fide probability falls below a threshold. The paper
uses 0.5; a CM whose real-speech scores sit near 0 (the released ones do on telephone speech) then
alerts on nearly every call. Calibration measures the CM's per-window scores on data that looks
like the deployment and picks the threshold for

- a target false-alarm rate per window on real speech (``target_far``): the largest threshold at
  which at most that fraction of real windows would alert; or
- the EER point of real against fake windows (``at_eer``).

Windows, as the service sees them (:func:`window_offsets`): every 64,600-sample window of a clip at
a fixed hop (1 s by default); a clip shorter than one window is tiled to one window as in the
paper's recipe. ``hop=None`` scores only the first window (the paper's protocol).

The result is a :class:`streamdet.manifest.Calibration` written into the CM's ``manifest.json``;
the weights file is not touched, so the manifest's weights hash stays valid.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from offline.channels import apply_channel, channel_rng, get_channel
from offline.datasets import Utterance
from offline.metrics import compute_eer, det_curve
from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES, fix_length, load_audio
from streamdet.cm import read_cm_manifest
from streamdet.errors import AudioDecodeError, ConfigError
from streamdet.manifest import MANIFEST_NAME, Calibration, CMManifest, write_manifest
from streamdet.scoring.base import Scorer

DEFAULT_HOP = SAMPLE_RATE
"""1 s between window starts: the service's default scoring cadence."""


# ---------------------------------------------------------------------------------------------
# Windows


def window_offsets(n_samples: int, window: int = WINDOW_SAMPLES, hop: int | None = DEFAULT_HOP) -> list[int]:
    """Start offsets of the windows scored in a clip of ``n_samples`` samples.

    ``0, hop, 2*hop, ...`` as long as the whole window fits in the clip; the tail after the last
    full window is not scored (as a live stream's tail that never fills a window). A clip no longer
    than one window gives ``[0]``: that window is the clip tiled (``fix_length``). ``hop=None``
    gives only ``[0]``, the paper's first-4-s protocol.
    """
    if n_samples <= 0:
        raise ValueError("a clip needs at least one sample")
    if hop is not None and hop <= 0:
        raise ValueError(f"hop must be positive, got {hop}")
    if hop is None or n_samples <= window:
        return [0]
    return list(range(0, n_samples - window + 1, hop))


def clip_windows(samples: np.ndarray, window: int = WINDOW_SAMPLES, hop: int | None = DEFAULT_HOP) -> np.ndarray:
    """The (count, window) array of a clip's windows at :func:`window_offsets`."""
    return np.stack([fix_length(samples[start : start + window], window)
                     for start in window_offsets(samples.shape[0], window, hop)])


@dataclass
class WindowScores:
    """Per-window bona fide probabilities of a list of clips; ``clip[i]`` indexes ``utterances``."""

    utterances: list[Utterance]
    scores: np.ndarray
    clip: np.ndarray
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def clip_scores(self) -> list[np.ndarray]:
        return [self.scores[self.clip == i] for i in range(len(self.utterances))]


def score_windows(
    scorer: Scorer,
    utterances: Sequence[Utterance],
    channel: str = "wideband",
    seed: int = 0,
    hop: int | None = DEFAULT_HOP,
    batch_size: int = 32,
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> WindowScores:
    """Score every window of every clip, after passing the whole clip through ``channel``.

    The channel runs on the whole clip (as on a call), with a generator seeded by ``seed`` and the
    clip's name (:func:`offline.channels.channel_rng`). Unreadable files are recorded in
    ``failures`` and skipped; the caller decides what to do with them.
    """
    get_channel(channel)  # an unknown name fails before any audio is read
    window = scorer.contract.window_samples

    def load(u: Utterance) -> np.ndarray | AudioDecodeError:
        try:
            audio = apply_channel(channel, load_audio(u.path), channel_rng(seed, u.utt_id))
        except AudioDecodeError as exc:
            return exc
        return clip_windows(audio, window, hop)

    kept: list[Utterance] = []
    scores: list[np.ndarray] = []
    clips: list[np.ndarray] = []
    failures: dict[str, str] = {}
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            stacked = np.concatenate(pending)
            for start in range(0, stacked.shape[0], batch_size):
                scores.append(scorer.score_batch(stacked[start : start + batch_size]))
            pending.clear()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(utterances), batch_size):
            batch = utterances[start : start + batch_size]
            for u, loaded in zip(batch, pool.map(load, batch), strict=True):
                if isinstance(loaded, AudioDecodeError):
                    failures[str(u.path)] = loaded.reason
                    continue
                clips.append(np.full(loaded.shape[0], len(kept), dtype=np.int64))
                kept.append(u)
                pending.append(loaded)
            flush()
            if on_progress:
                on_progress(len(batch))
    return WindowScores(
        kept,
        np.concatenate(scores).astype(np.float64) if scores else np.zeros(0),
        np.concatenate(clips) if clips else np.zeros(0, dtype=np.int64),
        failures,
    )


# ---------------------------------------------------------------------------------------------
# Operating points (scores are P(bona fide); an alert is score < threshold)


def _between(sorted_scores: np.ndarray, k: int) -> float:
    """A threshold under which exactly the ``k`` lowest scores fall (fewer when scores tie):
    the midpoint between the k-th and (k+1)-th lowest, so that nearby unseen scores are treated
    alike on either side."""
    if k <= 0:
        return float(sorted_scores[0])
    if k >= sorted_scores.size:
        return float(min(1.0, np.nextafter(sorted_scores[-1], np.inf)))
    return float((sorted_scores[k - 1] + sorted_scores[k]) / 2.0)


def threshold_for_false_alarm_rate(real_scores: npt.ArrayLike, target: float) -> float:
    """The largest threshold at which at most ``target`` of the real windows alert (score < t)."""
    scores = np.sort(np.asarray(real_scores, dtype=np.float64).reshape(-1))
    if scores.size == 0:
        raise ValueError("calibration needs at least one real window")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target false-alarm rate must be in [0, 1), got {target}")
    # The small epsilon keeps 0.01 * 300 = 3.0000000000000004 from becoming 3 by luck and 2.9999 by bad luck.
    return _between(scores, int(np.floor(target * scores.size + 1e-9)))


def threshold_at_eer(real_scores: npt.ArrayLike, fake_scores: npt.ArrayLike) -> tuple[float, float]:
    """(threshold, EER as a fraction) at the EER point of the ASVspoof algorithm (offline.metrics)."""
    eer, _ = compute_eer(real_scores, fake_scores)
    frr, far, _ = det_curve(real_scores, fake_scores)
    k = int(np.argmin(np.abs(frr - far)))  # the point compute_eer reports: its k lowest scores alert
    pooled = np.sort(np.concatenate([np.asarray(real_scores, np.float64).ravel(),
                                     np.asarray(fake_scores, np.float64).ravel()]), kind="mergesort")
    return _between(pooled, k), eer


def alert_rate(scores: npt.ArrayLike, threshold: float) -> float:
    """Fraction of windows that alert (score < threshold); NaN for no windows."""
    scores = np.asarray(scores, dtype=np.float64)
    return float(np.mean(scores < threshold)) if scores.size else float("nan")


# ---------------------------------------------------------------------------------------------
# The calibration record


@dataclass
class CalibrationResult:
    calibration: Calibration
    false_alarm_rate: float
    detection_rate: float
    real_windows: int
    fake_windows: int


def calibrate(
    real: WindowScores,
    fake: WindowScores | None,
    *,
    target_far: float | None = None,
    at_eer: bool = False,
    data: str = "",
    channel: str = "wideband",
    hop: int | None = DEFAULT_HOP,
    seed: int = 0,
    today: _dt.date | None = None,
) -> CalibrationResult:
    """Pick the threshold and describe where it came from; exactly one of target_far / at_eer."""
    if (target_far is None) == (not at_eer):
        raise ConfigError("choose one criterion: a target false-alarm rate or the EER point")
    fake_scores = fake.scores if fake is not None else np.zeros(0)
    if at_eer:
        if fake_scores.size == 0:
            raise ConfigError("the EER point needs fake windows (--fake)")
        threshold, eer = threshold_at_eer(real.scores, fake_scores)
        criterion = "eer"
        how = f"EER point of real against fake windows (EER {100 * eer:.2f} %)"
    else:
        assert target_far is not None
        threshold = threshold_for_false_alarm_rate(real.scores, target_far)
        criterion = f"target_far={target_far:g}"
        how = f"largest threshold with at most {100 * target_far:g} % of real windows alerting"
    far = alert_rate(real.scores, threshold)
    detection = alert_rate(fake_scores, threshold)
    windows = (f"{WINDOW_SAMPLES}-sample windows every {hop} samples, clips shorter than a window tiled"
               if hop else "first window of each clip (tiled when shorter)")
    parts = [
        how,
        f"data: {data}" if data else "",
        f"real: {len(real.utterances)} clips, {real.scores.size} windows, false alarms {100 * far:.2f} %",
        (f"fake: {len(fake.utterances)} clips, {fake_scores.size} windows, detected {100 * detection:.2f} %"
         if fake is not None else "no fake data"),
        f"channel: {channel} (seed {seed})",
        windows,
        f"calibrated {(today or _dt.date.today()).isoformat()}",
    ]
    description = "; ".join(p for p in parts if p)
    return CalibrationResult(
        Calibration(threshold=threshold, criterion=criterion, description=description),
        far, detection, int(real.scores.size), int(fake_scores.size),
    )


def write_calibration(cm_dir: str | Path, calibration: Calibration) -> CMManifest:
    """Store ``calibration`` in the CM's manifest.json (replacing any earlier one); weights untouched."""
    manifest = read_cm_manifest(cm_dir)
    updated = manifest.model_copy(update={"calibration": calibration})
    path = Path(cm_dir)
    if path.name != MANIFEST_NAME:
        path = path / MANIFEST_NAME
    write_manifest(path, updated)
    return updated
