"""``Service``: the lifecycle of one streaming service, in one place.

    service = Service(settings, scorer)       # build; add routes to service.app, adapters with add_ingest
    await service.start()                     # warm the scorer, bind sockets, start tasks → ready
    ...                                       # serve (ingest, batcher, idle reaper run as tasks)
    await service.stop()                      # graceful: stop ingest, end every stream, score and
                                              # publish what is pending, close sockets

``run(stop)`` does all three around an ``asyncio.Event``; the serve command sets it on SIGTERM/SIGINT.
The service depends only on the ``Scorer`` interface, never on a particular backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import numpy as np
import zmq
import zmq.asyncio
from aiohttp import web

from streamdet.audio import SAMPLE_RATE, WINDOW_SAMPLES
from streamdet.errors import ConfigError
from streamdet.scoring.base import Scorer
from streamdet.service.batcher import Batcher
from streamdet.service.curve import make_server, start_authenticator
from streamdet.service.http import build_app
from streamdet.service.ingest import IngestAdapter, IngestContext, RejectReporter
from streamdet.service.ingest.zmq_pull import ZmqIngest
from streamdet.service.metrics import ServiceMetrics
from streamdet.service.publisher import EventListener, EventPublisher
from streamdet.service.registry import StreamRegistry
from streamdet.service.settings import Settings
from streamdet.stream.policy import StreamPolicy, manifest_calibration

if TYPE_CHECKING:
    from streamdet.service.ingest.whip import WhipIngest

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
            hop=settings.window.hop_samples, k=a.k, n=a.n, m=a.m)
        """The operating point every stream runs with (threshold resolved: settings > manifest > 0.5)."""
        self.metrics = ServiceMetrics()
        self.app: web.Application = build_app(self)
        """The HTTP app: add routes before ``start``."""
        self.zmq_ingest = ZmqIngest(settings.ingest, settings.limits.max_frame_bytes)
        self._ingests: list[IngestAdapter] = [self.zmq_ingest]
        self.whip = self._add_http_features(settings)
        """The WHIP adapter (None when WHIP or HTTP is off)."""
        self.ready = False
        self.events_endpoint = settings.alerts.endpoint
        self.http_port: int | None = None
        self._context = zmq.asyncio.Context()
        self._auth = None
        self._runner: web.AppRunner | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._stopped = False
        self.publisher: EventPublisher | None = None
        self.batcher: Batcher | None = None
        self.registry: StreamRegistry | None = None

    @property
    def ingest_endpoint(self) -> str:
        return self.zmq_ingest.endpoint

    @property
    def active_streams(self) -> int:
        return self.registry.active if self.registry else 0

    def add_ingest(self, adapter: IngestAdapter) -> None:
        """Add an ingest adapter (before ``start``)."""
        self._ingests.append(adapter)

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
        self.publisher = EventPublisher(self._bind_publisher(), s.alerts.listener_queue)
        self.registry = StreamRegistry(
            self.policy, self._submit, self.publisher, self.metrics,
            model_id=self.model_id, max_streams=s.limits.max_streams, idle_timeout_s=s.limits.idle_timeout_s,
        )
        self.batcher = Batcher(
            self.scorer, self.registry.on_result, self.registry.on_drop, max_batch=max_batch,
            max_wait_s=s.scoring.max_wait_ms / 1000.0, max_pending_per_stream=s.scoring.max_pending_per_stream,
            on_batch=self._observe_batch,
        )
        self.metrics.track_queue_depth(lambda: self.batcher.pending if self.batcher else 0)
        self.batcher.start()
        ctx = IngestContext(self.registry, RejectReporter(self.metrics), self.metrics, self._context)
        for adapter in self._ingests:
            await adapter.start(ctx)
        self._reaper = asyncio.create_task(self.registry.run_idle_reaper(), name="streamdet-idle-reaper")
        if s.http.enabled:
            await self._start_http()
        self.ready = True
        self.metrics.ready.set(1)
        log.info("ready: ingest %s, events %s, http %s", self.ingest_endpoint, self.events_endpoint,
                 f"http://{s.http.host}:{self.http_port}" if self.http_port is not None else "off")

    async def stop(self) -> None:
        """Graceful shutdown; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.ready = False
        self.metrics.ready.set(0)
        log.info("shutting down: ending %d stream(s)", self.active_streams)
        for adapter in self._ingests:
            await adapter.stop()
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        if self.registry is not None:
            self.registry.end_all("shutdown")
            self.registry.accepting = False
        if self.batcher is not None:
            try:
                await asyncio.wait_for(self.batcher.close(), self.settings.limits.shutdown_timeout_s)
            except TimeoutError:
                log.error("pending windows not scored within %.0f s; giving up on them",
                          self.settings.limits.shutdown_timeout_s)
        if self.publisher is not None:
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

    def _add_http_features(self, settings: Settings) -> WhipIngest | None:
        """WHIP ingest and the monitoring page: routes on ``self.app``, so only with HTTP on.
        Imported here so that a service without them never loads aiortc."""
        if not settings.http.enabled:
            return None
        if settings.http.page:
            from streamdet.service.web import add_routes

            add_routes(self.app)
        if not settings.whip.enabled:
            return None
        from streamdet.service.ingest.whip import WhipIngest

        whip = WhipIngest(settings.whip)
        whip.add_routes(self.app)
        self._ingests.append(whip)
        return whip

    def _warm_up(self, max_batch: int) -> None:
        # The first call at a new batch size builds kernels (oneDNN, cuDNN): pay for the common
        # sizes now rather than on live windows.
        self.scorer.warmup()
        for size in sorted({2, max_batch} - {1}):
            if size <= max_batch:
                self.scorer.score_batch(np.zeros((size, WINDOW_SAMPLES), dtype=np.float32))

    def _submit(self, job) -> None:  # the registry is built before the batcher it feeds
        assert self.batcher is not None
        self.batcher.submit(job)

    def _observe_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.batch_seconds.observe(seconds)

    def _start_curve(self) -> None:
        s = self.settings
        policies = {}
        if s.ingest.curve_secret_key is not None:
            policies["ingest"] = s.ingest.curve_clients_dir
        if s.alerts.curve_secret_key is not None:
            policies["alerts"] = s.alerts.curve_clients_dir
        if policies:
            self._auth = start_authenticator(self._context, policies)

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
