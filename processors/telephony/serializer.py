"""The interface every provider's media-stream serializer implements, and the events it yields.

Theory of operation
-------------------
A phone provider (Twilio, Telnyx, Plivo) opens a websocket to us and exchanges JSON text
messages: the call's audio as base64 G.711 in ``media`` messages, plus lifecycle and
playback messages. Each provider spells them differently; a serializer is the sans-I/O
object that turns one provider's messages into the events below and builds the messages
we send (``media``, ``mark``, ``clear``). No socket, no clock: tests feed strings.

:meth:`MediaStreamProtocol.receive` returns one event per message, or raises
:class:`StreamError` whose ``code`` names what was wrong. The caller of ``receive`` logs
each code once, counts every occurrence and carries on: bad input never ends a call.
The rules common to all providers live here: a message must be a JSON object with a
known event name; ``media`` before ``start`` is refused; once started, a message that
names another stream is refused; a payload must be valid base64 holding a whole number
of samples of the stream's encoding, and at most :data:`MAX_PAYLOAD_BYTES`.
"""

from __future__ import annotations

import abc
import base64
import binascii
import json
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "ENCODINGS",
    "MAX_MESSAGE_CHARS",
    "MAX_PAYLOAD_BYTES",
    "MediaStreamProtocol",
    "StreamCleared",
    "StreamConnected",
    "StreamDtmf",
    "StreamError",
    "StreamEvent",
    "StreamMark",
    "StreamMedia",
    "StreamNotice",
    "StreamStart",
    "StreamStop",
]

#: Bytes per sample of each encoding a stream may carry.
ENCODINGS: dict[str, int] = {"pcmu": 1, "pcma": 1, "l16": 2}
#: Longest text message accepted (a 20 ms frame is about 300 characters; providers send up to 1 s).
MAX_MESSAGE_CHARS = 64 * 1024
#: Largest decoded audio payload accepted (2 s of 16-bit audio at 16 kHz).
MAX_PAYLOAD_BYTES = 64 * 1024

# The per-message hot path (50 media messages a second each way per call) uses the C
# functions directly: strict base64 without base64.b64decode's per-call regex (Python 3.11+),
# and one compact JSON encoder instead of a new one per json.dumps(separators=...) call.
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode
if sys.version_info >= (3, 11):
    def _b64decode(text: str) -> bytes:
        return binascii.a2b_base64(text, strict_mode=True)
else:  # pragma: no cover - Python 3.10
    def _b64decode(text: str) -> bytes:
        return base64.b64decode(text, validate=True)


def b64text(data: bytes) -> str:
    """``data`` as base64 text (no newline): what a media message carries."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


class StreamError(ValueError):
    """A message from the provider breaks the protocol; ``code`` names the rule it broke."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class StreamConnected:
    """The provider opened the stream (Twilio and Telnyx say so before ``start``)."""


@dataclass(frozen=True, slots=True)
class StreamStart:
    """The call's facts: ids, parties, custom parameters and the audio format of the stream."""

    stream_id: str
    call_id: str
    account_id: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    custom: dict[str, str] = field(default_factory=dict)
    encoding: str = "pcmu"
    sample_rate: int = 8000
    tracks: tuple[str, ...] = ("inbound",)


@dataclass(slots=True)  # not frozen: made 50 times a second per call, and frozen's __init__ costs twice as much
class StreamMedia:
    """The caller's audio: ``payload`` is raw ``encoding`` bytes (20 ms of mu-law is 160)."""

    payload: bytes
    timestamp_ms: int | None = None
    chunk: int | None = None


@dataclass(frozen=True, slots=True)
class StreamMark:
    """The provider played our audio up to the mark (checkpoint) called ``name``."""

    name: str


@dataclass(frozen=True, slots=True)
class StreamDtmf:
    """The caller pressed a key."""

    digit: str
    duration_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StreamCleared:
    """The provider confirms that it dropped the audio it had buffered (Plivo ``clearedAudio``)."""


@dataclass(frozen=True, slots=True)
class StreamNotice:
    """Something the provider reports that needs no action but a log line (Telnyx ``error``)."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamStop:
    """The stream is over (the caller hung up, or the call was redirected)."""

    reason: str = "stop"


StreamEvent = (StreamConnected | StreamStart | StreamMedia | StreamMark | StreamDtmf | StreamCleared
               | StreamNotice | StreamStop)

_DIGITS = frozenset("0123456789*#ABCD")


class MediaStreamProtocol(abc.ABC):
    """One media stream as seen by a provider's serializer: subclass per provider.

    A subclass sets ``provider``, maps event names to parse methods in ``EVENTS`` and
    implements :meth:`media`, :meth:`mark` and :meth:`clear`. ``stream_id`` and
    ``encoding`` are known once ``start`` has been received.
    """

    provider: ClassVar[str] = ""
    #: event name -> name of the method that parses it
    EVENTS: ClassVar[dict[str, str]] = {}
    #: the key naming the stream in messages after ``start`` (None: not checked)
    STREAM_KEY: ClassVar[str | None] = None

    def __init__(self) -> None:
        self.stream_id: str | None = None
        self.start: StreamStart | None = None
        self.encoding = "pcmu"
        self.sample_rate = 8000
        self.stopped = False

    # --- provider -> us -----------------------------------------------------------------------

    def receive(self, message: str | bytes) -> StreamEvent:
        """The event one provider message carries; raises :class:`StreamError` when it is malformed."""
        if type(message) is not str and isinstance(message, (bytes, bytearray, memoryview)):
            raise StreamError("binary_message", f"binary message of {len(message)} bytes; {self.provider} "
                                                "sends JSON text messages")
        if len(message) > MAX_MESSAGE_CHARS:
            raise StreamError("message_too_large", f"message of {len(message)} characters exceeds {MAX_MESSAGE_CHARS}")
        try:
            data = json.loads(message)
        except ValueError:
            raise StreamError("bad_json", f"message is not JSON: {message[:60]!r}") from None
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            raise StreamError("bad_json", "message is not a JSON object with a string `event`")
        kind = data["event"]
        method = self.EVENTS.get(kind)
        if method is None:
            raise StreamError("unknown_event", f"unknown event {kind[:40]!r}; {self.provider} sends "
                                               f"{', '.join(sorted(self.EVENTS))}")
        if kind != "start" and self.start is not None and self.STREAM_KEY is not None:
            given = data.get(self.STREAM_KEY)
            if given is not None and given != self.stream_id:
                raise StreamError("wrong_stream", f"{kind} names stream {str(given)[:64]!r}, but this "
                                                  f"connection carries {self.stream_id!r}")
        event = getattr(self, method)(data)
        if type(event) is StreamMedia:  # the common case first
            if self.start is None:
                raise StreamError("media_before_start", "media before `start`: the stream's format is not known yet")
        elif isinstance(event, StreamStart):
            if self.start is not None:
                raise StreamError("second_start", "a second `start` on one stream")
            if event.encoding not in ENCODINGS:
                raise StreamError("bad_start", f"unsupported encoding {event.encoding!r}; use mu-law (PCMU)")
            self.start, self.stream_id = event, event.stream_id
            self.encoding, self.sample_rate = event.encoding, event.sample_rate
            self.started(event)
        elif isinstance(event, StreamStop):
            self.stopped = True
        return event

    # --- helpers for subclasses -------------------------------------------------------------------

    def payload(self, text: Any) -> bytes:
        """Decode a base64 audio payload and check it holds whole samples."""
        if not isinstance(text, str):
            raise StreamError("bad_payload", "media payload must be a base64 string")
        try:
            data = _b64decode(text)
        except (binascii.Error, ValueError):
            raise StreamError("bad_base64", f"media payload is not base64: {text[:40]!r}") from None
        if len(data) > MAX_PAYLOAD_BYTES:
            raise StreamError("payload_too_large", f"media payload of {len(data)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        width = ENCODINGS.get(self.encoding, 1)
        if len(data) % width:
            raise StreamError("partial_sample", f"media payload of {len(data)} bytes is not a whole number of "
                                                f"{width}-byte {self.encoding} samples")
        return data

    @staticmethod
    def obj(data: dict[str, Any], key: str, kind: str) -> dict[str, Any]:
        """``data[key]`` as a JSON object, or a ``bad_<kind>`` error."""
        value = data.get(key)
        if not isinstance(value, dict):
            raise StreamError(f"bad_{kind}", f"`{kind}` message without a `{key}` object")
        return value

    @staticmethod
    def text(value: Any, what: str, kind: str, *, required: bool = True) -> str | None:
        """A non-empty string field (numbers are accepted and shown as text)."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value:
            return value[:256]
        if required:
            raise StreamError(f"bad_{kind}", f"`{kind}` needs `{what}` as a non-empty string")
        return None

    @staticmethod
    def number(value: Any) -> int | None:
        """An int from a number or a numeric string (providers send both); None otherwise."""
        if type(value) is str:  # the common case: Twilio and Telnyx send numbers as strings
            return int(value) if value.isascii() and value.isdigit() else None
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return None

    @classmethod
    def digit(cls, value: Any) -> str:
        if not (isinstance(value, str) and len(value) == 1 and value.upper() in _DIGITS):
            raise StreamError("bad_dtmf", f"`dtmf` digit must be one of 0-9 * # A-D, not {str(value)[:8]!r}")
        return value.upper()

    @staticmethod
    def params(value: Any) -> dict[str, str]:
        """Custom parameters as a flat ``str -> str`` dict (at most 64, keys and values cut at 256)."""
        if not isinstance(value, dict):
            return {}
        out = {}
        for k, v in list(value.items())[:64]:
            if isinstance(k, str) and isinstance(v, (str, int, float)) and not isinstance(v, bool):
                out[k[:256]] = str(v)[:256]
        return out

    @staticmethod
    def encode(message: dict[str, Any]) -> str:
        return _COMPACT(message)

    def started(self, start: StreamStart) -> None:
        """Hook: the stream's ``start`` was accepted (subclasses prepare their outbound templates)."""

    # --- provider -> us: the Twilio shape, which Telnyx shares (Plivo overrides) ----------

    def _media(self, data: dict[str, Any]) -> StreamMedia:
        m = self.obj(data, "media", "media")
        track = m.get("track", "inbound")
        if track not in ("inbound", "inbound_track"):
            raise StreamError("wrong_track", f"media of track {str(track)[:20]!r}; only the caller's (inbound) is used")
        return StreamMedia(self.payload(m.get("payload")), self.number(m.get("timestamp")), self.number(m.get("chunk")))

    def _dtmf(self, data: dict[str, Any]) -> StreamDtmf:
        return StreamDtmf(self.digit(self.obj(data, "dtmf", "dtmf").get("digit")))

    def _mark(self, data: dict[str, Any]) -> StreamMark:
        return StreamMark(self.text(self.obj(data, "mark", "mark").get("name"), "mark.name", "mark"))

    # --- us -> provider (per provider) --------------------------------------------------------

    @abc.abstractmethod
    def media(self, payload: bytes) -> str:
        """The message that plays ``payload`` (raw bytes of the stream's encoding) to the caller."""

    @abc.abstractmethod
    def mark(self, name: str) -> str:
        """The message asking the provider to tell us when playback reaches this point."""

    @abc.abstractmethod
    def clear(self) -> str:
        """The message that drops every bit of our audio the provider still has buffered."""
