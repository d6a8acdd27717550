"""The monitoring page: ``GET /`` (static HTML, JS and CSS shipped in this package) and ``GET /events``.

``/events`` is a server-sent-event stream of the service's events, the very objects the ZeroMQ PUB
socket carries (``streamdet.service.events``), each as one ``data:`` line of JSON with its ``topic``
added. It opens with a ``hello`` message (model, spoof threshold, whether WHIP wants a token) and sends a
comment every 15 s so that proxies keep it open. ``?prefix=alert.`` filters topics as ZeroMQ does.
The page needs nothing from the network beyond this service: no CDN, no build step.

With ``http.token`` set, ``/events`` (and ``/streams``) need it: ``Authorization: Bearer ...``, or
``?token=...`` because a browser's ``EventSource`` cannot set headers (the page reads it from its own
URL fragment, ``/#token=...``, which browsers never send, or asks for it). At most
``http.max_sse_clients`` clients at once; more get 503. Each event is serialised once, whatever the
number of clients.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from streamdet.service.events import Event
from streamdet.service.http import SERVICE_KEY, authorized

if TYPE_CHECKING:
    from streamdet.service.server import Service

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
KEEPALIVE_S = 15.0
LISTENER_QUEUE = 2_000
"""Events buffered per page; a page that falls further behind loses the oldest (score events)."""
ENCODED_CACHE = 4_096
"""Recent events kept serialised for the pages that have not sent them yet."""
SSE_CLIENTS: web.AppKey[list[int]] = web.AppKey("streamdet_sse_clients")
"""[count] of /events clients connected (a list: the app is frozen, its values are not)."""


def sse_message(data: dict[str, Any]) -> bytes:
    """One server-sent event: a single ``data:`` line (JSON has no raw newlines) and a blank line."""
    return f"data: {json.dumps(data, separators=(',', ':'), allow_nan=False)}\n\n".encode()


_encoded: OrderedDict[int, tuple[Event, bytes]] = OrderedDict()


def event_message(event: Event) -> bytes:
    """The event's SSE bytes, serialised once for every client: all clients get the same object
    from the publisher, so the first one to send it encodes it and the rest reuse the bytes (keyed
    by identity; the entry holds the event, so its id cannot be reused while cached)."""
    hit = _encoded.get(id(event))
    if hit is not None and hit[0] is event:
        return hit[1]
    data = sse_message({"topic": event.topic, **asdict(event)})
    _encoded[id(event)] = (event, data)
    if len(_encoded) > ENCODED_CACHE:
        _encoded.popitem(last=False)
    return data


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def events(request: web.Request) -> web.StreamResponse:
    """The service's events as server-sent events, until the client leaves or the service stops."""
    service = request.app[SERVICE_KEY]
    if service.publisher is None or not service.ready:
        raise web.HTTPServiceUnavailable(text="the service is not ready")
    clients = request.app[SSE_CLIENTS]
    if not authorized(request):
        service.metrics.sse_refused.labels("unauthorized").inc()
        raise web.HTTPUnauthorized(text="a valid token is required (?token=... or Authorization: Bearer ...)",
                                   headers={"WWW-Authenticate": 'Bearer realm="streamdet"'})
    if clients[0] >= service.settings.http.max_sse_clients:
        service.metrics.sse_refused.labels("max_clients").inc()
        raise web.HTTPServiceUnavailable(text=f"{clients[0]} event-stream clients already connected")
    clients[0] += 1
    service.metrics.sse_clients.set(clients[0])
    try:
        return await _stream_events(request, service)
    finally:
        clients[0] -= 1
        service.metrics.sse_clients.set(clients[0])


async def _stream_events(request: web.Request, service: Service) -> web.StreamResponse:
    prefix = request.query.get("prefix", "")
    whip = getattr(service, "whip", None)
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",  # nginx: pass each event on at once
    })
    # Listen before answering, so that nothing published after the hello can be missed.
    async with service.listen(prefix, LISTENER_QUEUE) as listener:
        await response.prepare(request)
        try:
            await response.write(sse_message({
                "event": "hello", "v": 1, "model_id": service.model_id,
                "spoof_threshold": service.policy.spoof_threshold,
                "threshold": service.policy.spoof_threshold,  # deprecated: spoof_threshold
                "whip": whip is not None, "whip_token_required": bool(whip and whip.token_required),
                "alert_rule": {"k": service.settings.alerts.k, "n": service.settings.alerts.n,
                               "m": service.settings.alerts.m, "min_speech": service.policy.min_speech},
            }))
            while True:
                try:
                    event = await listener.get(KEEPALIVE_S)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                except StopAsyncIteration:  # the service is shutting down
                    break
                await response.write(event_message(event))
        except (ConnectionResetError, ConnectionError):
            pass  # the page went away
        if listener.dropped:
            log.info("event stream: a slow page missed %d event(s)", listener.dropped)
    return response


def add_routes(app: web.Application) -> None:
    """``/``, ``/events`` and ``/static/...`` (add before the app starts)."""
    app[SSE_CLIENTS] = [0]
    app.router.add_get("/", index)
    app.router.add_get("/events", events)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
