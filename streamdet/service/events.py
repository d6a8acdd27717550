"""The events the service publishes, version 1: multipart ``[topic, JSON]`` on the PUB socket.

- ``score.<stream_id>``: one ``score`` event per scored window, then one ``end`` event when the stream
  has ended and all its windows are scored (or dropped).
- ``alert.<stream_id>``: ``raised`` and ``cleared``, each carrying the window that caused it, and
  ``ended`` (the ``end`` event's fields) when a stream ends while raised: every raise is closed.
- ``source.<stream_id>``: ``reconnect`` and ``gap`` of a source the service pulls (``SourceEvent``).
- ``hb.``: a ``heartbeat`` every ``alerts.heartbeat_s`` seconds, on the ZeroMQ socket only (not to
  in-process listeners); subscribers subscribe to it besides their own prefixes.

Both probabilities are published: ``p_spoof = 1 - p_bonafide``; ``spoof_threshold`` is on ``p_spoof``,
and ``spoof`` is the window's verdict (``p_spoof >= spoof_threshold``, decided by
``streamdet.stream.policy``). ``speech`` is the window's speech fraction and ``gated`` says the alert
rule left it out (too little speech). ``threshold`` repeats ``spoof_threshold`` for older subscribers
(deprecated). See docs/protocol.md.

Every event carries where it sits in the node's history (``EventPublisher`` stamps them): ``node``
(the service's id), ``seq`` (the node's event counter: only grows, across restarts, since the
journal keeps it), ``stream_seq`` (the event's number within its stream, from 1) and ``event_id``
(``<node>-<seq>``: the same id whichever way the event arrives, live or replayed, so consumers
deduplicate on it). They default to empty/0 so events of older services still decode.

``epoch`` names the service start a stream's events belong to: it changes at every start (with a
journal, kept there and always larger than before). A stream that continues across a restart is a
new stream instance in the new epoch, its windows numbered from 0 again; the instance that was live
at a crash gets its ``end`` (reason ``restart``, in its old epoch) at the next start
(``streamdet.service.restart``). So ``(stream_id, epoch)`` keys an instance until its ``end``
(docs/protocol.md, "Restarts and epochs").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

EVENT_VERSION = 1
SCORE_TOPIC = "score."
ALERT_TOPIC = "alert."
HEARTBEAT_TOPIC = "hb."
SOURCE_TOPIC = "source."


@dataclass(frozen=True)
class WindowEvent:
    """``score``, ``raised`` or ``cleared``: one window's verdict."""

    event: str
    stream_id: str
    window: int
    """0-based index of the window within its stream."""
    start: float
    end: float
    """Media time of the window in seconds from the stream's first sample (16 kHz sample counts)."""
    wall_time: float
    """Unix time at publication."""
    p_spoof: float
    p_bonafide: float
    spoof_threshold: float
    """The threshold in force, on p_spoof."""
    threshold: float
    """Deprecated: the same value as ``spoof_threshold``; will be removed in the next release."""
    spoof: bool
    """This window's verdict: spoof evidence (``p_spoof >= spoof_threshold``)."""
    alert: bool
    """Whether the stream's alert is raised after this window."""
    final: bool
    """True for the stream's last window (the tail at end of stream)."""
    model_id: str
    latency_ms: float
    """From the arrival of the window's last sample at the service to publication."""
    speech: float | None = None
    """Share of the window's 32 ms frames the VAD judged speech; None when gating is off (not measured)."""
    gated: bool = False
    """Too little speech (``speech < alerts.min_speech``): the window counted neither for nor against an alert."""
    early: bool = False
    """An early window of the first decision (``[0, e)`` tiled; judged against the first spoof threshold)."""
    v: int = EVENT_VERSION
    node: str = ""
    """The publishing service's id (``events.node_id``)."""
    seq: int = 0
    """The node's sequence number: 1, 2, 3... over all its events, across restarts (0: not stamped)."""
    stream_seq: int = 0
    """The event's number within its stream: 1, 2, 3... (0: not stamped)."""
    event_id: str = ""
    """``<node>-<seq>``: unique, and the same for the live and the replayed copy of an event."""
    epoch: int = 0
    """The service start the stream's events belong to (``EventPublisher``; 0: not stamped)."""

    @property
    def topic(self) -> str:
        return (SCORE_TOPIC if self.event == "score" else ALERT_TOPIC) + self.stream_id


@dataclass(frozen=True)
class EndEvent:
    """``end``: the stream is over and every window of it has been published or dropped.
    ``ended``: the same, on the alert topic, for a stream that ended with its alert raised."""

    stream_id: str
    reason: str
    """``end`` (sender said so), ``idle_timeout``, ``shutdown``, ``unscored`` (the shutdown ran out of
    time before every window was scored) or ``restart`` (closed at the next start after a crash)."""
    duration: float
    """Media seconds received (at 16 kHz)."""
    windows: int
    dropped: int
    alert: bool
    wall_time: float
    model_id: str
    event: str = "end"
    unscored: int = 0
    """Windows cut but never scored: left when the shutdown ran out of time (reason ``unscored``)."""
    v: int = EVENT_VERSION
    node: str = ""
    """The publishing service's id (``events.node_id``)."""
    seq: int = 0
    """The node's sequence number: 1, 2, 3... over all its events, across restarts (0: not stamped)."""
    stream_seq: int = 0
    """The event's number within its stream: 1, 2, 3... (0: not stamped)."""
    event_id: str = ""
    """``<node>-<seq>``: unique, and the same for the live and the replayed copy of an event."""
    epoch: int = 0
    """The service start the stream's events belong to (``EventPublisher``; 0: not stamped)."""

    @property
    def topic(self) -> str:
        return (ALERT_TOPIC if self.event == "ended" else SCORE_TOPIC) + self.stream_id


@dataclass(frozen=True)
class Heartbeat:
    """``heartbeat``: the service is alive (topic ``hb.``, every ``interval_s`` seconds)."""

    wall_time: float
    interval_s: float
    model_id: str
    active_streams: int
    event: str = "heartbeat"
    v: int = EVENT_VERSION
    node: str = ""
    last_seq: int = 0
    """The ``seq`` of the node's last event sent before this heartbeat (0: none yet): a subscriber
    that has seen less has missed events, even when the service is quiet."""
    epoch: int = 0
    """This service start's epoch: a heartbeat with a new one says the service restarted."""

    @property
    def topic(self) -> str:
        return HEARTBEAT_TOPIC


@dataclass(frozen=True)
class SourceEvent:
    """A pulled source's state (``streamdet serve --source``), topic ``source.<stream_id>``:
    ``reconnect`` (audio flows again after ``attempts`` failed or lost connections, ``outage_s``
    after it stopped; ``reason`` the last failure's) or ``gap`` (the media clock jumped by ``gap_s``,
    ``filled_s`` of it filled with silence; negative: it went back)."""

    event: str
    stream_id: str
    wall_time: float
    reason: str = ""
    attempts: int = 0
    outage_s: float = 0.0
    gap_s: float = 0.0
    filled_s: float = 0.0
    v: int = EVENT_VERSION
    node: str = ""
    """Sequence fields, as on ``WindowEvent``: source events are journaled and replayed like the others."""
    seq: int = 0
    stream_seq: int = 0
    event_id: str = ""
    epoch: int = 0

    @property
    def topic(self) -> str:
        return SOURCE_TOPIC + self.stream_id


SOURCE_EVENTS = ("reconnect", "gap")

Event = WindowEvent | EndEvent | SourceEvent


def encode_event(event: Event | Heartbeat) -> list[bytes]:
    """The multipart message for an event: strict JSON, so a NaN raises here instead of reaching
    subscribers as a ``NaN`` literal that JSON parsers refuse (the batcher drops non-finite scores)."""
    return [event.topic.encode("utf-8"), json.dumps(asdict(event), allow_nan=False).encode("utf-8")]


def _from_json(cls: type, data: dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


def decode_event(payload: bytes | str) -> Event:
    """Parse an event's JSON (the second part); unknown keys from newer v1 services are ignored."""
    return event_from_dict(json.loads(payload))


def event_from_dict(data: dict[str, Any]) -> Event:
    """An event from its parsed JSON object (extra keys, e.g. a replay's ``topic``, are ignored)."""
    if data.get("event") in SOURCE_EVENTS:
        return _from_json(SourceEvent, data)
    return _from_json(EndEvent if data.get("event") in ("end", "ended") else WindowEvent, data)


def decode_heartbeat(payload: bytes | str) -> Heartbeat:
    return _from_json(Heartbeat, json.loads(payload))
