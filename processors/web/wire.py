"""The wire format between the browser page and ``voxpipe serve``, as plain functions.

Sans-I/O: :func:`parse_client_message` turns one websocket message from the page into a
:class:`ClientAudio`, :class:`ClientHello`, :class:`ClientPlayed` or :class:`ClientText`,
or raises :class:`WireError` (whose :meth:`~WireError.event` is the JSON error to send
back); the ``*_event`` functions build the JSON events the server sends. No socket, no
clock: the tests feed bytes and strings. ``docs/web.md`` documents the same format.

In short: binary messages carry audio (16-bit little-endian mono PCM; the page's
microphone one way, the assistant's speech the other); text messages are JSON objects
with a ``type``. Assistant audio is announced by an ``audio`` event naming its item, turn
and rate; the binary messages that follow belong to it until the next ``audio`` event.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.dsp import from_pcm16

__all__ = [
    "MAX_TEXT_BYTES",
    "MAX_USER_TEXT",
    "PROTOCOL_VERSION",
    "RATES",
    "ClientAudio",
    "ClientHello",
    "ClientPlayed",
    "ClientText",
    "WireError",
    "audio_event",
    "encode",
    "error_event",
    "max_audio_bytes",
    "parse_client_message",
    "ready_event",
]

PROTOCOL_VERSION = 1
#: Largest JSON message the page may send (they are all tiny).
MAX_TEXT_BYTES = 4096
#: Longest typed user message, in characters.
MAX_USER_TEXT = 2000
#: Sample rates a page may declare for its microphone audio.
RATES = range(8000, 48001)


class WireError(ValueError):
    """A message from the page breaks the wire format; ``code`` names the rule it broke."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def event(self) -> dict[str, Any]:
        """The ``error`` event that tells the page what was wrong (the connection stays open)."""
        return error_event(self.code, self.message)


@dataclass(frozen=True, slots=True)
class ClientAudio:
    """Microphone audio from the page: int16 mono ``samples`` (a read-only view of the message)."""

    samples: np.ndarray


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The page declares the sample rate of the audio it sends from now on."""

    sample_rate: int


@dataclass(frozen=True, slots=True)
class ClientPlayed:
    """The page has played ``ms`` of assistant item ``item_id``; ``done``: it will play no more of it."""

    item_id: str
    ms: int
    done: bool
    underruns: int | None = None  # the page's player: how often it ran dry so far (optional)


@dataclass(frozen=True, slots=True)
class ClientText:
    """A message the user typed instead of speaking."""

    text: str


ClientMessage = ClientAudio | ClientHello | ClientPlayed | ClientText


def max_audio_bytes(sample_rate: int, max_ms: int) -> int:
    """The largest binary audio message accepted: ``max_ms`` of 16-bit mono at ``sample_rate``."""
    return 2 * math.ceil(sample_rate * max_ms / 1000)


def parse_client_message(message: str | bytes, *, max_audio: int) -> ClientMessage:
    """Decode one websocket message from the page; raises :class:`WireError` when it is malformed.

    ``max_audio`` is the largest binary message in bytes (see :func:`max_audio_bytes`).
    """
    if isinstance(message, (bytes, bytearray, memoryview)):
        n = len(message)
        if n == 0:
            raise WireError("bad_audio", "empty binary message; send 16-bit PCM samples")
        if n % 2:
            raise WireError("bad_audio", f"binary message of {n} bytes is not whole 16-bit samples; "
                                         "send 16-bit little-endian mono PCM")
        if n > max_audio:
            raise WireError("audio_too_large", f"binary message of {n} bytes exceeds {max_audio} bytes; "
                                               "send 20 ms frames")
        return ClientAudio(from_pcm16(message))
    if len(message) > MAX_TEXT_BYTES:
        raise WireError("message_too_large", f"text message of {len(message)} characters exceeds {MAX_TEXT_BYTES}")
    try:
        data = json.loads(message)
    except ValueError:
        raise WireError("bad_json", "text message is not JSON; send a JSON object with a `type`") from None
    except RecursionError:  # the C decoder recurses per level: 2 KB of `[` reaches the limit
        raise WireError("bad_json", "text message is nested too deeply; the page's messages are flat objects") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise WireError("bad_json", "text message must be a JSON object with a string `type`")
    kind = data["type"]
    if kind == "played":
        item_id, ms, done = data.get("item_id"), data.get("ms"), data.get("done", False)
        if not isinstance(item_id, str) or not item_id:
            raise WireError("bad_played", "`played` needs `item_id`, the id of an `audio` event")
        if not _is_int(ms) or ms < 0:
            raise WireError("bad_played", f"`played.ms` must be a whole number of milliseconds >= 0, not {ms!r}")
        if not isinstance(done, bool):
            raise WireError("bad_played", f"`played.done` must be true or false, not {done!r}")
        underruns = data.get("underruns")
        if underruns is not None and (not _is_int(underruns) or underruns < 0):
            raise WireError("bad_played", f"`played.underruns` must be a whole number >= 0, not {underruns!r}")
        return ClientPlayed(item_id, int(ms), done, None if underruns is None else int(underruns))
    if kind == "hello":
        rate = data.get("sample_rate")
        if not _is_int(rate) or rate not in RATES:
            raise WireError("bad_hello", f"`hello.sample_rate` must be a rate in Hz between {RATES.start} and "
                                         f"{RATES.stop - 1}, not {rate!r}")
        return ClientHello(int(rate))
    if kind == "text":
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise WireError("bad_text", "`text.text` must be a non-empty string")
        if len(text) > MAX_USER_TEXT:
            raise WireError("bad_text", f"`text.text` is {len(text)} characters; the limit is {MAX_USER_TEXT}")
        return ClientText(text.strip())
    raise WireError("unknown_type", f"unknown message type {kind!r}; the page sends hello, played or text "
                                    "(and binary audio)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# --- server -> page ---------------------------------------------------------------------------


def encode(event: dict[str, Any]) -> str:
    """An event as compact JSON text."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)


def ready_event(session: str, *, input_rate: int | None, frame_ms: float, max_audio: int) -> dict[str, Any]:
    """The first event of a connection: what the page should send (``input_rate`` None: no microphone)."""
    return {"type": "ready", "protocol": PROTOCOL_VERSION, "session": session, "input_rate": input_rate,
            "frame_ms": frame_ms, "max_audio_bytes": max_audio}


def audio_event(item_id: str | None, turn: int, rate: int) -> dict[str, Any]:
    """Announces the binary audio messages that follow: their item, turn and sample rate."""
    return {"type": "audio", "item_id": item_id, "turn": turn, "rate": rate}


def error_event(code: str, message: str, *, fatal: bool = False, processor: str | None = None) -> dict[str, Any]:
    """An error for the page to show; ``fatal``: the session is over."""
    event: dict[str, Any] = {"type": "error", "code": code, "message": message, "fatal": fatal}
    if processor:
        event["processor"] = processor
    return event
