"""RTP/RTCP parsing: what RFC 3550 allows is parsed, every malformed packet is refused by reason."""

from __future__ import annotations

import struct

import pytest

from streamdet.errors import ProtocolError
from streamdet.service.ingest.rtp_packet import (
    build_rtcp_bye,
    build_rtp,
    is_rtcp,
    parse_rtp,
    rtcp_bye_sources,
)


def test_a_plain_packet_round_trips() -> None:
    packet = parse_rtp(build_rtp(0, 65535, 2**32 - 160, 0xDEADBEEF, b"\x01\x02", marker=True))
    assert (packet.payload_type, packet.marker, packet.seq, packet.timestamp, packet.ssrc, packet.payload) == \
        (0, True, 65535, 2**32 - 160, 0xDEADBEEF, b"\x01\x02")


def test_csrcs_extension_and_padding_are_skipped() -> None:
    csrcs = struct.pack("!II", 1, 2)
    extension = struct.pack("!HH", 0xBEDE, 1) + b"\xAA" * 4
    payload = b"speech"
    padding = b"\x00\x00\x03"
    header = struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 8, 7, 160, 42)
    packet = parse_rtp(header + csrcs + extension + payload + padding)
    assert (packet.payload_type, packet.payload) == (8, payload)


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x80\x00\x00", "rtp_truncated"),
    (struct.pack("!BBHII", 0x40, 0, 1, 1, 1) + b"x", "rtp_version"),  # version 1
    (struct.pack("!BBHII", 0x00, 0, 1, 1, 1) + b"x", "rtp_version"),  # version 0
    (struct.pack("!BBHII", 0x83, 0, 1, 1, 1) + b"\x00" * 8, "rtp_truncated"),  # 3 CSRCs in 8 bytes
    (struct.pack("!BBHII", 0x90, 0, 1, 1, 1) + b"\xBE", "rtp_extension"),  # extension header cut
    (struct.pack("!BBHII", 0x90, 0, 1, 1, 1) + struct.pack("!HH", 0xBEDE, 9) + b"\x00" * 8, "rtp_extension"),
    (struct.pack("!BBHII", 0xA0, 0, 1, 1, 1) + b"ab\x09", "rtp_padding"),  # padding beyond the payload
    (struct.pack("!BBHII", 0xA0, 0, 1, 1, 1) + b"ab\x00", "rtp_padding"),  # padding count 0
])
def test_malformed_packets_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_rtp(data)
    assert caught.value.reason == reason


def test_rtcp_is_told_from_rtp_and_bye_names_its_sources() -> None:
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 99)
    bye = build_rtcp_bye(0x1234)
    assert is_rtcp(bye) and is_rtcp(receiver_report) and not is_rtcp(build_rtp(0, 1, 1, 1, b"x"))
    assert not is_rtcp(build_rtp(96, 1, 1, 1, b"x", marker=True))  # marker + 96 = 224: not RTCP
    assert rtcp_bye_sources(receiver_report + bye) == [0x1234]
    assert rtcp_bye_sources(receiver_report) == []


@pytest.mark.parametrize("data", [
    build_rtcp_bye(1)[:6],  # cut inside the packet
    struct.pack("!BBHI", 0x81, 203, 0, 1),  # length says 4 bytes, BYE for 1 source needs 8
    struct.pack("!BBHI", 0x41, 203, 1, 1),  # version 1
])
def test_malformed_rtcp_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        rtcp_bye_sources(data)
