"""``stt.pocketsphinx``: recognise the user's speech between a VAD's start and stop events.

Theory of operation
-------------------
A VAD upstream pushes ``UserStartedSpeakingFrame`` / ``UserStoppedSpeakingFrame`` whose
``pts`` mark speech on the audio's media timeline. They are system frames: they overtake
queued audio, so this processor places utterances by media time, not by arrival order.

* ``IDLE``: audio (resampled to 16 kHz) goes into a pre-roll of ``padding_ms``.
* A start event opens an utterance at ``start - padding_ms``: the pre-roll from there is
  fed to the recogniser and the state becomes ``LISTENING``; later audio is fed as it comes.
* A stop event at ``end`` sets ``ENDING``: audio is fed up to ``end + padding_ms``; once it
  has arrived (at once if it already has) the utterance ends and a final
  ``TranscriptionFrame`` (role user, turn 0) goes downstream. An end of stream ends an
  open utterance with what arrived.
* Events wait in a queue of marks and are applied in order: a start that overtook the
  previous utterance's last audio waits until that utterance has ended.

Recogniser work runs in a worker thread, so the event loop never waits on a decode. No lock
is needed: the runner never enters ``process`` concurrently (the speaking events, system
frames, wait at the front of this processor's queue), and on a cancel ``stop`` does not
touch the recogniser.
Audio is passed on downstream unchanged; the speaking events too.
"""

from __future__ import annotations

import enum
from collections import deque
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

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

__all__ = ["PocketsphinxSTT"]

_RATE = 16000


class _State(enum.Enum):
    IDLE = "idle"
    LISTENING = "listening"
    ENDING = "ending"


#: Legal transitions (event, state) -> state; anything else is a no-op (a stray event).
_TRANSITIONS = {
    ("start", _State.IDLE): _State.LISTENING,
    ("stop", _State.LISTENING): _State.ENDING,
    ("done", _State.ENDING): _State.IDLE,
    ("done", _State.LISTENING): _State.IDLE,  # end of stream mid-utterance
}


class PocketsphinxSTT(Processor):
    """Transcribes each utterance a VAD marks, with pocketsphinx (offline, English).

    Give ``phrases`` (or a ``rules`` file whose examples are the phrases) to decode with a
    grammar of exactly those phrases: exact on scripted dialogue. Without them the general
    language model is used (any English, much less accurate).
    """

    class Params(BaseModel, extra="forbid"):
        phrases: list[str] | None = Field(None, description="expected phrases: decode with a grammar of them")
        rules: str | None = Field(None, description="brain.scripted rules file; its examples become the phrases")
        padding_ms: float = Field(300.0, ge=0, le=2000, description="audio kept before the start and after the stop")
        partial_interval_ms: float | None = Field(
            None, gt=0, description="emit non-final transcriptions this often while speech goes on")
        max_utterance_s: float = Field(30.0, gt=0, description="an utterance longer than this is ended")

    input_format = AudioFormat(channels=1)

    async def start(self) -> None:
        import anyio

        from pipeline.dsp.resample import Resampler

        phrases = list(self.params.phrases or [])
        if self.params.rules:
            from processors.brain.rules import Brain

            phrases += Brain.from_yaml(Path(self.params.rules)).phrases()
        self._recognizer = await anyio.to_thread.run_sync(_make_recognizer, phrases or None)
        self._resampler_cls = Resampler
        self._resampler = None
        self._in_rate = 0
        self._state = _State.IDLE
        self._preroll: deque[tuple[float, np.ndarray]] = deque()  # (start time s, 16 kHz samples)
        self._marks: deque[tuple[str, float]] = deque()  # speaking events not applied yet
        self._received = 0.0  # media time (s) up to which audio arrived
        self._start = 0.0
        self._end = 0.0
        self._fed_to = 0.0  # media time (s) up to which the recogniser was fed
        self._since_partial = 0.0
        self._last_partial = ""

    async def stop(self) -> None:
        if not self.cancelled:  # on a cancel process() may still be inside a decode
            await self._advance(at_end=True)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, AudioFrame) and direction is Direction.DOWNSTREAM:
            await self.push(frame, direction)
            await self._audio(frame)
        elif isinstance(frame, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame)):
            await self.push(frame, direction)
            t = frame.pts / frame.sample_rate if frame.sample_rate else self._received
            self._marks.append(("start" if isinstance(frame, UserStartedSpeakingFrame) else "stop", t))
            await self._advance()
        else:
            await self.push(frame, direction)

    # --- the state machine ------------------------------------------------------------------

    def _set_state(self, event: str) -> bool:
        new = _TRANSITIONS.get((event, self._state))
        if new is None:
            self.log.debug("%s: ignoring %s while %s", self.name, event, self._state.value)
            return False
        self.log.debug("%s: %s -> %s (%s)", self.name, self._state.value, new.value, event)
        self._state = new
        return True

    async def _advance(self, *, at_end: bool = False) -> None:
        """Apply the speaking marks the audio has caught up with, in media-time order.

        A start waits while the previous utterance still waits for its last audio; a stop
        is applied at once (it only sets where the utterance ends). ``at_end``: the stream
        ended, so no more audio will come: end what is open.
        """
        while True:
            if self._state is _State.ENDING and (at_end or self._received >= self._end):
                await self._end_utterance()
            elif self._marks and self._state is not _State.ENDING:
                kind, t = self._marks.popleft()
                if kind == "start" and self._set_state("start"):
                    await self._open(t)
                elif kind == "stop" and self._set_state("stop"):
                    self._end = t + self.params.padding_ms / 1000.0
            elif at_end and self._state is _State.LISTENING:
                await self._end_utterance()
            else:
                return

    async def _audio(self, frame: AudioFrame) -> None:
        samples = frame.samples
        if samples.ndim == 2:
            samples = samples[:, 0]
        if samples.dtype != np.int16:
            samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
        if frame.sample_rate != self._in_rate:
            self._in_rate = frame.sample_rate
            self._resampler = self._resampler_cls(frame.sample_rate, _RATE, dtype="int16")
        audio = self._resampler.process(samples)
        self._received = (frame.pts + frame.num_samples) / frame.sample_rate
        if not audio.size:
            return
        t0 = self._received - audio.shape[0] / _RATE  # align what soxr released with the frame's end
        if self._state is not _State.IDLE:
            await self._feed(audio, t0)
            if self._state is _State.LISTENING and self._fed_to - self._start > self.params.max_utterance_s:
                self.log.info("%s: utterance passed max_utterance_s=%.1f; ending it",
                              self.name, self.params.max_utterance_s)
                await self._end_utterance()
            elif self._state is _State.ENDING and self._received >= self._end:
                await self._end_utterance()
        if self._state is _State.IDLE:  # also right after an utterance ended: its tail may pre-roll the next
            self._preroll.append((t0, audio))
            limit = self._received - self.params.padding_ms / 1000.0
            while self._preroll and self._preroll[0][0] + self._preroll[0][1].shape[0] / _RATE < limit:
                self._preroll.popleft()
        await self._advance()

    async def _open(self, t: float) -> None:
        import anyio

        self._start = max(0.0, t - self.params.padding_ms / 1000.0)
        self._end = float("inf")
        self._fed_to = self._start
        self._since_partial = 0.0
        self._last_partial = ""
        await anyio.to_thread.run_sync(self._recognizer.start_utterance)
        preroll, self._preroll = self._preroll, deque()
        for t0, audio in preroll:
            await self._feed(audio, t0)

    async def _feed(self, audio: np.ndarray, t0: float) -> None:
        """Feed the part of ``audio`` (starting at ``t0`` s) inside [start, end], once."""
        import anyio

        first = max(0, int(round((max(self._fed_to, self._start) - t0) * _RATE)))
        last = min(audio.shape[0], int(round((self._end - t0) * _RATE)) if self._end != float("inf") else audio.shape[0])
        if last <= first:
            return
        part = audio[first:last]
        await anyio.to_thread.run_sync(self._recognizer.feed, part)
        self._fed_to = t0 + last / _RATE
        interval = self.params.partial_interval_ms
        if interval is not None:
            self._since_partial += part.shape[0] / _RATE
            if self._since_partial * 1000.0 >= interval:
                self._since_partial = 0.0
                text = self._recognizer.partial()
                if text and text != self._last_partial:
                    self._last_partial = text
                    await self.push(TranscriptionFrame(text, role="user", final=False))

    async def _end_utterance(self) -> None:
        import anyio

        text = await anyio.to_thread.run_sync(self._recognizer.end_utterance)
        self._set_state("done")
        self._end = float("inf")
        self.log.info("%s: heard %r", self.name, text)
        await self.push(TranscriptionFrame(text, role="user", final=True))


def _make_recognizer(phrases: list[str] | None):
    from .sphinx import Recognizer

    return Recognizer(phrases)
