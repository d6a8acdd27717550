"""The service's HTTP side (aiohttp): /healthz, /readyz, /metrics, /info (the ingests and where they
listen), /streams (the live streams' state, which the monitoring page loads first) and
/events/journal (replay from the event journal, docs/protocol.md "Replay").

``build_app`` returns a plain ``web.Application`` that ``Service`` exposes as ``service.app``; other
features add their routes to it before the service starts (aiohttp freezes the router then)::

    service = Service(settings, scorer)
    service.app.router.add_get("/events", my_sse_handler)   # handlers reach the service via
    await service.start()                                     # request.app[SERVICE_KEY]
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

from aiohttp import web

from streamdet.errors import JournalError

if TYPE_CHECKING:
    from streamdet.service.server import Service

SERVICE_KEY: web.AppKey[Service] = web.AppKey("streamdet_service")


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the scorer is warm and the sockets are bound (503 before, and while shutting down)."""
    service = request.app[SERVICE_KEY]
    body = {"ready": service.ready, "model_id": service.model_id, "active_streams": service.active_streams}
    return web.json_response(body, status=200 if service.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    return web.Response(body=service.metrics.render(), headers={"Content-Type": service.metrics.content_type})


async def info(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE_KEY].info())


async def streams(request: web.Request) -> web.Response:
    """The live streams, oldest first: format, media seconds, windows, alert state, last window."""
    registry = request.app[SERVICE_KEY].registry
    return web.json_response({"v": 1, "streams": registry.snapshot() if registry is not None else []},
                             headers={"Cache-Control": "no-cache"})


REPLAY_LIMIT = 1000
"""Events per replay page unless ``limit`` asks for fewer (or more, up to ``REPLAY_MAX``)."""
REPLAY_MAX = 10_000


def _problem(status: int, title: str, detail: str) -> web.Response:
    return web.json_response({"status": status, "title": title, "detail": detail}, status=status,
                             content_type="application/problem+json")


async def journal(request: web.Request) -> web.Response:
    """``?since=SEQ`` or ``?since_time=UNIX`` [``&limit=N``] [``&prefix=P``...]: journaled events, oldest first."""
    publisher = request.app[SERVICE_KEY].publisher
    if publisher is None or publisher.journal is None:
        return _problem(404, "no_journal", "this service keeps no event journal (events.journal = false)")
    query = request.query
    try:
        since = int(query["since"]) if "since" in query else None
        since_time = float(query["since_time"]) if "since_time" in query else None
        limit = int(query.get("limit", REPLAY_LIMIT))
    except ValueError:
        return _problem(400, "bad_query", "since and limit are integers, since_time a number")
    if (since is None) == (since_time is None):
        return _problem(400, "bad_query", "give exactly one of since (a seq) and since_time (Unix seconds)")
    if (since is not None and since < 0) or (since_time is not None and not math.isfinite(since_time)) \
            or not 1 <= limit <= REPLAY_MAX:
        return _problem(400, "bad_query", f"since >= 0, since_time finite, 1 <= limit <= {REPLAY_MAX}")
    try:
        page = await asyncio.to_thread(publisher.journal.read, since=since, since_time=since_time, limit=limit,
                                       prefixes=query.getall("prefix", []))
    except JournalError as exc:
        return _problem(500, "journal_error", str(exc))
    return web.json_response({"v": 1, "node": page.node, "first_seq": page.first_seq, "last_seq": page.last_seq,
                              "through": page.through, "more": page.more, "events": page.events},
                             headers={"Cache-Control": "no-cache"})


def build_app(service: Service) -> web.Application:
    app = web.Application()
    app[SERVICE_KEY] = service
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/info", info)
    app.router.add_get("/streams", streams)
    app.router.add_get("/events/journal", journal)
    return app
