"""Follow the events that nodes append to Redis Streams (``events.redis_url``; see
``streamdet.service.sinks.redis_streams``), alone or through a consumer group with acknowledgements.

    async with RedisSubscriber("redis://127.0.0.1:6379", group="case-system", consumer="worker-1") as sub:
        async for entry in sub:          # StreamEntry: entry_id, event (WindowEvent or EndEvent)
            handle(entry.event)
            await sub.ack(entry)         # not acked = delivered again to this consumer after a crash

With a ``group``, entries are shared out among the group's consumers and each must be acknowledged.
On start (and after a reconnect) the consumer first reads its own pending entries, those it received
but did not acknowledge, so a consumer that crashed and starts again under the same name gets them
again; then new ones. An event id already handed to the caller is not handed again (acknowledged
quietly). A group that does not exist is created, reading from ``start``: ``$`` (entries appended
from now on) or ``0`` (everything retained). Without a group, entries are read from ``start`` on,
with no acknowledgements.

A consumer that never comes back under its name (a container replaced, with a new host name)
leaves its pending entries behind; with ``claim_idle_s`` set, the group's other consumers take over
entries left unacknowledged that long (``XAUTOCLAIM``) and hand them on.

``stream`` is ``alerts`` (raised, cleared, ended) or ``scores`` (score, end). Redis going away is
waited out: the subscriber reconnects with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import math
import socket
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamdet.service.events import Event, decode_event

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "streamdet"
REMEMBERED_IDS = 100_000


@dataclass(frozen=True)
class StreamEntry:
    entry_id: str
    """The Redis entry id (``<ms>-<n>``), what ``ack`` acknowledges."""
    event: Event
    event_id: str


class RedisSubscriber:
    def __init__(self, url: str, *, stream: str = "alerts", prefix: str = DEFAULT_PREFIX,
                 group: str | None = None, consumer: str | None = None, start: str = "$",
                 claim_idle_s: float | None = None, block_s: float = 1.0, count: int = 100,
                 backoff_s: float = 0.2, backoff_max_s: float = 5.0) -> None:
        self.key = f"{prefix}:{stream}"
        self.group = group
        self.consumer = consumer or socket.gethostname()
        """Stable across restarts by default (the host name), so a restarted consumer gets its pending entries."""
        self.start = start
        self.claim_idle_s = claim_idle_s
        self._claim_from = "0-0"
        self._next_claim = 0.0  # monotonic time of the next XAUTOCLAIM pass
        self._group_seen = False
        self._redis = Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2.0,
                                     socket_timeout=block_s + 5.0)
        self._block_ms = max(1, int(block_s * 1000))
        self._count = count
        self._backoff = (backoff_s, backoff_max_s)
        self._buffer: deque[StreamEntry] = deque()
        self._handed: OrderedDict[str, str] = OrderedDict()  # event id -> entry id
        self._pending_from: str | None = "0"  # reading our own pending entries, after this id
        self._last_id = start  # without a group: read after this id
        self.reconnects = 0

    async def recv(self, timeout: float | None = None) -> StreamEntry:
        """The next entry; ``TimeoutError`` after ``timeout`` seconds without one."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        failures = 0
        while not self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no entry on {self.key} for {timeout:g} s")
            try:
                await self._fetch(min(self._block_ms, max(1, int(left * 1000))))
                failures = 0
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failures += 1
                self.reconnects += failures == 1
                if failures == 1:
                    log.warning("Redis unreachable (%s); reconnecting", exc)
                self._pending_from = "0"  # re-read what we hold unacknowledged once back
                delay = min(self._backoff[1], self._backoff[0] * 2 ** (failures - 1))
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        return self._buffer.popleft()

    async def ack(self, entry: StreamEntry) -> None:
        """Acknowledge an entry (with a group; nothing to do without one)."""
        if self.group is not None:
            await self._redis.xack(self.key, self.group, entry.entry_id)

    async def _fetch(self, block_ms: int) -> None:
        if self.group is None:
            if self._last_id == "$":  # "$" means "after the newest now": pin it, or later reads skip entries
                newest = await self._redis.xrevrange(self.key, count=1)
                self._last_id = newest[0][0].decode() if newest else "0-0"
            reply = await self._redis.xread({self.key: self._last_id}, count=self._count, block=block_ms)
            for entry_id, fields in _entries(reply):
                self._last_id = entry_id
                self._take(entry_id, fields)
            return
        reading_pending = self._pending_from is not None
        try:
            if (not reading_pending and self.claim_idle_s is not None and time.monotonic() >= self._next_claim
                    and await self._claim()):
                return
            reply = await self._redis.xreadgroup(
                self.group, self.consumer, {self.key: self._pending_from if reading_pending else ">"},
                count=self._count, block=None if reading_pending else block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self._create_group()
            return
        self._group_seen = True
        await self._hand_over(_entries(reply), reading_pending)

    async def _claim(self) -> bool:
        """Take over entries other consumers left unacknowledged for ``claim_idle_s``; True if any."""
        assert self.claim_idle_s is not None
        reply = await self._redis.xautoclaim(self.key, self.group, self.consumer,
                                             int(self.claim_idle_s * 1000), self._claim_from, count=self._count)
        next_from, claimed = reply[0], reply[1]
        self._claim_from = next_from.decode() if isinstance(next_from, bytes) else next_from
        entries = [(i.decode() if isinstance(i, bytes) else i, fields or {}) for i, fields in claimed]
        await self._hand_over(entries, False)
        if not entries:  # none idle long enough: look again in a while, not on every read
            self._next_claim = time.monotonic() + self.claim_idle_s / 2
        return bool(entries)

    async def _hand_over(self, entries: list[tuple[str, dict[bytes, bytes]]], reading_pending: bool) -> None:
        if reading_pending:
            # Our pending entries come back in order; an empty page means we hold none after this id.
            self._pending_from = entries[-1][0] if entries else None
        for entry_id, fields in entries:
            if not fields:  # pending, but trimmed away by retention: nothing to hand, acknowledge it
                await self._redis.xack(self.key, self.group, entry_id)
                continue
            handed_as = self._take(entry_id, fields)
            if handed_as not in (None, entry_id):
                # The same event in a second entry: the first one is the caller's to acknowledge.
                await self._redis.xack(self.key, self.group, entry_id)

    async def _create_group(self) -> None:
        try:
            # A group that vanished (Redis restarted without its data) is made again from the start
            # of the new stream: the nodes append there what waited in their outboxes.
            start = "0" if self._group_seen else self.start
            await self._redis.xgroup_create(self.key, self.group, id=start, mkstream=True)
            log.info("created consumer group %s on %s from %s", self.group, self.key, start)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):  # created meanwhile by another consumer: fine
                raise

    def _take(self, entry_id: str, fields: dict[bytes, bytes]) -> str | None:
        """Queue an entry for the caller unless its event id was handed already: then the entry id
        it was handed in (None when queued now). An entry re-read from our pending list that the
        caller holds unacknowledged is not handed twice, and stays for the caller to acknowledge."""
        event_id = fields.get(b"event_id", b"").decode()
        if event_id and event_id in self._handed:
            return self._handed[event_id]
        if event_id:
            self._handed[event_id] = entry_id
            while len(self._handed) > REMEMBERED_IDS:
                self._handed.popitem(last=False)
        self._buffer.append(StreamEntry(entry_id, decode_event(fields[b"event"]), event_id))
        return None

    def __aiter__(self) -> AsyncIterator[StreamEntry]:
        return self

    async def __anext__(self) -> StreamEntry:
        return await self.recv()

    async def close(self) -> None:
        await self._redis.aclose()

    async def __aenter__(self) -> RedisSubscriber:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _entries(reply: object) -> list[tuple[str, dict[bytes, bytes]]]:
    """``[(entry_id, fields)]`` from an XREAD/XREADGROUP reply (one key)."""
    if not reply:
        return []
    streams = reply.items() if isinstance(reply, dict) else reply
    return [(entry_id.decode() if isinstance(entry_id, bytes) else entry_id, fields or {})
            for _key, entries in streams for entry_id, fields in entries]
