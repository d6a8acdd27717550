"""The load client's side of the events: the service's score topic, read as cheaply as it can be.

``streamdet.client.Subscriber`` builds an event object per message and keeps each node's sequence
to fill gaps from the journal; a load step needs neither (a window that never came is counted as
missing), only a few fields of each ``score`` and ``end`` event, on a machine it shares with the
service it measures (issue 16). ``ScoreFeed`` reads a plain SUB socket: one await for the first
message that is there, then everything else already queued without waiting; the caller parses
each with ``json.loads`` alone (a dict; ``Tracker.on_message`` reads the keys it needs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import zmq
import zmq.asyncio
from zmq.utils.monitor import recv_monitor_message

from streamdet.service.events import SCORE_TOPIC


class ScoreFeed:
    """A SUB socket on ``endpoint`` subscribed to ``topics`` (``score.``: scores and ``end`` events)."""

    def __init__(self, endpoint: str, topics: Sequence[str] = (SCORE_TOPIC,)) -> None:
        self.endpoint = endpoint
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.SUB)
        self._socket.linger = 0
        self._socket.rcvhwm = 0  # never drop an event: a missing score would read as the service's loss
        self._nowait = zmq.Socket.shadow(self._socket.underlying)
        self._monitor = self._socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        for topic in topics:
            self._socket.subscribe(topic)
        self._socket.connect(endpoint)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Until the handshake is done and the subscriptions sent (PUB/SUB drops what comes before)."""
        async def handshake() -> None:
            while (await recv_monitor_message(self._monitor))["event"] != zmq.EVENT_HANDSHAKE_SUCCEEDED:
                pass

        await asyncio.wait_for(handshake(), timeout)
        await asyncio.sleep(0.05)  # the SUBSCRIBE messages follow the handshake on the same pipe

    async def batch(self) -> list[bytes]:
        """The events waiting (at least one: waits for it), their JSON unparsed, in order."""
        _topic, payload = await self._socket.recv_multipart()
        payloads = [payload]
        while True:
            try:
                _topic, payload = self._nowait.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return payloads
            payloads.append(payload)

    def close(self) -> None:
        self._socket.disable_monitor()
        self._monitor.close(linger=0)
        self._socket.close(linger=0)
        self._context.term()

    async def __aenter__(self) -> ScoreFeed:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
