"""Sound devices through PortAudio (the optional ``audio`` extra: ``sounddevice``).

Both processors use callback streams: PortAudio calls us on its own audio thread, and
that thread must never wait for the event loop (blocking reads and writes also crash
PortAudio 19.6 on JACK).

* :class:`MicrophoneCapture`: the callback copies each block and hands it to the event
  loop with ``loop.call_soon_threadsafe``, which only appends to the loop's ready queue.
  The loop side keeps a bounded queue; when the graph falls behind, the oldest block is
  dropped and counted as an overrun (so are PortAudio's input overflows).
* :class:`SpeakerPlayback`: the event loop writes into a preallocated
  :class:`~processors.devices.playout.PlayoutRing` that the callback reads; an interruption asks
  the callback to fade out over ``fade_ms`` and drop what is queued. Playback progress is
  computed from the samples the callback consumed and sent upstream every
  ``progress_interval_ms``.

``sounddevice`` is imported in ``start()`` (and by :func:`list_devices`), never when this
module is imported.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.dsp.formats import as_dtype, downmix
from pipeline.dsp.rechunk import frame_samples
from pipeline.errors import MediaError
from pipeline.frames import (
    AudioFormat,
    AudioFrame,
    Direction,
    EndFrame,
    Frame,
    InterruptionFrame,
    ResponseEndFrame,
    ResponseStartFrame,
)
from pipeline.processor import Processor
from pipeline.queue import FrameQueue

from .playout import PlayoutProgress, PlayoutRing

__all__ = ["DeviceInfo", "MicrophoneCapture", "SpeakerPlayback", "format_devices", "list_devices"]

_UP = Direction.UPSTREAM
_INSTALL_HINT = "install the audio extra: pip install 'voxpipe[audio]'"


def _sounddevice():
    """Import sounddevice, turning a missing module or PortAudio library into a MediaError."""
    try:
        import sounddevice
    except ImportError:
        raise MediaError(f"sounddevice is not installed; {_INSTALL_HINT}") from None
    except OSError as exc:  # sounddevice raises OSError when libportaudio is missing
        raise MediaError(
            f"the PortAudio library cannot be loaded ({exc}); install it "
            "(Debian/Ubuntu: apt install libportaudio2; macOS: brew install portaudio)"
        ) from None
    return sounddevice


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """One PortAudio device: what ``device`` params accept (its index or part of its name)."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float
    default_input: bool = False
    default_output: bool = False


def list_devices() -> list[DeviceInfo]:
    """The sound devices PortAudio sees, for ``voxpipe devices``."""
    sd = _sounddevice()
    hostapis = [h["name"] for h in sd.query_hostapis()]
    default_in, default_out = (sd.default.device[0], sd.default.device[1])
    out = []
    for d in sd.query_devices():
        i = d["index"]
        out.append(
            DeviceInfo(i, d["name"], hostapis[d["hostapi"]], d["max_input_channels"], d["max_output_channels"],
                       d["default_samplerate"], i == default_in, i == default_out)
        )
    return out


def format_devices(devices: list[DeviceInfo]) -> str:
    """A table of devices: index, defaults, channels in/out, rate, host API and name."""
    if not devices:
        return "no sound devices found (PortAudio sees none)\n"
    lines = [f"{'idx':>3}  {'def':3}  {'in':>3}  {'out':>3}  {'rate':>6}  {'host api':12}  name"]
    for d in devices:
        mark = ("<" if d.default_input else " ") + (">" if d.default_output else " ")
        lines.append(f"{d.index:>3}  {mark:3}  {d.max_input_channels:>3}  {d.max_output_channels:>3}  "
                     f"{d.default_samplerate:>6.0f}  {d.hostapi[:12]:12}  {d.name}")
    lines.append("(< default input, > default output; give `device:` an index or part of a name)")
    return "\n".join(lines) + "\n"


def _resolve_device(sd, device: int | str | None, kind: Literal["input", "output"]) -> int | None:
    """The PortAudio index of ``device`` (None: the default), or a MediaError listing choices."""
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device)
    key = "max_input_channels" if kind == "input" else "max_output_channels"
    if device is None:
        default = sd.default.device[0 if kind == "input" else 1]
        try:
            missing = default is None or int(default) < 0
        except (TypeError, ValueError):
            missing = False
        if missing:  # PortAudio would say "Error querying device -1"
            try:
                have = [d for d in sd.query_devices() if d[key] > 0]
            except Exception:
                have = []
            hint = ("give `device:` one of them" if have else "connect one, or use a file or browser pipeline instead")
            raise MediaError(f"no default {kind} device; run `voxpipe devices` to list the sound devices, and {hint}")
        return None
    try:
        info = sd.query_devices(device, kind)
    except (ValueError, sd.PortAudioError) as exc:
        choices = ", ".join(f"{d['index']}: {d['name']!r}" for d in sd.query_devices() if d[key] > 0) or "none"
        raise MediaError(
            f"{kind} device {device!r} not found ({exc}); {kind} devices: {choices}",
        ) from None
    return int(info["index"])


def _named(device: int | str | None, kind: str) -> str:
    return f"the default {kind} device" if device is None else f"{kind} device {device!r}"


class _DeviceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: int | str | None = Field(None, description="index or part of the name (voxpipe devices); null: default")
    sample_rate: int = Field(24000, gt=0, le=384000, description="Hz the device is opened at")
    channels: int = Field(1, ge=1, le=32, description="channels the device is opened with")
    frame_ms: float = Field(20.0, gt=0, le=1000, description="audio per callback block")
    dtype: Literal["int16", "float32"] = Field("int16", description="sample type of the frames")
    latency: Literal["low", "high"] | float = Field("low", description="PortAudio suggested latency (s, or low/high)")


class MicrophoneCapture(Processor):
    """Captures audio from a PortAudio input device and emits it as fixed frames.

    ``pts`` counts captured samples, dropped blocks included, so media time stays true
    to the device clock. ``overruns`` counts blocks lost (PortAudio overflows and blocks
    dropped because the graph fell ``max_queue_ms`` behind). ``duration_s`` ends the
    stream after that much audio (for recordings and tests); by default it runs until
    the graph ends.
    """

    class Params(_DeviceParams):
        duration_s: float | None = Field(None, gt=0, description="stop after this much audio; null: never")
        max_queue_ms: float = Field(500.0, gt=0, description="audio held for a slow graph before dropping the oldest")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        p = self.params
        self.block = frame_samples(p.sample_rate, p.frame_ms)
        self._overflows = 0  # written by the audio thread only
        self._captured = 0  # written by the audio thread only
        self._stream = None
        self._blocks: FrameQueue | None = None  # the audio thread's blocks, drop-oldest (counted)
        self._loop: asyncio.AbstractEventLoop | None = None

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat:
        p = self.params
        return AudioFormat(p.sample_rate, p.channels, p.dtype)

    async def start(self) -> None:
        sd = _sounddevice()
        p = self.params
        device = _resolve_device(sd, p.device, "input")
        depth = max(2, math.ceil(p.max_queue_ms / p.frame_ms))
        self._blocks = FrameQueue(depth, drop_oldest=True)
        self._loop = asyncio.get_running_loop()
        try:
            self._stream = sd.InputStream(
                samplerate=p.sample_rate, blocksize=self.block, device=device, channels=p.channels,
                dtype=p.dtype, latency=p.latency, callback=self._callback,
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            self._close()
            raise MediaError(f"cannot open {_named(p.device, 'input')} at {p.sample_rate} Hz, {p.channels} ch: {exc}; run `voxpipe devices` to see the devices and their rates") from None

    def _callback(self, indata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        """PortAudio's thread: copy the block and hand it to the loop; never wait."""
        if status.input_overflow:
            self._overflows += 1
        pts = self._captured
        self._captured += frames
        data = indata[:, 0].copy() if indata.shape[1] == 1 else indata.copy()
        frame = AudioFrame(data, self.params.sample_rate, pts=pts)
        try:
            self._loop.call_soon_threadsafe(self._deliver, frame)  # type: ignore[union-attr]
        except RuntimeError:  # the loop is closed: the graph is gone
            pass

    def _deliver(self, frame: AudioFrame) -> None:
        """The loop's side: queue the block; the queue drops the oldest when the graph is behind."""
        if self._blocks is not None and self._stream is not None:
            self._blocks.put_nowait(frame, Direction.DOWNSTREAM)

    async def produce(self) -> None:
        p = self.params
        limit = None if p.duration_s is None else round(p.duration_s * p.sample_rate)
        blocks = self._blocks
        if blocks is None:  # start() failed; the error is already reported
            return
        while True:
            frame = (await blocks.get())[0]
            if type(frame) is EndFrame:
                break
            pts, data = frame.pts, frame.samples
            if limit is not None and pts >= limit:
                break
            if limit is not None and pts + data.shape[0] > limit:
                data = data[: limit - pts]
            await self.push(frame if data is frame.samples else AudioFrame(data, p.sample_rate, pts=pts))
            if limit is not None and pts + data.shape[0] >= limit:
                break

    async def stop(self) -> None:
        self._close()
        overruns = self.overruns
        if overruns:
            self.log.warning("%s: %d blocks of input were lost (overruns)", self.name, overruns)

    @property
    def overruns(self) -> int:
        """Blocks lost: dropped because the graph was behind, or lost by PortAudio itself."""
        return (self._blocks.dropped if self._blocks is not None else 0) + self._overflows

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        if self._blocks is not None:
            self._blocks.put_front(EndFrame(), Direction.DOWNSTREAM)

    def statistics(self) -> dict[str, Any]:
        out = super().statistics()
        if self._blocks is not None:
            q = self._blocks.statistics()
            out["capture_queue"] = {"queued": q.size, "max_size": q.max_size, "dropped": q.dropped}
        out["overruns"] = self.overruns
        out["captured_s"] = self._captured / self.params.sample_rate
        return out


class SpeakerPlayback(Processor):
    """Plays audio on a PortAudio output device and reports what was actually played.

    Audio goes into a preallocated playout ring (``buffer_s``) that the device callback
    drains; when the ring is full, ``process`` waits (back-pressure). On an interruption
    the callback fades out over ``fade_ms`` and drops what is queued. Every
    ``progress_interval_ms`` a :class:`PlaybackProgressFrame` goes upstream for the
    assistant item being played (from samples the callback consumed; the device's own
    output latency is not subtracted), with ``done=True`` when an item is over.
    ``underruns`` counts callbacks that ran dry in the middle of a response (and
    PortAudio's output underflows). On a graceful end it plays out what is queued, for at
    most ``drain_timeout_s``.

    With ``echo_reference: true`` every block the device plays (silence included) also goes
    upstream as an :class:`AudioFrame` (channel 0, turn 0) as it is played: the reference
    an ``audio.aec`` further up the same chain needs, paced by the device's clock.
    """

    class Params(_DeviceParams):
        buffer_s: float = Field(60.0, gt=0, description="playout buffer (a whole response fits)")
        fade_ms: float = Field(5.0, ge=0, le=100, description="fade-out when an interruption cuts playback")
        progress_interval_ms: float = Field(20.0, gt=0, description="how often progress goes upstream")
        drain_timeout_s: float = Field(30.0, ge=0, description="longest play-out of queued audio at the end")
        echo_reference: bool = Field(False, description="send what is played upstream as it plays (for audio.aec)")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        p = self.params
        self.input_format = AudioFormat(p.sample_rate, None, None)
        self._played = 0  # samples the callback played (written by the audio thread only)
        self.reference_dropped = 0  # played blocks not sent upstream because the graph fell 1 s behind
        self._ref_send = self._ref_receive = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.block = frame_samples(p.sample_rate, p.frame_ms)
        self.fade = round(p.fade_ms * p.sample_rate / 1000)
        self.ring = PlayoutRing(int(p.buffer_s * p.sample_rate), p.channels, p.dtype, fade=self.fade)
        self.progress = PlayoutProgress(p.sample_rate)
        self._underflows = 0  # written by the audio thread only
        self._stream = None

    def output_format(self, upstream: AudioFormat | None) -> None:
        return None

    async def start(self) -> None:
        sd = _sounddevice()
        p = self.params
        device = _resolve_device(sd, p.device, "output")
        if p.echo_reference:
            self._loop = asyncio.get_running_loop()
            self._ref_send, self._ref_receive = anyio.create_memory_object_stream(max(2, math.ceil(1000 / p.frame_ms)))
            self.spawn(self._push_played)
        try:
            self._stream = sd.OutputStream(
                samplerate=p.sample_rate, blocksize=self.block, device=device, channels=p.channels,
                dtype=p.dtype, latency=p.latency, callback=self._callback,
            )
            self._stream.start()
        except sd.PortAudioError as exc:
            self._close()
            raise MediaError(f"cannot open {_named(p.device, 'output')} at {p.sample_rate} Hz, {p.channels} ch: {exc}; run `voxpipe devices` to see the devices and their rates") from None
        self.spawn(self._report_progress)

    def _callback(self, outdata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
        """PortAudio's thread: fill the device buffer from the ring (silence when empty)."""
        if status.output_underflow:
            self._underflows += 1
        self.ring.read_into(outdata)
        if self._loop is not None:
            pts = self._played
            self._played += frames
            try:  # silence too: a continuous reference keeps audio.aec's alignment stable
                self._loop.call_soon_threadsafe(self._deliver_played, pts, outdata[:, 0].copy())
            except RuntimeError:  # the loop is closed: the graph is gone
                pass

    def _deliver_played(self, pts: int, data: np.ndarray) -> None:
        """The loop's side: queue a played block for upstream, dropping the oldest when behind."""
        send = self._ref_send
        if send is None:
            return
        try:
            send.send_nowait((pts, data))
        except anyio.WouldBlock:
            self._ref_receive.receive_nowait()  # type: ignore[union-attr]
            self.reference_dropped += 1
            send.send_nowait((pts, data))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    async def _push_played(self) -> None:
        rate = self.params.sample_rate
        async for pts, data in self._ref_receive:  # type: ignore[union-attr]
            await self.push(AudioFrame(data, rate, pts=pts), _UP)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, AudioFrame):
            await self._queue_audio(frame)
            return
        if isinstance(frame, InterruptionFrame):
            resume = self.ring.request_flush()
            self.ring.expect_more = False
            self.progress.drop(self.ring.read + self.fade, resume)
            await self._report()
        elif isinstance(frame, ResponseStartFrame):
            self.ring.expect_more = True
        elif isinstance(frame, ResponseEndFrame):
            self.ring.expect_more = False
            self.progress.finish_items()
        await self.push(frame, direction)

    async def _queue_audio(self, frame: AudioFrame) -> None:
        p = self.params
        if frame.sample_rate != p.sample_rate:
            raise MediaError(
                f"{self.name}: {frame.sample_rate} Hz audio into a {p.sample_rate} Hz output; "
                f"put `{{type: audio.resample, params: {{rate: {p.sample_rate}}}}}` before it"
            )
        x = frame.samples
        if x.ndim == 2 and x.shape[1] != p.channels:
            if x.shape[1] == 1:
                x = x[:, 0]  # mono plays on every channel (the ring broadcasts it)
            elif p.channels == 1:
                x = downmix(x)
            else:
                raise MediaError(f"{self.name}: {x.shape[1]}-channel audio into a {p.channels}-channel output; "
                                 "set `channels` to match, or downmix before it")
        x = as_dtype(x, p.dtype)
        if frame.item_id is not None:
            self.ring.expect_more = True
        done = 0
        while done < x.shape[0]:
            n = self.ring.write(x[done:])
            if n == 0:  # full: wait for the callback to make room
                await anyio.sleep(p.frame_ms / 1000)
                continue
            self.progress.write(n, frame.item_id, frame.turn)
            done += n

    async def _report(self) -> None:
        self.progress.advance(self.ring.read)
        for update in self.progress.updates():
            await self.push(update, _UP)

    async def _report_progress(self) -> None:
        interval = self.params.progress_interval_ms / 1000
        while True:
            await anyio.sleep(interval)  # device time: the callback, not the media clock, plays
            await self._report()

    async def stop(self) -> None:
        """Play out what is queued (graceful end), report the last progress, close the device."""
        try:
            self.ring.expect_more = False
            with anyio.move_on_after(self.params.drain_timeout_s):
                while not self.cancelled and self.ring.available > 0 and self._stream is not None and self._stream.active:
                    await anyio.sleep(self.params.frame_ms / 1000)
            self.progress.finish_items()
            await self._report()
        finally:
            self._close()
        if self.underruns:
            self.log.warning("%s: playback ran dry %d times (underruns)", self.name, self.underruns)

    @property
    def underruns(self) -> int:
        return self.ring.underruns + self._underflows

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()
            stream.close()
        self._loop = None
        if self._ref_send is not None:
            self._ref_send.close()

    def statistics(self) -> dict[str, Any]:
        out = super().statistics()
        out["underruns"] = self.underruns
        if self.params.echo_reference:
            out["reference_dropped"] = self.reference_dropped
        out["played_s"] = self.ring.read / self.params.sample_rate
        return out

