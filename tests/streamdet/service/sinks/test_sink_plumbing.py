"""The plumbing around the sinks: how the publisher stamps and hands over events, the ``[events]``
settings, and the outbox's bounds and row ids. (A journal's sequence across restarts and batches
after commit: ``test_publisher_journal.py``.)"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from streamdet.errors import ConfigError
from streamdet.service.events import EndEvent, Event, WindowEvent
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.publisher import EventPublisher
from streamdet.service.settings import load_settings
from streamdet.service.sinks import EventSink, build_sinks
from streamdet.service.sinks.outbox import Outbox


class RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.batches: list[list[Event]] = []

    def deliver(self, events: list[Event]) -> None:
        self.batches.append(events)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def window(stream_id: str, kind: str = "score", index: int = 0) -> WindowEvent:
    return WindowEvent(event=kind, stream_id=stream_id, window=index, start=0.0, end=4.0, wall_time=time.time(),
                       p_spoof=0.9, p_bonafide=0.1, spoof_threshold=0.5, threshold=0.5, spoof=True, alert=True,
                       final=False, model_id="m", latency_ms=1.0)


def end(stream_id: str, alert: bool, kind: str = "end") -> EndEvent:
    return EndEvent(stream_id=stream_id, reason="end", duration=4.0, windows=1, dropped=0, alert=alert,
                    wall_time=time.time(), model_id="m", event=kind)


def test_the_publisher_numbers_events_and_hands_them_to_sinks() -> None:
    publisher = EventPublisher(None, node="node-7")
    sink = RecordingSink()
    assert isinstance(sink, EventSink)
    publisher.add_sink(sink)
    for event in [window("a"), window("b"), window("a", "raised"), end("a", True), end("a", True, "ended"),
                  window("a"), end("b", False), window("b")]:
        publisher.publish(event)
    events = [e for batch in sink.batches for e in batch]
    assert [e.seq for e in events] == list(range(1, 9))
    assert {e.node for e in events} == {"node-7"}
    # Per stream from 1; ``ended`` continues its ``end``; an id starting again starts again from 1.
    assert [(e.stream_id, e.event, e.stream_seq) for e in events] == [
        ("a", "score", 1), ("b", "score", 1), ("a", "raised", 2), ("a", "end", 3), ("a", "ended", 4),
        ("a", "score", 1), ("b", "end", 2), ("b", "score", 1)]
    assert [e.event_id for e in events] == [f"node-7-{seq}" for seq in range(1, 9)]


def test_events_settings_from_toml_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[events]\nnode_id = "n1"\nredis_url = "redis://r:6379/0"\n\n[[events.webhooks]]\n'
                      'url = "https://cases.example/hook"\nsecret = "s"\nevents = ["raised"]\n')
    events = load_settings(config).events
    assert (events.node_id, events.redis_url) == ("n1", "redis://r:6379/0")
    assert events.webhooks[0].events == ["raised"] and events.webhooks[0].secret.get_secret_value() == "s"
    assert "'s'" not in repr(events)  # the secret stays out of logs
    monkeypatch.setenv("STREAMDET_EVENTS__WEBHOOKS", '[{"url": "http://127.0.0.1:9/h", "secret": "t"}]')
    assert load_settings(None).events.webhooks[0].events == ["raised", "cleared", "ended"]
    assert load_settings(None).events.node_id is None  # the journal's id (made once) when unset


def test_sinks_need_the_journal() -> None:
    with pytest.raises(ConfigError, match="need the journal"):
        load_settings(None, {"events": {"journal": False, "redis_url": "redis://r:6379/0"}})
    with pytest.raises(ConfigError, match="need the journal"):
        load_settings(None, {"events": {"journal": False, "webhooks": [{"url": "http://x/h", "secret": "s"}]}})


@pytest.mark.parametrize("webhook, message", [
    ({"url": "ftp://x/h", "secret": "s"}, "http:// or https://"),
    ({"url": "http://x/h", "secret": "s", "events": ["raise"]}, "raise"),
    ({"url": "http://x/h"}, "secret"),
])
def test_bad_webhook_settings_are_config_errors(webhook: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, {"events": {"webhooks": [webhook]}})


def test_no_sinks_unless_asked() -> None:
    assert build_sinks(load_settings(None), ServiceMetrics(), "n") == []


def test_redis_url_without_the_redis_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "redis" or m.startswith("redis.")] + ["redis"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    monkeypatch.delitem(sys.modules, "streamdet.service.sinks.redis_streams", raising=False)
    with pytest.raises(ConfigError, match=r"streamdet\[redis\]"):
        build_sinks(load_settings(None, {"events": {"redis_url": "redis://127.0.0.1:1/0"}}), ServiceMetrics(), "n")


def test_the_outbox_keeps_the_newest_rows_and_never_reuses_an_id(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite3", "s", max_rows=3)
    assert outbox.add([(f"e{i}", "alert.x", "raised", "{}") for i in range(2)]) == 0
    assert outbox.add([(f"e{i}", "alert.x", "raised", "{}") for i in range(2, 5)]) == 2  # the 2 oldest dropped
    rows = outbox.pending(10)
    assert [r.event_id for r in rows] == ["e2", "e3", "e4"]
    outbox.remove([r.id for r in rows])
    name, top = outbox.outbox_id, rows[-1].id
    outbox.close()
    reopened = Outbox(tmp_path / "o.sqlite3", "s", max_rows=3)
    reopened.add([("e5", "alert.x", "raised", "{}")])
    assert reopened.outbox_id == name and reopened.pending(10)[0].id > top  # the Redis sink relies on both
    other = Outbox(tmp_path / "o.sqlite3", "another sink")
    assert other.pending(10) == [] and other.counts() == {"pending": 0, "delivered": 0, "dead": 0}
    reopened.close()
    other.close()


@pytest.mark.parametrize("argv, message", [
    (["subscribe", "--group", "ops"], "give --redis URL"),
    (["subscribe", "--redis", "redis://127.0.0.1:1/0", "--claim-after", "5"], "--claim-after needs --group"),
    (["subscribe", "--from-start"], "give --redis URL"),
    # The journal's replay belongs to one node's ZeroMQ socket; Redis keeps its own history.
    (["subscribe", "--redis", "redis://127.0.0.1:1/0", "--since", "0", "--http", "http://127.0.0.1:9"],
     "--redis cannot be combined with --since, --http"),
    (["subscribe", "--redis", "redis://127.0.0.1:1/0", "--topic", "alert."], "combined with --topic"),
])
def test_subscribe_redis_flags_are_checked_in_one_line(argv: list[str], message: str, capsys) -> None:
    from streamdet.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


async def test_an_outbox_that_cannot_be_opened_is_a_config_error(tmp_path: Path) -> None:
    from streamdet.service.sinks.webhooks import WebhookSink

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    settings = load_settings(None, {"events": {"webhooks": [{"url": "http://127.0.0.1:9/h", "secret": "s"}]}})
    sink = WebhookSink(settings.events.webhooks[0], blocker / "outbox.sqlite3", ServiceMetrics())
    with pytest.raises(ConfigError, match="events.outbox_path"):
        await sink.start()


async def test_configured_sinks_take_the_node_id_the_journal_keeps(start_service, tmp_path: Path) -> None:
    events = {"outbox_path": str(tmp_path / "outbox.sqlite3"),
              "webhooks": [{"url": "http://127.0.0.1:9/h", "secret": "s"}]}
    service = await start_service(events=events)
    node = service.publisher.node
    assert service.publisher.journal is not None and node == service.publisher.journal.node
    assert [sink.name for sink in service.sinks] == ["webhook-0"]
    assert service.sinks[0]._owner == f"{node}/webhook-0"  # its outbox rows are the node's
