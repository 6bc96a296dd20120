"""Playback sinks that need no device: a WAV file, and a null speaker for servers and tests.

``playback.wav`` writes what it receives on the media timeline: a gap in ``pts`` becomes
silence, so the file lines up with the input. ``playback.null`` plays nothing but takes
audio at the pace a speaker would and reports, upstream, how much of each assistant item
was played, which is what a realtime model needs to truncate an item at a barge-in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field

from pipeline.errors import MediaError
from pipeline.frames import (
    AudioFormat,
    AudioFrame,
    Direction,
    Frame,
    InterruptionFrame,
    ResponseEndFrame,
)
from pipeline.processor import Processor
from processors.files.wavfile import WavWriter

from processors.devices.playout import PlayoutProgress

__all__ = ["NullPlayback", "WavPlayback"]

_UP = Direction.UPSTREAM


class WavPlayback(Processor):
    """Writes the audio it receives to a WAV file, with silence for gaps in media time.

    The file takes the rate and channels of the first frame (or of ``sample_rate`` /
    ``channels`` when given, which opens the file at start). The file starts at media
    time 0: a frame whose ``pts`` is past the end of what was written (the first one
    included) is preceded by silence up to its ``pts``; a frame
    that starts earlier (overlapping) is appended as it is. The header is written first
    and patched as audio is appended and in ``stop()``, so the file is valid even when the
    graph is cancelled; a run with no audio leaves an empty valid file (at ``sample_rate``,
    else 16 kHz). Relative paths are relative to the current directory; missing
    parent directories are created. Audio is consumed; other frames pass on.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str = Field(description="WAV file to write (replaced if it exists)")
        dtype: Literal["int16", "float32"] = Field("int16", description="sample type of the file")
        fill_gaps: bool = Field(True, description="write silence where pts jumps ahead")
        max_gap_s: float = Field(3600.0, gt=0, description="a larger pts jump is an error (a broken timeline)")
        sample_rate: int | None = Field(None, gt=0, description="open the file at start with this rate")
        channels: int | None = Field(None, gt=0, description="channels when sample_rate is given (default 1)")
        header_interval_s: float = Field(0.0, ge=0, description="audio between header patches; 0: every write")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self.writer: WavWriter | None = None
        self.gaps = 0  # frames preceded by silence
        self.gap_samples = 0
        self.overlaps = 0  # frames that started before the end of what was written
        self._next_pts = 0
        if self.params.sample_rate is not None:
            self.input_format = AudioFormat(self.params.sample_rate, self.params.channels or 1, None)

    async def start(self) -> None:
        p = self.params
        Path(p.path).parent.mkdir(parents=True, exist_ok=True)
        if p.sample_rate is not None:
            self.writer = WavWriter(p.path, p.sample_rate, p.channels or 1, p.dtype, header_interval_s=p.header_interval_s)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if not isinstance(frame, AudioFrame):
            await self.push(frame, direction)
            return
        w = self.writer
        if w is None:
            p = self.params
            w = self.writer = WavWriter(p.path, frame.sample_rate, frame.channels, p.dtype, header_interval_s=p.header_interval_s)
        if frame.sample_rate != w.sample_rate or frame.channels != w.channels:
            raise MediaError(
                f"{w.path}: a {frame.format} frame arrived in a file of {w.sample_rate} Hz, {w.channels} ch; "
                f"put `{{type: audio.resample, params: {{rate: {w.sample_rate}, channels: {w.channels}}}}}` before {self.name!r}"
            )
        gap = frame.pts - self._next_pts
        filled = 0
        if gap > 0 and self.params.fill_gaps:
            if gap > self.params.max_gap_s * w.sample_rate:
                raise MediaError(
                    f"{w.path}: pts jumps {gap / w.sample_rate:.1f} s ahead (from {self._next_pts} to {frame.pts}); "
                    "raise `max_gap_s` or set `fill_gaps: false` if the input's timeline is not continuous"
                )
            w.write_silence(gap)
            filled = gap
            self.gaps += 1
            self.gap_samples += gap
        elif gap < 0:
            self.overlaps += 1
        w.write(frame.samples)
        self._next_pts += filled + frame.num_samples

    async def stop(self) -> None:
        if self.writer is None:  # no audio came: leave an empty but valid file
            p = self.params
            self.writer = WavWriter(p.path, p.sample_rate or 16000, p.channels or 1, p.dtype)
        self.writer.close()
        if self.gaps:
            self.log.info("%s: filled %d gaps with %.2f s of silence", self.params.path, self.gaps,
                          self.gap_samples / self.writer.sample_rate)

    def statistics(self) -> dict[str, Any]:
        out = super().statistics()
        out.update(frames_written=self.writer.frames_written if self.writer else 0, gaps=self.gaps, overlaps=self.overlaps)
        return out


class NullPlayback(Processor):
    """A speaker that plays nothing: takes audio at real time and reports playback progress.

    Audio is queued (like a sound card's playout buffer) and consumed ``tick_ms`` at a
    time on a playout clock that follows media time; with ``realtime: false`` or a run
    that is not real time it is consumed as fast as possible. For every assistant item
    (audio frames with an ``item_id``) a :class:`PlaybackProgressFrame` goes upstream as
    it plays, and one with ``done=True`` when the item is over: fully played after a
    response end or the start of another item, or cut by an interruption, which drops
    what is queued (then ``played_ms`` is where it was cut). Audio is consumed; other
    frames pass on. Use it in servers, tests and benchmarks.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        realtime: bool = Field(True, description="play at real time; false: as fast as possible")
        tick_ms: float = Field(20.0, gt=0, le=1000, description="audio consumed per step of the playout clock")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self.progress: PlayoutProgress | None = None
        self.played_samples = 0
        self.dropped_samples = 0
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self._t = 0.0  # media time (s) at which the next queued sample plays
        self._tick_started = 0.0  # media time the current tick started playing
        self._tick_at = 0  # position the current tick started from
        self._tick_end = 0  # position it plays up to
        self._epoch = 0  # raised by an interruption: a tick in progress is void

    async def start(self) -> None:
        self.spawn(self._play)

    def _paced(self) -> bool:
        return self.params.realtime and self.clock is not None and self.clock.realtime

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, AudioFrame):
            prog = self.progress
            if prog is None:
                prog = self.progress = PlayoutProgress(frame.sample_rate)
            elif frame.sample_rate != prog.sample_rate:
                raise MediaError(
                    f"{self.name}: {frame.sample_rate} Hz audio after {prog.sample_rate} Hz; "
                    f"put `{{type: audio.resample, params: {{rate: {prog.sample_rate}}}}}` before it"
                )
            prog.write(frame.num_samples, frame.item_id, frame.turn)
            if self._idle.is_set():
                self._idle = anyio.Event()
            self._wake.set()
            return
        if isinstance(frame, InterruptionFrame):
            await self._interrupt()
        elif isinstance(frame, ResponseEndFrame) and self.progress is not None:
            self.progress.finish_items()
            self._wake.set()
        await self.push(frame, direction)

    async def _interrupt(self) -> None:
        prog = self.progress
        if prog is None:
            return
        before = prog.played
        self.dropped_samples += prog.drop(self._played_now())
        self.played_samples += prog.played - before
        self._epoch += 1
        self._tick_at = prog.played
        self._t = self._tick_started = self._now()
        self._idle.set()
        await self._report()

    def _now(self) -> float:
        return self.clock.elapsed() if self._paced() else self._t  # type: ignore[union-attr]

    def _played_now(self) -> int:
        """Position the playout clock has reached inside the current tick."""
        prog = self.progress
        if prog is None or not self._paced() or self._t <= self._tick_started:
            return prog.played if prog else 0
        frac = (self._now() - self._tick_started) / (self._t - self._tick_started)
        return self._tick_at + int(max(0.0, min(1.0, frac)) * (self._tick_end - self._tick_at))

    async def _report(self) -> None:
        if self.progress is not None:
            for update in self.progress.updates():
                await self.push(update, _UP)

    async def _play(self) -> None:
        """The consumer: one tick of audio per step of the playout clock."""
        while True:
            prog = self.progress
            if prog is None or prog.queued == 0:
                if prog is not None:
                    await self._report()  # items finished while idle
                self._idle.set()
                self._wake = anyio.Event()
                await self._wake.wait()
                if self._paced():  # playout restarts now; while playing it follows its own clock
                    self._t = max(self._t, self.clock.elapsed())  # type: ignore[union-attr]
                continue
            rate = prog.sample_rate
            n = min(prog.queued, max(1, round(self.params.tick_ms * rate / 1000)))
            self._tick_at, self._tick_end, self._tick_started = prog.played, prog.played + n, self._t
            self._t += n / rate
            epoch = self._epoch
            if self._paced():
                await self.clock.wait_until(self._t)  # type: ignore[union-attr]
            else:
                await anyio.lowlevel.checkpoint()
            if epoch != self._epoch:  # interrupted meanwhile: the tick was cut and accounted
                continue
            before = prog.played
            prog.advance(self._tick_end)
            self.played_samples += prog.played - before
            await self._report()

    async def stop(self) -> None:
        """On a graceful end, play out what is queued, then report the items as done."""
        if self.progress is None:
            return
        if not self.cancelled:
            await self._idle.wait()
        self.progress.finish_items()
        await self._report()

    def statistics(self) -> dict[str, Any]:
        out = super().statistics()
        rate = self.progress.sample_rate if self.progress else 1
        out.update(played_s=self.played_samples / rate, dropped_s=self.dropped_samples / rate)
        return out
