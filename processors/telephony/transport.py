"""transport.phone.input / .output: a phone call's media stream as the microphone and speaker of a graph.

Both processors find their call in the session context (``attachments["phone_call"]``,
put there by the host that answered the call: ``voxpipe serve``); each call runs its own
graph, so its own pair. Audio becomes arrays once, here, at the edge.

* :class:`PhoneInput` is a source: the caller's audio (one frame per provider message,
  normally 20 ms at 8 kHz, or ``frame_ms`` of them joined) and key presses as
  :class:`~.frames.DtmfFrame` s. It returns when the stream ends (the caller hung up).
* :class:`PhoneOutput` sends the assistant's audio to the caller in ``chunk_ms`` chunks,
  each followed by a mark, and turns echoed marks into
  :class:`~pipeline.frames.PlaybackProgressFrame` s upstream (coalesced: at most one per
  ``report_ms``, 100 ms by default). On an interruption it sends
  ``clear`` first, then reports each cut item's heard position with ``done`` so that the
  model truncates at once, at what the caller heard. It passes every frame on.

Formats: both sides are 8 kHz mono, the rate of the phone network. By default the caller's
audio leaves as the provider's G.711 mu-law codes themselves (``sample_type: ulaw``,
``AudioFrame.codec`` set) and the output sends codes it is given as they are, so with a
model that speaks ``g711_ulaw`` the caller's bytes reach the model, and the model's bytes
reach the caller, untouched: no decode, no resample, no encode. The graph check decides
where PCM is needed: a processor that has not said it takes codes (a VAD, a recorder)
gets ``audio.g711`` decoding to int16 in front of it; a 24 kHz model gets that plus
``audio.resample`` (inserted with ``auto_resample``). ``sample_type: int16`` decodes at
the edge instead. A stream that is not mu-law on the wire (Plivo L16, A-law) is converted
at the edge to what ``sample_type`` says.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import anyio
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.dsp import Resampler
from pipeline.dsp.g711 import ENCODERS, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from processors.audio.g711 import decode_codes
from pipeline.errors import VoxpipeError
from pipeline.frames import AudioFormat, AudioFrame, Direction, Frame, InterruptionFrame, PlaybackProgressFrame
from pipeline.processor import Processor

from .call import CALL, PhoneCall
from .serializer import ENCODINGS
from .frames import DtmfFrame

__all__ = ["PhoneInput", "PhoneOutput", "decode_audio", "encode_audio"]

_DOWN = Direction.DOWNSTREAM
_UP = Direction.UPSTREAM
RATE = 8000


def decode_audio(payload: bytes, encoding: str) -> np.ndarray:
    """int16 samples of a stream payload (``pcmu``, ``pcma`` or little-endian ``l16``)."""
    if encoding == "pcmu":
        return ulaw_decode(np.frombuffer(payload, dtype=np.uint8))
    if encoding == "pcma":
        return alaw_decode(np.frombuffer(payload, dtype=np.uint8))
    return np.frombuffer(payload, dtype="<i2").astype(np.int16, copy=False)


def encode_audio(samples: np.ndarray, encoding: str) -> bytes:
    """Stream payload bytes of int16 ``samples``."""
    if encoding == "pcmu":
        return ulaw_encode(samples).tobytes()
    if encoding == "pcma":
        return alaw_encode(samples).tobytes()
    return samples.astype("<i2", copy=False).tobytes()


def _call(processor: Processor, kind: str) -> PhoneCall:
    call = processor.context.attachments.get(CALL)
    if call is None:
        raise VoxpipeError(f"{kind} {processor.name!r} is not part of a phone call: serve this pipeline with "
                           "`voxpipe serve FILE.yaml` and point the provider's voice webhook at "
                           "/telephony/twilio (or telnyx, plivo); see docs/telephony.md")
    return call


#: Wire encoding -> the AudioFrame codec of its bytes as they are.
_WIRE_CODEC = {"pcmu": "ulaw", "pcma": "alaw"}


class PhoneInput(Processor):
    """Source of the caller's voice: 8 kHz mono frames (mu-law codes by default), plus key presses."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        max_backlog_ms: int = Field(1000, ge=100, le=10_000, description="caller audio queued for a busy graph "
                                                                         "before the oldest is dropped")
        sample_type: Literal["ulaw", "alaw", "int16"] = Field(
            "ulaw", description="ulaw: the caller's G.711 bytes as they are (decoded by the graph only where a "
                                "processor needs PCM); int16: decode at the edge")
        frame_ms: int | None = Field(None, ge=20, le=500, description="audio per frame pushed into the graph, "
                                     "the provider's messages joined (null: each message as it comes, 20 ms). Set "
                                     "it to the model's append_ms when the model is the only listener: it sends no "
                                     "sooner anyway, and the graph wakes once per batch instead of per message")

        @model_validator(mode="after")
        def _frame_fits_backlog(self) -> PhoneInput.Params:
            if self.frame_ms is not None and self.frame_ms > self.max_backlog_ms:
                raise ValueError(f"frame_ms {self.frame_ms} is larger than max_backlog_ms {self.max_backlog_ms}: "
                                 "a frame could never fill; lower frame_ms or raise max_backlog_ms")
            return self

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat:
        return AudioFormat(RATE, 1, self.params.sample_type)

    async def start(self) -> None:
        self.call = _call(self, "transport.phone.input")
        self.call.max_backlog_ms = self.params.max_backlog_ms

    async def produce(self) -> None:
        call = self.call
        encoding, rate = call.protocol.encoding, call.protocol.sample_rate
        want = self.params.sample_type
        codec = None if want == "int16" else want
        as_is = rate == RATE and _WIRE_CODEC.get(encoding) == codec  # the caller's bytes, untouched
        resampler = Resampler(rate, RATE) if rate != RATE else None
        encode = ENCODERS.get(want)
        frame_ms = self.params.frame_ms
        call.frame_bytes = 0 if frame_ms is None else rate * ENCODINGS[encoding] * frame_ms // 1000
        uint8 = np.uint8
        pts = 0
        while (entry := await call.next_inbound()) is not None:
            kind, payload = entry
            if kind == "dtmf":
                await self.push(DtmfFrame(payload.digit, payload.duration_ms))
                continue
            if as_is:
                x = np.frombuffer(payload, dtype=uint8)
            else:
                x = decode_audio(payload, encoding)
                if resampler is not None:
                    x = resampler.process(x)
                if encode is not None:
                    x = encode(x)
            if x.shape[0]:
                await self.push(AudioFrame(x, RATE, pts=pts, codec=codec))
                pts += x.shape[0]


class PhoneOutput(Processor):
    """Plays the graph's audio to the caller and reports, from the provider's marks, what was heard."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        chunk_ms: int = Field(20, ge=20, le=1000, description="audio per media message; a mark follows each, "
                                                              "so this is the resolution of what is proven heard")
        report_ms: int = Field(100, ge=0, le=1000, description="at most one heard-position report upstream per this "
                               "interval while the caller listens (0: one per echoed mark); a barge-in's final "
                               "report is sent at once, exact to the marks")

    input_format = AudioFormat(RATE, 1, None)
    accepts_g711 = True  # codes of the call's own encoding are sent as they are

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self._resampler: Resampler | None = None

    async def start(self) -> None:
        self.call = _call(self, "transport.phone.output")
        self.spawn(self._playback_reports)

    async def _playback_reports(self) -> None:
        """Push the heard positions the echoes prove, coalesced: the first at once, then one per ``report_ms``.

        The provider echoes a mark every 20 ms of audio; a report upstream for each would be
        50 frames a second through the graph while the caller listens, for positions the
        model only needs at a barge-in, and a barge-in's report is sent by :meth:`process`
        itself, from the ledger.
        """
        call = self.call
        interval = self.params.report_ms / 1000
        while (reports := await call.next_reports()) is not None:
            for item_id, ms in reports.items():
                if item_id is not None:
                    await self.push(PlaybackProgressFrame(item_id, ms, False), _UP)
            if interval:
                await anyio.sleep(interval)  # echoes meanwhile coalesce in the call (latest per item)

    async def process(self, frame: Frame, direction: Direction) -> None:
        call = self.call
        if isinstance(frame, AudioFrame):
            if direction is _DOWN:
                await self._send_audio(call, frame)
        elif isinstance(frame, InterruptionFrame):
            for item_id, turn, heard_ms in await call.clear():  # clear first: every ms counts
                if item_id is not None:
                    await self.push(PlaybackProgressFrame(item_id, heard_ms, True, turn=turn), _UP)
        await self.push(frame, direction)

    async def _send_audio(self, call: PhoneCall, frame: AudioFrame) -> None:
        x = frame.samples if frame.samples.ndim == 1 else frame.samples[:, 0]
        if x.shape[0] == 0:
            return
        encoding = call.protocol.encoding
        rate = call.protocol.sample_rate
        if frame.codec is not None:
            if _WIRE_CODEC.get(encoding) == frame.codec and frame.sample_rate == rate:  # the model's bytes, untouched
                await call.send_audio(x.tobytes(), item_id=frame.item_id, turn=frame.turn,
                                      chunk_bytes=rate * self.params.chunk_ms // 1000)
                return
            x = decode_codes(replace(frame, samples=x))
        elif x.dtype != np.int16:
            x = np.clip(x * 32768.0, -32768, 32767).astype(np.int16)
        if frame.sample_rate != rate:
            if self._resampler is None or self._resampler.in_rate != frame.sample_rate:
                self._resampler = Resampler(frame.sample_rate, rate)
            x = self._resampler.process(x)
        width = 2 if encoding == "l16" else 1
        chunk = rate * self.params.chunk_ms // 1000 * width
        await call.send_audio(encode_audio(x, encoding), item_id=frame.item_id, turn=frame.turn, chunk_bytes=chunk)
