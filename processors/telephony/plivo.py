"""Plivo audio streams (``<Stream bidirectional="true">``) as a sans-I/O serializer.

Wire facts (Plivo, "Audio Streaming" XML and its stream events): from Plivo, ``start``
(``start {callId, streamId, accountId, tracks, mediaFormat {encoding: "audio/x-mulaw",
sampleRate: 8000}}`` and ``extra_headers``, the ``extraHeaders`` of the XML), ``media``
(``streamId``, ``media {track, timestamp, chunk, payload}``), ``dtmf`` (``dtmf {digit}``),
``playedStream`` (``name``: a checkpoint was reached; older docs say ``played``),
``clearedAudio`` and ``stop``. To Plivo: ``playAudio`` (``media {contentType, sampleRate,
payload}``), ``checkpoint`` (``streamId``, ``name``) and ``clearAudio`` (``streamId``).
Plivo sends no ``connected``; its ``media`` may be 16-bit linear (``audio/x-l16``) when
the XML asks for it, so whole-sample checks apply.
"""

from __future__ import annotations

import json
from typing import Any

from .serializer import (
    MediaStreamProtocol,
    StreamCleared,
    StreamDtmf,
    StreamError,
    StreamMark,
    StreamMedia,
    StreamStart,
    StreamStop,
    b64text,
)

__all__ = ["PlivoProtocol"]

_ENCODINGS = {"audio/x-mulaw": "pcmu", "audio/x-l16": "l16"}
_CONTENT_TYPES = {"pcmu": "audio/x-mulaw", "l16": "audio/x-l16"}


def _extra_headers(value: Any) -> dict[str, str]:
    """``extra_headers``: a JSON object, or the XML's ``k=v,k=v`` text."""
    if isinstance(value, dict):
        return MediaStreamProtocol.params(value)
    if not isinstance(value, str) or not value:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = dict(p.split("=", 1) for p in value.split(",") if "=" in p)
    return MediaStreamProtocol.params(parsed)


class PlivoProtocol(MediaStreamProtocol):
    """Plivo's audio stream messages, both ways."""

    provider = "plivo"
    STREAM_KEY = "streamId"
    EVENTS = {"start": "_start", "media": "_media", "dtmf": "_dtmf", "playedStream": "_played",
              "played": "_played", "clearedAudio": "_cleared", "stop": "_stop"}

    def _start(self, data: dict[str, Any]) -> StreamStart:
        s = self.obj(data, "start", "start")
        fmt = s.get("mediaFormat") if isinstance(s.get("mediaFormat"), dict) else {}
        encoding = _ENCODINGS.get(fmt.get("encoding", "audio/x-mulaw"))
        rate = self.number(fmt.get("sampleRate", 8000))
        if encoding is None or rate not in (8000, 16000) or (encoding == "pcmu" and rate != 8000):
            raise StreamError("bad_start", f"unsupported media format {fmt.get('encoding')!r} at "
                                           f"{fmt.get('sampleRate')!r} Hz; use contentType=\"audio/x-mulaw;rate=8000\"")
        custom = _extra_headers(data.get("extra_headers"))
        tracks = s.get("tracks") if isinstance(s.get("tracks"), list) else ["inbound"]
        return StreamStart(
            stream_id=self.text(s.get("streamId") or data.get("streamId"), "streamId", "start"),
            call_id=self.text(s.get("callId"), "callId", "start"),
            account_id=self.text(s.get("accountId"), "accountId", "start", required=False),
            from_number=custom.get("from"), to_number=custom.get("to"), custom=custom,
            encoding=encoding, sample_rate=rate, tracks=tuple(str(t) for t in tracks))

    def _media(self, data: dict[str, Any]) -> StreamMedia:
        m = self.obj(data, "media", "media")
        if m.get("track", "inbound") != "inbound":
            raise StreamError("wrong_track", f"media of track {str(m.get('track'))[:20]!r}; only inbound is used")
        return StreamMedia(self.payload(m.get("payload")), self.number(m.get("timestamp")), self.number(m.get("chunk")))

    def _dtmf(self, data: dict[str, Any]) -> StreamDtmf:
        d = self.obj(data, "dtmf", "dtmf")
        return StreamDtmf(self.digit(d.get("digit")), self.number(d.get("duration")))

    def _played(self, data: dict[str, Any]) -> StreamMark:
        return StreamMark(self.text(data.get("name"), "name", "playedStream"))

    def _cleared(self, data: dict[str, Any]) -> StreamCleared:
        return StreamCleared()

    def _stop(self, data: dict[str, Any]) -> StreamStop:
        return StreamStop("stop")

    def media(self, payload: bytes) -> str:
        return self.encode({"event": "playAudio", "media": {
            "contentType": _CONTENT_TYPES[self.encoding], "sampleRate": self.sample_rate,
            "payload": b64text(payload)}})

    def mark(self, name: str) -> str:
        return self.encode({"event": "checkpoint", "streamId": self.stream_id, "name": name})

    def clear(self) -> str:
        return self.encode({"event": "clearAudio", "streamId": self.stream_id})
