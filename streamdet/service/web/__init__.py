"""The monitoring page: ``GET /`` (static HTML, JS and CSS shipped in this package) and ``GET /events``.

``/events`` is a server-sent-event stream of the service's events, the very objects the ZeroMQ PUB
socket carries (``streamdet.service.events``), each as one ``data:`` line of JSON with its ``topic``
added. It opens with a ``hello`` message (model, spoof threshold, whether WHIP wants a token) and sends a
comment every 15 s so that proxies keep it open. ``?prefix=alert.`` filters topics as ZeroMQ does.
The page needs nothing from the network beyond this service: no CDN, no build step.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from streamdet.service.events import Event
from streamdet.service.http import SERVICE_KEY

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
KEEPALIVE_S = 15.0
LISTENER_QUEUE = 2_000
"""Events buffered per page; a page that falls further behind loses the oldest (score events)."""


def sse_message(data: dict[str, Any]) -> bytes:
    """One server-sent event: a single ``data:`` line (JSON has no raw newlines) and a blank line."""
    return f"data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def event_message(event: Event) -> bytes:
    return sse_message({"topic": event.topic, **asdict(event)})


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def events(request: web.Request) -> web.StreamResponse:
    """The service's events as server-sent events, until the client leaves or the service stops."""
    service = request.app[SERVICE_KEY]
    if service.publisher is None or not service.ready:
        raise web.HTTPServiceUnavailable(text="the service is not ready")
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
    app.router.add_get("/", index)
    app.router.add_get("/events", events)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)
