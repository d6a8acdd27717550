"""Follow the events of ``streamdet serve`` (ZeroMQ SUB; topics as in docs/protocol.md).

    async with Subscriber(endpoint, topics=["alert."]) as sub:
        await sub.wait_connected()
        async for event in sub:            # WindowEvent (score/raised/cleared) or EndEvent
            print(event.event, event.stream_id)

    for event in iter_events(endpoint, ["score.call-42"], timeout=30):   # blocking, for scripts
        ...

Topics filter by prefix, as ZeroMQ does: ``alert.`` is every alert, ``score.call-42`` one stream
(and any stream whose id starts with ``call-42``; check ``event.stream_id`` when that matters).

The service also publishes heartbeats on ``hb.`` (every ``alerts.heartbeat_s`` seconds, 2 by default)
so that a quiet service can be told from a gone one. ``Subscriber`` subscribes to them besides its
topics and consumes them in ``recv``: ``recv(idle_timeout=T)`` raises ``ServerGoneError`` once T
seconds pass with neither an event nor a heartbeat. ``last_heard`` and ``last_heartbeat`` tell how
recently the service spoke.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from streamdet.errors import ProtocolError, ServerGoneError
from streamdet.service.curve import make_client
from streamdet.service.events import HEARTBEAT_TOPIC, Event, Heartbeat, decode_event, decode_heartbeat

DEFAULT_EVENTS = "tcp://127.0.0.1:5556"
_HEARTBEAT = HEARTBEAT_TOPIC.encode()


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
        # A message matching several subscriptions is still delivered once.
        for topic in (*topics, HEARTBEAT_TOPIC):
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

    async def recv(self, timeout: float | None = None, *, idle_timeout: float | None = None) -> Event:
        """The next event; heartbeats are consumed here, never returned.

        ``timeout``: seconds to wait for an event. When it passes, ``TimeoutError`` if heartbeats came
        (the service is alive but quiet), ``ServerGoneError`` (also a ``TimeoutError``) if nothing did.
        ``idle_timeout``: ``ServerGoneError`` as soon as neither an event nor a heartbeat has come for
        that many seconds; heartbeats keep it waiting as long as the service is up.
        """
        start = last_heard = time.monotonic()
        event_deadline = math.inf if timeout is None else start + timeout
        while True:
            idle_deadline = math.inf if idle_timeout is None else last_heard + idle_timeout
            deadline = min(event_deadline, idle_deadline)
            wait = None if deadline == math.inf else max(0.0, deadline - time.monotonic())
            try:
                topic, payload = await asyncio.wait_for(self._socket.recv_multipart(), wait)
            except TimeoutError:
                if idle_deadline <= event_deadline or last_heard == start:
                    silent = idle_timeout if idle_deadline <= event_deadline else timeout
                    raise ServerGoneError(self.endpoint, silent) from None
                raise
            last_heard = self.last_heard = time.monotonic()
            if topic == _HEARTBEAT:
                self._note_heartbeat(payload)
                continue
            return decode_event(payload)

    def _note_heartbeat(self, payload: bytes) -> None:
        # A heartbeat proves the service is alive even when its body cannot be read (another version).
        try:
            self.last_heartbeat = decode_heartbeat(payload)
        except (ProtocolError, ValueError, TypeError):
            pass

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
        last_event = time.monotonic()
        while True:
            # Heartbeats (received when a topic covers hb.) are skipped and do not count as events.
            left = None if timeout is None else timeout - (time.monotonic() - last_event)
            if left is not None and left <= 0:
                return
            socket.rcvtimeo = -1 if left is None else max(1, int(left * 1000))
            try:
                topic, payload = socket.recv_multipart()
            except zmq.Again:
                return
            if topic != _HEARTBEAT:
                last_event = time.monotonic()
                yield decode_event(payload)
    finally:
        socket.close()
        context.term()
