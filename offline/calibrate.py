"""Calibration: choose a CM's operating point on real (and fake) speech and store it in its manifest.

A window is spoof evidence when ``p_spoof = 1 - P(bona fide) >= spoof_threshold``
(:class:`streamdet.stream.policy.StreamPolicy`, the service's verdict). The paper's threshold is 0.5;
a CM whose real-speech p_spoof sits near 1 (the released ones do on telephone speech) then alerts on
nearly every call. Calibration measures the CM's per-window scores on data that looks like the
deployment and picks the spoof threshold for

- a target false-alarm rate per window on real speech (``target_far``): the smallest threshold at
  which at most that fraction of real windows would alert; or
- the EER point of real against fake windows (``at_eer``).

Windows, as the service sees them (:func:`window_offsets`, the policy's window geometry): every
window of a clip at a fixed hop (1 s by default) and the tail window at its end; a clip shorter
than one window is tiled to one window as in the paper's recipe. ``hop=None`` scores only the
first window (the paper's protocol). Scores are kept as the CM returns them, P(bona fide); the
threshold functions below take P(spoof).

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
from streamdet.audio import WINDOW_SAMPLES, fix_length, load_audio
from streamdet.cm import read_cm_manifest
from streamdet.errors import AudioDecodeError, ConfigError
from streamdet.manifest import MANIFEST_NAME, Calibration, CMManifest, write_manifest
from streamdet.scoring.base import Scorer
from streamdet.stream.policy import DEFAULT_HOP, StreamPolicy, WindowGeometry, spoof_probability

# ---------------------------------------------------------------------------------------------
# Windows


def window_offsets(n_samples: int, window: int = WINDOW_SAMPLES, hop: int | None = DEFAULT_HOP) -> list[int]:
    """Start offsets of the windows scored in a clip of ``n_samples`` samples: the service's windows
    (:meth:`streamdet.stream.policy.WindowGeometry.offsets`), ``0, hop, 2*hop, ...`` while the
    whole window fits, then the tail window ending at the clip's end unless the last one already
    did. A clip no longer than one window gives ``[0]``: that window is the clip tiled
    (``fix_length``). ``hop=None`` gives only ``[0]``, the paper's first-4-s protocol.
    """
    if n_samples <= 0:
        raise ValueError("a clip needs at least one sample")
    if hop is not None and hop <= 0:
        raise ValueError(f"hop must be positive, got {hop}")
    if hop is None:
        return [0]
    return WindowGeometry(window, hop).offsets(n_samples)


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
# Operating points, on P(spoof): a window alerts when the policy says so (p_spoof >= threshold)


def _between(descending: np.ndarray, k: int) -> float:
    """A spoof threshold at or above which exactly the ``k`` highest p_spoof lie (fewer when they tie):
    the midpoint between the k-th and (k+1)-th highest, so that nearby unseen scores are treated
    alike on either side, and always above the (k+1)-th. May be just above 1 (nothing alerts)."""
    if k >= descending.size:
        return float(descending[-1])
    above_next = float(np.nextafter(descending[k], np.inf))
    if k <= 0:
        return above_next
    return max(float((descending[k - 1] + descending[k]) / 2.0), above_next)


def _descending(values: npt.ArrayLike) -> np.ndarray:
    return np.sort(np.asarray(values, dtype=np.float64).reshape(-1))[::-1]


def threshold_for_false_alarm_rate(real_p_spoof: npt.ArrayLike, target: float) -> float:
    """The smallest spoof threshold at which at most ``target`` of the real windows alert."""
    scores = _descending(real_p_spoof)
    if scores.size == 0:
        raise ValueError("calibration needs at least one real window")
    if not 0.0 <= target < 1.0:
        raise ValueError(f"target false-alarm rate must be in [0, 1), got {target}")
    # The small epsilon keeps 0.01 * 300 = 3.0000000000000004 from becoming 3 by luck and 2.9999 by bad luck.
    return _between(scores, int(np.floor(target * scores.size + 1e-9)))


def threshold_at_eer(real_p_spoof: npt.ArrayLike, fake_p_spoof: npt.ArrayLike) -> tuple[float, float]:
    """(spoof threshold, EER as a fraction) at the EER point of the ASVspoof algorithm (offline.metrics,
    whose scores are "higher = more bona fide": -p_spoof)."""
    real = -np.asarray(real_p_spoof, np.float64).ravel()
    fake = -np.asarray(fake_p_spoof, np.float64).ravel()
    eer, _ = compute_eer(real, fake)
    frr, far, _ = det_curve(real, fake)
    k = int(np.argmin(np.abs(frr - far)))  # the point compute_eer reports: its k highest p_spoof alert
    return _between(_descending(np.concatenate([-real, -fake])), k), eer


def alert_rate(p_spoof: npt.ArrayLike, spoof_threshold: float) -> float:
    """Fraction of windows that alert (the policy's verdict); NaN for no windows."""
    p_spoof = np.asarray(p_spoof, dtype=np.float64)
    return float(np.mean(StreamPolicy(spoof_threshold).are_spoof(p_spoof))) if p_spoof.size else float("nan")


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
    real_spoof = spoof_probability(real.scores)
    fake_spoof = spoof_probability(fake.scores if fake is not None else np.zeros(0))
    if at_eer:
        if fake_spoof.size == 0:
            raise ConfigError("the EER point needs fake windows (--fake)")
        threshold, eer = threshold_at_eer(real_spoof, fake_spoof)
        criterion = "eer"
        how = f"EER point of real against fake windows (EER {100 * eer:.2f} %)"
    else:
        assert target_far is not None
        threshold = threshold_for_false_alarm_rate(real_spoof, target_far)
        criterion = f"target_far={target_far:g}"
        how = f"smallest spoof threshold with at most {100 * target_far:g} % of real windows alerting"
    far = alert_rate(real_spoof, threshold)
    detection = alert_rate(fake_spoof, threshold)
    windows = (f"{WINDOW_SAMPLES}-sample windows every {hop} samples and the tail window, clips shorter "
               "than a window tiled" if hop else "first window of each clip (tiled when shorter)")
    parts = [
        how,
        f"data: {data}" if data else "",
        f"real: {len(real.utterances)} clips, {real.scores.size} windows, false alarms {100 * far:.2f} %",
        (f"fake: {len(fake.utterances)} clips, {fake_spoof.size} windows, detected {100 * detection:.2f} %"
         if fake is not None else "no fake data"),
        f"channel: {channel} (seed {seed})",
        windows,
        f"calibrated {(today or _dt.date.today()).isoformat()}",
    ]
    description = "; ".join(p for p in parts if p)
    return CalibrationResult(
        Calibration(spoof_threshold=threshold, criterion=criterion, description=description),
        far, detection, int(real.scores.size), int(fake_spoof.size),
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
