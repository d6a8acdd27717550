"""Checks on a WHIP offer before any WebRTC state is created, each failure with its HTTP status.

aiortc parses SDP leniently (asserts, or nothing at all for text without media), so an offer is
checked here first and every problem becomes a ``WhipError`` that the endpoint turns into a response:

- ``bad_sdp`` (400): not SDP (no ``v=0``, lines not ``x=value``), or unusable by WebRTC (no ICE
  credentials, no DTLS fingerprint, no RTCP multiplexing, unparsable media lines);
- ``no_audio`` (422): well-formed, but no audio section that the publisher sends;
- ``unsupported_codec`` (422): the audio section offers none of the codecs we decode.

422 (Unprocessable Content) for the last two: the body is valid SDP of the right media type, but it
asks for something this endpoint cannot do. 415 is kept for a wrong ``Content-Type``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aiortc import sdp
from aiortc.codecs import CODECS
from aiortc.rtcpeerconnection import find_common_codecs

from streamdet.errors import WhipError

MAX_SDP_BYTES = 64 * 1024
"""Real offers are a few KiB (a browser's audio+video offer is under 10 KiB)."""

SENDING = ("sendonly", "sendrecv")
_LINE = re.compile(r"^[a-z]=.*$")


@dataclass(frozen=True)
class OfferSummary:
    """What the endpoint needs to know about an accepted offer."""

    audio_mid: str | None
    """The ``mid`` of the audio section that will be read (the first one the publisher sends)."""
    codecs: tuple[str, ...]
    """Audio codecs common to the offer and us, in the publisher's order of preference."""


def supported_codecs() -> list[str]:
    """The audio codecs aiortc decodes for us, as ``name/clock rate``."""
    return [f"{c.mimeType.split('/', 1)[1]}/{c.clockRate}" for c in CODECS["audio"]]


def check_offer(text: str) -> OfferSummary:
    """Validate an SDP offer for publishing audio; raises ``WhipError``."""
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0].strip() != "v=0":
        raise WhipError(400, "bad_sdp", "not an SDP offer: the body must start with 'v=0'")
    bad = next((line for line in lines if not _LINE.match(line)), None)
    if bad is not None:
        raise WhipError(400, "bad_sdp", f"not an SDP line: {bad[:60]!r}")
    try:
        description = sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc's parser fails with assertions, ValueError, KeyError...
        raise WhipError(400, "bad_sdp", f"unparsable SDP ({type(exc).__name__}: {exc})"[:300]) from exc

    audio = [m for m in description.media if m.kind == "audio"]
    if not audio:
        kinds = ", ".join(m.kind for m in description.media) or "no media at all"
        raise WhipError(422, "no_audio", f"the offer has no audio section ({kinds})")
    # No direction attribute means sendrecv (RFC 8866); port 0 marks a section the offerer disabled.
    sent = [m for m in audio if (m.direction or "sendrecv") in SENDING and m.port != 0]
    if not sent:
        raise WhipError(422, "no_audio", f"the offer's audio is not sent to us (direction {audio[0].direction})")
    for media in description.media:
        if not media.ice.usernameFragment or not media.ice.password:
            raise WhipError(400, "bad_sdp", "the offer has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
        if media.dtls is None or not media.dtls.fingerprints:  # aiortc drops dtls without a=setup
            raise WhipError(400, "bad_sdp", "the offer has no DTLS parameters (a=setup, a=fingerprint)")
        if media.kind in ("audio", "video") and not media.rtcp_mux:
            raise WhipError(400, "bad_sdp", "the offer does not multiplex RTCP (a=rtcp-mux)")

    first = sent[0]
    common = find_common_codecs(CODECS["audio"], first.rtp.codecs)
    if not common:
        offered = ", ".join(f"{c.mimeType.split('/', 1)[1]}/{c.clockRate}" for c in first.rtp.codecs) or "none"
        raise WhipError(422, "unsupported_codec",
                        f"no audio codec we decode: offered {offered}; supported {', '.join(supported_codecs())}")
    return OfferSummary(first.rtp.muxId or None, tuple(c.mimeType.split("/", 1)[1] for c in common))
