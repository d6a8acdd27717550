"""RTP and RTCP packets (RFC 3550): parsing and validation, pure functions of the bytes.

Every malformed packet raises ``ProtocolError`` with a short reason (``rtp_*``) that the RTP ingest
counts in ``streamdet_ingest_rejects``. ``build_rtp``/``build_rtcp_bye`` make packets for tests and
``streamdet bench``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from streamdet.errors import ProtocolError

RTP_VERSION = 2
HEADER_BYTES = 12
RTCP_BYE = 203
RTCP_TYPES = range(192, 224)
"""Second byte of an RTCP packet (marker + payload type of RTP): how RFC 5761 tells the two apart
when they share a port (rtcp-mux)."""


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


def is_rtcp(data: bytes) -> bool:
    """True for an RTCP packet on a port shared with RTP (RFC 5761 §4)."""
    return len(data) >= 2 and data[1] in RTCP_TYPES


def parse_rtp(data: bytes) -> RtpPacket:
    """One RTP packet; ProtocolError for anything RFC 3550 §5.1 does not allow."""
    if len(data) < HEADER_BYTES:
        raise ProtocolError("rtp_truncated", f"{len(data)} bytes, the fixed header alone is {HEADER_BYTES}")
    first, second, seq, timestamp, ssrc = struct.unpack_from("!BBHII", data)
    if first >> 6 != RTP_VERSION:
        raise ProtocolError("rtp_version", f"version {first >> 6}, expected {RTP_VERSION}")
    start = HEADER_BYTES + 4 * (first & 0x0F)  # CSRC list
    if start > len(data):
        raise ProtocolError("rtp_truncated", f"{first & 0x0F} CSRCs do not fit in {len(data)} bytes")
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if start + 4 > len(data):
            raise ProtocolError("rtp_extension", "extension header beyond the packet")
        (words,) = struct.unpack_from("!H", data, start + 2)
        start += 4 + 4 * words
        if start > len(data):
            raise ProtocolError("rtp_extension", f"extension of {words} words beyond the packet")
    end = len(data)
    if first & 0x20:  # padding: the last byte counts the padding bytes, itself included
        padding = data[-1]
        if padding == 0 or end - padding < start:
            raise ProtocolError("rtp_padding", f"padding of {padding} bytes does not fit the packet")
        end -= padding
    return RtpPacket(second & 0x7F, bool(second & 0x80), seq, timestamp, ssrc, bytes(data[start:end]))


def rtcp_bye_sources(data: bytes) -> list[int]:
    """The SSRCs that a (compound) RTCP packet says goodbye for; ProtocolError if malformed."""
    sources: list[int] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise ProtocolError("rtcp_truncated", f"{len(data) - offset} stray bytes after RTCP packets")
        first, packet_type, words = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != RTP_VERSION:
            raise ProtocolError("rtcp_version", f"version {first >> 6}, expected {RTP_VERSION}")
        size = 4 * (words + 1)
        if offset + size > len(data):
            raise ProtocolError("rtcp_truncated", f"an RTCP packet of {size} bytes in {len(data) - offset}")
        if packet_type == RTCP_BYE:
            count = first & 0x1F
            if 4 + 4 * count > size:
                raise ProtocolError("rtcp_truncated", f"BYE for {count} sources in {size} bytes")
            sources += struct.unpack_from(f"!{count}I", data, offset + 4)
        offset += size
    return sources


def build_rtp(payload_type: int, seq: int, timestamp: int, ssrc: int, payload: bytes, *,
              marker: bool = False) -> bytes:
    """A plain RTP packet (no CSRC, extension or padding)."""
    return struct.pack("!BBHII", RTP_VERSION << 6, (0x80 if marker else 0) | payload_type,
                       seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def build_rtcp_bye(ssrc: int) -> bytes:
    """An RTCP BYE packet for one source."""
    return struct.pack("!BBHI", (RTP_VERSION << 6) | 1, RTCP_BYE, 1, ssrc)
