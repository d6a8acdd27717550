"""Fans every event out to the ZeroMQ PUB socket and to in-process listeners.

In-process listeners (a server-sent-events endpoint, a test, a dashboard) get their own bounded
queue and iterate asynchronously::

    async with publisher.listen("alert.") as events:
        async for event in events:
            ...

A slow listener loses its oldest events (counted in ``listener.dropped``), never slows publishing.
Iteration ends when the listener is closed or the publisher shuts down.

Sinks (``streamdet.service.sinks``: Redis Streams, webhooks) get every event after the socket and
the listeners; each queues internally and delivers on its own task, so none can slow publishing.

``publish`` stamps each event with the node's name, a number (``seq``, per process here), a number
within its stream (``stream_seq``) and an ``event_id`` unique across nodes and restarts.

``run_heartbeats`` sends a ``Heartbeat`` (topic ``hb.``) on the socket at a fixed interval, so that
ZeroMQ subscribers can tell a quiet service from a gone one; in-process listeners need none.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import zmq

from streamdet.service.events import Event, Heartbeat, encode_event
from streamdet.service.sinks import EventSink

log = logging.getLogger(__name__)

_CLOSED = object()


class EventListener:
    """An async iterator over the events whose topic starts with ``prefix``."""

    def __init__(self, publisher: EventPublisher, prefix: str, maxsize: int) -> None:
        self.prefix = prefix
        self.dropped = 0
        self._publisher = publisher
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize + 1)  # +1: room for the end marker
        self._maxsize = maxsize
        self._closed = False

    def _put(self, item: object) -> None:
        if self._closed:
            return
        if self._queue.qsize() >= self._maxsize and item is not _CLOSED:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(item)

    def close(self) -> None:
        """Stop listening; iteration ends after the events already queued."""
        if not self._closed:
            self._put(_CLOSED)
            self._closed = True
            self._publisher._listeners.discard(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if item is _CLOSED:
            raise StopAsyncIteration
        return item  # type: ignore[return-value]

    async def get(self, timeout: float | None = None) -> Event:
        """The next event (raises TimeoutError, or StopAsyncIteration once closed)."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def __aenter__(self) -> EventListener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class EventPublisher:
    """Publishes events; ``socket`` is a bound PUB socket (sync API) or None for in-process only."""

    def __init__(self, socket: zmq.Socket | None = None, listener_queue: int = 1_000,
                 on_publish: Callable[[Event], None] | None = None, node: str = "") -> None:
        self._socket = socket
        self._listener_queue = listener_queue
        self._listeners: set[EventListener] = set()
        self._on_publish = on_publish
        self.send_failures = 0
        self.node = node
        # The process's start time in ms keeps event ids unique across restarts of a node.
        self._boot = f"{int(time.time() * 1000):x}"
        self._seq = itertools.count(1)
        self._stream_seq: dict[str, int] = {}
        self.sinks: list[EventSink] = []

    def add_sink(self, sink: EventSink) -> None:
        """Register a sink (before ``start_sinks``); it gets every event from then on."""
        self.sinks.append(sink)

    async def start_sinks(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def close_sinks(self) -> None:
        """Close every sink: each delivers what it can in its own time limit and keeps the rest."""
        for sink in self.sinks:
            try:
                await sink.close()
            except Exception:  # one sink failing to close must not keep the others open
                log.exception("closing sink %s failed", sink.name)

    def _stamp(self, event: Event) -> Event:
        seq = next(self._seq)
        stream_seq = self._stream_seq.get(event.stream_id, 0) + 1
        # The stream's last event (``ended`` follows an ``end`` with its alert raised): forget the
        # stream, whose id may start again.
        if event.event == "ended" or (event.event == "end" and not event.alert):
            self._stream_seq.pop(event.stream_id, None)
        else:
            self._stream_seq[event.stream_id] = stream_seq
        return replace(event, node=self.node, seq=seq, stream_seq=stream_seq,
                       event_id=f"{self.node}:{self._boot}:{seq}")

    def listen(self, prefix: str = "", maxsize: int | None = None) -> EventListener:
        """A new in-process listener for topics starting with ``prefix`` (e.g. ``alert.``)."""
        listener = EventListener(self, prefix, maxsize or self._listener_queue)
        self._listeners.add(listener)
        return listener

    def publish(self, event: Event) -> None:
        event = self._stamp(event)
        topic = event.topic
        if self._socket is not None:
            try:
                # PUB never blocks: ZeroMQ drops for a subscriber whose queue is full (its HWM).
                self._socket.send_multipart(encode_event(event), flags=zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                self.send_failures += 1
                log.warning("publishing %s failed: %s", topic, exc)
        for listener in list(self._listeners):
            if topic.startswith(listener.prefix):
                listener._put(event)
        if self._on_publish is not None:
            self._on_publish(event)
        for sink in self.sinks:
            sink.deliver([event])

    def send_heartbeat(self, heartbeat: Heartbeat) -> None:
        """On the socket only (never blocks; dropped for a subscriber that is not keeping up)."""
        if self._socket is None:
            return
        try:
            self._socket.send_multipart(encode_event(heartbeat), flags=zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self.send_failures += 1
            log.warning("publishing a heartbeat failed: %s", exc)

    async def run_heartbeats(self, interval_s: float, model_id: str, active_streams: Callable[[], int]) -> None:
        """A heartbeat now and every ``interval_s`` seconds, forever (cancel to stop)."""
        while True:
            self.send_heartbeat(Heartbeat(wall_time=time.time(), interval_s=interval_s, model_id=model_id,
                                          active_streams=active_streams()))
            await asyncio.sleep(interval_s)

    def close(self) -> None:
        """End every listener's iteration and close the socket."""
        for listener in list(self._listeners):
            listener.close()
        if self._socket is not None:
            self._socket.close(linger=1000)
            self._socket = None
