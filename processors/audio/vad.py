"""Voice activity processors: ``vad.energy`` and ``vad.silero``.

Both pass audio through and push :class:`UserStartedSpeakingFrame` /
:class:`UserStoppedSpeakingFrame` (system frames, so they overtake queued audio) whose
``pts`` is the exact media time of the speech boundary at the audio's sample rate; the
Realtime API's padded positions are ``pts - prefix_padding_ms`` and
``pts + silence_duration_ms``.

With ``gate: true`` only speech passes: audio is held while nobody speaks, and when speech
starts the held audio from ``prefix_padding_ms`` before the onset is replayed first, so a
speech recogniser downstream hears the first syllable; audio flows until the stop.
"""

from __future__ import annotations

import abc
from collections import deque
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from pipeline.dsp.foreground import ForegroundGate  # DSP; still importable from here
from pipeline.dsp.formats import as_dtype, downmix
from pipeline.dsp.rechunk import Rechunker
from pipeline.dsp.resample import Resampler
from pipeline.dsp.vad import EnergyVAD, VADEvent
from pipeline.frames import AudioFrame, Direction, Frame, UserStartedSpeakingFrame, UserStoppedSpeakingFrame
from pipeline.processor import Processor

__all__ = ["EnergyVADProcessor", "SileroVADProcessor"]

_DOWN = Direction.DOWNSTREAM


class _VADParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="0..1, higher needs louder (or surer) speech (Realtime semantics)")
    prefix_padding_ms: float = Field(300.0, ge=0.0, le=5000.0, description="audio kept before the speech onset")
    silence_duration_ms: float = Field(200.0, ge=0.0, le=10000.0, description="silence that ends speech")
    min_speech_ms: float = Field(100.0, ge=0.0, le=5000.0, description="shorter activity is not speech (0: Realtime's behaviour)")
    gate: bool = Field(False, description="pass only speech audio, replaying prefix_padding_ms before each start")


class _VADProcessor(Processor, abc.ABC):
    """Shared shell: runs a detector per audio frame, pushes speaking frames, gates audio."""

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self._rate = 0
        self._held: deque[AudioFrame] = deque()
        self._held_samples = 0
        self._keep = 0
        self._open = False  # gate: forwarding audio

    @abc.abstractmethod
    def _setup(self, frame: AudioFrame) -> None:
        """(Re)build the detector for the rate and type of ``frame``."""

    @abc.abstractmethod
    def _detect(self, frame: AudioFrame) -> Sequence[VADEvent]:
        """The events that ``frame`` completes, with pts at the frame's rate."""

    @abc.abstractmethod
    def _final_events(self) -> Sequence[VADEvent]:
        """At the end: the stop of a segment still open."""

    @abc.abstractmethod
    def _speaking(self) -> bool:
        """True between a start and a stop."""

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is not _DOWN or type(frame) is not AudioFrame:
            await self.push(frame, direction)
            return
        if frame.sample_rate != self._rate:
            if self._rate:
                await self._stop_speech()
            self._rate = frame.sample_rate
            p = self.params
            self._keep = int((p.prefix_padding_ms + p.min_speech_ms + p.silence_duration_ms + 100) * self._rate / 1000)
            self._setup(frame)
        events = self._detect(frame)
        if not self.params.gate:
            for event in events:
                await self._announce(event, frame.turn)
            await self.push(frame, direction)
            return
        await self._gated(frame, events)

    async def _announce(self, event: VADEvent, turn: int) -> None:
        cls = UserStartedSpeakingFrame if event.started else UserStoppedSpeakingFrame
        await self.push(cls(pts=event.pts, sample_rate=self._rate, turn=turn))

    async def _gated(self, frame: AudioFrame, events: Sequence[VADEvent]) -> None:
        closing = False
        for event in events:
            await self._announce(event, frame.turn)
            if event.started:
                self._open = True
                await self._replay(event.padded_pts)
            else:
                closing = True
        if self._open:
            await self.push(frame)  # the frame was not held (replay already sent held ones)
            if closing and not self._speaking():
                self._open = False
            return
        self._hold(frame)

    def _hold(self, frame: AudioFrame) -> None:
        held = self._held
        held.append(frame)
        self._held_samples += frame.samples.shape[0]
        while held and self._held_samples - held[0].samples.shape[0] >= self._keep:
            self._held_samples -= held.popleft().samples.shape[0]

    async def _replay(self, from_pts: int) -> None:
        """Send the held audio from ``from_pts`` on (the first frame cut to start there)."""
        held, self._held, self._held_samples = self._held, deque(), 0
        for f in held:
            end = f.pts + f.samples.shape[0]
            if end <= from_pts:
                continue
            if f.pts < from_pts:
                f = AudioFrame(f.samples[from_pts - f.pts :], f.sample_rate, from_pts, f.item_id, turn=f.turn)
            await self.push(f)

    async def _stop_speech(self) -> None:
        for event in self._final_events():
            await self._announce(event, self.turn)
        self._open = False
        self._held.clear()
        self._held_samples = 0

    async def stop(self) -> None:
        if self._rate:
            await self._stop_speech()


class EnergyVADProcessor(_VADProcessor):
    """Finds speech by energy over an adaptive noise floor (:class:`pipeline.dsp.EnergyVAD`).

    Costs about 2 us per 20 ms frame; ignores steady noise and hum. In babble (a crowd, a
    café) set ``foreground_db`` (:class:`pipeline.dsp.foreground.ForegroundGate`); for music
    or loud rooms use ``vad.silero``.
    """

    class Params(_VADParams):
        foreground_db: float | None = Field(
            None, ge=2.0, le=20.0,
            description="babble: only audio this many dB above the median level of the last 3 s is speech")

    def _setup(self, frame: AudioFrame) -> None:
        p = self.params
        self.vad = EnergyVAD(frame.sample_rate, threshold=p.threshold, prefix_padding_ms=p.prefix_padding_ms,
                             silence_duration_ms=p.silence_duration_ms, min_speech_ms=p.min_speech_ms)
        self.foreground = (ForegroundGate(frame.sample_rate, margin_db=p.foreground_db)
                           if p.foreground_db is not None else None)

    def _detect(self, frame: AudioFrame) -> Sequence[VADEvent]:
        x = frame.samples
        if self.foreground is not None:
            x = self.foreground.apply(x)
        return self.vad.process(x, frame.pts)

    def _final_events(self) -> Sequence[VADEvent]:
        return self.vad.finish()

    def _speaking(self) -> bool:
        return self.vad.speaking


class SileroVADProcessor(_VADProcessor):
    """Finds speech with the Silero neural VAD (:class:`pipeline.dsp.SileroVAD`).

    Robust to babble and music where the energy VAD is not. The model runs at 16 kHz in
    512-sample chunks (8 kHz, 256 samples, for 8 kHz graphs), single-threaded; audio at
    other rates is resampled internally (soxr ``LQ``: the VAD needs no more than 6 kHz of
    band, and ``LQ`` halves the resampler's delay), stereo is downmixed. The model is
    loaded in ``start()``. Needs ``onnxruntime`` and the ``silero-vad`` wheel's model file.
    """

    class Params(_VADParams):
        neg_threshold: float | None = Field(None, gt=0.0, lt=1.0,
                                            description="probability below which speech pauses (default threshold - 0.15)")

    _RESAMPLE_QUALITY = "LQ"

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self._vads: dict[int, Any] = {}  # model rate -> SileroVAD

    async def start(self) -> None:
        self._get_vad(16000)  # load the model before the first frame, not on it

    def _get_vad(self, model_rate: int):
        vad = self._vads.get(model_rate)
        if vad is None:
            from pipeline.dsp.silero import SileroVAD

            p = self.params
            vad = self._vads[model_rate] = SileroVAD(
                model_rate, threshold=min(max(p.threshold, 0.01), 0.99), neg_threshold=p.neg_threshold,
                prefix_padding_ms=p.prefix_padding_ms, silence_duration_ms=p.silence_duration_ms,
                min_speech_ms=p.min_speech_ms)
        return vad

    def _setup(self, frame: AudioFrame) -> None:
        rate = frame.sample_rate
        model_rate = 8000 if rate == 8000 else 16000
        self.vad = self._get_vad(model_rate)
        self.vad.reset()
        self._model_rate = model_rate
        dtype = frame.samples.dtype.name
        self._resampler = None if rate == model_rate else Resampler(rate, model_rate, dtype=dtype,
                                                                     quality=self._RESAMPLE_QUALITY)
        self._rechunker = Rechunker(self.vad.chunk_size, dtype=dtype)
        self._dtype = frame.samples.dtype
        self._base = frame.pts  # graph pts of model position 0
        self._next = frame.pts
        self._model_pos = 0

    def _detect(self, frame: AudioFrame) -> Sequence[VADEvent]:
        x = frame.samples
        if x.ndim != 1:
            x = downmix(x)
        if x.dtype is not self._dtype:
            x = as_dtype(x, self._dtype)
        if frame.pts != self._next:  # a gap: restart the model's timeline here
            if self._resampler is not None:
                self._resampler.reset()
            self._rechunker.reset()
            self._base = frame.pts - (self._model_pos * self._rate + self._model_rate // 2) // self._model_rate
        self._next = frame.pts + x.shape[0]
        if self._resampler is not None:
            x = self._resampler.process(x)
        chunks = self._rechunker.process(x)
        if not chunks:
            return ()
        vad = self.vad
        events = []
        for chunk in chunks:
            found = vad.process(chunk, self._model_pos)
            self._model_pos += chunk.shape[0]
            if found:
                events += found
        if not events:
            return ()
        return [self._to_graph(e) for e in events]

    def _to_graph(self, event: VADEvent) -> VADEvent:
        rate, model_rate, base = self._rate, self._model_rate, self._base

        def conv(pos: int) -> int:
            return base + (pos * rate + model_rate // 2) // model_rate

        return VADEvent(event.started, conv(event.pts), conv(event.padded_pts), conv(event.detected_pts), rate)

    def _final_events(self) -> Sequence[VADEvent]:
        vad = getattr(self, "vad", None)
        if vad is None:
            return ()
        return [self._to_graph(e) for e in vad.finish()]

    def _speaking(self) -> bool:
        return self.vad.speaking
