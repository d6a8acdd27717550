"""Who a stream belongs to: the identity that sent its first frame.

Every ingest that knows its sender passes a ``StreamOwner`` to ``StreamRegistry.push``; the first
frame's owner binds the stream, and a frame of the same stream id from any other owner is refused
(``not_owner``) without touching the stream. ``sender`` is the identity the transport vouches for
(a CURVE public key, else the peer's address); ``session`` narrows it to one stream's sender: the
frame header's ``token``, or the connection for the connection-scoped ingests (WHIP, WebSockets,
AudioSocket, RTP). The per-sender stream quota (``limits.max_streams_per_sender``) counts by
``sender`` alone, so that changing tokens does not buy more streams.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamOwner:
    sender: str
    """``curve:<z85 public key>``, ``addr:<ip>``, or an ingest's own label, e.g. ``whip:<ip>``."""
    session: str | None = None
    """The stream token, or the connection's id; None when the sender has neither."""

    def __str__(self) -> str:
        # Never the token itself: this appears in logs.
        return self.sender if self.session is None else f"{self.sender} (with its own token or connection)"
