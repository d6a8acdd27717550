"""Streaming (field) evaluation: replay clips, or clips chained into calls, through the service's code.

Each *stream* is one clip, or (``calls_seconds``) a synthetic call: the clips of one list and one
class, in list order, concatenated until the call reaches ``calls_seconds``. Each clip first goes
through the ``channel`` (seeded per clip by :func:`offline.channels.channel_rng`, as in
``offline calibrate``). The stream is then fed to the service's own
:class:`streamdet.stream.session.StreamSession`, which cuts it into windows (early windows if the
policy has them, regular windows every ``hop`` samples, the tail window at the end) and measures each
window's speech fraction as the service does (same VAD, same samples, same blocks); the windows'
verdicts and speech gates drive the service's :class:`streamdet.stream.alerts.AlertStateMachine`
(k of the last n speech windows raise, m speech windows in a row below clear). Windows are scored in batches across streams; the alert machines then run over each
stream's scores in order, which is what the service does window by window.

The operating point is a :class:`streamdet.stream.policy.StreamPolicy`, the service's: a window is
spoof evidence when ``p_spoof = 1 - p_bonafide >= spoof_threshold``, decided by the policy alone.
Scores are kept as the scorer returns them, P(bona fide). Times are media times: a window's verdict
exists once its last sample has arrived, so an alert raised by a window happens at that window's end.

Metrics (see :func:`summarise`):

- real streams: ``false_alerts_per_hour`` = raised events / hours of real audio;
- fake clips: the first alert *for a clip* is the end of the first window that ends after the clip
  starts and leaves the alert raised (in a call, an alert still raised from the previous fake clip
  counts at the first window that ends inside the new one); ``alerted_within`` = share of fake clips
  whose first alert comes at most ``within`` seconds after the clip starts; the median time to first
  alert is over the clips that were alerted at all;
- windows: EER of real against fake window scores, and the alert rates at the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np

from offline.channels import apply_channel, channel_rng, get_channel
from offline.datasets import BONAFIDE, SPOOF, Utterance
from offline.metrics import compute_eer, det_curve
from streamdet.audio import SAMPLE_RATE, load_audio
from streamdet.errors import AudioDecodeError
from streamdet.scoring.base import Scorer
from streamdet.stream.policy import StreamPolicy, spoof_probability
from streamdet.stream.session import StreamSession
from streamdet.stream.windower import Window

# ---------------------------------------------------------------------------------------------
# Streams


@dataclass(frozen=True)
class ClipSpan:
    utterance: Utterance
    start: int
    end: int
    """Samples of the stream the clip occupies: [start, end)."""


@dataclass
class StreamResult:
    """One replayed stream: its clips, its windows' spans and scores, and the alert state after each."""

    name: str
    condition: str
    label: int
    clips: list[ClipSpan]
    samples: int
    starts: np.ndarray
    ends: np.ndarray
    scores: np.ndarray
    speech: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Each window's speech fraction (NaN when the policy does not gate)."""
    early: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """Which windows are early windows of the first decision."""
    spoof: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """Each window's verdict (the policy's), set by :meth:`run_alerts`."""
    gated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """Windows the alert rule left out (too little speech), set by :meth:`run_alerts`."""
    raised_after: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    raised_events: int = 0

    @property
    def seconds(self) -> float:
        return self.samples / SAMPLE_RATE

    def run_alerts(self, policy: StreamPolicy) -> None:
        """Feed the window verdicts, in order, to a fresh alert state machine (the service's)."""
        machine = policy.alert_machine()
        early = self.early if self.early.size == self.scores.size else np.zeros(self.scores.size, bool)
        speech = self.speech if self.speech.size == self.scores.size else np.full(self.scores.size, np.nan)
        self.spoof = policy.are_spoof(spoof_probability(self.scores), early)
        self.gated = policy.are_gated(speech)
        raised = np.zeros(self.scores.size, dtype=bool)
        events = 0
        for i, (spoof, gated) in enumerate(zip(self.spoof, self.gated, strict=True)):
            if machine.update(bool(spoof), bool(gated)) == "raised":
                events += 1
            raised[i] = machine.raised
        self.raised_after, self.raised_events = raised, events

    def clip_first_alerts(self) -> list[float | None]:
        """Seconds from each clip's start to its first alert (None: never alerted)."""
        out: list[float | None] = []
        for clip in self.clips:
            after = np.flatnonzero((self.ends > clip.start) & self.raised_after)
            out.append(None if after.size == 0 else float(self.ends[after[0]] - clip.start) / SAMPLE_RATE)
        return out


def _load(utterance: Utterance, channel: str, seed: int) -> np.ndarray | AudioDecodeError:
    try:
        return apply_channel(channel, load_audio(utterance.path), channel_rng(seed, utterance.utt_id))
    except AudioDecodeError as exc:
        return exc


def _stream_groups(utterances: Sequence[Utterance], calls: bool) -> list[list[Utterance]]:
    """Clips in replay order: one group per class (calls) or the list as is (one stream per clip)."""
    if not calls:
        return [list(utterances)]
    return [[u for u in utterances if u.label == label] for label in (BONAFIDE, SPOOF)]


class _BatchScorer:
    """Collects windows of any stream and scores them ``batch_size`` at a time."""

    def __init__(self, scorer: Scorer, batch_size: int) -> None:
        self.scorer, self.batch_size = scorer, batch_size
        self._queue: list[tuple[list[float], Window]] = []

    def add(self, sink: list[float], windows: list[Window]) -> None:
        """Queue windows whose scores are appended, in order, to ``sink``."""
        self._queue.extend((sink, w) for w in windows)
        while len(self._queue) >= self.batch_size:
            self._score(self._queue[: self.batch_size])
            self._queue = self._queue[self.batch_size:]

    def flush(self) -> None:
        if self._queue:
            self._score(self._queue)
            self._queue = []

    def _score(self, items: list[tuple[list[float], Window]]) -> None:
        scores = self.scorer.score_batch(np.stack([w.samples for _, w in items]))
        for (sink, _), score in zip(items, scores, strict=True):
            sink.append(float(score))


class _StreamBuilder:
    """A stream being replayed: the service's windower over it, and its windows' spans and scores."""

    def __init__(self, name: str, condition: str, label: int, policy: StreamPolicy, batcher: _BatchScorer) -> None:
        self.clips: list[ClipSpan] = []
        self.samples = 0
        self.name, self.condition, self.label = name, condition, label
        self.session = StreamSession(name, SAMPLE_RATE, 1, policy)
        self.batcher = batcher
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.early: list[bool] = []
        self.speech: list[float] = []
        self.scores: list[float] = []

    def push(self, utterance: Utterance, audio: np.ndarray) -> None:
        self.clips.append(ClipSpan(utterance, self.samples, self.samples + audio.shape[0]))
        self.samples += audio.shape[0]
        self._queue(self.session.feed(audio, None, 0.0))

    def finish(self) -> None:
        self._queue(self.session.finish("end"))

    def _queue(self, windows: list[Window]) -> None:
        self.starts.extend(w.start for w in windows)
        self.ends.extend(w.end for w in windows)
        self.early.extend(w.early for w in windows)
        for window in windows:  # in window order, as the service's scoring thread does
            speech = self.session.speech_of(window)
            self.speech.append(np.nan if speech is None else speech)
        self.batcher.add(self.scores, windows)

    def result(self) -> StreamResult:
        return StreamResult(self.name, self.condition, self.label, self.clips, self.samples,
                            np.asarray(self.starts, np.int64), np.asarray(self.ends, np.int64),
                            np.asarray(self.scores, np.float64), np.asarray(self.speech, np.float64),
                            np.asarray(self.early, bool))


def replay(
    scorer: Scorer,
    condition: str,
    utterances: Sequence[Utterance],
    policy: StreamPolicy,
    *,
    channel: str = "wideband",
    seed: int = 0,
    calls_seconds: float | None = None,
    batch_size: int = 32,
    workers: int = 2,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[StreamResult], dict[str, str]]:
    """Replay one list; returns its streams (alerts run) and the unreadable files (path → reason)."""
    get_channel(channel)  # an unknown name fails before any audio is read
    batcher = _BatchScorer(scorer, batch_size)
    builders: list[_StreamBuilder] = []
    failures: dict[str, str] = {}
    call_samples = None if calls_seconds is None else max(1, int(round(calls_seconds * SAMPLE_RATE)))

    def loaded(group: list[Utterance]) -> Iterator[tuple[Utterance, np.ndarray | AudioDecodeError]]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(group), 16):
                chunk = group[start : start + 16]
                yield from zip(chunk, pool.map(lambda u: _load(u, channel, seed), chunk), strict=True)

    for group in _stream_groups(utterances, call_samples is not None):
        current: _StreamBuilder | None = None
        for utterance, audio in loaded(group):
            if on_progress:
                on_progress(1)
            if isinstance(audio, AudioDecodeError):
                failures[str(utterance.path)] = audio.reason
                continue
            if current is None:
                kind = "real" if utterance.label == BONAFIDE else "fake"
                name = utterance.utt_id if call_samples is None else f"{condition}:{kind}-call{len(builders):03d}"
                current = _StreamBuilder(name, condition, utterance.label, policy, batcher)
                builders.append(current)
            current.push(utterance, audio)
            if call_samples is None or current.samples >= call_samples:
                current.finish()
                current = None
        if current is not None:
            current.finish()
    batcher.flush()
    streams = [b.result() for b in builders]
    for stream in streams:
        stream.run_alerts(policy)
    return streams, failures


# ---------------------------------------------------------------------------------------------
# Metrics


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _spoof_rate(policy: StreamPolicy, p_bonafide: np.ndarray) -> float | None:
    """Share of windows that are spoof evidence (None for no windows)."""
    return float(np.mean(policy.are_spoof(spoof_probability(p_bonafide)))) if p_bonafide.size else None


def _gated_rate(streams: Sequence[StreamResult]) -> float | None:
    """Share of windows the speech gate left out of the alert rule (None for no windows)."""
    gated = np.concatenate([s.gated for s in streams]) if streams else np.zeros(0, bool)
    return float(np.mean(gated)) if gated.size else None


def summarise(streams: Sequence[StreamResult], policy: StreamPolicy, within: float = 5.0) -> dict[str, object]:
    """The field table's numbers for a set of streams (any mix of real and fake)."""
    real = [s for s in streams if s.label == BONAFIDE]
    fake = [s for s in streams if s.label == SPOOF]
    out: dict[str, object] = {}
    real_scores = np.concatenate([s.scores for s in real]) if real else np.zeros(0)
    fake_scores = np.concatenate([s.scores for s in fake]) if fake else np.zeros(0)
    if real:
        hours = sum(s.seconds for s in real) / 3600
        events = sum(s.raised_events for s in real)
        out["real"] = {
            "streams": len(real),
            "clips": sum(len(s.clips) for s in real),
            "hours": hours,
            "windows": int(real_scores.size),
            "window_alert_rate": _spoof_rate(policy, real_scores),
            "windows_gated": _gated_rate(real),
            "alerts_raised": events,
            "false_alerts_per_hour": events / hours if hours > 0 else None,
            "streams_alerted": sum(s.raised_events > 0 for s in real),
            "time_under_alert": (float(np.mean(np.concatenate([s.raised_after for s in real])))
                                 if real_scores.size else None),
        }
    if fake:
        firsts = [t for s in fake for t in s.clip_first_alerts()]
        alerted = [t for t in firsts if t is not None]
        stream_firsts = [s.clip_first_alerts()[0] for s in fake if s.clips]
        out["fake"] = {
            "streams": len(fake),
            "clips": len(firsts),
            "hours": sum(s.seconds for s in fake) / 3600,
            "windows": int(fake_scores.size),
            "window_detection_rate": _spoof_rate(policy, fake_scores),
            "windows_gated": _gated_rate(fake),
            "within_s": within,
            "alerted_within": sum(t <= within + 1e-9 for t in alerted) / len(firsts) if firsts else None,
            "alerted": len(alerted) / len(firsts) if firsts else None,
            "median_time_to_first_alert_s": _median(alerted),
            "streams_alerted": sum(t is not None for t in stream_firsts),
            "median_stream_first_alert_s": _median([t for t in stream_firsts if t is not None]),
        }
    if real_scores.size and fake_scores.size:
        eer, _ = compute_eer(real_scores, fake_scores)
        out["window_eer"] = 100.0 * eer
    return out


# ---------------------------------------------------------------------------------------------
# Outputs


def write_windows(path: Path, streams: Sequence[StreamResult]) -> None:
    """One line per window: condition, stream, label, start/end (s), P(bona fide), verdict, alert state,
    speech fraction (nan: not measured), gated, early."""
    with Path(path).open("w", encoding="utf-8") as handle:
        handle.write("condition\tstream\tlabel\tstart_s\tend_s\tp_bonafide\tspoof\talert\tspeech\tgated\tearly\n")
        for s in streams:
            label = "real" if s.label == BONAFIDE else "fake"
            for start, end, score, spoof, raised, speech, gated, early in zip(
                    s.starts, s.ends, s.scores, s.spoof, s.raised_after, s.speech, s.gated, s.early, strict=True):
                handle.write(f"{s.condition}\t{s.name}\t{label}\t{start / SAMPLE_RATE:.4f}\t{end / SAMPLE_RATE:.4f}\t"
                             f"{score:.6g}\t{int(spoof)}\t{int(raised)}\t{speech:.3f}\t{int(gated)}\t{int(early)}\n")


def plot_det(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str,
             policy: StreamPolicy | None = None) -> Path:
    """DET curves (normal-deviate axes) of window scores: name → (real P(bona fide), fake P(bona fide)).

    A marker shows each curve's operating point under ``policy`` (its spoof threshold).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    normal = NormalDist()
    lo, hi = 1e-3, 0.95  # beyond 50 %: the released CMs alert on most real windows

    def deviate(rates: np.ndarray) -> np.ndarray:
        return np.array([normal.inv_cdf(min(max(r, lo / 2), 1 - lo / 2)) for r in rates])

    figure = Figure(figsize=(5.0, 5.0), dpi=150)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for name, (real, fake) in curves.items():
        if real.size == 0 or fake.size == 0:
            continue
        frr, far, _ = det_curve(real, fake)
        eer, _ = compute_eer(real, fake)
        (line,) = axes.plot(deviate(far), deviate(frr), label=f"{name} (EER {100 * eer:.1f} %)")
        if policy is not None:
            far_t, frr_t = 1.0 - _spoof_rate(policy, fake), _spoof_rate(policy, real)
            axes.plot(deviate(np.array([far_t])), deviate(np.array([frr_t])), "o", color=line.get_color())
    ticks = [0.001, 0.01, 0.05, 0.2, 0.5, 0.9]
    axes.set_xticks(deviate(np.array(ticks)), [f"{100 * t:g}" for t in ticks])
    axes.set_yticks(deviate(np.array(ticks)), [f"{100 * t:g}" for t in ticks])
    axes.set_xlim(deviate(np.array([lo]))[0], deviate(np.array([hi]))[0])
    axes.set_ylim(deviate(np.array([lo]))[0], deviate(np.array([hi]))[0])
    axes.set_xlabel("fake windows missed (%)")
    axes.set_ylabel("real windows alerting (%)")
    axes.set_title(title, fontsize=9)
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def format_table(report: dict[str, object]) -> str:
    """The field table as text: one row per condition and one for everything pooled."""
    rows = [("set", "real h", "FA/h", "windows alerting", "fake clips", f"alerted <= {report['within_s']:g} s",
             "alerted", "median 1st alert", "window EER")]

    def fmt(value: object, pattern: str) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else pattern.format(value)

    for name, m in [*report["conditions"].items(), ("all", report["all"])]:  # type: ignore[union-attr]
        r, f = m.get("real", {}), m.get("fake", {})
        rows.append((
            name,
            fmt(r.get("hours"), "{:.3f}"),
            fmt(r.get("false_alerts_per_hour"), "{:.1f}"),
            fmt(r.get("window_alert_rate"), "{:.2%}"),
            fmt(f.get("clips"), "{}"),
            fmt(f.get("alerted_within"), "{:.1%}"),
            fmt(f.get("alerted"), "{:.1%}"),
            fmt(f.get("median_time_to_first_alert_s"), "{:.2f} s"),
            fmt(m.get("window_eer"), "{:.2f} %"),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)
