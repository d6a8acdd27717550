"""The service's HTTP side (aiohttp): /healthz, /readyz, /metrics, /info (the ingests and where they
listen) and /streams (the live streams' state, which the monitoring page loads first).

``build_app`` returns a plain ``web.Application`` that ``Service`` exposes as ``service.app``; other
features add their routes to it before the service starts (aiohttp freezes the router then)::

    service = Service(settings, scorer)
    service.app.router.add_get("/events", my_sse_handler)   # handlers reach the service via
    await service.start()                                     # request.app[SERVICE_KEY]
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from aiohttp import web

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
    require_token(request)
    registry = request.app[SERVICE_KEY].registry
    return web.json_response({"v": 1, "streams": registry.snapshot() if registry is not None else []},
                             headers={"Cache-Control": "no-cache"})


def build_app(service: Service) -> web.Application:
    app = web.Application()
    app[SERVICE_KEY] = service
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/info", info)
    app.router.add_get("/streams", streams)
    return app
