"""Ingest adapters: each turns one protocol into ``StreamRegistry.push``/``end`` calls, nothing more.

An adapter implements ``IngestAdapter``: ``start(ctx)`` binds and starts receiving, ``stop()`` stops
(draining what it already holds), ``describe()`` says where publishers reach it (for ``GET /info``,
the page and ``streamdet_ingest_info``). One that serves HTTP (WHIP) also has ``add_routes(app)``
(``ServesHttp``), called before the app starts; one with a CURVE socket (ZeroMQ) has
``curve_policy()`` (``UsesCurve``). Rejections go through ``ctx.rejects.report`` so they
are counted by reason and logged with the stream id; ``registry.push(..., ingest=adapter.name)``
records which ingest a stream came in on.

Each protocol is one module exposing an ``IngestPlugin`` (its name, its settings section, a factory
from ``Settings``); ``plugins.py`` registers the built-in ones, and ``Service`` starts every plugin
its settings enable. A plugin outside streamdet registers itself with ``plugins.register`` and
takes its settings from a ``[ingests.<name>]`` table (``STREAMDET_INGESTS__<NAME>__<FIELD>``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import zmq.asyncio
from aiohttp import web
from pydantic import BaseModel, ValidationError

from streamdet.errors import ConfigError, ProtocolError
from streamdet.service.logs import LogThrottle
from streamdet.service.metrics import ServiceMetrics

if TYPE_CHECKING:
    from streamdet.service.publisher import EventPublisher
    from streamdet.service.registry import StreamRegistry
    from streamdet.service.settings import Settings

log = logging.getLogger("streamdet.service.ingest")


class RejectReporter:
    """Counts every rejection by reason; logs it with the stream id and detail, at most once per
    second per reason across all streams (``LogThrottle``), so that a flood of bad frames, from one
    stream or from thousands, cannot flood the log."""

    LOG_INTERVAL_S = 1.0

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics
        self._log = LogThrottle(log, self.LOG_INTERVAL_S)

    def report(self, stream_id: str, error: ProtocolError, adapter: str = "") -> None:
        self._metrics.rejects.labels(error.reason).inc()
        self._log.warning(error.reason, "rejected %sframe stream=%s reason=%s: %s", f"{adapter} " if adapter else "",
                          stream_id, error.reason, error.detail or error.reason)


@dataclass
class IngestContext:
    """What the service hands an adapter at start."""

    registry: StreamRegistry
    rejects: RejectReporter
    metrics: ServiceMetrics
    zmq_context: zmq.asyncio.Context
    publisher: EventPublisher | None = None
    """The service's events: ``listen`` to send a stream's alerts back to its sender, ``publish``
    an ingest's own events (a pulled source's reconnects and gaps)."""


class IngestAdapter(Protocol):
    name: str

    async def start(self, ctx: IngestContext) -> None:
        """Bind and begin feeding ``ctx.registry``; return once ready to receive."""

    async def stop(self) -> None:
        """Stop receiving; frames already received are still pushed. Idempotent."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for operators, after ``start``: at least ``protocol`` (a short label) and
        ``endpoint`` (where publishers connect or send). Flat strings, numbers and booleans, so that
        they also fit the labels of ``streamdet_ingest_info``."""


@runtime_checkable
class ServesHttp(Protocol):
    """An adapter with HTTP routes (on the service's port, so only when ``http`` is enabled)."""

    def add_routes(self, app: web.Application) -> None:
        """Add its routes to the service's app (before it starts)."""


@runtime_checkable
class UsesCurve(Protocol):
    """An adapter with a ZeroMQ CURVE socket on the service's context (``ctx.zmq_context``), whose
    one ZAP handler the service starts before any socket binds."""

    def curve_policy(self) -> tuple[str, Path | None] | None:
        """``(ZAP domain, directory of allowed client certificates or None for any)`` when CURVE is
        on, else None."""


@dataclass(frozen=True)
class IngestPlugin:
    """One ingest protocol as the service sees it.

    ``settings_model`` is the pydantic model of its settings. A built-in names its own table of
    ``Settings`` in ``section`` (``[ingest]`` for ZeroMQ, ``[whip]``); any other plugin leaves it None
    and is configured in ``[ingests.<name>]``, validated here against ``settings_model``.
    ``create(section, settings)`` returns the adapter, or None when the settings turn it off.
    """

    name: str
    settings_model: type[BaseModel]
    create: Callable[[Any, Settings], IngestAdapter | None]
    section: str | None = None

    def section_of(self, settings: Settings) -> BaseModel:
        """This plugin's settings, from its own table or from ``ingests.<name>``."""
        if self.section is not None:
            return getattr(settings, self.section)
        try:
            return self.settings_model.model_validate(settings.ingests.get(self.name, {}))
        except ValidationError as exc:
            raise ConfigError(f"invalid settings [ingests.{self.name}]: {exc}") from exc

    def build(self, settings: Settings) -> IngestAdapter | None:
        return self.create(self.section_of(settings), settings)
