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
import hmac
import math
from typing import TYPE_CHECKING

from aiohttp import web

from streamdet.errors import JournalError

if TYPE_CHECKING:
    from streamdet.service.server import Service

SERVICE_KEY: web.AppKey[Service] = web.AppKey("streamdet_service")


def authorized(request: web.Request) -> bool:
    """Whether the request carries ``http.token`` (always, when none is set): as a bearer header,
    or as ``?token=`` for ``EventSource``, which cannot set headers."""
    token = request.app[SERVICE_KEY].settings.http.token
    if token is None:
        return True
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    given = credentials.strip() if scheme.lower() == "bearer" else request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.get_secret_value().encode())


def require_token(request: web.Request) -> None:
    if not authorized(request):
        raise web.HTTPUnauthorized(text="a valid token is required (Authorization: Bearer ..., or ?token=...)",
                                   headers={"WWW-Authenticate": 'Bearer realm="streamdet"'})


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the scorer is warm, the sockets are bound and scoring is within its budget and latency
    target. 503 before, while shutting down (``reason`` ``not_ready``), and while overloaded
    (``overloaded``, ``overload`` says why: ``over_budget`` or ``over_latency``), when a load
    balancer should send new streams elsewhere; the streams already here keep being served."""
    service = request.app[SERVICE_KEY]
    overload = service.overloaded() if service.ready else None
    ready = service.ready and overload is None
    body = {"ready": ready, "model_id": service.model_id, "active_streams": service.active_streams}
    if not ready:
        body["reason"] = "overloaded" if overload is not None else "not_ready"
        if overload is not None:
            body["overload"] = overload
    return web.json_response(body, status=200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    return web.Response(body=service.metrics.render(), headers={"Content-Type": service.metrics.content_type})


async def info(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE_KEY].info())


async def streams(request: web.Request) -> web.Response:
    """The live streams, oldest first: format, media seconds, windows, alert state, last window."""
    require_token(request)
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
    require_token(request)
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
