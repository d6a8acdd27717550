"""A jitter buffer for one RTP source: pure and synchronous (time is an argument), so it is tested
without sockets or clocks.

Packets go in as they arrive and come out in sequence order. A missing packet is waited for until
the oldest packet held has waited ``latency_s`` (or ``max_packets`` are held); then it is declared
lost and the buffer moves on. Sequence numbers are 16-bit and wrap: each is extended to the
candidate nearest the highest seen (RFC 3550 A.1). A jump of more than ``max_dropout`` ahead or
``max_misorder`` behind is dropped (``out_of_range``) unless the next packet follows it: then the
sender restarted its sequence, and the buffer resynchronises on it.

Every packet's fate is counted through ``on_count(result, n)``: ``accepted`` (in order),
``reordered`` (arrived after a later one, still in time), ``duplicate``, ``late`` (after it was
declared lost), ``lost`` (never arrived in time), ``out_of_range``, ``resync``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")

SEQ_MOD = 1 << 16


class JitterBuffer(Generic[Item]):
    def __init__(self, latency_s: float = 0.06, *, max_packets: int = 64, max_dropout: int = 3_000,
                 max_misorder: int = 100, on_count: Callable[[str, int], None] | None = None) -> None:
        self.latency_s = latency_s
        self.max_packets = max_packets
        self.max_dropout = max_dropout
        self.max_misorder = max_misorder
        self._restart: int | None = None
        """The sequence number that would confirm a restart (the one after an out-of-range packet)."""
        self._on_count = on_count or (lambda result, n: None)
        self._held: dict[int, tuple[Item, float]] = {}
        self._next: int | None = None
        """Extended sequence number of the packet to release next."""
        self._highest: int | None = None
        self._recent: deque[int] = deque(maxlen=512)
        self._recent_set: set[int] = set()
        """Recently released numbers: a copy of one of them is a duplicate, any other old one late."""

    @property
    def held(self) -> int:
        return len(self._held)

    def push(self, seq: int, item: Item, now: float) -> list[Item]:
        """Take one packet (16-bit ``seq``); returns the packets now ready, in order."""
        ready: list[Item] = []
        if self._highest is None:
            self._next = self._highest = seq
        ahead = (seq - self._highest) % SEQ_MOD
        if self.max_dropout < ahead < SEQ_MOD - self.max_misorder:
            if seq != self._restart:
                self._restart = (seq + 1) % SEQ_MOD
                self._on_count("out_of_range", 1)
                return []
            ready = self.flush()
            self._on_count("resync", 1)
            self._next = self._highest = seq
            self._recent.clear()
            self._recent_set.clear()
        self._restart = None
        ext = self._extend(seq)
        assert self._next is not None
        if ext < self._next:
            self._on_count("duplicate" if ext in self._recent_set else "late", 1)
            return []
        if ext in self._held:
            self._on_count("duplicate", 1)
            return []
        self._on_count("reordered" if ext < self._highest else "accepted", 1)
        self._highest = max(self._highest, ext)
        self._held[ext] = (item, now)
        return ready + self.poll(now)

    def poll(self, now: float) -> list[Item]:
        """The packets ready at ``now``: in order, skipping missing ones that waited too long."""
        ready: list[Item] = []
        while self._held:
            assert self._next is not None
            if self._next in self._held:
                ready.append(self._release(self._next))
                continue
            waited = now - min(arrival for _, arrival in self._held.values())
            if waited < self.latency_s and len(self._held) <= self.max_packets:
                break
            first = min(self._held)
            self._on_count("lost", first - self._next)
            self._next = first
        return ready

    def flush(self) -> list[Item]:
        """Everything held, in order (end of stream); the gaps between them count as lost."""
        ready = []
        for ext in sorted(self._held):
            assert self._next is not None
            if ext > self._next:
                self._on_count("lost", ext - self._next)
                self._next = ext
            ready.append(self._release(ext))
        return ready

    def _release(self, ext: int) -> Item:
        item, _ = self._held.pop(ext)
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(ext)
        self._recent_set.add(ext)
        self._next = ext + 1
        return item

    def _extend(self, seq: int) -> int:
        """The extended number nearest the reference (the highest seen) with these low 16 bits."""
        if self._highest is None:
            return seq
        delta = (seq - self._highest) % SEQ_MOD
        if delta >= SEQ_MOD // 2:
            delta -= SEQ_MOD
        return self._highest + delta
