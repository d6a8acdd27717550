"""Start-up after a crash: the streams the journal leaves open get ``end`` (reason ``restart``) once,
in their own epoch, and a clean stop leaves nothing to close. (A real SIGKILL and restart:
test_serve_shutdown_restart.py.)"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from streamdet.service.events import EndEvent, SourceEvent, WindowEvent
from streamdet.service.journal import Journal, read_journal
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.publisher import EventPublisher
from streamdet.service.restart import close_interrupted_streams, interrupted_streams


def window(stream_id: str, index: int, event: str = "score", end: float = 4.0375) -> WindowEvent:
    return WindowEvent(event=event, stream_id=stream_id, window=index, start=end - 4.0375, end=end, wall_time=1e9,
                       p_spoof=0.9, p_bonafide=0.1, spoof_threshold=0.5, threshold=0.5, spoof=True,
                       alert=event != "cleared", final=False, model_id="old@1", latency_ms=1.0)


def end(stream_id: str, alert: bool) -> EndEvent:
    return EndEvent(stream_id, "end", 4.0, 1, 0, alert, 1e9, "old@1")


def open_journal(path: Path) -> Journal:
    return Journal.open(path, retention_s=1e12, retention_bytes=1 << 30)


async def crashed_run(path: Path) -> int:
    """A run that published these events and died without closing its streams; returns its epoch.

    done: ended while raised (closed); again: ended, then started again (open, 1 window);
    raised: raised at window 1 (open, raised); quiet: ended unraised (closed);
    calm: raised then cleared (open, not raised); pulled: only a source event (never open)."""
    publisher = EventPublisher(journal=open_journal(path))
    for event in [window("done", 0), window("done", 0, "raised"), end("done", True),
                  replace(end("done", True), event="ended"),
                  window("again", 0), end("again", False), window("again", 0, end=5.0),
                  window("raised", 0), window("raised", 1, end=5.0375), window("raised", 1, "raised", end=5.0375),
                  window("quiet", 0), end("quiet", False),
                  window("calm", 0), window("calm", 0, "raised"), window("calm", 1, end=5.0375),
                  window("calm", 1, "cleared", end=5.0375),
                  SourceEvent("reconnect", "pulled", 1e9, attempts=2)]:
        publisher.publish(event)
    await publisher.flush()
    epoch = publisher.epoch
    publisher.close()  # no mark_closed_through: as after SIGKILL
    return epoch


async def test_a_restart_closes_the_3_open_streams_once_in_their_epoch_and_raised_with_ended(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite"
    old_epoch = await crashed_run(path)
    before = read_journal(path, since=0).events

    journal = open_journal(path)
    assert journal.epoch > old_epoch
    trails = interrupted_streams(journal)
    assert {sid: (t.open, t.raised, t.windows) for sid, t in trails.items()} == \
        {"again": (True, False, 1), "raised": (True, True, 2), "calm": (True, False, 2)}
    publisher = EventPublisher(journal=journal)
    listener = publisher.listen()
    metrics = ServiceMetrics()
    assert await close_interrupted_streams(publisher, journal, "new@2", metrics) == 3
    closing = [await listener.get(5) for _ in range(4)]
    publisher.close()

    assert [(e.event, e.stream_id, e.reason, e.alert) for e in closing] == [
        ("end", "again", "restart", False), ("end", "raised", "restart", True),
        ("ended", "raised", "restart", True), ("end", "calm", "restart", False)]
    assert {e.epoch for e in closing} == {old_epoch}  # they close the old run's instances
    last_stream_seq = {e["stream_id"]: e["stream_seq"] for e in before}
    assert [e.stream_seq for e in closing] == [last_stream_seq["again"] + 1, last_stream_seq["raised"] + 1,
                                               last_stream_seq["raised"] + 2, last_stream_seq["calm"] + 1]
    assert [(e.windows, e.duration, e.model_id) for e in closing if e.event == "end"] == \
        [(1, 5.0, "old@1"), (2, 5.0375, "old@1"), (2, 5.0375, "old@1")]
    assert metrics.streams_ended.labels("restart")._value.get() == 3

    journal = open_journal(path)  # the next start: nothing left to close, nothing read again
    assert journal.closed_through == closing[-1].seq
    assert interrupted_streams(journal) == {}
    journal.close()


async def test_a_clean_stop_leaves_nothing_for_the_next_start_to_close(start_service, kit, push,
                                                                      tmp_path: Path) -> None:
    journal = {"journal_path": str(tmp_path / "events.sqlite")}
    service = await start_service(events=journal)
    first_epoch = service.publisher.epoch
    scores = service.listen("score.")
    await kit.send_all(push(service.ingest_endpoint), kit.frames_of("open", kit.tone(5.0), end=False))
    assert (await scores.get(30)).epoch == first_epoch
    await service.stop()  # ends "open" (reason shutdown)

    service = await start_service(events=journal)
    assert service.publisher.epoch > first_epoch
    events = read_journal(tmp_path / "events.sqlite", since=0).events
    assert [(e["event"], e["reason"]) for e in events if e["event"] == "end"] == [("end", "shutdown")]
