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

Nothing lost: every event carries its node's sequence number ``seq`` and every heartbeat the last
one sent. Given the service's HTTP address (``replay="http://127.0.0.1:8080"``), a ``Subscriber``
fills any gap it notices (a jump in ``seq``, a heartbeat ahead of what it has seen) from the
service's journal before it returns the next live event, and with ``since`` it first replays the
journal from there (``Since(seq=120)`` or ``Since(wall_time=...)``) and then follows live. It
subscribes before it replays, so nothing falls between the two, and drops what it has already
returned (a live copy of a replayed event): events come out once each, in ``seq`` order per node.
Events it cannot recover (deleted by the journal's retention, no journal, no HTTP) are reported:
passed to ``on_missed`` (logged as a warning when there is none) and listed in ``missed``. With topic filters a jump in ``seq`` may
only be other topics' events: the replay, filtered alike, tells.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from streamdet.client.replay import MissedEvents, Since, fetch_journal
from streamdet.errors import JournalError, ProtocolError, ServerGoneError
from streamdet.service.curve import make_client
from streamdet.service.events import HEARTBEAT_TOPIC, Event, Heartbeat, decode_event, decode_heartbeat

DEFAULT_EVENTS = "tcp://127.0.0.1:5556"
_HEARTBEAT = HEARTBEAT_TOPIC.encode()
log = logging.getLogger(__name__)


class Subscriber:
    def __init__(self, endpoint: str = DEFAULT_EVENTS, topics: Sequence[str] = ("",), *,
                 server_key: str | Path | None = None, client_secret_key: str | Path | None = None,
                 context: zmq.asyncio.Context | None = None, replay: str | None = None,
                 since: Since | None = None, on_missed: Callable[[MissedEvents], None] | None = None) -> None:
        if since is not None and replay is None:
            raise ValueError("since needs replay (the service's HTTP address)")
        self.endpoint = endpoint
        self.topics = tuple(topics)
        self.replay = replay
        self._since = since
        self._on_missed = on_missed
        self.missed: list[MissedEvents] = []
        """Events that could not be recovered, in the order noticed."""
        self.duplicates = 0
        """Live copies of events already returned (from a replay), dropped."""
        self.replayed = 0
        """Events returned from the journal rather than live."""
        self._through: dict[str, int] = {}
        # Per node, the highest seq up to which every event of our topics has been returned.
        self._ready: deque[Event] = deque()
        self._own_context = context is None
        self._context = context or zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.linger = 0
        if server_key is not None:
            make_client(self._socket, server_key, client_secret_key)
        # Watch the handshake so callers can wait for it: PUB/SUB drops what is published before it.
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        self._socket.rcvhwm = 0  # no limit: live events queue here while a replay is fetched
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
        if self._since is not None:
            await self.wait_connected()  # subscribed first: what is published during the replay queues
            await self._replay_since(self._since)
            self._since = None
        start = last_heard = time.monotonic()
        event_deadline = math.inf if timeout is None else start + timeout
        while not self._ready:
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
                await self._check_heartbeat()
                continue
            await self._take_live(decode_event(payload))
        return self._ready.popleft()

    async def _check_heartbeat(self) -> None:
        heartbeat = self.last_heartbeat
        if heartbeat is None or not heartbeat.node:
            return
        through = self._through.get(heartbeat.node)
        if through is None:  # first word from this node: follow it from here
            self._through[heartbeat.node] = heartbeat.last_seq
        elif heartbeat.last_seq < through:
            # The node's sequence went back: it restarted without its journal. Follow the new one
            # (its events before this heartbeat were taken for duplicates: at most one interval's).
            log.warning("node %s restarted its sequence (at %d, was %d): its journal was lost or replaced",
                        heartbeat.node, heartbeat.last_seq, through)
            self._through[heartbeat.node] = heartbeat.last_seq
        else:
            await self._fill(heartbeat.node, heartbeat.last_seq)

    async def _take_live(self, event: Event) -> None:
        if not event.node or not event.seq:  # a service older than sequence numbers
            self._ready.append(event)
            return
        through = self._through.get(event.node)
        if through is None:  # first word from this node: follow it from here
            through = self._through[event.node] = event.seq - 1
        if event.seq > through + 1:
            await self._fill(event.node, event.seq - 1)
        if event.seq <= self._through[event.node]:  # returned already (replayed)
            self.duplicates += 1
            return
        self._through[event.node] = event.seq
        self._ready.append(event)

    async def _fill(self, node: str, upto: int) -> None:
        """Return (queue) the events of ``node`` after ``_through[node]`` up to ``upto`` from the journal,
        and report those that are not there."""
        after = self._through[node]
        if upto <= after:
            return
        if self.replay is None:
            if self.topics == ("",) or "" in self.topics:  # everything subscribed: a jump is a loss
                self._report(MissedEvents(node, after + 1, upto, "no replay address given"))
            self._through[node] = upto
            return
        try:
            async for page in fetch_journal(self.replay, Since(seq=after), self.topics, until=upto):
                if page.node != node:
                    self._report(MissedEvents(node, after + 1, upto, f"{self.replay} is node {page.node}"))
                    break
                self._check_retention(node, after, page.first_seq, upto)
                # Only the gap: what follows it is on its way live (queued in the socket).
                self._queue_replayed(node, [e for e in page.events if e.seq <= upto])
                self._through[node] = max(self._through[node], min(page.through, upto))
                after = page.through
        except JournalError as exc:
            self._report(MissedEvents(node, self._through[node] + 1, upto, str(exc)))
        self._through[node] = max(self._through[node], upto)

    async def _replay_since(self, since: Since) -> None:
        assert self.replay is not None
        try:
            async for page in fetch_journal(self.replay, since, self.topics):
                node = page.node
                if node not in self._through:
                    start = since.seq if since.seq is not None else 0  # a time: the page holds its events
                    self._through[node] = start
                    if since.seq is not None:
                        self._check_retention(node, since.seq, page.first_seq, page.last_seq)
                self._queue_replayed(node, page.events)
                self._through[node] = max(self._through[node], page.through)
        except JournalError as exc:
            raise JournalError(f"cannot replay: {exc}") from exc

    def _check_retention(self, node: str, after: int, first_kept: int, upto: int) -> None:
        if first_kept > after + 1:
            self._report(MissedEvents(node, after + 1, min(first_kept - 1, upto),
                                      "no longer in the journal (retention)"))

    def _queue_replayed(self, node: str, events: list[Event]) -> None:
        for event in events:
            if event.seq > self._through[node]:
                self._ready.append(event)
                self.replayed += 1

    def _report(self, missed: MissedEvents) -> None:
        self.missed.append(missed)
        if self._on_missed is not None:
            self._on_missed(missed)
        else:
            log.warning("%s", missed)

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
    """Blocking iteration over events; stops after ``timeout`` seconds without one (None: never).
    No replay here: a script that must not miss events uses ``Subscriber`` with ``replay``."""
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
