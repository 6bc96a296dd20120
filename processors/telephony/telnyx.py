"""Telnyx media streaming (bidirectional RTP mode) as a sans-I/O serializer.

Wire facts (Telnyx, "Media Streaming over WebSockets" and its AsyncAPI page): from Telnyx,
``connected`` (version), ``start`` (``stream_id`` and ``start {call_control_id,
call_session_id, from, to, client_state, custom_parameters, media_format {encoding: "PCMU",
sample_rate: 8000, channels: 1}}``), ``media`` (``media {track, chunk, timestamp,
payload}``: base64 RTP payload), ``dtmf`` (``dtmf {digit}``), ``mark`` (``mark {name}``),
``error`` (``payload {code, title, detail}``) and ``stop``; every message after ``start``
carries ``stream_id``. To Telnyx (``stream_bidirectional_mode: rtp``,
``stream_bidirectional_codec: PCMU``): ``media {payload}``, ``mark {name}`` and ``clear``.
"""

from __future__ import annotations

from typing import Any

from .serializer import (
    MediaStreamProtocol,
    StreamConnected,
    StreamError,
    StreamNotice,
    StreamStart,
    StreamStop,
    b64text,
)

__all__ = ["TelnyxProtocol"]

_ENCODINGS = {"PCMU": "pcmu", "PCMA": "pcma"}


class TelnyxProtocol(MediaStreamProtocol):
    """Telnyx's media streaming messages, both ways."""

    provider = "telnyx"
    STREAM_KEY = "stream_id"
    EVENTS = {"connected": "_connected", "start": "_start", "media": "_media", "dtmf": "_dtmf",
              "mark": "_mark", "error": "_error", "stop": "_stop"}

    def _connected(self, data: dict[str, Any]) -> StreamConnected:
        return StreamConnected()

    def _start(self, data: dict[str, Any]) -> StreamStart:
        s = self.obj(data, "start", "start")
        fmt = s.get("media_format") if isinstance(s.get("media_format"), dict) else {}
        name = str(fmt.get("encoding", "PCMU")).upper()
        rate = self.number(fmt.get("sample_rate", 8000))
        if name not in _ENCODINGS or rate != 8000:
            raise StreamError("bad_start", f"unsupported media format {name} at {fmt.get('sample_rate')!r} Hz; "
                                           "set stream_bidirectional_codec to PCMU (8000 Hz)")
        custom = self.params(s.get("custom_parameters"))
        if isinstance(s.get("client_state"), str):
            custom.setdefault("client_state", s["client_state"][:256])
        return StreamStart(
            stream_id=self.text(data.get("stream_id") or s.get("stream_id"), "stream_id", "start"),
            call_id=self.text(s.get("call_control_id") or s.get("call_session_id"), "call_control_id", "start"),
            account_id=self.text(s.get("user_id"), "user_id", "start", required=False),
            from_number=self.text(s.get("from"), "from", "start", required=False),
            to_number=self.text(s.get("to"), "to", "start", required=False),
            custom=custom, encoding=_ENCODINGS[name], sample_rate=8000)

    def _error(self, data: dict[str, Any]) -> StreamNotice:
        p = data.get("payload") if isinstance(data.get("payload"), dict) else {}
        return StreamNotice(f"Telnyx error {p.get('code')}: {p.get('title')} {p.get('detail') or ''}".strip()[:300])

    def _stop(self, data: dict[str, Any]) -> StreamStop:
        return StreamStop("stop")

    # filled-in templates on the hot path: the same JSON as encode() would write
    def media(self, payload: bytes) -> str:
        return f'{{"event":"media","media":{{"payload":"{b64text(payload)}"}}}}'

    def mark(self, name: str) -> str:
        if not (name.isascii() and name.isdigit()):
            return self.encode({"event": "mark", "mark": {"name": name}})
        return f'{{"event":"mark","mark":{{"name":"{name}"}}}}'

    def clear(self) -> str:
        return self.encode({"event": "clear"})
