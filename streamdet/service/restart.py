"""Closing, at start-up, the streams a crash left open.

A service killed mid-stream (SIGKILL, OOM, power) never publishes those streams' ``end`` events, so a
consumer would wait for them forever and a raised alert would never be closed. At the next start the
journal still holds their events: ``close_interrupted_streams`` reads the events after
``Journal.closed_through`` and gives every stream whose last instance has no ``end`` its ``end``
(reason ``restart``), and ``ended`` on the alert topic if its alert was raised, before any ingest
starts. Those events keep the stream's own ``epoch`` and continue its ``stream_seq``: they close the
instance of the earlier start. Audio that then arrives for the same stream id is a new instance in
the new epoch, numbered from window 0 (the windower's samples and the alert history died with the
process, and the outage's length in media time is unknown, so the service does not pretend to
continue them).

Without a journal there is nothing to read: such streams get no ``end`` (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

from streamdet.service.events import SOURCE_TOPIC, EndEvent
from streamdet.service.journal import Journal
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.publisher import EventPublisher

log = logging.getLogger(__name__)

RESTART_REASON = "restart"


@dataclass
class StreamTrail:
    """Where one stream stood in the journal: its newest event and what its last instance lacks."""

    last_seq: int = 0
    """The stream's newest event (any of its topics)."""
    open: bool = False
    """Its last instance has events but no ``end``."""
    raised: bool = False
    """Its alert is raised and not yet closed (by ``cleared`` or ``ended``)."""
    windows: int = 0
    """``score`` events of the last instance."""
    last_score_seq: int = 0


def interrupted_streams(journal: Journal) -> dict[str, StreamTrail]:
    """The streams whose last instance the journal leaves open or raised, by stream id."""
    trails: dict[str, StreamTrail] = {}
    for seq, topic, event in journal.stream_events(journal.closed_through):
        stream_id = topic.partition(".")[2]  # the topics' prefixes hold no dot; stream ids may
        trail = trails.setdefault(stream_id, StreamTrail())
        trail.last_seq = seq
        if topic.startswith(SOURCE_TOPIC):  # a pulled source's state: numbered with the stream, no more
            continue
        if event == "score":
            trail.open = True
            trail.windows += 1
            trail.last_score_seq = seq
        elif event in ("raised", "cleared"):
            trail.open = True
            trail.raised = event == "raised"
        elif event == "end":
            trail.open, trail.windows, trail.last_score_seq = False, 0, 0
        elif event == "ended":
            trail.raised = False
    return {sid: trail for sid, trail in trails.items() if trail.open or trail.raised}


async def close_interrupted_streams(publisher: EventPublisher, journal: Journal, model_id: str,
                                    metrics: ServiceMetrics) -> int:
    """Publish ``end`` (reason ``restart``) and, if raised, ``ended`` for every stream an earlier start
    left open, wait until they are journaled, and mark the journal closed through them. Returns how
    many streams were closed. Call after ``publisher.start`` and before any ingest starts."""
    started = time.monotonic()
    # A thread: the sinks started already run on the loop (a full 256 MiB journal takes seconds to read).
    trails = await asyncio.to_thread(interrupted_streams, journal)
    for stream_id, trail in trails.items():
        newest = journal.event(trail.last_seq)
        last_score = journal.event(trail.last_score_seq) if trail.last_score_seq else {}
        publisher.continue_stream(stream_id, int(newest.get("stream_seq", 0)))
        end = EndEvent(
            stream_id=stream_id, reason=RESTART_REASON, duration=float(last_score.get("end", 0.0)),
            windows=trail.windows, dropped=0, alert=trail.raised, wall_time=time.time(),
            model_id=str(last_score.get("model_id") or newest.get("model_id") or model_id),
            epoch=int(newest.get("epoch", 0)),
        )
        if trail.open:
            publisher.publish(end)
        if trail.raised:  # close the raise for consumers of the alert topic alone
            metrics.alerts.labels("ended").inc()
            publisher.publish(replace(end, event="ended"))
        metrics.streams_ended.labels(RESTART_REASON).inc()
    await publisher.flush()
    journal.mark_closed_through(publisher.last_sent_seq)
    if trails:
        log.warning("%d stream(s) left open by the previous run closed (end, reason restart) in %.2f s: %s",
                    len(trails), time.monotonic() - started, ", ".join(sorted(trails)[:10]))
    return len(trails)
