"""Follow the events of ``streamdet serve`` (ZeroMQ SUB; topics as in docs/protocol.md).

    async with Subscriber(endpoint, topics=["alert."]) as sub:
        await sub.wait_connected()
        async for event in sub:            # WindowEvent (score/raised/cleared) or EndEvent
            print(event.event, event.stream_id)

    for event in iter_events(endpoint, ["score.call-42"], timeout=30):   # blocking, for scripts
        ...

Topics filter by prefix, as ZeroMQ does: ``alert.`` is every alert, ``score.call-42`` one stream
(and any stream whose id starts with ``call-42``; check ``event.stream_id`` when that matters).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from streamdet.service.curve import make_client
from streamdet.service.events import Event, decode_event

DEFAULT_EVENTS = "tcp://127.0.0.1:5556"


class Subscriber:
    def __init__(self, endpoint: str = DEFAULT_EVENTS, topics: Sequence[str] = ("",), *,
                 server_key: str | Path | None = None, client_secret_key: str | Path | None = None,
                 context: zmq.asyncio.Context | None = None) -> None:
        self.endpoint = endpoint
        self._own_context = context is None
        self._context = context or zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.linger = 0
        if server_key is not None:
            make_client(self._socket, server_key, client_secret_key)
        # Watch the handshake so callers can wait for it: PUB/SUB drops what is published before it.
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        for topic in topics:
            self._socket.subscribe(topic)
        self._socket.connect(endpoint)
        self._connected = False

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Until the connection (and CURVE handshake) is up and the subscriptions have been sent."""
        if self._connected:
            return
        async def handshake() -> None:
            while (await recv_monitor_message(self._monitor))["event"] != zmq.EVENT_HANDSHAKE_SUCCEEDED:
                pass
        await asyncio.wait_for(handshake(), timeout)
        self._connected = True
        await asyncio.sleep(0.05)  # the SUBSCRIBE messages follow the handshake on the same pipe

    async def recv(self, timeout: float | None = None) -> Event:
        """The next event (TimeoutError after ``timeout`` seconds)."""
        _topic, payload = await asyncio.wait_for(self._socket.recv_multipart(), timeout)
        return decode_event(payload)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        return await self.recv()

    def close(self) -> None:
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        self._socket.close(linger=0)
        if self._own_context:
            self._context.term()

    async def __aenter__(self) -> Subscriber:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def iter_events(endpoint: str = DEFAULT_EVENTS, topics: Sequence[str] = ("",), *,
                timeout: float | None = None, server_key: str | Path | None = None,
                client_secret_key: str | Path | None = None) -> Iterator[Event]:
    """Blocking iteration over events; stops after ``timeout`` seconds without one (None: never)."""
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.linger = 0
    try:
        if server_key is not None:
            make_client(socket, server_key, client_secret_key)
        for topic in topics:
            socket.subscribe(topic)
        socket.connect(endpoint)
        socket.rcvtimeo = -1 if timeout is None else int(timeout * 1000)
        while True:
            try:
                _topic, payload = socket.recv_multipart()
            except zmq.Again:
                return
            yield decode_event(payload)
    finally:
        socket.close()
        context.term()
