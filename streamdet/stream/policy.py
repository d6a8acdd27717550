"""The operating point of a stream: one verdict, one threshold language, one window geometry.

Everything that decides whether a window is spoof evidence, or where a stream's windows lie, is
here, and ``streamdet serve``, ``offline evaluate`` and ``offline calibrate`` all use it:

- **The verdict.** Scorers return P(bona fide) (the released CMs' score); the one conversion is
  :func:`spoof_probability`, ``p_spoof = 1 - p_bonafide`` in float64, and the one comparison is
  ``p_spoof >= spoof_threshold`` (:meth:`StreamPolicy.is_spoof`, :meth:`StreamPolicy.are_spoof` for
  arrays). Every threshold in flags, settings, manifests, events and logs is a spoof probability.
- **Where the threshold comes from** (:func:`resolve_spoof_threshold`): a configured value, else the
  CM manifest's calibration, else the paper's 0.5.
- **Window geometry** (:class:`WindowGeometry`): regular windows every ``hop`` samples once a window
  is full, and a tail window at the end of a stream, exactly as the service's windower emits them.
- **The alert rule**: raise when ``k`` of the last ``n`` windows are spoof evidence, clear after
  ``m`` in a row that are not (2, 3, 3 by default).
- **Speech gating**: a window whose speech fraction (``streamdet.stream.speech``) is below
  ``min_speech`` is *gated*: it counts neither as evidence nor as a clear vote, so silence, tones,
  noise and hold music can neither raise nor clear an alert (0 turns gating off).
- **The shortest stream scored** (``min_tail``): a stream that ends before a full window gives one
  tail window tiled to a full window, but only when it has at least ``min_tail`` samples (1 s by
  default); a shorter one ends with no window. A tiled window costs as much to score as any other,
  so without this floor one sample and an end mark would buy a full window of scoring.
- **The first decision**: optional early windows ``[0, e)`` for ``e`` in ``early`` (e.g. 2 and 3 s,
  tiled to a full window as the paper pads short clips) are judged against the stricter
  ``first_spoof_threshold`` and feed the same k-of-n rule, so a call can alert before the
  ``window + (k - 1) hop`` that full windows need.

Why P(spoof): an alert is about spoofing, and one space means one comparison everywhere; two
spaces (``p_bonafide < t`` offline, ``1 - p_bonafide >= 1 - t`` in the service) disagree in floating
point near the threshold. The cost: P(bona fide) below about 1e-16 all becomes P(spoof) = 1.0.
"""

from __future__ import annotations

import logging
import math
import tomllib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES
from streamdet.errors import ConfigError
from streamdet.stream.alerts import AlertStateMachine

if TYPE_CHECKING:
    from streamdet.manifest import Calibration

log = logging.getLogger(__name__)

PAPER_SPOOF_THRESHOLD = 0.5
"""The paper's operating point: the argmax of the two logits, P(spoof) 0.5."""

NEVER_SPOOF_THRESHOLD = math.nextafter(1.0, math.inf)
"""The largest threshold allowed, just above 1: no window is spoof evidence, not even P(spoof) = 1.
Calibration needs it when the real windows it must not alert on score exactly 1."""

DEFAULT_HOP = SAMPLE_RATE
"""16,000 samples (1 s) between window starts."""

DEFAULT_K, DEFAULT_N, DEFAULT_M = 2, 3, 3
"""Raise when 2 of the last 3 windows are spoof evidence; clear after 3 in a row that are not."""

DEFAULT_MIN_SPEECH = 0.3
"""A window with less than 30 % of its 32 ms frames judged speech does not count (gated)."""

DEFAULT_MIN_TAIL = SAMPLE_RATE
"""16,000 samples (1 s): a stream that ends with less gives no window (:class:`WindowGeometry`)."""

DEFAULT_EARLY: tuple[int, ...] = ()
"""Early windows (their ends, in samples): none by default (docs/field-accuracy.md, "First decision")."""


def spoof_probability(p_bonafide: Any) -> Any:
    """P(spoof) = 1 - P(bona fide), in float64: a float for a scalar, an array for an array.

    The only place the two probabilities are converted (scores, and old bona fide thresholds).
    """
    if np.ndim(p_bonafide) == 0 and not isinstance(p_bonafide, np.ndarray):
        return 1.0 - float(p_bonafide)
    return 1.0 - np.asarray(p_bonafide, dtype=np.float64)


def check_spoof_threshold(value: float, what: str = "spoof threshold") -> float:
    value = float(value)
    if not 0.0 <= value <= NEVER_SPOOF_THRESHOLD:  # also refuses NaN
        raise ConfigError(f"{what} must be a spoof probability in [0, 1], got {value}")
    return value


def warn_deprecated(message: str) -> None:
    """A deprecated name or field was used: a DeprecationWarning for code, a log line for operators."""
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    log.warning("deprecated: %s", message)


def resolve_spoof_threshold(configured: float | None, calibration: Calibration | None,
                            configured_by: str = "settings") -> tuple[float, str]:
    """The spoof threshold and where it came from: configured > CM manifest calibration > paper (0.5)."""
    if configured is not None:
        return check_spoof_threshold(configured), configured_by
    if calibration is not None:
        return check_spoof_threshold(calibration.spoof_threshold), f"manifest: {calibration.criterion}"
    return PAPER_SPOOF_THRESHOLD, "paper default"


def manifest_calibration(contract: object) -> Calibration | None:
    """The operating point in a scorer's manifest (``scorer.contract``): a CM's, or an engine's CM's."""
    from streamdet.manifest import Calibration

    calibration = getattr(contract, "calibration", None)
    if calibration is None:
        calibration = getattr(getattr(contract, "cm", None), "calibration", None)
    return calibration if isinstance(calibration, Calibration) else None


@dataclass(frozen=True)
class WindowGeometry:
    """Where a stream's windows lie, in 16 kHz samples.

    - Early windows ``[0, e)`` for each ``e`` in ``early`` that the stream reaches, first, each tiled
      to ``window`` samples (``streamdet.audio.fix_length``).
    - Regular windows ``[i hop, i hop + window)`` for every i whose window fits in the stream.
    - At end of stream a tail window ``[total - window, total)``, unless the last window already
      ended there; a stream shorter than a window gives one window ``[0, total)``, tiled to
      ``window`` samples, if it has at least ``min_tail`` samples (none otherwise).
    """

    window: int = WINDOW_SAMPLES
    hop: int = DEFAULT_HOP
    early: tuple[int, ...] = DEFAULT_EARLY
    min_tail: int = 0
    """The fewest samples a stream shorter than a window needs for its (tiled) tail window; the
    service's policy sets :data:`DEFAULT_MIN_TAIL`, 0 keeps every tail (a clip's own windows)."""

    def __post_init__(self) -> None:
        if self.window < 1 or self.hop < 1:
            raise ConfigError(f"window and hop must be positive, got window={self.window} hop={self.hop}")
        if self.min_tail < 0:
            raise ConfigError(f"the shortest tail must be >= 0 samples, got {self.min_tail}")
        early = tuple(self.early)
        if any(not 0 < e < self.window for e in early) or list(early) != sorted(set(early)):
            raise ConfigError(f"early window ends must increase strictly within (0, {self.window}), got {early}")
        object.__setattr__(self, "early", early)

    def early_spans(self, total: int) -> list[tuple[int, int]]:
        return [(0, e) for e in self.early if e <= total]

    def regular_count(self, total: int) -> int:
        return 0 if total < self.window else (total - self.window) // self.hop + 1

    def tail_span(self, total: int, last_end: int) -> tuple[int, int] | None:
        """The tail window of a stream of ``total`` samples whose last window ended at ``last_end``."""
        if total <= 0 or total == last_end:
            return None
        if total < self.window:
            return (0, total) if total >= self.min_tail else None
        return (total - self.window, total)

    def spans(self, total: int) -> list[tuple[int, int]]:
        """(start, end) of every window of a stream of ``total`` samples, early and tail included."""
        spans = self.early_spans(total)
        spans += [(i * self.hop, i * self.hop + self.window) for i in range(self.regular_count(total))]
        tail = self.tail_span(total, spans[-1][1] if spans else 0)
        return spans + ([tail] if tail is not None else [])

    def offsets(self, total: int) -> list[int]:
        """Start sample of every window (a short stream's one tiled window starts at 0)."""
        return [start for start, _ in self.spans(total)]

    def count(self, total: int) -> int:
        """How many windows a stream of ``total`` samples gives, early and tail included."""
        early = self.early_spans(total)
        regular = self.regular_count(total)
        last_end = (regular - 1) * self.hop + self.window if regular else (early[-1][1] if early else 0)
        return len(early) + regular + (self.tail_span(total, last_end) is not None)


@dataclass(frozen=True)
class StreamPolicy:
    """The operating point a stream runs with; the service and ``offline`` build the same one."""

    spoof_threshold: float = PAPER_SPOOF_THRESHOLD
    threshold_source: str = "paper default"
    hop: int = DEFAULT_HOP
    k: int = DEFAULT_K
    n: int = DEFAULT_N
    m: int = DEFAULT_M
    window: int = WINDOW_SAMPLES
    min_speech: float = DEFAULT_MIN_SPEECH
    """Windows with a smaller speech fraction are gated (neither evidence nor clear vote); 0 = off."""
    early: tuple[int, ...] = DEFAULT_EARLY
    """Ends (samples) of the early windows ``[0, e)`` of the first decision; empty = none."""
    first_spoof_threshold: float | None = None
    """The stricter threshold of the early windows; None = the spoof threshold."""
    min_tail: int = DEFAULT_MIN_TAIL
    """Samples a stream shorter than a window needs for its tiled tail window (:class:`WindowGeometry`)."""

    def __post_init__(self) -> None:
        check_spoof_threshold(self.spoof_threshold)
        if self.first_spoof_threshold is not None:
            check_spoof_threshold(self.first_spoof_threshold, "first spoof threshold")
        if not 1 <= self.k <= self.n or self.m < 1:
            raise ConfigError(f"need 1 <= k <= n and m >= 1, got k={self.k} n={self.n} m={self.m}")
        if not 0.0 <= self.min_speech <= 1.0:  # also refuses NaN
            raise ConfigError(f"min speech must be a fraction in [0, 1], got {self.min_speech}")
        geometry = WindowGeometry(self.window, self.hop, self.early, self.min_tail)  # validates
        object.__setattr__(self, "early", geometry.early)

    @classmethod
    def resolve(cls, configured: float | None, calibration: Calibration | None, *,
                configured_by: str = "settings", **rule: Any) -> StreamPolicy:
        """A policy with its threshold resolved (:func:`resolve_spoof_threshold`); ``rule``: hop, k, n, m,
        window, min_speech, early, first_spoof_threshold, min_tail."""
        threshold, source = resolve_spoof_threshold(configured, calibration, configured_by)
        return cls(threshold, source, **rule)

    # --- the verdict -----------------------------------------------------------------------------

    def threshold_for(self, early: bool = False) -> float:
        """The threshold a window is judged against: the stricter first one for early windows."""
        if early and self.first_spoof_threshold is not None:
            return self.first_spoof_threshold
        return self.spoof_threshold

    def is_spoof(self, p_spoof: float, early: bool = False) -> bool:
        """One window's verdict: spoof evidence when P(spoof) >= its threshold (:meth:`threshold_for`)."""
        return p_spoof >= self.threshold_for(early)

    def are_spoof(self, p_spoof: npt.ArrayLike, early: npt.ArrayLike | None = None) -> np.ndarray:
        """:meth:`is_spoof` of every element (float64), for offline evaluation and calibration."""
        p_spoof = np.asarray(p_spoof, dtype=np.float64)
        if early is None:
            return p_spoof >= self.spoof_threshold
        thresholds = np.where(np.asarray(early, dtype=bool), self.threshold_for(True), self.spoof_threshold)
        return p_spoof >= thresholds

    def is_gated(self, speech: float) -> bool:
        """Whether a window with this speech fraction is left out of the alert rule (too little speech)."""
        return speech < self.min_speech

    def are_gated(self, speech: npt.ArrayLike) -> np.ndarray:
        """:meth:`is_gated` of every element; NaN (not measured) is never gated."""
        return np.asarray(speech, dtype=np.float64) < self.min_speech

    def judge(self, p_spoof: float, speech: float | None, early: bool = False) -> tuple[bool, bool]:
        """(spoof, gated) of one window: its verdict, and whether the alert rule leaves it out.
        ``speech`` None means not measured (gating off): never gated."""
        return self.is_spoof(p_spoof, early), speech is not None and self.is_gated(speech)

    # --- geometry and the alert rule -------------------------------------------------------------

    @property
    def geometry(self) -> WindowGeometry:
        return WindowGeometry(self.window, self.hop, self.early, self.min_tail)

    @property
    def earliest_alert_s(self) -> float:
        """The first moment a stream can raise an alert: the end of its k-th window (early ones included)."""
        ends = [*self.early, *(self.window + i * self.hop for i in range(self.k))]
        return ends[self.k - 1] / SAMPLE_RATE

    def alert_machine(self) -> AlertStateMachine:
        return AlertStateMachine(self.k, self.n, self.m)

    def describe(self) -> str:
        """E.g. ``alert when p_spoof >= 0.9993941235588863 (manifest: target_far=0.005)``."""
        return f"alert when p_spoof >= {self.spoof_threshold!r} ({self.threshold_source})"

    def describe_rule(self) -> str:
        rule = (f"{self.k} of {self.n} windows every {self.hop / SAMPLE_RATE:g} s raise, "
                f"{self.m} in a row below clear")
        if self.min_speech > 0:
            rule += f", windows under {self.min_speech:g} speech gated"
        if self.early:
            ends = ", ".join(f"{e / SAMPLE_RATE:g}" for e in self.early)
            rule += f", early windows at {ends} s judged at p_spoof >= {self.threshold_for(True)!r}"
        return rule


def early_ends(seconds: str) -> list[int]:
    """Early window ends from a flag's ``"2,3"`` (seconds) to samples; ``""`` or ``"none"``: no early
    windows. Raises ValueError (argparse turns it into a usage error)."""
    if seconds.strip().lower() in ("", "none"):
        return []
    return [int(round(float(part) * SAMPLE_RATE)) for part in seconds.split(",")]


def read_serve_config(path: str | Path) -> dict[str, Any]:
    """The operating point in a ``streamdet serve`` TOML file: its ``[alerts]`` threshold, k/n/m, speech
    gate and first threshold and its ``[window]`` hop, early windows and shortest tail, as keyword arguments of :class:`StreamPolicy` (``spoof_threshold`` is None
    when the file sets none). Only these keys are read; the service validates the rest."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such settings file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    alerts, window = data.get("alerts", {}), data.get("window", {})
    out: dict[str, Any] = {"spoof_threshold": alerts.get("spoof_threshold")}
    if out["spoof_threshold"] is None and alerts.get("threshold") is not None:
        warn_deprecated(f"{path}: alerts.threshold is deprecated, use alerts.spoof_threshold (same value)")
        out["spoof_threshold"] = alerts["threshold"]
    for key in ("k", "n", "m"):
        if key in alerts:
            out[key] = int(alerts[key])
    for key in ("min_speech", "first_spoof_threshold"):
        if key in alerts:
            out[key] = float(alerts[key])
    if "hop_samples" in window:
        out["hop"] = int(window["hop_samples"])
    if "early_samples" in window:
        out["early"] = tuple(int(e) for e in window["early_samples"])
    if "min_tail_samples" in window:
        out["min_tail"] = int(window["min_tail_samples"])
    return out
