"""One RTP source (one SSRC on one port) as one stream: jitter buffer, decoders, concealment, push.

Packets are released by the jitter buffer in sequence order; each released audio packet is decoded
and pushed into the registry. Media time follows the RTP timestamps: a gap between the end of one
packet and the start of the next (lost packets, comfort noise, DTMF) is filled with silence of
exactly that length, up to ``max_conceal_s``; a longer gap is a pause and is not filled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamdet.errors import ProtocolError
from streamdet.service.ingest import IngestContext
from streamdet.service.ingest.jitter import JitterBuffer
from streamdet.service.ingest.rtp_codecs import Decoder, PayloadFormat, make_decoder
from streamdet.service.ingest.rtp_packet import RtpPacket
from streamdet.service.owner import StreamOwner

log = logging.getLogger(__name__)

ADAPTER = "rtp"
TS_MOD = 1 << 32


@dataclass(frozen=True)
class SourceOptions:
    jitter_s: float
    max_conceal_s: float
    max_jitter_packets: int = 64


class RtpSource:
    def __init__(self, stream_id: str, ssrc: int, formats: Callable[[int], PayloadFormat | None],
                 ctx: IngestContext, options: SourceOptions, count: Callable[[str, int], None],
                 conceal: Callable[[float], None], now: float) -> None:
        self.stream_id = stream_id
        self.ssrc = ssrc
        self.owner = StreamOwner(f"rtp:{stream_id}", f"{ssrc:08x}")
        """Its stream is this source's: no other ingest's sender can feed or end it, nor it theirs."""
        self.last_arrival = now
        self.bye_at: float | None = None
        """When RTCP BYE arrived for this source (it ends shortly after)."""
        self._formats = formats
        self._ctx = ctx
        self._options = options
        self._count = count
        self._conceal = conceal
        self._jitter: JitterBuffer[tuple[RtpPacket, float]] = JitterBuffer(
            options.jitter_s, max_packets=options.max_jitter_packets, on_count=count)
        self._decoders: dict[int, Decoder] = {}
        self._next_ts: int | None = None
        """Timestamp (clock units, unwrapped) where the next packet's audio should start."""
        self._accepted = ctx.metrics.frames.labels(ADAPTER)

    def receive(self, packet: RtpPacket, now: float) -> None:
        """One packet of this source (its payload type already known to be configured)."""
        self.last_arrival = now
        for ready, arrival in self._jitter.push(packet.seq, (packet, now), now):
            self._play(ready, arrival)

    def poll(self, now: float) -> None:
        """Release what has waited long enough (called on a timer, so a stalled stream still drains)."""
        for ready, arrival in self._jitter.poll(now):
            self._play(ready, arrival)

    def finish(self, reason: str) -> None:
        """Play what the jitter buffer still holds, then end the stream."""
        for ready, arrival in self._jitter.flush():
            self._play(ready, arrival)
        self._ctx.registry.end(self.stream_id, reason, owner=self.owner)

    def _play(self, packet: RtpPacket, arrival: float) -> None:
        fmt = self._formats(packet.payload_type)
        if fmt is None or not fmt.carries_audio:
            self._count("skipped", 1)  # comfort noise, DTMF: the gap it leaves becomes silence
            return
        try:
            samples = self._decoder(packet.payload_type, fmt).decode(packet.payload)
            start = self._unwrap(packet.timestamp)
            gap = 0 if self._next_ts is None else start - self._next_ts
            registry = self._ctx.registry
            if 0 < gap <= self._options.max_conceal_s * fmt.clock_rate:
                silence = round(gap * fmt.sample_rate / fmt.clock_rate)
                registry.push(self.stream_id, np.zeros((silence, fmt.channels), np.float32), fmt.sample_rate,
                              fmt.channels, arrival=arrival, ingest=ADAPTER, owner=self.owner)
                self._conceal(silence / fmt.sample_rate)
            if len(samples):
                registry.push(self.stream_id, samples, fmt.sample_rate, fmt.channels, arrival=arrival,
                              ingest=ADAPTER, owner=self.owner)
            self._next_ts = start + round(len(samples) * fmt.clock_rate / fmt.sample_rate)
        except ProtocolError as exc:
            self._count("rejected", 1)
            self._ctx.rejects.report(self.stream_id, exc, ADAPTER)
            return
        except Exception:
            # A bug must cost one packet, not the port every source on it shares.
            log.exception("RTP stream %s: packet failed", self.stream_id)
            self._ctx.metrics.rejects.labels("internal_error").inc()
            return
        self._accepted.inc()

    def _decoder(self, payload_type: int, fmt: PayloadFormat) -> Decoder:
        decoder = self._decoders.get(payload_type)
        if decoder is None:
            decoder = self._decoders[payload_type] = make_decoder(fmt)
        return decoder

    def _unwrap(self, timestamp: int) -> int:
        """The 32-bit timestamp extended to the value nearest the expected one."""
        if self._next_ts is None:
            return timestamp
        delta = (timestamp - self._next_ts) % TS_MOD
        if delta >= TS_MOD // 2:
            delta -= TS_MOD
        return self._next_ts + delta
