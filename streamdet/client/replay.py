"""Replay from a service's event journal (``GET /events/journal``, docs/protocol.md "Replay").

    pages = fetch_journal("http://127.0.0.1:8080", since=120, prefixes=["alert."])
    async for page in pages: ...      # JournalPage: node, events, first_seq, last_seq, through, more

``parse_since`` reads ``streamdet subscribe --since``: a sequence number, an ISO 8601 time, or a
duration back from now (``90s``, ``15m``, ``2h``, ``1d``).
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from streamdet.errors import ConfigError, JournalError
from streamdet.service.events import Event, event_from_dict

DEFAULT_HTTP = "http://127.0.0.1:8080"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


@dataclass(frozen=True)
class Since:
    """Where a replay starts: after ``seq``, or at ``wall_time`` (Unix seconds)."""

    seq: int | None = None
    wall_time: float | None = None


def parse_since(text: str, now: float | None = None) -> Since:
    text = text.strip()
    if text.isdigit():
        return Since(seq=int(text))
    duration = _DURATION.match(text)
    if duration:
        return Since(wall_time=(now or time.time()) - float(duration.group(1)) * _UNIT_S[duration.group(2)])
    try:
        return Since(wall_time=datetime.fromisoformat(text).timestamp())  # no zone: local time
    except ValueError:
        raise ConfigError(f"--since {text!r}: give a sequence number (120), a duration back from now (90s, 15m, "
                          "2h, 1d) or an ISO 8601 time (2026-12-02T04:00:00Z)") from None


@dataclass(frozen=True)
class JournalPage:
    node: str
    events: list[Event]
    first_seq: int
    last_seq: int
    through: int
    more: bool


@dataclass(frozen=True)
class MissedEvents:
    """Events ``first_seq..last_seq`` of ``node`` that could not be delivered (``reason``). With topic
    filters some of them may not have matched anyway: the range is an upper bound."""

    node: str
    first_seq: int
    last_seq: int
    reason: str

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1

    def __str__(self) -> str:
        return f"missed events {self.first_seq}-{self.last_seq} of node {self.node}: {self.reason}"


async def fetch_journal(http: str, since: Since, prefixes: Sequence[str] = (), *, limit: int = 1000,
                        until: int | None = None, timeout: float = 10.0) -> AsyncIterator[JournalPage]:
    """Pages of the journal from ``since`` on, until the end (or past ``until``, a seq)."""
    prefixes = [p for p in prefixes if p]  # "" is everything: no filter
    params: list[tuple[str, str]] = [("limit", str(limit)), *(("prefix", p) for p in prefixes)]
    cursor: list[tuple[str, str]] = ([("since", str(since.seq))] if since.seq is not None
                                     else [("since_time", repr(since.wall_time))])
    url = http.rstrip("/") + "/events/journal"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        while True:
            try:
                async with session.get(url, params=cursor + params) as response:
                    body = await response.json(content_type=None)
                    if response.status != 200:
                        raise JournalError(f"{url}: {response.status} {body.get('title')}: {body.get('detail')}")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise JournalError(f"replay from {url} failed: {exc or type(exc).__name__}") from exc
            page = JournalPage(node=body["node"], events=[event_from_dict(e) for e in body["events"]],
                               first_seq=body["first_seq"], last_seq=body["last_seq"], through=body["through"],
                               more=body["more"])
            yield page
            if not page.more or (until is not None and page.through >= until):
                return
            cursor = [("since", str(page.through))]
