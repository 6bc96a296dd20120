"""Audio processors over the DSP core: resample, gain, mix.

Each is a thin shell: the work is a :mod:`pipeline.dsp` object, the shell tracks media time
and turns. Media time: an output frame's ``pts`` counts samples at the output rate; soxr
aligns its output with its input, so resampled audio keeps its place on the timeline (the
resampler's delay shows up as frames arriving later, not as shifted timestamps).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.dsp.formats import as_dtype, to_channels
from pipeline.dsp.gain import Fader, Gain
from pipeline.dsp.mix import Mixer
from pipeline.dsp.rechunk import Rechunker, frame_samples
from pipeline.dsp.resample import DEFAULT_QUALITY, Resampler
from pipeline.frames import AudioFormat, AudioFrame, Direction, Frame, InterruptionFrame
from pipeline.processor import Processor

__all__ = ["GainProcessor", "MixProcessor", "ResampleProcessor"]

_DOWN = Direction.DOWNSTREAM
_NO_FRAME = AudioFrame(np.zeros(0, np.int16), 1)


def _identity(x: np.ndarray) -> np.ndarray:
    return x
_Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]
_SampleType = Literal["int16", "float32"]


class ResampleProcessor(Processor):
    """Converts audio to another sample rate, and optionally channel count and sample type.

    Put it on any link whose two ends disagree on format (the graph check names it, or
    inserts it with ``auto_resample: true``). It flushes the resampler's tail at the end of
    the stream and at a gap in media time; it drops the tail on an interruption when the
    audio belongs to the interrupted response (live capture audio, turn 0, is never
    dropped). Without any change of format frames pass through untouched.

    soxr delivers its output in blocks: at ``HQ`` a 20 ms frame in gives nothing or about
    35 ms out, alternately. Set ``frame_ms`` when the next processor wants steady frames.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        rate: int = Field(gt=0, description="output sample rate in Hz (8000, 16000, 24000, 48000 ...)")
        channels: int | None = Field(None, ge=1, le=8, description="output channels (default: as the input)")
        dtype: _SampleType | None = Field(None, description="output sample type (default: as the input)")
        quality: _Quality = Field(DEFAULT_QUALITY, description="soxr quality; see docs/dsp.md for delay per setting")
        frame_ms: float | None = Field(None, gt=0, le=1000,
                                       description="cut the output into frames of this length (default: as soxr delivers it)")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        p = self.params
        self._out_rate = p.rate
        self._out_channels = p.channels
        self._out_dtype = np.dtype(p.dtype) if p.dtype else None
        self._resampler: Resampler | None = None
        self._convert = None  # samples in -> samples out, None for pass-through (set by _configure)
        self._after = None  # channel/type conversion after resampling, if any
        self._frames: Rechunker | None = None  # fixed output frames (frame_ms)
        self._in_rate = 0
        self._in_dtype: np.dtype | None = None
        self._in_channels = 0
        self._next_in = -1  # pts the next input frame should have
        self._out_pts = 0
        self._last = _NO_FRAME  # the last input frame: turn and item of the audio held

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat | None:
        up = upstream or AudioFormat()
        return AudioFormat(self._out_rate, self._out_channels or up.channels, self.params.dtype or up.dtype)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if type(frame) is AudioFrame and direction is _DOWN:
            x = frame.samples
            pts = frame.pts
            if pts != self._next_in or x.dtype is not self._in_dtype or frame.sample_rate != self._in_rate:
                await self._resync(frame)
            self._next_in = pts + len(x)
            self._last = frame
            convert = self._convert
            if convert is None:  # nothing to change
                await self.push(frame, direction)
                return
            try:
                y = convert(x)
            except ValueError:  # soxr refuses another channel count: reconfigure for it
                if (1 if x.ndim == 1 else x.shape[1]) == self._in_channels:
                    raise
                await self._resync(frame, force=True)
                if self._convert is None:
                    await self.push(frame, direction)
                    return
                y = self._convert(x)
            n = len(y)
            if n:
                if self._frames is not None:
                    await self._emit(y, frame)
                    return
                out_pts = self._out_pts
                self._out_pts = out_pts + n
                await self.push(AudioFrame(y, self._out_rate, out_pts, frame.item_id, turn=frame.turn), direction)
            return
        if type(frame) is InterruptionFrame and 0 < self._last.turn < frame.turn:
            # the held audio belongs to the interrupted response
            if self._resampler is not None:
                self._resampler.reset()
            if self._frames is not None:
                self._frames.reset()
            self._next_in = -1
        await self.push(frame, direction)

    async def _emit(self, y: np.ndarray, like: AudioFrame) -> None:
        """Push ``y`` cut into fixed frames (what does not fill a frame waits)."""
        for chunk in self._frames.process(y):  # type: ignore[union-attr]
            out_pts = self._out_pts
            self._out_pts = out_pts + chunk.shape[0]
            await self.push(AudioFrame(chunk, self._out_rate, out_pts, like.item_id, turn=like.turn))

    async def stop(self) -> None:
        await self._flush_tail()

    async def _flush_tail(self) -> None:
        r = self._resampler
        last = self._last
        if 0 < last.turn < self.turn:  # stale: the interrupted response's audio
            return
        if r is not None:
            tail = r.flush()
            if tail.shape[0]:
                if self._after is not None:
                    tail = self._after(tail)
                if self._frames is not None:
                    await self._emit(tail, last)
                else:
                    pts = self._out_pts
                    self._out_pts += tail.shape[0]
                    await self.push(AudioFrame(tail, self._out_rate, pts, last.item_id, turn=last.turn))
        if self._frames is not None:
            rest = self._frames.flush()
            if rest is not None:
                pts = self._out_pts
                self._out_pts += rest.shape[0]
                await self.push(AudioFrame(rest, self._out_rate, pts, last.item_id, turn=last.turn))

    async def _resync(self, frame: AudioFrame, *, force: bool = False) -> None:
        """A new stream segment: a first frame, a gap in pts, or a new input format."""
        x = frame.samples
        same_format = (not force and frame.sample_rate == self._in_rate and x.dtype is self._in_dtype
                       and (1 if x.ndim == 1 else x.shape[1]) == self._in_channels)
        if self._resampler is not None or self._frames is not None:
            await self._flush_tail()  # the previous segment ends here: release its tail
        if self._resampler is not None:
            self._resampler.reset()
        if self._frames is not None:
            self._frames.reset()
        if not same_format:
            self._configure(frame)
        self._out_pts = (frame.pts * self._out_rate + self._in_rate // 2) // self._in_rate

    def _configure(self, frame: AudioFrame) -> None:
        """Build the conversion for this input format: downmix, resample, then channels/type.

        The common case (only the rate changes) is soxr's bare ``resample_chunk``; the
        format it checks is the one that triggers a resync when it changes.
        """
        x = frame.samples
        if x.dtype != np.int16 and x.dtype != np.float32:
            raise TypeError(f"{self.name}: audio frames must hold int16 or float32 samples, got {x.dtype}")
        self._in_rate = frame.sample_rate
        self._in_dtype = x.dtype
        in_channels = self._in_channels = 1 if x.ndim == 1 else x.shape[1]
        out_channels = self._out_channels or in_channels
        out_dtype = self._out_dtype or x.dtype
        downmix_first = out_channels == 1 and in_channels > 1
        channels = 1 if downmix_first else in_channels
        after = None
        if out_channels != channels or out_dtype != x.dtype:
            def after(y: np.ndarray, _ch: int = out_channels, _dt: np.dtype = out_dtype) -> np.ndarray:
                return as_dtype(to_channels(y, _ch), _dt)
        self._after = after
        if self.params.frame_ms is not None:
            size = frame_samples(self._out_rate, self.params.frame_ms)
            self._frames = Rechunker(size, channels=out_channels, dtype=out_dtype)
        if frame.sample_rate == self._out_rate and after is None and not downmix_first:
            self._resampler = None
            self._convert = None if self._frames is None else _identity  # pass-through
            return
        self._resampler = Resampler(frame.sample_rate, self._out_rate, channels=channels, dtype=x.dtype.name,
                                    quality=self.params.quality)
        convert = self._resampler.chunk_function()
        if downmix_first:
            resample_only = convert

            def convert(x: np.ndarray) -> np.ndarray:
                return resample_only(to_channels(x, 1))
        if after is not None:
            before = convert

            def convert(x: np.ndarray) -> np.ndarray:
                return after(before(x))
        self._convert = convert


class GainProcessor(Processor):
    """Scales audio by a gain in dB; optionally fades in each new stretch of audio.

    ``fade_in_ms`` ramps up the first audio of the stream and the first audio after an
    interruption or a gap in media time, so that audio starting mid-waveform (a reply cut
    and restarted) does not click.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        db: float = Field(0.0, ge=-120.0, le=60.0, description="gain in dB (negative attenuates)")
        fade_in_ms: float = Field(0.0, ge=0.0, le=1000.0, description="raised-cosine fade-in at each new stretch of audio")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self._gain = Gain(self.params.db)
        self._fader: Fader | None = None
        self._fade_rate = 0
        self._next_in = -1

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is _DOWN and type(frame) is AudioFrame:
            x = self._gain.process(frame.samples)
            if self.params.fade_in_ms:
                x = self._fade(frame, x)
            if x is not frame.samples:
                frame = AudioFrame(x, frame.sample_rate, frame.pts, frame.item_id, turn=frame.turn)
        elif type(frame) is InterruptionFrame:
            self._next_in = -1
        await self.push(frame, direction)

    def _fade(self, frame: AudioFrame, x: np.ndarray) -> np.ndarray:
        if self._fader is None or frame.sample_rate != self._fade_rate:
            self._fade_rate = frame.sample_rate
            self._fader = Fader(int(round(self.params.fade_in_ms * frame.sample_rate / 1000)))
        if frame.pts != self._next_in:
            self._fader.start_in()
        self._next_in = frame.pts + x.shape[0]
        return self._fader.process(x)


class MixProcessor(Processor):
    """Mixes every audio input into one stream, aligned on media time (fan-in).

    Link several branches into it; all must carry the same rate and channel count (put an
    ``audio.resample`` on a branch that differs) and share one media timeline (pts). Audio
    is summed in float and clipped once (``clip``). In a real-time run a branch that stalls
    or pauses (a TTS between replies) holds the mix back at most ``max_delay_ms``, then
    counts as silence; its late samples are dropped and counted. In a run that is not real
    time (files, tests) the mix waits for every branch, however far ahead another one is.
    Per-branch levels: ``gains`` maps an input's node id to its gain in dB (the node linked
    into the mix, e.g. ``{tts: -6}``); inputs not named get 0 dB. Mixed frames carry the
    turn of their inputs when all agree, else turn 0.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        clip: Literal["soft", "hard"] = Field("soft", description="how peaks above full scale are limited")
        gain_db: float = Field(0.0, ge=-120.0, le=60.0, description="gain applied to the mix")
        max_delay_ms: float = Field(100.0, gt=0.0, description="longest wait for a stalled input before mixing without it")
        dtype: _SampleType | None = Field(None, description="output sample type (default: as the first input)")
        gains: dict[str, float] = Field(default_factory=dict, description="gain in dB per input, by the id of the node linked in")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self._index: dict[str | None, int] = {}
        self._mixer: Mixer | None = None
        self._rate = 0
        self._shape_tail: tuple = ()
        self._turn_lo = self._turn_hi = -1

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat | None:
        if upstream is None:
            return None
        return AudioFormat(upstream.rate, upstream.channels, self.params.dtype or upstream.dtype)

    @property
    def late_samples(self) -> int:
        """Samples that arrived after their time had already been mixed."""
        return self._mixer.late if self._mixer is not None else 0

    async def start(self) -> None:
        inputs = self.inputs
        unknown = sorted(set(self.params.gains) - set(inputs))
        if unknown:
            raise ValueError(f"{self.name}: gains name {', '.join(map(repr, unknown))}, which "
                             f"{'is not an input' if len(unknown) == 1 else 'are not inputs'} of this mix; "
                             f"its inputs are {', '.join(map(repr, inputs)) or 'none'}")
        self._index = {node_id: i for i, node_id in enumerate(inputs)}

    async def process(self, frame: Frame, direction: Direction, link: str | None = None) -> None:
        if direction is not _DOWN or type(frame) is not AudioFrame:
            await self.push(frame, direction)
            return
        x = frame.samples
        mixer = self._mixer
        if mixer is None:
            mixer = self._create(frame)
        elif frame.sample_rate != self._rate or x.shape[1:] != self._shape_tail:
            raise ValueError(f"{self.name}: inputs disagree: {frame.format} after {self._rate} Hz "
                             f"{1 if not self._shape_tail else self._shape_tail[0]} ch; put an audio.resample "
                             "on the branch that differs")
        mixer.write(x, frame.pts, self._index.get(link, 0))
        turn = frame.turn
        if self._turn_lo < 0 or turn < self._turn_lo:
            self._turn_lo = turn
        if turn > self._turn_hi:
            self._turn_hi = turn
        out = mixer.read()
        if out is not None:
            await self._emit(out)

    async def stop(self) -> None:
        if self._mixer is not None:
            out = self._mixer.flush()
            if out is not None:
                await self._emit(out)

    async def _emit(self, out: tuple[int, np.ndarray]) -> None:
        pts, samples = out
        turn = self._turn_lo if self._turn_lo == self._turn_hi else 0
        self._turn_lo = self._turn_hi = -1
        await self.push(AudioFrame(samples, self._rate, pts, turn=turn))

    def _create(self, frame: AudioFrame) -> Mixer:
        x = frame.samples
        self._rate = frame.sample_rate
        self._shape_tail = x.shape[1:]
        inputs = max(1, len(self._index))
        by_id = self.params.gains
        ids = list(self._index) or [None]
        gains = [self.params.gain_db + by_id.get(node_id, 0.0) for node_id in ids]
        live = self.clock is None or self.clock.realtime
        max_delay = int(round(self.params.max_delay_ms * frame.sample_rate / 1000)) if live else None
        self._mixer = Mixer(inputs, channels=1 if x.ndim == 1 else x.shape[1], dtype=self.params.dtype or x.dtype.name,
                            gains_db=gains, clip=self.params.clip, max_delay=max_delay)
        return self._mixer
