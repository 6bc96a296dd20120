"""transport.websocket.input / .output: a browser page as the microphone and the speaker of a graph.

Both processors are bound by ``voxpipe serve`` to one browser connection (a
:class:`~.session.WebSession`) before the graph starts; each connection gets its own graph,
so its own pair. Outside ``voxpipe serve`` they have nothing to talk to, and ``start()``
says so.

* :class:`WebsocketInput` is a source: the page's microphone audio, cut into fixed frames
  (and resampled when the page declared another rate), plus typed text as user
  :class:`~pipeline.frames.TextFrame` s.
* :class:`WebsocketOutput` sends what reaches it to the page: assistant audio as binary
  messages, transcripts, tool calls and results, speaking events, latency figures,
  interruptions (``flush``) and errors as JSON events. The page is the real playback, so
  the output turns the page's ``played`` reports into
  :class:`~pipeline.frames.PlaybackProgressFrame` s upstream: that is what a barge-in
  truncates to. It passes every frame on, so it can sit before a ``tools.router`` and show
  the model's tool calls (which the router consumes) and their results (which travel
  back upstream through it).
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.dsp import Rechunker, Resampler, frame_samples, to_pcm16
from pipeline.errors import VoxpipeError
from pipeline.frames import (
    AudioFormat,
    AudioFrame,
    Direction,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    MetricsFrame,
    PlaybackProgressFrame,
    ResponseEndFrame,
    ResponseStartFrame,
    TextFrame,
    ToolCallFrame,
    ToolResultFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipeline.processor import Processor

from .session import WebSession

__all__ = ["WEB_SESSION", "WebsocketInput", "WebsocketOutput"]

_DOWN = Direction.DOWNSTREAM
_UP = Direction.UPSTREAM


def _unbound(processor: Processor, kind: str) -> VoxpipeError:
    return VoxpipeError(
        f"{kind} {processor.name!r} is not bound to a browser connection: run this pipeline with "
        "`voxpipe serve FILE.yaml` (each browser connection gets its own graph), not `voxpipe run`"
    )


#: The key of a browser connection's :class:`WebSession` in the session context's ``attachments``.
WEB_SESSION = "web_session"


class WebsocketInput(Processor):
    """Source of the browser's microphone: 16-bit mono frames of ``frame_ms`` at ``sample_rate``.

    The page is told ``sample_rate`` when it connects and sends 20 ms frames of PCM16 at
    that rate; a page (or client) that declares another rate with ``hello`` is resampled.
    Audio the graph cannot take in time is dropped oldest first past ``max_backlog_ms``.
    ``pts`` counts the samples received, so media time is the page's audio time.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        sample_rate: int = Field(24000, ge=8000, le=48000, description="rate of the frames pushed (the page is asked for it)")
        frame_ms: float = Field(20.0, gt=0, le=200, description="duration of each frame pushed")
        max_message_ms: int = Field(200, ge=20, le=1000, description="longest audio message accepted from the page")
        max_backlog_ms: int = Field(1000, ge=100, le=10_000, description="audio queued before the oldest is dropped")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self.frame_size = frame_samples(self.params.sample_rate, self.params.frame_ms)  # checks the pair now
        self.session: WebSession | None = None


    def output_format(self, upstream: AudioFormat | None) -> AudioFormat:
        return AudioFormat(self.params.sample_rate, 1, "int16")

    async def start(self) -> None:
        self.session = self.context.attachments.get(WEB_SESSION)
        if self.session is None:
            raise _unbound(self, "transport.websocket.input")
        self.session.max_backlog_ms = self.params.max_backlog_ms

    async def produce(self) -> None:
        session, rate = self.session, self.params.sample_rate
        assert session is not None
        rechunker = Rechunker(self.frame_size)
        resampler: Resampler | None = None
        pts = 0
        while (entry := await session.next_inbound()) is not None:
            kind, payload, in_rate = entry
            if kind == "text":
                await self.push(TextFrame(payload, role="user"))
                continue
            x = payload
            if in_rate != rate:
                if resampler is None or resampler.in_rate != in_rate:
                    resampler = Resampler(in_rate, rate)
                x = resampler.process(x)
            for frame in rechunker.process(x):
                await self.push(AudioFrame(frame, rate, pts=pts))
                pts += frame.shape[0]


class WebsocketOutput(Processor):
    """Sends the graph's output to the browser page and reports the page's playback upstream.

    Assistant audio (mono, any rate; float32 is converted) goes out as PCM16 binary
    messages after an ``audio`` event naming item, turn and rate. Transcripts, tool calls
    and results, response start/end, speaking events, per-turn latency, metrics and
    errors go out as JSON events; an interruption sends ``flush`` at once, and the page
    drops what it has queued. Every frame is passed on unchanged.
    """

    input_format = AudioFormat(channels=1)

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self.session: WebSession | None = None
        self._speech_stopped_at: float | None = None  # waiting for the answer's first audio

    async def start(self) -> None:
        self.session = self.context.attachments.get(WEB_SESSION)
        if self.session is None:
            raise _unbound(self, "transport.websocket.output")
        self.spawn(self._playback_reports)

    async def _playback_reports(self) -> None:
        session = self.session
        assert session is not None
        while (reports := await session.next_reports()) is not None:
            for item_id, (ms, done) in reports.items():
                await self.push(PlaybackProgressFrame(item_id, ms, done, turn=session.item_turn(item_id)), _UP)

    async def process(self, frame: Frame, direction: Direction) -> None:
        session = self.session
        assert session is not None
        if isinstance(frame, AudioFrame):
            if direction is _DOWN:
                await self._send_audio(session, frame)
        else:
            event = self._event(frame)
            if event is not None:
                await session.send_event(event)
        await self.push(frame, direction)

    async def _send_audio(self, session: WebSession, frame: AudioFrame) -> None:
        n = frame.samples.shape[0]
        if n == 0:
            return
        if self._speech_stopped_at is not None and frame.turn > 0:
            ms = round(1000 * (time.perf_counter() - self._speech_stopped_at), 1)
            self._speech_stopped_at = None
            await session.send_event({"type": "latency", "turn": frame.turn, "first_audio_ms": ms})
        samples = frame.samples if frame.samples.ndim == 1 else frame.samples[:, 0]
        await session.send_audio(to_pcm16(samples), item_id=frame.item_id, turn=frame.turn,
                                 rate=frame.sample_rate, samples=n)

    def _event(self, frame: Frame) -> dict[str, Any] | None:
        """The JSON event for a frame, or None for frames the page does not need."""
        if isinstance(frame, TranscriptionFrame):
            kind = "transcript.done" if frame.final else "transcript.delta"
            return {"type": kind, "role": frame.role, "item_id": frame.item_id, "text": frame.text, "turn": frame.turn}
        if isinstance(frame, TextFrame):
            kind = "transcript.done" if frame.role == "user" else "transcript.delta"
            return {"type": kind, "role": frame.role, "item_id": frame.item_id, "text": frame.text, "turn": frame.turn}
        if isinstance(frame, ToolCallFrame):
            return {"type": "tool.call", "call_id": frame.call_id, "name": frame.name,
                    "arguments": frame.arguments, "turn": frame.turn}
        if isinstance(frame, ToolResultFrame):
            return {"type": "tool.result", "call_id": frame.call_id, "name": frame.name,
                    "output": frame.output, "is_error": frame.is_error}
        if isinstance(frame, InterruptionFrame):
            self._speech_stopped_at = None
            return {"type": "flush", "turn": frame.turn}
        if isinstance(frame, UserStartedSpeakingFrame):
            self._speech_stopped_at = None
            return {"type": "speech.started"}
        if isinstance(frame, UserStoppedSpeakingFrame):
            self._speech_stopped_at = time.perf_counter()
            return {"type": "speech.stopped"}
        if isinstance(frame, ResponseStartFrame):
            return {"type": "response.start", "response_id": frame.response_id, "turn": frame.turn}
        if isinstance(frame, ResponseEndFrame):
            return {"type": "response.end", "response_id": frame.response_id, "status": frame.status,
                    "turn": frame.turn}
        if isinstance(frame, MetricsFrame):
            return {"type": "metrics", "name": frame.name, "processor": frame.processor, "values": frame.values}
        if isinstance(frame, ErrorFrame):
            return {"type": "error", "code": frame.code or "error", "message": frame.message,
                    "fatal": frame.fatal, "processor": frame.processor}
        return None
