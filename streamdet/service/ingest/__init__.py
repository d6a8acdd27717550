"""Ingest adapters: each turns one protocol into ``StreamRegistry.push``/``end`` calls, nothing more.

An adapter implements ``IngestAdapter``: ``start(ctx)`` binds and starts receiving, ``stop()`` stops
(draining what it already holds). Add one with ``Service.add_ingest`` before ``Service.start``; an
HTTP-based adapter (WHIP) also adds its routes to ``Service.app`` at that point. Rejections go
through ``ctx.rejects.report`` so they are counted by reason and logged with the stream id.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import zmq.asyncio

from streamdet.errors import ProtocolError
from streamdet.service.metrics import ServiceMetrics

if TYPE_CHECKING:
    from streamdet.service.registry import StreamRegistry

log = logging.getLogger("streamdet.service.ingest")


class RejectReporter:
    """Counts every rejection by reason; logs it with the stream id, at most once per second per
    (stream, reason) so that a flood of bad frames cannot flood the log."""

    LOG_INTERVAL_S = 1.0

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics
        self._last_logged: dict[tuple[str, str], tuple[float, int]] = {}

    def report(self, stream_id: str, error: ProtocolError, adapter: str = "") -> None:
        self._metrics.rejects.labels(error.reason).inc()
        key = (stream_id, error.reason)
        now = time.monotonic()
        last, suppressed = self._last_logged.get(key, (float("-inf"), 0))
        if now - last < self.LOG_INTERVAL_S:
            self._last_logged[key] = (last, suppressed + 1)
            return
        more = f" (+{suppressed} more since last report)" if suppressed else ""
        log.warning("rejected %sframe stream=%s reason=%s: %s%s", f"{adapter} " if adapter else "",
                    stream_id, error.reason, error.detail or error.reason, more)
        if len(self._last_logged) > 10_000:  # forget old keys; the counters keep the totals
            self._last_logged.clear()
        self._last_logged[key] = (now, 0)


@dataclass
class IngestContext:
    """What the service hands an adapter at start."""

    registry: StreamRegistry
    rejects: RejectReporter
    metrics: ServiceMetrics
    zmq_context: zmq.asyncio.Context


class IngestAdapter(Protocol):
    name: str

    async def start(self, ctx: IngestContext) -> None:
        """Bind and begin feeding ``ctx.registry``; return once ready to receive."""

    async def stop(self) -> None:
        """Stop receiving; frames already received are still pushed. Idempotent."""
