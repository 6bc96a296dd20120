"""transport.webrtc.input / .output: a WebRTC peer as the microphone and the speaker of a graph.

``voxpipe serve`` binds both to one peer connection (a :class:`~.session.PeerSession`,
``attachments["webrtc_session"]``) before the graph starts; every peer gets its own graph.

* :class:`WebRTCInput` is a source: the peer's Opus audio as decoded by aiortc, as mono
  int16 :class:`~pipeline.frames.AudioFrame` s at ``sample_rate`` (48 kHz, or 24/16 kHz
  through :class:`~.rates.IntegerResampler`: 1.25 ms, not soxr's ~21 ms) whose ``pts`` is
  the RTP timestamp (counted from the first packet, at the output rate), with lost packets concealed
  (:class:`~.conceal.GapConcealer`) so media time has no holes; plus typed text from the
  data channel. A peer that sends no audio for ``media_timeout_s`` ends the session
  (``no_media``); one whose audio stops for ``media_gap_s`` after it flowed has gone
  (``peer_gone``: a tab closed without its goodbye).
* :class:`WebRTCOutput` sends assistant audio on the session's outbound track (16 and
  24 kHz through :class:`~.rates.IntegerResampler`, other rates through soxr), the page's
  events on the data channel, stops sending at once on an
  interruption, and turns the page's ``played`` reports into
  :class:`~pipeline.frames.PlaybackProgressFrame` s upstream (what a barge-in truncates to).
  It passes every frame on, like ``transport.websocket.output``.

aiortc is imported only when a session starts, so a pipeline can be checked (and the
reference built) without the ``webrtc`` extra.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.dsp import Resampler, to_int16
from pipeline.errors import VoxpipeError
from pipeline.frames import (
    AudioFormat,
    AudioFrame,
    Direction,
    Frame,
    InterruptionFrame,
    PlaybackProgressFrame,
    ResponseEndFrame,
    TextFrame,
)
from pipeline.processor import Processor
from processors.web.transport import WebsocketOutput

from .conceal import GapConcealer
from .rates import IntegerResampler

if TYPE_CHECKING:
    from .session import PeerSession

__all__ = ["WEBRTC_SESSION", "WebRTCInput", "WebRTCOutput"]

#: The key of a peer's :class:`~.session.PeerSession` in the session context's ``attachments``.
WEBRTC_SESSION = "webrtc_session"
RATE = 48000

_DOWN = Direction.DOWNSTREAM
_UP = Direction.UPSTREAM


def _bound(processor: Processor, kind: str) -> PeerSession:
    session = processor.context.attachments.get(WEBRTC_SESSION)
    if session is None:
        raise VoxpipeError(f"{kind} {processor.name!r} is not bound to a WebRTC peer: run this pipeline with "
                           "`voxpipe serve FILE.yaml` and open the page with ?transport=webrtc (or POST an SDP "
                           "offer to /webrtc/offer, docs/webrtc.md), not `voxpipe run`")
    return session


class WebRTCInput(Processor):
    """Source of the peer's microphone: mono int16 frames at ``sample_rate``, stamped with RTP media time.

    Frames are the peer's packets (20 ms for browsers), converted from Opus's 48 kHz to
    ``sample_rate`` by :class:`~.rates.IntegerResampler` (1.25 ms of filter delay; no block
    buffering, so every packet gives its frame at once). A gap in the RTP timestamps (a lost
    packet) is filled with a fading repeat of the last frame; ``pts`` stays the peer's
    media time. Typed messages from the data channel become user ``TextFrame`` s.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        media_timeout_s: float = Field(10.0, gt=0, le=600, description="end the session when the peer sends "
                                       "no audio for this long (a muted-but-connected browser still sends packets)")
        media_gap_s: float = Field(2.0, gt=0, le=600, description="once audio flows, end the session when it "
                                   "stops this long: a closed tab or a lost network (browsers send a packet every "
                                   "20 ms, silence included)")
        conceal_fade_ms: float = Field(60.0, ge=1, le=1000, description="a lost packet's repeat fades out over this")
        sample_rate: Literal[16000, 24000, 48000] = Field(48000, description="rate of the frames pushed: 24000 for "
                                                          "the realtime models, 16000 for most recognisers (converted "
                                                          "with 1.25 ms of delay, rates.py)")

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat:
        return AudioFormat(self.params.sample_rate, 1, "int16")

    async def start(self) -> None:
        self.session = _bound(self, "transport.webrtc.input")
        self.concealer = GapConcealer(RATE, fade_ms=self.params.conceal_fade_ms)
        rate = self.params.sample_rate
        self.resampler = IntegerResampler(RATE, rate) if rate != RATE else None
        self.spawn(self._texts)

    async def _texts(self) -> None:
        while (text := await self.session.next_text()) is not None:
            await self.push(TextFrame(text, role="user"))

    async def produce(self) -> None:
        import anyio
        from aiortc.mediastreams import MediaStreamError

        session, timeout = self.session, self.params.media_timeout_s
        await session.connected.wait()  # the host's connect deadline covers the time before
        track = await session.inbound_track(timeout)
        if track is None:
            if session.open:
                session.end("no_media", f"the peer offered no audio track within {timeout:g} s")
            return
        conceal, resampler, rate = self.concealer, self.resampler, self.params.sample_rate
        div = RATE // rate
        gap = min(timeout, self.params.media_gap_s)
        while session.open:
            frame = None
            with anyio.move_on_after(timeout if session.media_frames == 0 else gap):
                try:
                    frame = await track.recv()
                except MediaStreamError:  # the peer's track ended (connection closed)
                    session.end("page_closed", "the peer's audio track ended")
                    return
            if frame is None:
                if session.media_frames == 0:
                    session.end("no_media", f"no audio arrived for {timeout:g} s since the connection "
                                "(is the microphone track enabled?)")
                else:  # a tab closed without its goodbye sends nothing more: no close, no RTCP BYE
                    session.end("peer_gone", f"the peer's audio stopped for {gap:g} s: the tab closed or the "
                                "network went away")
                return
            session.media_frames += 1
            x = frame.to_ndarray()  # s16 packed: (1, samples * channels)
            channels = len(frame.layout.channels)
            mono = np.ascontiguousarray(x.reshape(-1, channels)[:, 0]) if channels > 1 else x.reshape(-1).copy()
            if frame.sample_rate != RATE:  # aiortc decodes Opus at 48 kHz; G.711 would be 8 kHz: refuse it
                session.end("bad_codec", f"the peer sends {frame.sample_rate} Hz audio; offer Opus")
                return
            for samples, pts in conceal.process(mono, int(frame.pts or 0)):
                if resampler is not None:  # Opus frames are whole multiples of 2 and 3 samples: pts stays exact
                    samples = resampler.process(samples)
                await self.push(AudioFrame(samples, rate, pts=pts // div))
            session.concealment = conceal.statistics()


class WebRTCOutput(Processor):
    """Sends the graph's output to the peer and reports the page's playback upstream.

    Assistant audio (mono, any rate; float32 is converted) is resampled to 48 kHz (16 and
    24 kHz with :class:`~.rates.IntegerResampler`, 1.25 ms; other rates with soxr) and queued
    on the outbound track; each new item is announced on the data channel with an ``audio``
    event carrying its first sample's RTP timestamp. An interruption clears the track's
    queue at once (the next 20 ms frame is silence) and sends ``flush``. Transcripts, tool
    calls and results, speaking events, latency and errors are the websocket page's events.
    Every frame is passed on unchanged.
    """

    input_format = AudioFormat(channels=1)
    _event = WebsocketOutput._event  # the page's JSON events: one definition for both transports

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self._speech_stopped_at: float | None = None
        self._resampler: IntegerResampler | Resampler | None = None
        self._last: tuple[str | None, int] | None = None  # (item, turn) of the audio before the resampler tail

    async def start(self) -> None:
        self.session = _bound(self, "transport.webrtc.output")
        self.spawn(self._playback_reports)

    async def _playback_reports(self) -> None:
        session = self.session
        while (reports := await session.next_reports()) is not None:
            for item_id, (ms, done) in reports.items():
                await self.push(PlaybackProgressFrame(item_id, ms, done, turn=session.item_turn(item_id)), _UP)

    async def process(self, frame: Frame, direction: Direction) -> None:
        session = self.session
        if isinstance(frame, AudioFrame):
            if direction is _DOWN:
                await self._play(frame)
        elif isinstance(frame, InterruptionFrame):
            self._speech_stopped_at = None
            self._resampler = None  # its tail belongs to the interrupted answer
            session.flush(frame.turn)
        else:
            if isinstance(frame, ResponseEndFrame):
                await self._drain_resampler()
                session.items_done()
            event = self._event(frame)
            if event is not None:
                session.send_event(event)
        await self.push(frame, direction)

    async def _play(self, frame: AudioFrame) -> None:
        if frame.samples.shape[0] == 0:
            return
        if self._speech_stopped_at is not None and frame.turn > 0:
            ms = round(1000 * (time.perf_counter() - self._speech_stopped_at), 1)
            self._speech_stopped_at = None
            self.session.send_event({"type": "latency", "turn": frame.turn, "first_audio_ms": ms})
        x = frame.samples if frame.samples.ndim == 1 else frame.samples[:, 0]
        x = to_int16(x)
        if frame.sample_rate != RATE:
            if self._resampler is None or self._resampler.in_rate != frame.sample_rate:
                await self._drain_resampler()
                rate = frame.sample_rate
                self._resampler = IntegerResampler(rate, RATE) if rate in (16000, 24000) else Resampler(rate, RATE)
            x = self._resampler.process(x)
        self._last = (frame.item_id, frame.turn)
        await self.session.play(x, item_id=frame.item_id, turn=frame.turn)

    async def _drain_resampler(self) -> None:
        r, self._resampler = self._resampler, None
        if r is not None and self._last is not None:
            tail = r.flush()
            if tail.shape[0]:
                await self.session.play(tail, item_id=self._last[0], turn=self._last[1])
