"""Fuzzing WHIP offer checks: ``check_offer`` accepts an offer or raises ``WhipError`` (an HTTP
status and reason), whatever the text, never another exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamdet.errors import WhipError
from streamdet.service.ingest.whip_sdp import check_offer

pytestmark = pytest.mark.fuzz
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# An aiortc offer (documentation addresses), the base the mutations start from.
OFFER_LINES = [
    "v=0", "o=- 4005174859 4005174859 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0",
    "a=msid-semantic:WMS *", "m=audio 42377 UDP/TLS/RTP/SAVPF 96 9 0 8", "c=IN IP4 192.0.2.2", "a=sendonly",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid", "a=mid:0", "a=rtcp:9 IN IP4 0.0.0.0", "a=rtcp-mux",
    "a=ssrc:852988262 cname:6187ef8a", "a=rtpmap:96 opus/48000/2", "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
    "a=candidate:f957a2332b1715da 1 udp 2130706431 192.0.2.2 42377 typ host", "a=end-of-candidates",
    "a=ice-ufrag:QZa8", "a=ice-pwd:O6tckfhnLfFcJSdXyaiRol",
    "a=fingerprint:sha-256 A2:E4:50:D4:EF:1A:8E:BF:09:19:C7:53:30:98:63:7F:91:56:9F:FF:AD:31:EA:A1:7B:A0:BE:E2:CD:70:02:61",
    "a=setup:actpass",
]


def check(text: str) -> None:
    try:
        check_offer(text)
    except WhipError as exc:
        assert exc.status in (400, 422) and exc.reason


def test_the_base_offer_is_accepted() -> None:
    assert check_offer("\r\n".join(OFFER_LINES) + "\r\n").codecs[0] == "opus"


@FUZZ
@given(st.text(max_size=400))
def test_arbitrary_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(OFFER_LINES) - 1), st.text(max_size=40)), max_size=4),
       st.lists(st.integers(0, len(OFFER_LINES) - 1), max_size=4))
def test_offer_with_lines_replaced_and_dropped(replacements: list[tuple[int, str]], dropped: list[int]) -> None:
    lines = list(OFFER_LINES)
    for index, text in replacements:
        prefix = lines[index].partition(":")[0] if ":" in lines[index] else lines[index][:2]
        lines[index] = prefix + (":" if ":" in lines[index] else "") + text
    lines = [line for i, line in enumerate(lines) if i not in dropped]
    check("\r\n".join(lines) + "\r\n")


@FUZZ
@given(st.lists(st.sampled_from(OFFER_LINES[6:]), max_size=30), st.text(max_size=20))
def test_media_sections_shuffled_and_repeated(lines: list[str], extra: str) -> None:
    check("\r\n".join([*OFFER_LINES[:6], *lines, f"m=video 9 {extra}", *lines[:3]]) + "\r\n")
