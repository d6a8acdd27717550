"""Load over the media-stream WebSocket ingest (``streamdet bench --ws-streams N``): each stream is
one call in the Twilio Media Streams dialect (``connected``, ``start``, 20 ms ``media`` messages of
base64 μ-law at 8 kHz on the inbound track, ``stop``), paced in real time from one loop, as
``load._pace`` paces the ZeroMQ streams.

The stream's 16 kHz audio is resampled to 8 kHz and μ-law coded before the step starts. Frame ``k``
carries 8 kHz samples ``[160 k, 160 (k + 1))``, i.e. the service's 16 kHz samples
``[320 k, 320 (k + 1))``: ``FRAME_SAMPLES_16K`` is the frame size the tracker matches scores with.
The service's stream id is ``<call>/inbound``, the plan's id.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Sequence
from typing import Any

import soxr

from streamdet.audio import SAMPLE_RATE
from streamdet.bench.pacing import paced
from streamdet.service.ingest.g711 import ulaw_encode

RATE = 8_000
FRAME = RATE * 20 // 1000
"""μ-law samples per media message (20 ms, as Twilio sends)."""
FRAME_SAMPLES_16K = SAMPLE_RATE * 20 // 1000
TRACK = "inbound"


def call_of(stream_id: str) -> str:
    """The call id of a plan's stream id ``<call>/inbound``."""
    return stream_id.rsplit("/", 1)[0]


def media_messages(stream_id: str, audio) -> list[str]:
    """The call's ``media`` messages, JSON text, one per 20 ms."""
    coded = ulaw_encode(soxr.resample(audio, SAMPLE_RATE, RATE, quality="HQ"))
    sid = f"MZ{call_of(stream_id)}"
    return [json.dumps({"event": "media", "sequenceNumber": str(k + 3), "streamSid": sid,
                        "media": {"track": TRACK, "chunk": str(k + 1), "timestamp": str(k * 20),
                                  "payload": base64.b64encode(coded[s:s + FRAME]).decode()}})
            for k, s in enumerate(range(0, len(coded), FRAME))]


def opening(stream_id: str) -> list[str]:
    call = call_of(stream_id)
    sid = f"MZ{call}"
    return [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
            json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid,
                        "start": {"callSid": call, "streamSid": sid, "tracks": [TRACK],
                                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}}})]


async def publish_media_ws(http: str | None, plans: Sequence[Any], tracker: Any, errors: list[str],
                           lags: list[float], path: str = "/media-stream") -> None:
    """Send every ``media_ws`` plan as one WebSocket call at real-time pace; a call that fails is
    recorded in ``errors`` and the others go on."""
    plans = [p for p in plans if p.transport == "media_ws"]
    if not plans:
        return
    if not http:
        from streamdet.errors import BenchError

        raise BenchError("WebSocket streams need the service's HTTP address (--http)")
    import aiohttp

    url = http.replace("http://", "ws://", 1).replace("https://", "wss://", 1).rstrip("/") + path
    messages = [media_messages(p.stream_id, p.audio) for p in plans]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def connect(plan: Any) -> Any:
            try:
                return await session.ws_connect(url, heartbeat=None)
            except (aiohttp.ClientError, OSError) as exc:
                errors.append(f"{plan.stream_id}: {type(exc).__name__}: {exc}")
                return None

        # Every socket is open before the first call starts; each call's connected and start
        # messages go just before its first media, as a platform sends them.
        sockets = await asyncio.gather(*(connect(plan) for plan in plans))
        readers = [asyncio.create_task(_drain(ws)) for ws in sockets if ws is not None]
        start = time.monotonic() + 0.05
        schedule = {i: [start + p.start_offset_s + (k + 1) * 0.02 for k in range(len(messages[i]))]
                    for i, p in enumerate(plans) if sockets[i] is not None}
        async for i, k, due in paced(schedule):
            ws = sockets[i]
            try:
                if k == 0:
                    for text in opening(plans[i].stream_id):
                        await ws.send_str(text)
                await ws.send_str(messages[i][k])
                sent = time.monotonic()
                tracker.records[plans[i].stream_id].sent.append(sent)
                lags.append(max(0.0, sent - due))
                if k + 1 == len(messages[i]):
                    await ws.send_str(json.dumps({"event": "stop", "streamSid": f"MZ{call_of(plans[i].stream_id)}",
                                                  "stop": {"callSid": call_of(plans[i].stream_id)}}))
            except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
                errors.append(f"{plans[i].stream_id}: {type(exc).__name__}: {exc}")
        await asyncio.gather(*readers, return_exceptions=True)


async def _drain(ws: Any) -> None:
    """Read what the service sends back (alerts, ``end``) until it closes the socket."""
    async for _ in ws:
        pass
    await ws.close()
