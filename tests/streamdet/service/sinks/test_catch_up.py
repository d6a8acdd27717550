"""A sink catches up from the journal: events a killed process had journaled but not yet written to the
sink's outbox are handed over again at the next start, once each; a new sink starts from the present."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from streamdet.service.events import WindowEvent
from streamdet.service.journal import Journal
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.publisher import EventPublisher
from streamdet.service.sinks.base import OutboxSink


class ListSink(OutboxSink):
    """An outbox sink whose far end is a list: it records the ``seq`` of every event it sends."""

    def __init__(self, outbox: Path, only_alerts: bool = False) -> None:
        super().__init__("list", outbox, ServiceMetrics(), node="n")
        self.only_alerts = only_alerts
        self.sent: list[int] = []

    def accepts(self, event) -> bool:  # type: ignore[no-untyped-def]
        return not self.only_alerts or event.event != "score"

    async def _send_pending(self) -> float | None:
        assert self.outbox is not None
        rows = await asyncio.to_thread(self.outbox.pending, 100)
        for row in rows:
            self.sent.append(json.loads(row.body)["seq"])
            await asyncio.to_thread(self.outbox.mark_delivered, row.id)
        return 0 if rows else None


def event(kind: str = "score") -> WindowEvent:
    return WindowEvent(event=kind, stream_id="a", window=0, start=0.0, end=4.0375, wall_time=1e9, p_spoof=0.9,
                       p_bonafide=0.1, spoof_threshold=0.5, threshold=0.5, spoof=True, alert=True, final=False,
                       model_id="m", latency_ms=1.0)


async def run(journal: Path, sink: ListSink | None, kinds: list[str], *, lose_handover: bool = False) -> None:
    """One service life: start, publish ``kinds``, stop cleanly — or, with ``lose_handover``, as a
    process killed after the journal's commits and before the sink's outbox writes."""
    publisher = EventPublisher(journal=Journal.open(journal, retention_s=1e12, retention_bytes=1 << 30))
    if sink is not None:
        publisher.add_sink(sink)
    await publisher.start()
    if lose_handover and sink is not None:
        sink.deliver = lambda events: None  # type: ignore[method-assign]
    for kind in kinds:
        publisher.publish(event(kind))
    await publisher.drain()
    publisher.close()


async def test_events_journaled_but_never_handed_over_are_sent_after_restart_once(tmp_path: Path) -> None:
    journal, outbox = tmp_path / "events.sqlite", tmp_path / "outbox.sqlite"
    await run(journal, None, ["score", "score"])                       # seq 1-2: before the sink existed
    first = ListSink(outbox)
    await run(journal, first, ["score", "raised", "score"])            # seq 3-5
    assert first.sent == [3, 4, 5]                                     # a new sink starts from the present
    lost = ListSink(outbox)
    await run(journal, lost, ["score", "cleared"], lose_handover=True)  # seq 6-7: journaled, never taken
    assert lost.sent == []
    after = ListSink(outbox)
    await run(journal, after, ["score"])                               # seq 8
    assert after.sent == [6, 7, 8]                                     # caught up, nothing sent twice


async def test_a_filtering_sink_catches_up_only_what_it_takes(tmp_path: Path) -> None:
    journal, outbox = tmp_path / "events.sqlite", tmp_path / "outbox.sqlite"
    first = ListSink(outbox, only_alerts=True)
    await run(journal, first, ["raised", "score", "score"])
    assert first.sent == [1]
    lost = ListSink(outbox, only_alerts=True)
    await run(journal, lost, ["score", "cleared", "score"], lose_handover=True)
    after = ListSink(outbox, only_alerts=True)
    await run(journal, after, [])
    # the scores after seq 1 were seen (the mark moved past them), so only the lost alert comes back
    assert after.sent == [5]
