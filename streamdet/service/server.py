"""``Service``: the lifecycle of one streaming service, in one place.

    service = Service(settings, scorer)       # build: the ingests settings enable, their routes on service.app
    await service.start()                     # warm the scorer, bind sockets, start tasks → ready
    ...                                       # serve (ingest, batcher, idle reaper run as tasks)
    await service.stop()                      # graceful: stop ingest, end every stream, score and
                                              # publish what is pending, close sockets

Past ``limits.shutdown_timeout_s`` the windows still waiting are given up on: their streams' ``end``
events (reason ``unscored``) are still published and journaled before the sockets close, and
``unscored_at_shutdown`` says how many windows were lost (``streamdet serve`` then exits 3).

``run(stop)`` does all three around an ``asyncio.Event``; the serve command sets it on SIGTERM/SIGINT.
The service depends only on the ``Scorer`` interface, never on a particular backend, and only on
the ``IngestAdapter`` interface, never on a particular protocol (``streamdet.service.ingest.plugins``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import numpy as np
import zmq
import zmq.asyncio
from aiohttp import web

from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES
from streamdet.errors import ConfigError
from streamdet.scoring.base import Scorer
from streamdet.service.batcher import Batcher
from streamdet.service.curve import make_server, require_auth_off_loopback, start_authenticator
from streamdet.service.http import build_app
from streamdet.service.ingest import IngestAdapter, IngestContext, RejectReporter, ServesHttp, UsesCurve
from streamdet.service.ingest.plugins import build_ingests, split_ingests
from streamdet.service.journal import Journal, default_journal_path
from streamdet.service.memory import HeapTrimmer
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.publisher import EventListener, EventPublisher
from streamdet.service.registry import StreamRegistry
from streamdet.service.restart import close_interrupted_streams
from streamdet.service.settings import Settings
from streamdet.service.sinks import EventSink, build_sinks
from streamdet.stream.policy import StreamPolicy, manifest_calibration
from streamdet.stream.speech import speech_fraction

log = logging.getLogger(__name__)


class Service:
    def __init__(self, settings: Settings, scorer: Scorer) -> None:
        scorer.contract.check_compatible(SAMPLE_RATE, WINDOW_SAMPLES)
        self.settings = settings
        self.scorer = scorer
        self.model_id = scorer.model_id
        a = settings.alerts
        self.policy = StreamPolicy.resolve(
            a.spoof_threshold, manifest_calibration(scorer.contract),
            hop=settings.window.hop_samples, k=a.k, n=a.n, m=a.m, min_speech=a.min_speech,
            early=tuple(settings.window.early_samples), first_spoof_threshold=a.first_spoof_threshold,
            min_tail=settings.window.min_tail_samples)
        """The operating point every stream runs with (threshold resolved: settings > manifest > 0.5)."""
        self.metrics = ServiceMetrics()
        self.app: web.Application = build_app(self)
        """The HTTP app: add routes before ``start``."""
        if settings.http.enabled and settings.http.page:
            from streamdet.service.web import add_routes

            add_routes(self.app)
        self.sinks: list[EventSink] = []
        """Further destinations of the events (``streamdet.service.sinks``), after the journal: ``add_sink``."""
        self.ingests: dict[str, IngestAdapter] = {}
        """The ingest adapters, by name, in start order."""
        # Before anything starts: an open event socket is refused here, in one line.
        require_auth_off_loopback(settings.alerts.endpoint, settings.alerts.curve_secret_key,
                                  settings.alerts.allow_unauthenticated, "alerts", "--events-curve-key",
                                  "read every stream's scores and alerts")
        for adapter in build_ingests(settings):
            self.add_ingest(adapter)
        self.ready = False
        self.events_endpoint = settings.alerts.endpoint
        self.http_port: int | None = None
        self._context = zmq.asyncio.Context()
        self._auth = None
        self._runner: web.AppRunner | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._heartbeats: asyncio.Task[None] | None = None
        self._trimmer: asyncio.Task[None] | None = None
        self._stopped = False
        self.unscored_at_shutdown: int | None = None
        """Set when ``stop`` ran out of time (``limits.shutdown_timeout_s``): the windows given up on."""
        self.publisher: EventPublisher | None = None
        self.batcher: Batcher | None = None
        self.registry: StreamRegistry | None = None

    @property
    def active_streams(self) -> int:
        return self.registry.active if self.registry else 0

    def overloaded(self) -> str | None:
        """Why scoring is over capacity (``over_budget``, ``over_latency``: the batcher's shedding
        bounds), or None. While it is, ``/readyz`` answers 503 and new streams are refused."""
        return self.batcher.overloaded() if self.batcher is not None else None

    def add_ingest(self, adapter: IngestAdapter) -> None:
        """Add an ingest adapter, and its HTTP routes if it has any (before ``start``)."""
        if adapter.name in self.ingests:
            raise ConfigError(f"two ingests named {adapter.name!r}")
        if isinstance(adapter, ServesHttp):
            adapter.add_routes(self.app)
        self.ingests[adapter.name] = adapter

    def add_sink(self, sink: EventSink) -> None:
        """Hand every committed batch of events to ``sink`` too (before ``start``)."""
        self.sinks.append(sink)

    def info(self) -> dict[str, Any]:
        """What ``GET /info`` answers: the model, the event endpoint and every ingest's description."""
        return {"v": 1, "model_id": self.model_id, "events_endpoint": self.events_endpoint,
                "ingests": [{"name": name, **adapter.describe()} for name, adapter in self.ingests.items()]}

    # Conveniences for tests and embedding code: the built-in ingests, looked up by name.

    @property
    def zmq_ingest(self) -> Any:
        return self.ingests.get("zmq")

    @property
    def whip(self) -> Any:
        """The WHIP adapter (None when WHIP or HTTP is off)."""
        return self.ingests.get("whip")

    @property
    def ingest_endpoint(self) -> str | None:
        """The ZeroMQ ingest's bound endpoint (None when it is off)."""
        return self.zmq_ingest.endpoint if self.zmq_ingest is not None else None

    def listen(self, prefix: str = "", maxsize: int | None = None) -> EventListener:
        """An in-process listener for events whose topic starts with ``prefix`` (after ``start``)."""
        if self.publisher is None:
            raise RuntimeError("the service is not started")
        return self.publisher.listen(prefix, maxsize)

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        log.info("model %s, threshold: %s", self.model_id, self.policy.describe())
        max_batch = min(s.scoring.max_batch or self.scorer.max_batch, self.scorer.max_batch)
        await asyncio.to_thread(self._warm_up, max_batch)
        self._start_curve()
        journal = self._open_journal()  # before binding: a journal in use stops the start cleanly
        self.publisher = EventPublisher(self._bind_publisher(), s.alerts.listener_queue,
                                        journal=journal, node=s.events.node_id, on_commit=self._observe_commit)
        # The configured sinks (Redis Streams, webhooks) know the node only now: the journal keeps it.
        for sink in build_sinks(s, self.metrics, self.publisher.node):
            self.add_sink(sink)
        for sink in self.sinks:
            self.publisher.add_sink(sink)
        await self.publisher.start()
        if journal is not None:  # before any ingest: the streams a crash left open get their end first
            await close_interrupted_streams(self.publisher, journal, self.model_id, self.metrics)
        self.registry = StreamRegistry(
            self.policy, self._submit, self.publisher, self.metrics,
            model_id=self.model_id, max_streams=s.limits.max_streams, idle_timeout_s=s.limits.idle_timeout_s,
            split_ingests=split_ingests(s), max_streams_per_sender=s.limits.max_streams_per_sender,
            max_seq_gap=s.limits.max_seq_gap, audio_timeout_s=s.limits.audio_timeout_s,
            overloaded=self.overloaded, score_events=s.events.score_events,
        )
        self.batcher = Batcher(
            self.scorer, self.registry.on_result, self.registry.on_drop, max_batch=max_batch,
            max_wait_s=s.scoring.max_wait_ms / 1000.0, max_pending_per_stream=s.scoring.max_pending_per_stream,
            max_pending_windows=s.scoring.max_pending_windows, max_pending_bytes=s.scoring.max_pending_bytes,
            max_latency_s=s.scoring.max_latency_s, on_batch=self._observe_batch, measure=self.registry.measure_speech,
            lanes=s.scoring.lanes or 1, max_in_flight=s.scoring.batches_in_flight or 1,
        )
        self.metrics.track_queue_depth(lambda: self.batcher.pending if self.batcher else 0)
        self.metrics.overloaded.set_function(lambda: self.overloaded() is not None)
        self.batcher.start()
        ctx = IngestContext(self.registry, RejectReporter(self.metrics), self.metrics, self._context, self.publisher)
        for name, adapter in self.ingests.items():
            await adapter.start(ctx)
            description = adapter.describe()
            self.metrics.ingest_info.labels(name).info({k: str(v) for k, v in description.items()})
            log.info("ingest %s: %s", name, " ".join(f"{k}={v}" for k, v in description.items()))
        self._reaper = asyncio.create_task(self.registry.run_idle_reaper(), name="streamdet-idle-reaper")
        self._heartbeats = asyncio.create_task(self.publisher.run_heartbeats(
            s.alerts.heartbeat_s, self.model_id, lambda: self.active_streams), name="streamdet-heartbeats")
        self._trimmer = asyncio.create_task(HeapTrimmer().run(), name="streamdet-heap-trimmer")
        if s.http.enabled:
            await self._start_http()
        self.ready = True
        self.metrics.ready.set(1)
        # Scripts parse this line (``ingest`` is the ZeroMQ endpoint they send to): keep its format.
        log.info("ready: ingest %s, events %s, http %s", self.ingest_endpoint or "off", self.events_endpoint,
                 f"http://{s.http.host}:{self.http_port}" if self.http_port is not None else "off")

    async def stop(self) -> None:
        """Graceful shutdown; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.ready = False
        self.metrics.ready.set(0)
        log.info("shutting down: ending %d stream(s)", self.active_streams)
        for adapter in self.ingests.values():
            await adapter.stop()
        for task in (self._reaper, self._heartbeats, self._trimmer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.registry is not None:
            self.registry.end_all("shutdown")
            self.registry.accepting = False
        if self.batcher is not None:
            try:
                await asyncio.wait_for(self.batcher.close(), self.settings.limits.shutdown_timeout_s)
            except TimeoutError:
                log.error("pending windows not scored within %.1f s; giving up on them",
                          self.settings.limits.shutdown_timeout_s)
                # Every stream still waiting gets its ``end`` (reason ``unscored``), published below.
                assert self.registry is not None
                await self.batcher.abandon()
                self.unscored_at_shutdown = self.registry.abandon()
        if self.publisher is not None:
            await self.publisher.drain()
            # Every stream has its end (the registry exists only once a crash's leftovers were closed
            # too): the next start has nothing to read.
            if self.publisher.journal is not None and self.registry is not None:
                self.publisher.journal.mark_closed_through(self.publisher.last_sent_seq)
            self.publisher.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._auth is not None:
            self._auth.stop()
        # term() waits for the PUB socket's linger (last events reach subscribers): not on the loop.
        await asyncio.to_thread(self._context.term)
        self.scorer.close()
        log.info("stopped")

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until ``stop`` is set, stop gracefully."""
        try:
            await self.start()
            await stop.wait()
        finally:
            await self.stop()

    # --- pieces ----------------------------------------------------------------------------------

    def _warm_up(self, max_batch: int) -> None:
        # The first call at a new batch size builds kernels (oneDNN, cuDNN): pay for the common
        # sizes now rather than on live windows.
        self.scorer.warmup()
        for size in sorted({2, max_batch} - {1}):
            if size <= max_batch:
                self.scorer.score_batch(np.zeros((size, WINDOW_SAMPLES), dtype=np.float32))
        if self.policy.min_speech > 0:  # load the VAD now, not on the first live window
            speech_fraction(np.zeros(SAMPLE_RATE, dtype=np.float32))

    def _submit(self, job) -> None:  # the registry is built before the batcher it feeds
        assert self.batcher is not None
        self.batcher.submit(job)

    def _observe_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.batch_seconds.observe(seconds)

    def _observe_commit(self, size: int, seconds: float, stored: bool) -> None:
        self.metrics.journal_batch.observe(size)
        self.metrics.journal_delay.observe(seconds)
        if not stored:
            self.metrics.journal_failures.inc()

    def _start_curve(self) -> None:
        s = self.settings
        policies = {}
        for adapter in self.ingests.values():
            policy = adapter.curve_policy() if isinstance(adapter, UsesCurve) else None
            if policy is not None:
                policies[policy[0]] = policy[1]
        if s.alerts.curve_secret_key is not None:
            policies["alerts"] = s.alerts.curve_clients_dir
        if policies:
            self._auth = start_authenticator(self._context, policies)

    def _open_journal(self) -> Journal | None:
        e = self.settings.events
        if not e.journal:
            return None
        return Journal.open(e.journal_path or default_journal_path(), retention_s=e.retention_s,
                            retention_bytes=e.retention_bytes, synchronous=e.journal_synchronous,
                            node_id=e.node_id)

    def _bind_publisher(self) -> zmq.Socket:
        s = self.settings.alerts
        # Publishing never waits (PUB drops for slow subscribers), so a plain synchronous socket on
        # the same ZeroMQ context is enough and can be called from the batcher's result callback.
        sock = zmq.Context.shadow(self._context.underlying).socket(zmq.PUB)
        sock.sndhwm = s.send_hwm
        sock.linger = 1000
        if s.curve_secret_key is not None:
            make_server(sock, s.curve_secret_key, domain="alerts")
        try:
            sock.bind(s.endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise ConfigError(f"cannot bind event socket to {s.endpoint}: {exc}") from exc
        self.events_endpoint = sock.last_endpoint.decode()
        return sock

    async def _start_http(self) -> None:
        s = self.settings.http
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, s.host, s.port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot serve HTTP on {s.host}:{s.port}: {exc}") from exc
        self.http_port = self._runner.addresses[0][1]  # the real port when 0 asked for any
