"""One demo run: the service in this process, the bundled clips streamed into it, a report out.

The service is the real one (``streamdet.service.server.Service``) on loopback: ZeroMQ ingest and
events on free ports, HTTP (the monitoring page) on a free port. The clips go in through the public
client (``streamdet.client.Sender``, real time, all at once) and the events come back through a
ZeroMQ ``Subscriber``, exactly as they would reach any other program.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from streamdet.client import Sender, Subscriber
from streamdet.demo.report import StreamRecord, write_report
from streamdet.demo.samples import SAMPLES, DemoSample
from streamdet.scoring.base import Scorer
from streamdet.service.events import ALERT_TOPIC, SCORE_TOPIC, EndEvent, Event, WindowEvent
from streamdet.service.server import Service
from streamdet.service.settings import Settings, load_settings

LOOPBACK_ANY_PORT = "tcp://127.0.0.1:*"
END_GRACE_S = 30.0
"""How long after the longest clip has been sent the demo waits for every stream's ``end`` event."""

Write = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    out_dir: Path
    engine: str | None = None
    """A CM or engine to score with instead of the shipped CM."""
    device: str | None = None
    keep: bool = False
    """Leave the service (and its page) running after the report, until ``stop`` is set."""
    http_port: int = 0


def demo_settings(options: DemoOptions) -> Settings:
    """The service's settings (environment and defaults) with every socket on loopback, free ports,
    and scoring resolved as ``streamdet serve`` resolves it."""
    from streamdet.commands.serve import resolve_scoring

    overrides: dict[str, Any] = {
        "ingest": {"endpoint": LOOPBACK_ANY_PORT},
        "alerts": {"endpoint": LOOPBACK_ANY_PORT},
        "http": {"enabled": True, "host": "127.0.0.1", "port": options.http_port},
        # A demo's events need no replay, and it must not contend with a `streamdet serve` for its journal.
        "events": {"journal": False},
    }
    scoring = {key: value for key, value in (("engine", options.engine), ("device", options.device))
               if value is not None}
    if scoring:
        overrides["scoring"] = scoring
    settings = load_settings(None, overrides)
    return settings.model_copy(update={"scoring": resolve_scoring(settings.scoring)})


def open_demo_scorer(settings: Settings) -> Scorer:
    """The configured engine, else the CM shipped in the package; as ``streamdet serve`` opens it."""
    from streamdet.pretrained import default_cm_dir
    from streamdet.scoring import open_scorer

    scoring = settings.scoring
    return open_scorer(scoring.engine or str(default_cm_dir()), device=scoring.device,
                       w2v2_source=scoring.w2v2_source, max_batch=scoring.max_batch,
                       threads=scoring.threads or None, workers=scoring.workers)


async def run_demo(options: DemoOptions, stop: asyncio.Event, write: Write = print,
                   samples: Sequence[DemoSample] = SAMPLES) -> int:
    """Run the demo; 0 when every stream was scored to its end and the report written, 1 when a
    stream did not finish in time, 130 when ``stop`` was set before the report."""
    settings = demo_settings(options)
    scorer = await asyncio.to_thread(open_demo_scorer, settings)
    try:
        service = Service(settings, scorer)
    except BaseException:
        scorer.close()
        raise
    try:
        await service.start()
        page_url = f"http://127.0.0.1:{service.http_port}/" if service.http_port is not None else None
        policy = service.policy
        threshold = policy.spoof_threshold
        alert_rule = f"{policy.describe_rule()} (windows of 4.04 s)"
        write(f"streamdet demo: model {service.model_id}, spoof evidence when p_spoof >= {threshold:.4f} "
              f"({policy.threshold_source})")
        write(f"  alert rule: {alert_rule}")
        write(f"  monitoring page {page_url}   ingest {service.ingest_endpoint}   events {service.events_endpoint}")
        write(f"  streaming {len(samples)} clips in real time, concurrently: "
              + ", ".join(f"{s.stream_id} ({s.label})" for s in samples))
        records = await stream_samples(service, samples, stop, write)
        if stop.is_set():
            write("interrupted: no report written")
            return 130
        unfinished = [r.sample.stream_id for r in records if r.end is None]
        report = await asyncio.to_thread(write_report, options.out_dir, records, model_id=service.model_id,
                                         spoof_threshold=threshold, alert_rule=alert_rule, page_url=page_url)
        write_summary(records, report, write)
        if unfinished:
            write(f"error: no end of stream within {END_GRACE_S:.0f} s after sending for: {', '.join(unfinished)}")
            return 1
        if options.keep:
            write(f"the service keeps running: page {page_url}; send more audio with "
                  f"`streamdet send FILE --endpoint {service.ingest_endpoint} --realtime`; Ctrl-C to stop")
            await stop.wait()
        return 0
    finally:
        await service.stop()


async def stream_samples(service: Service, samples: Sequence[DemoSample], stop: asyncio.Event,
                         write: Write) -> list[StreamRecord]:
    """Send every sample in real time at once; collect (and print) their events until each has ended."""
    records = {sample.stream_id: StreamRecord(sample) for sample in samples}
    longest = max(sf.info(str(sample.path)).duration for sample in samples)
    loop = asyncio.get_running_loop()
    async with Subscriber(service.events_endpoint, topics=[SCORE_TOPIC, ALERT_TOPIC]) as subscriber:
        await subscriber.wait_connected()
        async with Sender(service.ingest_endpoint) as sender:
            sends = [asyncio.create_task(sender.send_file(sample.path, sample.stream_id, speed=1.0))
                     for sample in samples]
            deadline = loop.time() + longest + END_GRACE_S
            waiting = set(records)
            try:
                while waiting and not stop.is_set() and loop.time() < deadline:
                    try:
                        event = await subscriber.recv(timeout=min(0.5, max(0.01, deadline - loop.time())))
                    except TimeoutError:
                        continue
                    record = records.get(event.stream_id)
                    if record is None:
                        continue
                    _add(record, event)
                    write(describe(event))
                    if isinstance(event, EndEvent) and event.event == "end":
                        waiting.discard(event.stream_id)
                if not stop.is_set():
                    await asyncio.gather(*sends)  # re-raises a failed send
            finally:
                for task in sends:
                    task.cancel()
    return list(records.values())


def _add(record: StreamRecord, event: Event) -> None:
    if isinstance(event, EndEvent):
        if event.event == "end":  # not "ended", its copy on the alert topic
            record.end = event
    elif event.event == "score":
        record.scores.append(event)
    else:
        record.alerts.append(event)


def describe(event: Event) -> str:
    """One readable line per event: media time (end of the window), stream, what happened."""
    if isinstance(event, EndEvent) and event.event != "end":
        return f"{event.duration:7.2f} s  {event.stream_id:<24}  {event.event:<7}  the stream ended with its alert up"
    if isinstance(event, EndEvent):
        state = "alert up" if event.alert else "no alert up"
        return (f"{event.duration:7.2f} s  {event.stream_id:<24}  end      {event.windows} windows, "
                f"{event.dropped} dropped, {state}")
    assert isinstance(event, WindowEvent)
    if event.event == "score":
        evidence = "spoof evidence" if event.spoof else ""
        return (f"{event.end:7.2f} s  {event.stream_id:<24}  score    p_spoof {event.p_spoof:.4f}  "
                f"{evidence:<14}  ({event.latency_ms:.0f} ms)")
    banner = ">>> ALERT" if event.event == "raised" else "<<< alert over"
    return f"{event.end:7.2f} s  {event.stream_id:<24}  {event.event:<7}  p_spoof {event.p_spoof:.4f}  {banner}"


def write_summary(records: Sequence[StreamRecord], report: Path, write: Write) -> None:
    write("")
    write("summary (really → verdict):")
    for record in records:
        raised = record.raised
        first = f"first alert at {raised[0].end:.2f} s" if raised else "no alert"
        top = max((event.p_spoof for event in record.scores), default=float("nan"))
        mark = "correct" if record.correct else "WRONG"
        write(f"  {record.sample.stream_id:<24}  {record.sample.label:<9} → {record.verdict:<8}  {first:<24}"
              f"  max p_spoof {top:.4f}  {mark}")
    write(f"report: {report} (report.json and one score-timeline PNG per stream in {report.parent})")
