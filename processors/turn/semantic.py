"""``turn.semantic``: the user's turn ends when the sentence sounds finished, not after a fixed silence.

Use it *instead of* a ``vad.*`` processor in front of ``realtime.openai`` with
``turn_detection: {type: none}``: it pushes :class:`UserStartedSpeakingFrame` when the user
starts (the model stops talking: barge-in) and :class:`UserStoppedSpeakingFrame` when the
turn is over, which makes the model client commit the audio and send ``response.create``.
Speaking frames from a VAD further up are dropped, so that only this processor decides.

At every pause of ``pause_ms`` three signals are weighed (:mod:`processors.turn.decision`):
the Smart Turn v3 model's probability that the turn is complete (the ``pipecat-ai`` wheel's
ONNX file, BSD-2-Clause), the pitch movement over the last 300 ms of voiced speech (falling
closes a statement; level or rising goes on: :mod:`processors.turn.prosody`) and, when a
recogniser upstream sends the user's words (``TranscriptionFrame``, partial or final), whether
they stop mid-sentence (:mod:`processors.turn.lexical`). The rule ends the turn at once, or
waits ``unsure_wait_ms`` or ``max_silence_ms`` for the user to go on. The model and the pitch
tracker run in a worker thread (55-75 ms of CPU per pause on a small machine), so the event loop
keeps moving; audio frames queue meanwhile and pass on in order. See docs/quality.md for the
measured false-cut rate and delays.

In a crowded room (babble) the energy VAD hears the crowd as speech: turns start with no user
and never end. Set ``foreground_db`` (6 is what docs/quality.md measured), as for
``vad.energy``: only audio that much above the room's usual level starts or continues a turn;
the audio passed on, and what the model and the pitch tracker hear, stay untouched.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from pydantic import BaseModel, Field

from pipeline.dsp.formats import downmix
from pipeline.frames import (
    AudioFormat,
    AudioFrame,
    Direction,
    Frame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipeline.processor import Processor

__all__ = ["SemanticTurnProcessor"]

_DOWN = Direction.DOWNSTREAM


class SemanticTurnProcessor(Processor):
    """Start and end of the user's turn: an energy VAD finds pauses, Smart Turn + pitch + words judge them.

    Use it in place of a ``vad.*`` processor. In babble (a crowd, a café) set ``foreground_db``
    (:class:`pipeline.dsp.foreground.ForegroundGate`, 6 as measured in docs/quality.md): without
    it the crowd opens one turn that never ends.
    """

    class Params(BaseModel, extra="forbid"):
        threshold: float = Field(0.8, gt=0.0, lt=1.0, description="model probability at which a paused turn is complete")
        pause_ms: float = Field(200.0, ge=60.0, le=2000.0, description="silence after which the turn is judged")
        max_silence_ms: float = Field(1500.0, ge=100.0, le=10000.0,
                                      description="the longest wait: after words or a pitch that say unfinished")
        unsure_wait_ms: float = Field(1000.0, ge=100.0, le=10000.0,
                                      description="the wait when the signals are unsure (level pitch, model between)")
        fall_st: float = Field(1.0, ge=0.0, le=12.0, description="a final pitch fall (semitones) that ends a statement")
        rise_st: float = Field(0.5, ge=0.0, le=12.0, description="a final pitch rise (semitones) that means more follows")
        words: bool = Field(True, description="weigh the user's words from TranscriptionFrames upstream, when there are any")
        recheck_ms: float | None = Field(None, ge=100.0, le=5000.0,
                                         description="ask the model again every so often while the pause lasts")
        vad_threshold: float = Field(0.5, ge=0.0, le=1.0, description="the energy VAD's threshold (vad.energy semantics)")
        foreground_db: float | None = Field(
            None, ge=2.0, le=20.0,
            description="babble: only audio this many dB above the median level of the last 3 s is speech (as vad.energy)")
        model_path: str | None = Field(None, description="another Smart Turn v3 ONNX file (default: pipecat-ai's)")

    input_format = AudioFormat(channels=1)

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self.detector: Any = None
        self.model: Any = None
        self._rate = 0
        self.dropped_speaking_frames = 0
        self.rule: Any = None
        self.last_end: Any = None  # the last end-of-turn TurnEvent: .pts decided, .speech_end, .reason
        self.verdicts: dict[str, int] = {}  # decision-rule step -> pauses it decided
        self._finals: list[str] = []  # the recogniser's final texts since this turn began
        self._partial = ""

    async def start(self) -> None:
        from pipeline.dsp.smart_turn import shared_model

        from processors.turn.decision import TurnRule

        p = self.params
        self.rule = TurnRule(threshold=p.threshold, fall_st=p.fall_st, rise_st=p.rise_st,
                             unsure_wait_ms=min(p.unsure_wait_ms, p.max_silence_ms), max_wait_ms=p.max_silence_ms)
        self.model = shared_model(p.model_path)

    @property
    def words(self) -> str | None:
        """The user's words in the open turn so far, as the recogniser sent them (None: none came)."""
        if not self._finals and not self._partial:
            return None
        return " ".join([*self._finals, self._partial]).strip()

    async def process(self, frame: Frame, direction: Direction) -> None:
        if type(frame) is not AudioFrame or direction is not _DOWN:  # audio first: the per-frame path
            await self._other(frame, direction)
            return
        x = frame.samples
        if x.ndim != 1:
            x = downmix(x)
        if frame.sample_rate == self._rate:  # the per-frame path: the detector, no pause, the frame on
            det = self.detector
            events = det.process(x, frame.pts)
            if det.query is None and not events:
                await self.push(frame, direction)
                return
        else:
            await self._new_rate(frame.sample_rate)
            det = self.detector
            events = det.process(x, frame.pts)
        if det.query is not None:
            from processors.turn.decision import judge_pause

            v = await anyio.to_thread.run_sync(judge_pause, self.rule, self.model, det.query, self.words)
            key = v.reason.split(":")[0]
            self.verdicts[key] = self.verdicts.get(key, 0) + 1
            self.log.debug("pause: %s (%s, p=%s, pitch %s st)", "complete" if v.complete else "wait", v.reason,
                           "-" if v.probability is None else f"{v.probability:.2f}",
                           "-" if v.pitch_st is None else f"{v.pitch_st:+.1f}")
            events += det.answer(v.probability, complete=v.complete, wait_ms=v.wait_ms)
        for e in events:
            await self._announce(e, frame.turn)
        await self.push(frame, direction)

    async def _other(self, frame: Frame, direction: Direction) -> None:
        """Everything but downstream audio: drop upstream VADs' speaking frames, note the user's words."""
        if direction is _DOWN and isinstance(frame, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame)):
            self.dropped_speaking_frames += 1  # only this processor decides when the turn ends
            return
        if direction is _DOWN and type(frame) is TranscriptionFrame and frame.role == "user" and self.params.words:
            if frame.final:
                self._finals.append(frame.text)
                self._partial = ""
            else:
                self._partial = frame.text
        await self.push(frame, direction)

    async def _announce(self, event, turn: int) -> None:
        if event.started:
            self._finals, self._partial = [], ""
            await self.push(UserStartedSpeakingFrame(pts=event.pts, sample_rate=self._rate, turn=turn))
        else:
            self.last_end = event
            self.log.debug("end of turn (%s, p=%s) %.0f ms after speech", event.reason, event.probability,
                           (event.pts - event.speech_end) * 1000 / self._rate)
            await self.push(UserStoppedSpeakingFrame(pts=event.speech_end, sample_rate=self._rate, turn=turn))

    async def _new_rate(self, rate: int) -> None:
        """The first frame, or audio at another rate: the open turn ends, a new detector starts."""
        from pipeline.dsp.turn import SemanticTurnDetector

        await self._end_open_turn()
        p = self.params
        self.detector = SemanticTurnDetector(rate, threshold=p.threshold, pause_ms=p.pause_ms,
                                             max_silence_ms=p.max_silence_ms, recheck_ms=p.recheck_ms,
                                             vad_threshold=p.vad_threshold, model=self.model, defer_model=True,
                                             foreground_db=p.foreground_db)
        self._rate = rate

    async def _end_open_turn(self) -> None:
        if self.detector is not None:
            for e in self.detector.finish():
                await self._announce(e, self.turn)

    async def stop(self) -> None:
        if not self.cancelled:
            await self._end_open_turn()

    def statistics(self) -> dict[str, Any]:
        """Queue figures plus model calls, the pauses each rule step decided, the speaking frames
        from upstream that were dropped, and with ``foreground_db`` the chunks its gate showed the
        VAD as silence (``foreground_gated``)."""
        out = super().statistics()
        det = self.detector
        out["model_calls"] = det.model_calls if det is not None else 0
        out["verdicts"] = dict(self.verdicts)
        out["dropped_speaking_frames"] = self.dropped_speaking_frames
        if self.params.foreground_db is not None:
            out["foreground_gated"] = det.foreground.gated if det is not None and det.foreground is not None else 0
        return out
