"""``turn.semantic``: the user's turn ends when the sentence sounds finished, not after a fixed silence.

Use it *instead of* a ``vad.*`` processor in front of ``realtime.openai`` with
``turn_detection: {type: none}``: it pushes :class:`UserStartedSpeakingFrame` when the user
starts (the model stops talking: barge-in) and :class:`UserStoppedSpeakingFrame` when the
turn is over, which makes the model client commit the audio and send ``response.create``.
Speaking frames from a VAD further up are dropped, so that only this processor decides.

At every pause of ``pause_ms`` the Smart Turn v3 model (the ``pipecat-ai`` wheel's ONNX
file, BSD-2-Clause) hears the turn so far and says whether it is complete; if not, the turn
ends after ``max_silence_ms`` unless the user goes on. The model runs in a worker thread
(60-100 ms per pause on a small machine), so the event loop keeps moving; audio frames
queue meanwhile and pass on in order. See :mod:`pipeline.dsp.turn` and docs/quality.md for
the measured false-cut rate and delays.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from pydantic import BaseModel, Field

from pipeline.dsp.formats import downmix
from pipeline.frames import AudioFormat, AudioFrame, Direction, Frame, UserStartedSpeakingFrame, UserStoppedSpeakingFrame
from pipeline.processor import Processor

__all__ = ["SemanticTurnProcessor"]

_DOWN = Direction.DOWNSTREAM


class SemanticTurnProcessor(Processor):
    """Start and end of the user's turn from an energy VAD plus Smart Turn v3 at each pause."""

    class Params(BaseModel, extra="forbid"):
        threshold: float = Field(0.5, gt=0.0, lt=1.0, description="model probability at which a paused turn is complete")
        pause_ms: float = Field(200.0, ge=60.0, le=2000.0, description="silence after which the model is asked")
        max_silence_ms: float = Field(1500.0, ge=100.0, le=10000.0,
                                      description="silence that ends the turn whatever the model says")
        recheck_ms: float | None = Field(None, ge=100.0, le=5000.0,
                                         description="ask the model again every so often while the pause lasts")
        vad_threshold: float = Field(0.5, ge=0.0, le=1.0, description="the energy VAD's threshold (vad.energy semantics)")
        model_path: str | None = Field(None, description="another Smart Turn v3 ONNX file (default: pipecat-ai's)")

    input_format = AudioFormat(channels=1)

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self.detector: Any = None
        self.model: Any = None
        self._rate = 0
        self.dropped_speaking_frames = 0

    async def start(self) -> None:
        from pipeline.dsp.smart_turn import shared_model

        self.model = shared_model(self.params.model_path)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is _DOWN and isinstance(frame, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame)):
            self.dropped_speaking_frames += 1  # only this processor decides when the turn ends
            return
        if direction is not _DOWN or type(frame) is not AudioFrame:
            await self.push(frame, direction)
            return
        x = frame.samples
        if x.ndim != 1:
            x = downmix(x)
        if frame.sample_rate != self._rate:
            await self._end_open_turn()
            from pipeline.dsp.turn import SemanticTurnDetector

            p = self.params
            self.detector = SemanticTurnDetector(frame.sample_rate, threshold=p.threshold, pause_ms=p.pause_ms,
                                                 max_silence_ms=p.max_silence_ms, recheck_ms=p.recheck_ms,
                                                 vad_threshold=p.vad_threshold, model=self.model, defer_model=True)
            self._rate = frame.sample_rate
        det = self.detector
        events = det.process(x, frame.pts)
        if det.query is not None:
            events += det.answer(await anyio.to_thread.run_sync(self.model.probability, det.query))
        for e in events:
            await self._announce(e, frame.turn)
        await self.push(frame, direction)

    async def _announce(self, event, turn: int) -> None:
        if event.started:
            await self.push(UserStartedSpeakingFrame(pts=event.pts, sample_rate=self._rate, turn=turn))
        else:
            self.log.debug("end of turn (%s, p=%s) %.0f ms after speech", event.reason, event.probability,
                           (event.pts - event.speech_end) * 1000 / self._rate)
            await self.push(UserStoppedSpeakingFrame(pts=event.speech_end, sample_rate=self._rate, turn=turn))

    async def _end_open_turn(self) -> None:
        if self.detector is not None:
            for e in self.detector.finish():
                await self._announce(e, self.turn)

    async def stop(self) -> None:
        if not self.cancelled:
            await self._end_open_turn()

    def statistics(self) -> dict[str, Any]:
        """Queue figures plus model calls and the speaking frames from upstream that were dropped."""
        out = super().statistics()
        out["model_calls"] = self.detector.model_calls if self.detector is not None else 0
        out["dropped_speaking_frames"] = self.dropped_speaking_frames
        return out
