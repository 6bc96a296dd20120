"""``audio.denoise``: WebRTC noise suppression on the capture, at a selectable level.

Put it after the microphone (and after ``audio.aec`` when there is one: AEC wants the raw
echo) and before the VAD or the model. It lowers *steady* noise - hiss, fans, hum, road -
by up to 6/12/18/21 dB (``low``/``moderate``/``high``/``very_high``); babble and music are
speech-like and pass largely untouched. See docs/quality.md for the measured effect on the
VADs: it sharpens the neural VAD's boundaries in white noise at every level, but above
``low`` its time-varying gain confuses the energy VAD's noise floor.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from pipeline.dsp.formats import downmix
from pipeline.frames import AudioFormat, AudioFrame, Direction, Frame
from pipeline.processor import Processor

__all__ = ["NoiseSuppressorProcessor"]

_DOWN = Direction.DOWNSTREAM


class NoiseSuppressorProcessor(Processor):
    """Suppresses steady background noise in mono audio (WebRTC NS via ``pywebrtc-audio``).

    16, 32 and 48 kHz natively (20 ms frames pass with no delay); other rates through the
    next native rate up (24 kHz through 32 kHz). About 40-130 us of CPU per 20 ms frame
    (``benchmarks/quality.py``).
    """

    class Params(BaseModel, extra="forbid"):
        level: Literal["low", "moderate", "high", "very_high"] = Field(
            "moderate", description="maximum attenuation: low 6 dB, moderate 12 dB, high 18 dB, very_high 21 dB")

    input_format = AudioFormat(channels=1)

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self.suppressor: Any = None
        self._rate = 0
        self._dtype: Any = None
        self._next_pts: int | None = None
        self._suppress: Any = None

    async def start(self) -> None:
        from pipeline.dsp.aec import import_webrtc

        import_webrtc()  # fail at start, with the install hint, not on the first frame

    async def process(self, frame: Frame, direction: Direction) -> None:
        if type(frame) is not AudioFrame or direction is not _DOWN:
            await self.push(frame, direction)
            return
        x = frame.samples
        if x.dtype is not self._dtype or frame.sample_rate != self._rate or x.ndim != 1:
            x = self._setup(frame)
        y = self._suppress(x)
        n = y.shape[0]
        if n:
            pts = self._next_pts
            self._next_pts = pts + n
            await self.push(AudioFrame(y, self._rate, pts, frame.item_id, turn=frame.turn))

    def _setup(self, frame: AudioFrame):
        """Mono samples of ``frame``; a new suppressor when its rate or sample type is new."""
        x = frame.samples
        if x.ndim != 1:
            x = downmix(x)
        if frame.sample_rate != self._rate or x.dtype != self._dtype:
            from pipeline.dsp.denoise import NoiseSuppressor

            self.suppressor = NoiseSuppressor(frame.sample_rate, level=self.params.level, dtype=x.dtype)
            self._suppress = self.suppressor.process
            self._rate, self._dtype = frame.sample_rate, x.dtype
            self._next_pts = frame.pts
        return x

    async def stop(self) -> None:
        if self.suppressor is not None and not self.cancelled:
            y = self.suppressor.flush()
            if y.shape[0] and self._next_pts is not None:
                await self.push(AudioFrame(y, self._rate, self._next_pts, turn=self.turn))
