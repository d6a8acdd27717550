"""The load client's score feed: every event published, in order, the queued ones in one batch."""

from __future__ import annotations

import asyncio
import json

import zmq

from streamdet.bench.feed import ScoreFeed
from streamdet.service.events import EndEvent, WindowEvent, encode_event


def _score(stream_id: str, window: int) -> WindowEvent:
    return WindowEvent("score", stream_id, window, 0.0, 4.0, 0.0, 0.9, 0.1, 0.5, 0.5, True, False, False, "m", 1.0)


async def test_the_feed_gets_every_score_and_end_in_order_and_nothing_else():
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")
    try:
        async with ScoreFeed(pub.last_endpoint.decode()) as feed:
            await feed.wait_connected(timeout=10)
            events = [_score("a", w) for w in range(5)]
            events.append(EndEvent("a", "end", 8.0, 5, 0, False, 0.0, "m"))
            for event in events:
                pub.send_multipart(encode_event(event))
                pub.send_multipart(encode_event(WindowEvent(**{**vars(_score("a", 0)), "event": "raised"})))
            received: list[dict] = []
            batches = 0
            while len(received) < len(events):
                received += [json.loads(p) for p in await asyncio.wait_for(feed.batch(), 10)]
                batches += 1
        assert received == [json.loads(encode_event(e)[1]) for e in events]  # no alert topic
        assert batches <= len(events)
    finally:
        pub.close(linger=0)
        context.term()
