"""The conversation recorder: user on the left, assistant on the right, on one timeline.

Theory of operation
-------------------
:class:`ConversationTimeline` (plain object, no asyncio) places audio on a stereo
timeline counted in samples at the recording rate:

* user audio (frames without ``item_id``) goes to the left channel at its ``pts``;
* assistant audio (frames with an ``item_id``) goes to the right channel at the media
  time it arrives, which is the end of the user audio received so far, or right after
  the previous assistant audio when that is later. A model sends a response faster than
  real time; a speaker plays it from when it arrives, back to back, and so does the
  recording. In a real-time run this is when it was heard.
* an interruption cuts the assistant audio that lies ahead of the user's position (it
  was queued, never heard), with a 5 ms fade so the cut does not click.

Everything before the user's position is final and is written out, at least a second at
a time, through :class:`~processors.files.wavfile.WavWriter`; what lies ahead waits in a buffer of
``max_pending_s``, so memory stays bounded on hour-long calls. When the buffer fills
(assistant audio with no user audio, say), its oldest part is written anyway.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.dsp.formats import as_dtype
from pipeline.errors import MediaError
from pipeline.frames import AudioFormat, AudioFrame, Direction, Frame, InterruptionFrame
from pipeline.processor import Processor
from processors.files.wavfile import WavWriter

from processors.devices.playout import fade_out_ramp

__all__ = ["ConversationRecorder", "ConversationTimeline"]

USER, ASSISTANT = 0, 1


class ConversationTimeline:
    """Places user and assistant audio on a two-channel timeline and writes what is final.

    ``add_user`` / ``add_assistant`` take mono arrays of the file's ``dtype``;
    ``interrupt`` cuts queued assistant audio; ``close`` writes the rest. All positions
    are absolute sample counts at ``writer.sample_rate``.
    """

    def __init__(self, writer: WavWriter, *, max_pending_s: float = 120.0, commit_s: float = 1.0, fade_ms: float = 5.0) -> None:
        rate = writer.sample_rate
        self.writer = writer
        self.capacity = max(int(max_pending_s * rate), 2 * int(commit_s * rate), 1)
        self._commit_every = max(1, int(commit_s * rate))
        self._buf = np.zeros((self.capacity, 2), dtype=writer.dtype)
        self._ramp = fade_out_ramp(int(fade_ms * rate / 1000))[:, 0]
        self.base = 0  # first position not yet written to the file
        self.user_end = 0  # end of the user audio received so far ("now")
        self.assistant_end = 0  # end of the assistant audio placed so far
        self.late = 0  # user samples that arrived for positions already written

    @property
    def end(self) -> int:
        """One past the last position holding audio."""
        return max(self.user_end, self.assistant_end, self.base)

    def add_user(self, samples: np.ndarray, pts: int) -> None:
        """User audio starting at media time ``pts`` (samples at the recording rate)."""
        n = samples.shape[0]
        if pts < self.base:  # already written out: keep what is still ahead
            skip = min(n, self.base - pts)
            self.late += skip
            samples, pts, n = samples[skip:], self.base, n - skip
        if n:
            self._place(USER, samples, pts)
        self.user_end = max(self.user_end, pts + n)
        if self.user_end - self.base >= self._commit_every:
            self._commit(self.user_end)

    def add_assistant(self, samples: np.ndarray) -> int:
        """Assistant audio, placed at the current media time or after the previous; return where."""
        pos = max(self.user_end, self.assistant_end, self.base)
        self._place(ASSISTANT, samples, pos)
        self.assistant_end = pos + samples.shape[0]
        return pos

    def interrupt(self) -> int:
        """Cut the assistant audio ahead of the user's position; return how many samples."""
        now = max(self.user_end, self.base)
        cut = self.assistant_end - now
        if cut <= 0:
            return 0
        i = now - self.base
        k = min(self._ramp.shape[0], cut)
        col = self._buf[i : i + cut, ASSISTANT]
        if k:
            faded = col[:k] * self._ramp[:k]
            col[:k] = faded if col.dtype.kind == "f" else np.rint(faded)
        col[k:] = 0
        self.assistant_end = now + k
        return cut - k

    def close(self) -> None:
        """Write everything placed so far and close the file."""
        self._commit(self.end)
        self.writer.close()

    def _place(self, channel: int, samples: np.ndarray, pos: int) -> None:
        n = samples.shape[0]
        if pos + n - self.base > self.capacity:  # no room ahead: write out the oldest part
            self._commit(pos + n - self.capacity)
        i = pos - self.base
        self._buf[i : i + n, channel] = samples

    def _commit(self, upto: int) -> None:
        """Write positions ``[base, upto)`` to the file (silence where nothing was placed)."""
        k = upto - self.base
        if k <= 0:
            return
        held = max(0, self.end - self.base)
        if k >= self.capacity:  # a jump beyond the buffer: write it, then silence
            self.writer.write(self._buf[:held])
            self.writer.write_silence(k - held)
            self._buf[:held] = 0
        else:
            self.writer.write(self._buf[:k])
            rest = max(0, held - k)
            if rest:
                self._buf[:rest] = self._buf[k : k + rest]  # numpy copes with the overlap
            self._buf[rest : max(rest, held)] = 0
        self.base = upto


class ConversationRecorder(Processor):
    """Records the conversation to a two-channel WAV: user left, assistant right.

    Wire both sides into it (fan-in: ``mic -> record`` and ``model -> record``). Name the
    input nodes with ``user`` / ``assistant`` (``{user: mic, assistant: model}``) and audio
    is placed by the link it came in on; without them, frames with an ``item_id`` are the
    assistant's. It passes every frame on, so it can also
    sit in a chain. Both inputs must be mono at ``sample_rate`` (the graph check says
    where to resample, or set ``auto_resample: true``). The file is written as the call
    goes, with a valid header at all times, and memory stays bounded.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str = Field(description="two-channel WAV file to write (user left, assistant right)")
        sample_rate: int = Field(24000, gt=0, description="rate of the recording; inputs must have it")
        dtype: Literal["int16", "float32"] = Field("int16", description="sample type of the file")
        max_pending_s: float = Field(120.0, gt=0, description="assistant audio held ahead of the user's position")
        user: str | None = Field(None, description="id of the input node whose audio is the user's (default: audio without item_id)")
        assistant: str | None = Field(None, description="id of the input node whose audio is the assistant's (default: audio with item_id)")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self.input_format = AudioFormat(self.params.sample_rate, 1, None)
        self.timeline: ConversationTimeline | None = None

    async def start(self) -> None:
        from pathlib import Path

        p = self.params
        inputs = self.inputs
        for side, node_id in (("user", p.user), ("assistant", p.assistant)):
            if node_id is not None and node_id not in inputs:
                raise ValueError(f"{self.name}: {side}: {node_id!r} is not an input of this recorder; "
                                 f"its inputs are {', '.join(map(repr, inputs)) or 'none'}")
        Path(p.path).parent.mkdir(parents=True, exist_ok=True)
        writer = WavWriter(p.path, p.sample_rate, 2, p.dtype, header_interval_s=1.0)
        self.timeline = ConversationTimeline(writer, max_pending_s=p.max_pending_s)

    async def process(self, frame: Frame, direction: Direction, link: str | None = None) -> None:
        tl = self.timeline
        if isinstance(frame, AudioFrame) and direction is Direction.DOWNSTREAM and tl is not None:
            if frame.sample_rate != self.params.sample_rate or frame.channels != 1:
                raise MediaError(
                    f"{self.params.path}: {frame.format} audio cannot be recorded at {self.params.sample_rate} Hz mono; "
                    f"put `{{type: audio.resample, params: {{rate: {self.params.sample_rate}, channels: 1}}}}` before {self.name!r}"
                )
            samples = as_dtype(frame.samples, self.params.dtype)
            p = self.params
            if link is not None and link == p.user:
                assistant = False
            elif link is not None and link == p.assistant:
                assistant = True
            else:
                assistant = frame.item_id is not None
            if not assistant:
                tl.add_user(samples, frame.pts)
            else:
                tl.add_assistant(samples)
        elif isinstance(frame, InterruptionFrame) and tl is not None:
            tl.interrupt()
        await self.push(frame, direction)

    async def stop(self) -> None:
        if self.timeline is not None:
            self.timeline.close()

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat | None:
        return upstream
