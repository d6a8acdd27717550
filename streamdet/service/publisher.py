"""Fans every event out to the ZeroMQ PUB socket and to in-process listeners.

In-process listeners (a server-sent-events endpoint, a test, a dashboard) get their own bounded
queue and iterate asynchronously::

    async with publisher.listen("alert.") as events:
        async for event in events:
            ...

A slow listener loses its oldest events (counted in ``listener.dropped``), never slows publishing.
Iteration ends when the listener is closed or the publisher shuts down.

``run_heartbeats`` sends a ``Heartbeat`` (topic ``hb.``) on the socket at a fixed interval, so that
ZeroMQ subscribers can tell a quiet service from a gone one; in-process listeners need none. Each
carries the ``seq`` of the last event sent, so a subscriber notices missed events while all is quiet.

Every event is stamped first (``node``, ``seq``, ``stream_seq``, ``event_id``, ``epoch``). With a journal, stamped
events wait in a batch that one writer task appends to the journal in a thread of its own (one
transaction per batch; events arriving meanwhile form the next batch: group commit), and only a
committed batch goes out: to the socket, the listeners and the sinks (``streamdet.service.sinks``),
in ``seq`` order. So the event loop never waits on the disk, and an event anyone has seen is in the
journal. Should the journal fail (disk full), the batch is published all the same, logged and
counted in ``journal_failures``: a live alert matters more than its replayability. Without a journal
events go out at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import zmq

from streamdet.service.events import Event, Heartbeat, encode_event, event_from_dict
from streamdet.service.journal import Journal, make_node_id
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
    """Publishes events; ``socket`` is a bound PUB socket (sync API) or None for in-process only.

    ``journal``: append events there before publishing them; its node id and last ``seq`` carry on.
    ``node``: the node id without a journal (default: made up now, so ids stay unique).
    ``on_commit(events, seconds, stored)``: after each journal batch, its size, how long its first
    event waited, and whether the journal stored it (metrics).
    """

    def __init__(self, socket: zmq.Socket | None = None, listener_queue: int = 1_000,
                 on_publish: Callable[[Event], None] | None = None, *, journal: Journal | None = None,
                 node: str | None = None, on_commit: Callable[[int, float, bool], None] | None = None) -> None:
        self._socket = socket
        self._listener_queue = listener_queue
        self._listeners: set[EventListener] = set()
        self._on_publish = on_publish
        self.send_failures = 0
        self.journal = journal
        self.node = journal.node if journal is not None else (node or make_node_id())
        self._seq = journal.last_seq if journal is not None else 0
        self.epoch = journal.epoch if journal is not None else int(time.time() * 1000)
        """This start's epoch, stamped on events that carry none (the journal keeps it growing)."""
        self.last_sent_seq = self._seq
        """The ``seq`` of the last event sent (before a restart, the journal's: subscribers replay the rest)."""
        self._stream_seq: dict[str, int] = {}
        self._pending: list[Event] = []
        self._pending_since = 0.0
        self._on_commit = on_commit
        self._writer: asyncio.Task[None] | None = None
        self._executor = (ThreadPoolExecutor(1, thread_name_prefix="streamdet-journal")
                          if journal is not None else None)
        self._sinks: list[EventSink] = []
        self.journal_failures = 0
        self.sink_failures = 0

    def listen(self, prefix: str = "", maxsize: int | None = None) -> EventListener:
        """A new in-process listener for topics starting with ``prefix`` (e.g. ``alert.``)."""
        listener = EventListener(self, prefix, maxsize or self._listener_queue)
        self._listeners.add(listener)
        return listener

    def add_sink(self, sink: EventSink) -> None:
        """Hand every committed batch to ``sink`` too (before ``start``)."""
        self._sinks.append(sink)

    async def start(self) -> None:
        for sink in self._sinks:
            await sink.start()
            await self._catch_up(sink)

    async def _catch_up(self, sink: EventSink) -> None:
        """Hand ``sink`` the journaled events it never took: a process killed between a batch's commit
        and the sink's outbox write leaves them only in the journal. A sink that never ran starts
        from the journal's present instead of replaying its history."""
        taken_through = getattr(sink, "taken_through", None)
        if self.journal is None or taken_through is None:
            return
        since = await taken_through()
        if since is None:
            await sink.mark_taken(self._seq)  # type: ignore[attr-defined]
            return
        caught_up = 0
        while since < self._seq:
            page = await asyncio.to_thread(self.journal.read, since=since, limit=1000)
            events = [event_from_dict(data) for data in page.events]
            if events:
                sink.deliver(events)
                caught_up += len(events)
            if page.through <= since:
                break
            since = page.through
        if caught_up:
            log.warning("sink %s: %d journaled event(s) it had not taken, handed over again", sink.name, caught_up)

    def publish(self, event: Event) -> None:
        """Stamp ``event`` and publish it: at once without a journal, after its commit with one."""
        stamped = self._stamp(event)
        if self.journal is None:
            self._send([stamped], [encode_event(stamped)])
            return
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(stamped)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_pending(),
                                                                  name="streamdet-journal-writer")

    def continue_stream(self, stream_id: str, stream_seq: int) -> None:
        """Number ``stream_id``'s next event ``stream_seq + 1``: a stream an earlier start left open."""
        self._stream_seq[stream_id] = stream_seq

    def _stamp(self, event: Event) -> Event:
        self._seq += 1
        stream_seq = self._stream_seq.get(event.stream_id, 0) + 1
        # An end without an alert, or the ``ended`` after it, is the stream's last event.
        if event.event == "ended" or (event.event == "end" and not event.alert):
            self._stream_seq.pop(event.stream_id, None)
        else:
            self._stream_seq[event.stream_id] = stream_seq
        return replace(event, node=self.node, seq=self._seq, stream_seq=stream_seq,
                       event_id=f"{self.node}-{self._seq}", epoch=event.epoch or self.epoch)

    async def _write_pending(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending, since = self._pending, [], self._pending_since
                failures = self.journal_failures
                try:
                    messages = await loop.run_in_executor(self._executor, self._journal_batch, batch)
                except Exception:  # a bug in the writer: still publish
                    log.exception("journal writer failed")
                    self.journal_failures += 1
                    messages = [encode_event(event) for event in batch]
                if self._on_commit is not None:
                    self._on_commit(len(batch), time.monotonic() - since, self.journal_failures == failures)
                self._send(batch, messages)
        finally:
            self._writer = None

    def _journal_batch(self, batch: list[Event]) -> list[list[bytes]]:
        """In the writer thread: encode the batch (once, for the journal and the socket) and commit it."""
        messages = [encode_event(event) for event in batch]
        assert self.journal is not None
        try:
            self.journal.append([(event.seq, event.wall_time, event.topic, message[1])
                                 for event, message in zip(batch, messages, strict=True)])
        except Exception as exc:  # sqlite3.Error, OSError (disk full): publish unjournaled
            self.journal_failures += 1
            log.error("journal: %d event(s) (seq %d-%d) not stored: %s", len(batch), batch[0].seq,
                      batch[-1].seq, exc)
        return messages

    def _send(self, batch: list[Event], messages: list[list[bytes]]) -> None:
        for event, message in zip(batch, messages, strict=True):
            topic = event.topic
            if self._socket is not None:
                try:
                    # PUB never blocks: ZeroMQ drops for a subscriber whose queue is full (its HWM).
                    self._socket.send_multipart(message, flags=zmq.NOBLOCK)
                except zmq.ZMQError as exc:
                    self.send_failures += 1
                    log.warning("publishing %s failed: %s", topic, exc)
            self.last_sent_seq = event.seq
            for listener in list(self._listeners):
                if topic.startswith(listener.prefix):
                    listener._put(event)
            if self._on_publish is not None:
                self._on_publish(event)
        for sink in self._sinks:
            try:
                sink.deliver(batch)
            except Exception:
                self.sink_failures += 1
                log.exception("event sink %s failed on %d event(s)", sink.name, len(batch))

    async def flush(self) -> None:
        """Until every event published so far is journaled and sent."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def drain(self) -> None:
        """Flush, then close the sinks (each sends what it has queued): before ``close``."""
        await self.flush()
        for sink in self._sinks:
            try:
                await sink.close()
            except Exception:
                log.exception("closing event sink %s failed", sink.name)

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
                                          active_streams=active_streams(), node=self.node,
                                          last_seq=self.last_sent_seq, epoch=self.epoch))
            await asyncio.sleep(interval_s)

    def close(self) -> None:
        """End every listener's iteration, close the socket and the journal (``drain`` first, to
        publish what is still being written)."""
        for listener in list(self._listeners):
            listener.close()
        if self._socket is not None:
            self._socket.close(linger=1000)
            self._socket = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self.journal is not None:
            self.journal.close()
