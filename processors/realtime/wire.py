"""The Realtime API's wire facts, once, for the client (``realtime.openai``) and the local server.

Theory of operation
-------------------
The client and the local server speak one wire; every fact about it that both sides need
lives here, so that what one side encodes the other decodes with the same table.

* **Audio formats** (reference §5, "Audio formats"). A format has a *name*, the beta
  enum value (``pcm16``, ``g711_ulaw``, ``g711_alaw``), which both sides also use
  internally, and a *GA format object* (``{"type": "audio/pcm", "rate": 24000}``,
  ``{"type": "audio/pcmu"}``, ``{"type": "audio/pcma"}``). ``pcm16`` is signed 16-bit
  little-endian mono at 24 kHz only (48 bytes a millisecond); G.711 mu-law / A-law is
  8 kHz, one byte a sample (8 bytes a millisecond).
* **Bytes and samples.** :func:`encode` and :func:`decode` convert whole samples between
  int16 numpy and wire bytes (G.711 through :mod:`pipeline.dsp.g711`). A byte stream may be
  cut anywhere: neither an audio delta nor an append is promised to end on a sample
  boundary, so a stream reader puts each chunk through a :class:`SampleCarry`, which holds
  a trailing partial sample (the pcm16 odd byte) until the next chunk of the same stream.
  :class:`AudioCodec` is the whole path for one stream of base64 text.
* **Wire samples.** A G.711 format's samples on the wire are its codes: :data:`CODEC` names
  them (``ulaw``, ``alaw``, the ``codec`` of a voxpipe :class:`~pipeline.frames.AudioFrame`),
  and :func:`wire_samples` / :meth:`AudioCodec.encode_wire` / :meth:`AudioCodec.decode_wire`
  carry codes between frames and base64 without decoding them: phone audio in mu-law goes
  to a ``g711_ulaw`` session and back untouched.
* **Event names** (reference §3.1). Beta renamed six server events and announces an item
  once (``conversation.item.created``) where GA says ``conversation.item.added`` then
  ``conversation.item.done``. :data:`GA_TO_BETA` renames what a server builds with GA names
  (and :data:`NOT_IN_BETA` lists what it does not send at all); :data:`BETA_TO_GA` maps what a
  client receives back to GA names, so one set of handlers serves both dialects.
* **Commits** (reference §2, §3.5). The server refuses ``input_audio_buffer.commit`` with
  less than :data:`MIN_COMMIT_MS` buffered (``input_audio_buffer_commit_empty``); the client
  does not send such a commit.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import numpy as np

from pipeline.dsp.g711 import DECODERS as _DECODERS
from pipeline.dsp.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

__all__ = [
    "BETA_TO_GA",
    "BYTES_PER_SAMPLE",
    "CODEC",
    "FORMATS",
    "FORMAT_TYPES",
    "GA_TO_BETA",
    "LIVE_PCM_RATES",
    "MIN_COMMIT_MS",
    "NOT_IN_BETA",
    "PCM_RATE",
    "SAMPLE_RATE",
    "AudioCodec",
    "AudioFormatName",
    "SampleCarry",
    "bytes_per_ms",
    "decode",
    "decode_base64",
    "duration_ms",
    "encode",
    "format_name",
    "ga_format",
    "wire_samples",
    "live_format",
    "live_format_rate",
]

# --- audio formats (reference §5) -------------------------------------------------------------

AudioFormatName = Literal["pcm16", "g711_ulaw", "g711_alaw"]
#: Format names, in the order the API lists them (error messages quote this order).
FORMATS: tuple[str, ...] = ("pcm16", "g711_ulaw", "g711_alaw")
#: The only rate ``audio/pcm`` allows.
PCM_RATE = 24000
#: Sample rate of each format.
SAMPLE_RATE: dict[str, int] = {"pcm16": PCM_RATE, "g711_ulaw": 8000, "g711_alaw": 8000}
BYTES_PER_SAMPLE: dict[str, int] = {"pcm16": 2, "g711_ulaw": 1, "g711_alaw": 1}
#: Format name -> the G.711 codec of its wire samples (``AudioFrame.codec``); None for linear pcm16.
CODEC: dict[str, str | None] = {"pcm16": None, "g711_ulaw": "ulaw", "g711_alaw": "alaw"}
_WIRE_DTYPE = {"pcm16": np.dtype(np.int16), "g711_ulaw": np.dtype(np.uint8), "g711_alaw": np.dtype(np.uint8)}
#: Format name -> the GA format object's ``type``.
FORMAT_TYPES: dict[str, str] = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
_NAME_OF_TYPE = {t: name for name, t in FORMAT_TYPES.items()}


def ga_format(name: str) -> dict[str, Any]:
    """The GA format object of ``name`` (a new dict): only pcm carries a ``rate``."""
    if name == "pcm16":
        return {"type": FORMAT_TYPES[name], "rate": PCM_RATE}
    return {"type": FORMAT_TYPES[name]}


def format_name(fmt: dict[str, Any]) -> str:
    """The name ('pcm16', 'g711_ulaw', 'g711_alaw') of a GA format object; KeyError if unknown."""
    return _NAME_OF_TYPE[fmt["type"]]


def bytes_per_ms(name: str) -> int:
    """Wire bytes in one millisecond of ``name`` (48 for pcm16, 8 for G.711)."""
    return SAMPLE_RATE[name] * BYTES_PER_SAMPLE[name] // 1000


def duration_ms(name: str, nbytes: int) -> float:
    """Milliseconds of audio in ``nbytes`` wire bytes of ``name``."""
    return nbytes / bytes_per_ms(name)


# --- bytes <-> samples ------------------------------------------------------------------------


def encode(name: str, samples: np.ndarray) -> bytes:
    """int16 mono samples at ``SAMPLE_RATE[name]`` as wire bytes of ``name``."""
    if name == "pcm16":
        return np.ascontiguousarray(samples, dtype="<i2").tobytes()
    if name == "g711_ulaw":
        return ulaw_encode(samples).tobytes()
    return alaw_encode(samples).tobytes()


def decode(name: str, data: bytes | bytearray | memoryview) -> np.ndarray:
    """Wire bytes of ``name`` as int16 samples; a trailing partial sample is ignored (see SampleCarry)."""
    if name == "pcm16":
        return np.frombuffer(data, dtype="<i2", count=len(data) // 2).astype(np.int16, copy=False)
    data = bytes(data) if isinstance(data, memoryview) else data
    return ulaw_decode(data) if name == "g711_ulaw" else alaw_decode(data)


def wire_samples(name: str, samples: np.ndarray, codec: str | None = None) -> np.ndarray:
    """Mono audio as the wire samples of ``name``: int16 for pcm16, G.711 codes (uint8) otherwise.

    ``codec`` says ``samples`` are already G.711 codes of that codec (an AudioFrame's
    ``codec``): codes of ``name`` itself come back untouched; others are decoded first.
    int16 and float32 (scaled, clipped) PCM are encoded. ValueError names the fix for
    anything else.
    """
    if samples.ndim == 2:
        if samples.shape[1] != 1:
            raise ValueError(f"the Realtime wire takes mono audio, got {samples.shape[1]} channels: put "
                             "`{type: audio.resample, params: {channels: 1}}` before it")
        samples = samples[:, 0]
    if codec is not None:
        if codec == CODEC[name]:
            return samples
        samples = _DECODERS[codec](samples)
    elif samples.dtype != np.int16:
        if samples.dtype.kind != "f":
            raise ValueError(f"audio must be int16 or float32 samples (or G.711 codes), got {samples.dtype}")
        samples = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    if name == "pcm16":
        return samples
    return ulaw_encode(samples) if name == "g711_ulaw" else alaw_encode(samples)


class SampleCarry:
    """Cuts a byte stream into whole samples, holding a trailing partial one for the next chunk."""

    __slots__ = ("width", "_held")

    def __init__(self, name: str) -> None:
        self.width = BYTES_PER_SAMPLE[name]
        self._held = b""

    def whole(self, data: bytes) -> bytes:
        """The whole samples of held bytes + ``data``; the remainder is held."""
        if self._held:
            data, self._held = self._held + data, b""
        extra = len(data) % self.width
        if extra:
            data, self._held = data[:-extra], data[-extra:]
        return data

    def reset(self) -> None:
        """Drop a held partial sample (a new stream starts)."""
        self._held = b""


def decode_base64(text: str) -> bytes:
    """The bytes of a base64 audio field; ValueError when it is not valid base64."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError(f"audio is not valid base64: {exc}") from None


class AudioCodec:
    """Converts int16 audio to the base64 text of one wire format and back, for one stream.

    ``decode`` keeps a trailing partial sample for the next call (deltas are not promised to
    end on a sample boundary); call ``reset`` between streams. Text that is not valid base64
    raises ``ValueError``.
    """

    def __init__(self, name: str) -> None:
        if name not in FORMATS:
            raise ValueError(f"unknown audio format {name!r}: use {', '.join(FORMATS[:-1])} or {FORMATS[-1]}")
        self.format = name
        self.rate = SAMPLE_RATE[name]
        self.bytes_per_sample = BYTES_PER_SAMPLE[name]
        self._carry = SampleCarry(name)

    def encode(self, samples: np.ndarray) -> str:
        """Base64 text of int16 mono ``samples`` in this format."""
        return base64.b64encode(encode(self.format, samples)).decode("ascii")

    def decode(self, text: str) -> np.ndarray:
        """int16 samples of one base64 delta (may be empty)."""
        return decode(self.format, self._carry.whole(decode_base64(text)))

    @property
    def wire_dtype(self) -> np.dtype:
        """The dtype of this format's wire samples: int16 for pcm16, uint8 codes for G.711."""
        return _WIRE_DTYPE[self.format]

    def encode_wire(self, samples: np.ndarray) -> str:
        """Base64 text of wire samples (see :func:`wire_samples`): G.711 codes go as they are."""
        if self.format == "pcm16":
            return self.encode(samples)
        return base64.b64encode(samples.tobytes()).decode("ascii")

    def decode_wire(self, text: str) -> np.ndarray:
        """The wire samples of one base64 delta: int16 for pcm16, the G.711 codes (uint8) themselves."""
        data = self._carry.whole(decode_base64(text))
        if self.format == "pcm16":
            return decode(self.format, data)
        return np.frombuffer(data, dtype=np.uint8)

    def reset(self) -> None:
        """Forget a held partial sample (a new item's audio starts)."""
        self._carry.reset()


# --- event names (reference §3.1) -------------------------------------------------------------

#: GA server event names -> beta names (what a server renames for a beta connection).
GA_TO_BETA: dict[str, str] = {
    "response.output_text.delta": "response.text.delta",
    "response.output_text.done": "response.text.done",
    "response.output_audio.delta": "response.audio.delta",
    "response.output_audio.done": "response.audio.done",
    "response.output_audio_transcript.delta": "response.audio_transcript.delta",
    "response.output_audio_transcript.done": "response.audio_transcript.done",
    "conversation.item.added": "conversation.item.created",
}
#: GA server events a beta server never sends (beta announces an item once, with ``created``).
NOT_IN_BETA = frozenset({"conversation.item.done"})
#: Beta server event names -> GA names (what a client reads); a transcription session's
#: ``transcription_session.updated`` is GA's ``session.updated``.
BETA_TO_GA: dict[str, str] = {
    **{beta: ga for ga, beta in GA_TO_BETA.items()},
    "transcription_session.updated": "session.updated",
}

# --- commits (reference §2, §3.5) -------------------------------------------------------------

#: The least audio a commit may take: less is refused with ``input_audio_buffer_commit_empty``.
MIN_COMMIT_MS = 100

# --- the Live API's audio formats (docs/live-protocol.md) ---------------------------------------

#: Rates ``audio/pcm`` allows on a Live websocket (Realtime allows only :data:`PCM_RATE`).
LIVE_PCM_RATES = (16000, 24000)


def live_format(name: str, rate: int = PCM_RATE) -> dict[str, Any]:
    """The Live ``audio.format`` object of ``name`` (a new dict): every format carries its ``rate``."""
    if name == "pcm16":
        if rate not in LIVE_PCM_RATES:
            raise ValueError(f"Live audio/pcm runs at 16000 or 24000 Hz, not {rate}")
        return {"type": FORMAT_TYPES[name], "rate": rate}
    return {"type": FORMAT_TYPES[name], "rate": SAMPLE_RATE[name]}


def live_format_rate(fmt: dict[str, Any]) -> tuple[str, int]:
    """(format name, sample rate) of a Live ``audio.format`` object; ValueError naming what is wrong."""
    name = _NAME_OF_TYPE.get(fmt.get("type")) if isinstance(fmt, dict) else None
    if name is None:
        raise ValueError(f"audio.format.type must be one of {', '.join(FORMAT_TYPES.values())}")
    rate = fmt.get("rate", PCM_RATE if name == "pcm16" else SAMPLE_RATE[name])
    allowed = LIVE_PCM_RATES if name == "pcm16" else (SAMPLE_RATE[name],)
    if rate not in allowed:
        raise ValueError(f"audio.format.rate {rate!r} is not allowed for {fmt['type']}: use "
                         + " or ".join(str(r) for r in allowed))
    return name, int(rate)
