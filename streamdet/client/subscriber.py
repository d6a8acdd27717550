"""Follow the events of ``streamdet serve`` (ZeroMQ SUB; topics as in docs/protocol.md).

    async with Subscriber(endpoint, topics=["alert."]) as sub:
        await sub.wait_connected()
        async for event in sub:            # WindowEvent (score/raised/cleared) or EndEvent (end/ended)
            print(event.event, event.stream_id)

    try:
        event = await sub.recv(timeout=6)  # ServerGoneError: 6 s without an event or a heartbeat
    except ServerGoneError:
        ...                                # the service stopped, or the network to it is down

    for event in iter_events(endpoint, ["score.call-42"], timeout=30):   # blocking, for scripts
        ...

Topics filter by prefix, as ZeroMQ does: ``alert.`` is every alert, ``score.call-42`` one stream
(and any stream whose id starts with ``call-42``; check ``event.stream_id`` when that matters).

A ``Subscriber`` also subscribes to the service's heartbeats (topic ``hb.``, every
``alerts.heartbeat_s`` seconds, 2 by default) and keeps them out of its events: ``recv``'s timeout
is how long the service may stay *silent*, so a quiet but live service never times it out, and a
gone one does. ``last_heard`` and ``last_heartbeat`` tell how recently the service spoke.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from streamdet.errors import ServerGoneError
from streamdet.service.curve import make_client
from streamdet.service.events import HEARTBEAT_TOPIC, Event, Heartbeat, decode_event, decode_heartbeat

DEFAULT_EVENTS = "tcp://127.0.0.1:5556"
_HEARTBEAT = HEARTBEAT_TOPIC.encode()


def _with_heartbeats(topics: Sequence[str]) -> list[str]:
    """``topics`` plus the heartbeat topic, unless a prefix already covers it ("" does)."""
    topics = list(topics)
    return topics if any(HEARTBEAT_TOPIC.startswith(t) for t in topics) else [*topics, HEARTBEAT_TOPIC]


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
        for topic in _with_heartbeats(topics):
            self._socket.subscribe(topic)
        self._socket.connect(endpoint)
        self._connected = False
        self.last_heard: float | None = None
        """``time.monotonic()`` when the last message (event or heartbeat) arrived; None before one."""
        self.last_heartbeat: Heartbeat | None = None

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
        """The next event. Raises ServerGoneError (a TimeoutError) once ``timeout`` seconds pass
        without any message from the service, heartbeats included; make it a few heartbeat
        intervals. For a deadline on the event itself, wrap the call in ``asyncio.timeout``."""
        while True:
            try:
                topic, payload = await asyncio.wait_for(self._socket.recv_multipart(), timeout)
            except TimeoutError:
                raise ServerGoneError(self.endpoint, timeout or 0.0) from None
            self.last_heard = time.monotonic()
            if topic == _HEARTBEAT:
                self.last_heartbeat = decode_heartbeat(payload)
                continue
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
    """Blocking iteration over events; stops after ``timeout`` seconds without one (None: never).
    Heartbeats (which a "" prefix receives) are skipped and do not count as events."""
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.linger = 0
    try:
        if server_key is not None:
            make_client(socket, server_key, client_secret_key)
        for topic in topics:
            socket.subscribe(topic)
        socket.connect(endpoint)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None:
                socket.rcvtimeo = max(0, int((deadline - time.monotonic()) * 1000))
            try:
                topic, payload = socket.recv_multipart()
            except zmq.Again:
                return
            if topic == _HEARTBEAT:
                continue
            yield decode_event(payload)
            if timeout is not None:
                deadline = time.monotonic() + timeout
    finally:
        socket.close()
        context.term()
