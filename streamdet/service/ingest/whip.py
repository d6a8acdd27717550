"""WebRTC ingest over WHIP (RFC 9725): publishers POST an SDP offer, we answer, audio flows over RTP.

    POST   /whip/<stream_id>                  Content-Type: application/sdp, body = offer
           → 201 Created, body = answer (application/sdp), Location: /whip/<stream_id>/<session>
    DELETE /whip/<stream_id>/<session>        → 200: the stream ends (tail window scored, state freed)
    OPTIONS on both                           → 204 with CORS and Accept-Post headers
    PATCH  (trickle ICE, ICE restart)         → 405: not supported; the answer holds every candidate

aiortc terminates ICE, DTLS-SRTP and RTP and decodes Opus, G.722, PCMU and PCMA to int16 at the
codec's rate (Opus: 48 kHz stereo). Each decoded frame is pushed to the registry at that rate and
channel count, so mixdown and resampling to 16 kHz happen in the same edge code as for ZeroMQ.
Refusals are ``WhipError``s: HTTP status, a problem+json body, a counter
``streamdet_whip_rejects_total{reason}`` and a log line. See docs/protocol.md.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import OperationError

from streamdet.errors import WhipError
from streamdet.service.ingest import IngestContext
from streamdet.service.ingest.whip_ice import rtc_configuration, use_host_addresses
from streamdet.service.ingest.whip_sdp import MAX_SDP_BYTES, check_offer
from streamdet.service.ingest.whip_session import WhipSession
from streamdet.service.settings import WhipSettings

log = logging.getLogger(__name__)

SDP_TYPE = "application/sdp"
WHIP_STREAM_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
"""The ZeroMQ protocol's stream ids less ``/``, which would split the resource path."""

CORS_HEADERS = {
    # Browser publishers on other origins (WHIP's own recommendation); the token, not the origin,
    # is what authenticates, so any origin may try.
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, WWW-Authenticate",
}
OPTIONS_HEADERS = {
    **CORS_HEADERS,
    "Allow": "OPTIONS, POST, DELETE",
    "Access-Control-Allow-Methods": "OPTIONS, POST, DELETE",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Max-Age": "600",
    "Accept-Post": SDP_TYPE,
}


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole request body, however it arrives (several TCP segments, chunked), at most ``limit``
    bytes: one ``read(n)`` returns only what has arrived so far."""
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise WhipError(413, "oversize", f"an offer is at most {limit} bytes")
    return bytes(body)


class WhipIngest:
    """The WHIP endpoint: add its routes with ``add_routes`` before the app starts."""

    name = "whip"

    def __init__(self, settings: WhipSettings) -> None:
        self.settings = settings
        self.sessions: dict[str, WhipSession] = {}
        """Live sessions by session id (the last part of their resource URL)."""
        self._by_stream: dict[str, WhipSession] = {}
        self._ctx: IngestContext | None = None
        self._accepting = False
        self._token = settings.token.get_secret_value().encode() if settings.token else None

    @property
    def token_required(self) -> bool:
        return self._token is not None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("POST", "/whip/{stream_id}", self.post)
        app.router.add_route("OPTIONS", "/whip/{stream_id}", self.options)
        app.router.add_route("DELETE", "/whip/{stream_id}/{session_id}", self.delete)
        app.router.add_route("OPTIONS", "/whip/{stream_id}/{session_id}", self.options)
        # No PATCH route: aiohttp answers 405 with an Allow header, which is what RFC 9725 asks of
        # an endpoint without trickle ICE or ICE restarts.

    # --- the IngestAdapter protocol --------------------------------------------------------------

    async def start(self, ctx: IngestContext) -> None:
        self._ctx = ctx
        if logging.getLogger("aioice").level == logging.NOTSET:
            # aioice logs every connectivity check at INFO: six lines per publisher, for nothing.
            logging.getLogger("aioice").setLevel(logging.WARNING)
        if self.settings.ice_addresses:
            use_host_addresses(self.settings.ice_addresses)
        self._accepting = True
        log.info("WHIP ingest on POST /whip/<stream_id>%s, ICE host candidates: %s",
                 " (bearer token)" if self._token else "",
                 ", ".join(self.settings.ice_addresses) or "every interface")

    def describe(self) -> dict[str, Any]:
        return {"protocol": "whip", "endpoint": "/whip/<stream_id>",
                "auth": "bearer" if self._token else "none"}

    async def stop(self) -> None:
        self._accepting = False
        sessions = list(self.sessions.values())
        if sessions:
            log.info("closing %d WHIP peer(s)", len(sessions))
            await asyncio.gather(*(s.close("shutdown") for s in sessions))

    # --- HTTP handlers ---------------------------------------------------------------------------

    async def options(self, request: web.Request) -> web.Response:
        return web.Response(status=204, headers=OPTIONS_HEADERS)

    async def post(self, request: web.Request) -> web.Response:
        stream_id = request.match_info["stream_id"]
        try:
            offer = await self._read_offer(request, stream_id)
            session, answer = await self._negotiate(stream_id, offer, request.remote or "")
        except WhipError as exc:
            return self._refuse(stream_id, exc)
        return web.Response(status=201, text=answer, content_type=SDP_TYPE,
                            headers={**CORS_HEADERS, "Location": session.resource})

    async def delete(self, request: web.Request) -> web.Response:
        stream_id = request.match_info["stream_id"]
        try:
            self._authorize(request)
            session = self.sessions.get(request.match_info["session_id"])
            if session is None or session.stream_id != stream_id:
                raise WhipError(404, "unknown_session", "no such WHIP session (it may have ended already)")
        except WhipError as exc:
            return self._refuse(stream_id, exc)
        # Shielded: the publisher hanging up mid-request must not stop the stream half-ended.
        await asyncio.shield(session.close("end"))
        return web.Response(status=200, headers=CORS_HEADERS)

    # --- pieces ----------------------------------------------------------------------------------

    def _authorize(self, request: web.Request) -> None:
        if self._token is None:
            return
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), self._token):
            raise WhipError(401, "unauthorized", "a valid bearer token is required (Authorization: Bearer ...)")

    async def _read_offer(self, request: web.Request, stream_id: str) -> str:
        """The checks that need no WebRTC state, cheapest first; returns the offer's text."""
        if not self._accepting or self._ctx is None:
            raise WhipError(503, "shutting_down", "the service is not accepting publishers")
        self._authorize(request)
        if request.content_type.lower() != SDP_TYPE:
            raise WhipError(415, "bad_content_type",
                            f"the offer must be sent as {SDP_TYPE}, not {request.content_type or 'nothing'}")
        if not WHIP_STREAM_ID.fullmatch(stream_id):
            raise WhipError(400, "bad_stream_id", "a stream id is 1-128 characters of [A-Za-z0-9._:@-]")
        if (request.content_length or 0) > MAX_SDP_BYTES:
            raise WhipError(413, "oversize", f"an offer is at most {MAX_SDP_BYTES} bytes")
        body = await read_body(request, MAX_SDP_BYTES)
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WhipError(400, "bad_sdp", "the offer is not UTF-8 text") from exc

    async def _negotiate(self, stream_id: str, offer: str, remote: str = "") -> tuple[WhipSession, str]:
        """Check the offer, open the peer connection, answer; the stream id is reserved throughout."""
        assert self._ctx is not None
        if stream_id in self._by_stream or self._ctx.registry.get(stream_id) is not None:
            raise WhipError(409, "duplicate_stream", f"stream {stream_id} is already being published")
        if len(self.sessions) >= self.settings.max_peers:
            raise WhipError(503, "max_peers", f"{self.settings.max_peers} WHIP peers already connected")
        pending = sum(1 for s in self.sessions.values() if s.remote == remote and s.pending)
        if pending >= self.settings.max_pending_per_address:
            raise WhipError(503, "max_pending", f"{pending} offers from this address are not connected yet")
        registry = self._ctx.registry
        if registry.active >= registry.max_streams:
            raise WhipError(503, "max_streams", f"{registry.max_streams} streams already active")
        overload = registry.overloaded()
        if overload is not None:
            raise WhipError(503, "overloaded", f"scoring is over capacity ({overload}): try again later")
        summary = check_offer(offer)

        session = WhipSession(
            stream_id, secrets.token_urlsafe(16), RTCPeerConnection(rtc_configuration()), self._ctx,
            silence_timeout_s=self.settings.silence_timeout_s,
            connect_timeout_s=self.settings.connect_timeout_s, on_closed=self._forget, remote=remote)
        # Reserved before the first await, so a concurrent POST for the same id gets its 409.
        self.sessions[session.session_id] = session
        self._by_stream[stream_id] = session
        self._ctx.metrics.whip_peers.set(len(self.sessions))
        try:
            answer = await self._answer(session, offer, summary.audio_mid)
        except BaseException:
            await session.close("rejected")
            raise
        self._ctx.metrics.whip_sessions.inc()
        log.info("WHIP session %s: stream %s publishing (%s)", session.session_id[:8], stream_id,
                 ", ".join(summary.codecs))
        return session, answer

    async def _answer(self, session: WhipSession, offer: str, audio_mid: str | None) -> str:
        pc = session.pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except OperationError as exc:  # no codec in common for some section
            raise WhipError(422, "unsupported_codec", str(exc)) from exc
        except Exception as exc:
            raise WhipError(400, "bad_sdp", f"the offer was refused: {exc}"[:300]) from exc
        audio = next((t for t in pc.getTransceivers() if t.kind == "audio"
                      and (audio_mid is None or t.mid == audio_mid)), None)
        if audio is None or audio.receiver.track is None:
            raise WhipError(422, "no_audio", "the offer's audio section could not be received")
        for transceiver in pc.getTransceivers():
            if transceiver is not audio:
                # Video, or a second audio track: answered inactive so that the publisher sends
                # nothing we would have to decode and throw away.
                transceiver.direction = "inactive"
        try:
            # aiortc gathers every local candidate inside setLocalDescription: the answer is
            # complete (non-trickle), as WHIP without PATCH requires.
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            log.exception("WHIP stream %s: answering failed", session.stream_id)
            raise WhipError(500, "internal_error", f"could not answer the offer: {exc}"[:300]) from exc
        session.start_reading(audio.receiver.track)
        return pc.localDescription.sdp

    def _forget(self, session: WhipSession) -> None:
        self.sessions.pop(session.session_id, None)
        if self._by_stream.get(session.stream_id) is session:
            del self._by_stream[session.stream_id]
        if self._ctx is not None:
            self._ctx.metrics.whip_peers.set(len(self.sessions))

    def _refuse(self, stream_id: str, exc: WhipError) -> web.Response:
        if self._ctx is not None:
            self._ctx.metrics.whip_rejects.labels(exc.reason).inc()
        printable = stream_id[:64].encode("unicode_escape").decode("ascii")
        log.warning("WHIP request refused: stream=%s status=%d reason=%s: %s", printable, exc.status,
                    exc.reason, exc.detail)
        body: dict[str, Any] = {"status": exc.status, "title": exc.reason, "detail": exc.detail}
        headers = dict(CORS_HEADERS)
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="streamdet"'
        return web.json_response(body, status=exc.status, headers=headers, content_type="application/problem+json")
