"""The signalling body checks: is this HTTP POST a WebRTC offer we can answer? (sans-I/O).

An offer is untrusted input from anyone who can reach the serve port. aiortc's SDP parser
raises assorted exceptions (ValueError, IndexError, KeyError) on broken text and accepts
very large bodies; :func:`check_offer` runs first and turns every problem into an
:class:`OfferError` whose ``status`` and message tell a client what to change. It checks
the media type, the size, the text, the line structure, and the facts WebRTC needs (an
audio section, ICE credentials, a DTLS fingerprint).
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

__all__ = ["MAX_SDP_BYTES", "SDP_TYPE", "OfferError", "check_offer"]

#: Largest offer accepted. A browser's audio-and-data offer is 2-6 KiB; 32 KiB leaves room
#: for many candidates while refusing a body meant to tie up the parser.
MAX_SDP_BYTES = 32 * 1024
#: The media type of offers and answers (RFC 3264, WHIP: RFC 9725 section 4.2).
SDP_TYPE = "application/sdp"
_MAX_LINES = 1000


@dataclass
class OfferError(Exception):
    """An offer we refuse: the HTTP ``status`` and a message that says what to send instead."""

    status: HTTPStatus
    message: str

    def __str__(self) -> str:
        return self.message


def check_offer(body: bytes, content_type: str | None) -> str:
    """The offer as text, or :class:`OfferError` saying what is wrong with it."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype != SDP_TYPE:
        raise OfferError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                         f"the offer must be sent as Content-Type: {SDP_TYPE} (got {content_type or 'none'!r}); "
                         "POST the SDP text of RTCPeerConnection.createOffer() as the body")
    if len(body) > MAX_SDP_BYTES:
        raise OfferError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                         f"the offer is {len(body)} bytes; the limit is {MAX_SDP_BYTES} (an audio offer is a few KiB)")
    if not body.strip():
        raise OfferError(HTTPStatus.BAD_REQUEST, "the body is empty; POST the SDP offer")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise OfferError(HTTPStatus.BAD_REQUEST, "the offer is not UTF-8 text; SDP is text") from None
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    if len(lines) > _MAX_LINES:
        raise OfferError(HTTPStatus.BAD_REQUEST, f"the offer has {len(lines)} lines; the limit is {_MAX_LINES}")
    if lines[0] != "v=0":
        raise OfferError(HTTPStatus.BAD_REQUEST, "not an SDP offer: the first line must be `v=0` (RFC 8866)")
    for n, line in enumerate(lines, 1):
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha() or any(ord(c) < 32 and c != "\t" for c in line):
            raise OfferError(HTTPStatus.BAD_REQUEST, f"SDP line {n} is malformed ({line[:40]!r}); every line is "
                                                     "`<letter>=<value>`")
    media = [line for line in lines if line.startswith("m=")]
    if not any(line.startswith("m=audio ") for line in media):
        raise OfferError(HTTPStatus.BAD_REQUEST, "the offer has no audio section (m=audio); add a microphone "
                                                 "track or addTransceiver('audio') before createOffer()")
    if not any(line.startswith("a=ice-ufrag:") for line in lines) or not any(
            line.startswith("a=ice-pwd:") for line in lines):
        raise OfferError(HTTPStatus.BAD_REQUEST, "the offer has no ICE credentials (a=ice-ufrag / a=ice-pwd)")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise OfferError(HTTPStatus.BAD_REQUEST, "the offer has no DTLS fingerprint (a=fingerprint); "
                                                 "WebRTC media must be encrypted")
    return text
