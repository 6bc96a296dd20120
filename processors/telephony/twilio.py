"""Twilio Media Streams (bidirectional, ``<Connect><Stream>``) as a sans-I/O serializer.

Wire facts (Twilio, "Media Streams - WebSocket Messages"): every message is a JSON object
with an ``event``. From Twilio: ``connected`` (protocol, version), ``start`` (``streamSid``
and a ``start`` object: ``streamSid``, ``callSid``, ``accountSid``, ``tracks``,
``customParameters``, ``mediaFormat {encoding: "audio/x-mulaw", sampleRate: 8000,
channels: 1}``), ``media`` (``media {track, chunk, timestamp, payload}``), ``dtmf``
(``dtmf {track, digit}``), ``mark`` (``mark {name}``, echoed once playback reached it, and
at once for every pending mark after a ``clear``) and ``stop``. Every message after
``start`` carries the top-level ``streamSid``. To Twilio: ``media``, ``mark`` and ``clear``,
each with ``streamSid``.
"""

from __future__ import annotations

import json
from typing import Any

from .serializer import (
    MediaStreamProtocol,
    StreamConnected,
    b64text,
    StreamError,
    StreamStart,
    StreamStop,
)

__all__ = ["TwilioProtocol"]

_ENCODINGS = {"audio/x-mulaw": "pcmu"}


class TwilioProtocol(MediaStreamProtocol):
    """Twilio's Media Streams messages, both ways."""

    provider = "twilio"
    STREAM_KEY = "streamSid"
    EVENTS = {"connected": "_connected", "start": "_start", "media": "_media", "dtmf": "_dtmf",
              "mark": "_mark", "stop": "_stop"}

    def _connected(self, data: dict[str, Any]) -> StreamConnected:
        return StreamConnected()

    def _start(self, data: dict[str, Any]) -> StreamStart:
        s = self.obj(data, "start", "start")
        fmt = s.get("mediaFormat") if isinstance(s.get("mediaFormat"), dict) else {}
        encoding = _ENCODINGS.get(fmt.get("encoding", "audio/x-mulaw"), str(fmt.get("encoding")))
        rate = self.number(fmt.get("sampleRate", 8000))
        if rate != 8000:
            raise StreamError("bad_start", f"Twilio streams are 8000 Hz mu-law; start says {fmt.get('sampleRate')!r}")
        tracks = s.get("tracks") if isinstance(s.get("tracks"), list) else ["inbound"]
        custom = self.params(s.get("customParameters"))
        return StreamStart(
            stream_id=self.text(s.get("streamSid") or data.get("streamSid"), "streamSid", "start"),
            call_id=self.text(s.get("callSid"), "callSid", "start"),
            account_id=self.text(s.get("accountSid"), "accountSid", "start", required=False),
            from_number=custom.get("from"), to_number=custom.get("to"), custom=custom,
            encoding=encoding, sample_rate=8000, tracks=tuple(str(t) for t in tracks))

    def _stop(self, data: dict[str, Any]) -> StreamStop:
        return StreamStop("stop")

    _sid = "null"  # the stream id as JSON, set at start

    def started(self, start: StreamStart) -> None:
        self._sid = json.dumps(start.stream_id)

    # media and mark are 100 messages a second per call: filled-in templates, the same JSON as
    # encode() would write (base64 and the ledger's digit names need no escaping)
    def media(self, payload: bytes) -> str:
        return f'{{"event":"media","streamSid":{self._sid},"media":{{"payload":"{b64text(payload)}"}}}}'

    def mark(self, name: str) -> str:
        if not (name.isascii() and name.isdigit()):
            return self.encode({"event": "mark", "streamSid": self.stream_id, "mark": {"name": name}})
        return f'{{"event":"mark","streamSid":{self._sid},"mark":{{"name":"{name}"}}}}'

    def clear(self) -> str:
        return self.encode({"event": "clear", "streamSid": self.stream_id})
