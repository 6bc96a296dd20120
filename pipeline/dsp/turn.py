"""Semantic end of turn: a short pause asks Smart Turn v3 whether the sentence is over (sans-I/O).

Theory of operation
-------------------
A silence timer cannot tell "my number is four one five ..." (a pause to recall the rest)
from "what's the weather in Paris?" (done): both are followed by silence. So the timer is
either long (every answer waits for it) or short (callers are cut off). Here an energy VAD
finds *pauses* (``pause_ms`` of silence, shorter than any timer) and, at each one, the
Smart Turn model hears the last 8 s of the turn and says how likely it is to be complete::

    IDLE    --speech starts------------------>  SPEAKING   (emit start)
    SPEAKING --pause, model >= threshold----->  IDLE       (emit end: "complete")
    SPEAKING --pause, model <  threshold----->  PAUSED
    PAUSED  --speech resumes----------------->  SPEAKING   (same turn: nothing emitted)
    PAUSED  --silence reaches max_silence_ms->  IDLE       (emit end: "timeout")

``max_silence_ms`` is the fallback for a turn the model thinks unfinished (a real pause of
thought, or the model's mistake). The model is asked once per pause (again every
``recheck_ms`` only when that is set), and not at all when the speech resumes in the same
chunk as the pause was found (chunks longer than ``min_speech_ms``, such as a client's
large appends): that pause is over before any answer could end the turn. All positions are media time in samples at the stream's
rate; the model runs on a 16 kHz copy of the audio, kept for at most 8.5 s.

In babble (a crowd, a café) the energy VAD calls the crowd speech too: a turn starts with no
user and never pauses. ``foreground_db`` puts a :class:`~pipeline.dsp.foreground.ForegroundGate`
in front of the VAD, as ``vad.energy`` does: only chunks that many dB above the median level of
the last 3 s reach it as sound. The gate decides what the VAD sees, nothing else: the model
and the pitch tracker hear the audio as it came.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

import numpy as np

from .foreground import ForegroundGate
from .resample import Resampler
from .smart_turn import SMART_TURN_RATE, SmartTurnModel
from .vad import EnergyVAD

__all__ = ["SemanticTurnDetector", "TurnEvent", "TurnState"]

_KEEP_S = 8.5  # the model hears 8 s; the rest is the pre-speech margin
_PRE_SPEECH_MS = 300.0
_INT16_SCALE = np.float32(1 / 32768)


class TurnState(enum.Enum):
    """Where the user's turn is (the table in the module docstring)."""

    IDLE = "idle"
    SPEAKING = "speaking"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """A turn started (``pts`` = speech onset) or ended (``pts`` = where that was decided).

    For an end, ``speech_end`` is the last active sample, ``pts - speech_end`` the delay,
    ``reason`` ``"complete"`` (the model), ``"timeout"`` (max_silence_ms) or ``"finish"``
    (end of stream), and ``probability`` the model's last answer in this turn.
    """

    started: bool
    pts: int
    speech_end: int = 0
    reason: str = "start"
    probability: float | None = None


class SemanticTurnDetector:
    """Start and end of the user's turn from an energy VAD plus Smart Turn v3 at each pause.

    ``process(x, pts)`` takes the next chunk (int16 or float32 mono at ``sample_rate``) and
    returns the :class:`TurnEvent` s it completes. :attr:`model_calls` counts inferences;
    pass ``model`` to share one :class:`SmartTurnModel` between detectors (one per session
    would load 8 MB each). ``foreground_db`` (None: off) gates the VAD's input for crowded
    rooms: :attr:`foreground` is then that :class:`~pipeline.dsp.foreground.ForegroundGate` (its
    ``gated`` counts the chunks the VAD saw as silence).
    """

    def __init__(self, sample_rate: int, *, threshold: float = 0.5, pause_ms: float = 200.0,
                 max_silence_ms: float = 1500.0, recheck_ms: float | None = None, vad_threshold: float = 0.5,
                 min_speech_ms: float = 100.0, model: SmartTurnModel | None = None, defer_model: bool = False,
                 foreground_db: float | None = None) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold is a probability between 0 and 1, got {threshold}")
        if max_silence_ms < pause_ms:
            raise ValueError(f"max_silence_ms ({max_silence_ms}) must be at least pause_ms ({pause_ms})")
        self.sample_rate = sample_rate
        self.threshold = threshold
        self.pause_ms = pause_ms
        self.max_silence_ms = max_silence_ms
        self.model = model if model is not None else (None if defer_model else SmartTurnModel())
        self.defer_model = defer_model
        self.foreground_db = foreground_db
        self.query: np.ndarray | None = None  # with defer_model: the audio the model must judge
        self._vad_args = dict(threshold=vad_threshold, silence_duration_ms=pause_ms, min_speech_ms=min_speech_ms,
                              prefix_padding_ms=_PRE_SPEECH_MS)
        self._max_silence = int(max_silence_ms * sample_rate / 1000)
        self._recheck = int(recheck_ms * sample_rate / 1000) if recheck_ms else 0
        self._pre = int(_PRE_SPEECH_MS * SMART_TURN_RATE / 1000)
        self._keep = int(_KEEP_S * SMART_TURN_RATE)
        self.model_calls = 0
        self.last_probability: float | None = None
        self.reset()

    def reset(self) -> None:
        """A new stream: no turn, empty buffers, media time 0."""
        self.vad = EnergyVAD(self.sample_rate, **self._vad_args)
        self.foreground: ForegroundGate | None = None
        if self.foreground_db is None:
            self._detect = self.vad.process  # off: the VAD's own method, no extra call per chunk
        else:
            gate = self.foreground = ForegroundGate(self.sample_rate, margin_db=self.foreground_db)
            vad_process, gate_apply = self.vad.process, gate.apply
            self._detect = lambda x, pts: vad_process(gate_apply(x), pts)
        self._to16 = Resampler(self.sample_rate, SMART_TURN_RATE, dtype="float32", quality="LQ")
        self._chunks: deque[np.ndarray] = deque()
        self._held = 0  # 16 kHz samples in _chunks
        self._fed = 0  # 16 kHz samples ever produced
        self._origin: int | None = None  # stream pts of 16 kHz sample 0
        self._pos = 0
        self.state = TurnState.IDLE
        self._turn_start16 = 0
        self._silence_from = 0
        self._next_check = 0
        self._asked_at = 0
        self._pause_limit = self._max_silence
        self.query = None
        self.last_probability = None

    def process(self, x: np.ndarray, pts: int | None = None) -> list[TurnEvent]:
        """Analyse the next chunk (at media time ``pts``, default: right after the previous one).

        With ``defer_model`` a pause leaves :attr:`query` set instead of running the model:
        run ``model.probability(query)`` (in a worker thread, say) and pass the result to
        :meth:`answer` before the next chunk.
        """
        if self.query is not None:
            raise RuntimeError("SemanticTurnDetector: answer() the pending query before the next chunk")
        start = self._pos if pts is None else pts
        if self._origin is None:
            self._origin = start
        end = self._pos = start + x.shape[0]
        f = np.multiply(x, _INT16_SCALE, dtype=np.float32) if x.dtype == np.int16 else x
        self._keep_audio(self._to16.process(f))
        out: list[TurnEvent] = []
        events = self._detect(x, start)  # the VAD's view (gated in babble); the kept audio is x itself
        for k, e in enumerate(events):
            if e.started:
                if self.state == TurnState.IDLE:
                    self._turn_start16 = self._to_16(e.pts)
                    out.append(TurnEvent(True, e.pts))
                self.state = TurnState.SPEAKING
            elif self.state == TurnState.SPEAKING:
                self.state = TurnState.PAUSED
                self._silence_from = e.pts
                self._pause_limit = self._max_silence
                self._next_check = end + self._recheck
                if any(later.started for later in events[k + 1 :]):
                    continue  # speech resumed within this chunk: the pause is over before the model could answer
                out += self._consult(end)
        if self._recheck and self.state == TurnState.PAUSED and self.query is None and end >= self._next_check \
                and end - self._silence_from < self._max_silence:
            self._next_check = end + self._recheck
            out += self._consult(end)
        if self.state == TurnState.PAUSED and self.query is None and end - self._silence_from >= self._pause_limit:
            out.append(TurnEvent(False, self._silence_from + self._pause_limit, self._silence_from, "timeout",
                                 self.last_probability))
            self.state = TurnState.IDLE
        return out

    def answer(self, probability: float, *, complete: bool | None = None,
               wait_ms: float | None = None) -> list[TurnEvent]:
        """The model's answer to :attr:`query`: the end of the turn, if it says complete.

        A caller that weighs more than the model (``turn.semantic``) decides itself:
        ``complete`` overrides ``probability >= threshold``, and ``wait_ms`` replaces
        ``max_silence_ms`` as the longest this pause may last (counted from the speech's end).
        """
        if self.query is None:
            raise RuntimeError("SemanticTurnDetector: answer() without a pending query")
        self.query = None
        self.last_probability = probability
        if complete if complete is not None else probability >= self.threshold:
            self.state = TurnState.IDLE
            return [TurnEvent(False, self._asked_at, self._silence_from, "complete", probability)]
        self._pause_limit = self._max_silence if wait_ms is None else int(wait_ms * self.sample_rate / 1000)
        return []

    def _consult(self, end: int) -> list[TurnEvent]:
        self._asked_at = end
        self.query = self._turn_audio()
        self.model_calls += 1
        if self.defer_model:
            return []
        return self.answer(self.model.probability(self.query))

    def finish(self) -> list[TurnEvent]:
        """At the end of the stream: the end of a turn still open."""
        out = []
        self.query = None
        for e in self.vad.finish():
            if not e.started and self.state != TurnState.IDLE:
                out.append(TurnEvent(False, self._pos, e.pts, "finish", self.last_probability))
                self.state = TurnState.IDLE
        if self.state == TurnState.PAUSED:
            out.append(TurnEvent(False, self._pos, self._silence_from, "finish", self.last_probability))
            self.state = TurnState.IDLE
        return out

    # --- the model's view of the turn ---------------------------------------------------------

    def _to_16(self, stream_pts: int) -> int:
        return (stream_pts - self._origin) * SMART_TURN_RATE // self.sample_rate

    def _keep_audio(self, y: np.ndarray) -> None:
        if not y.shape[0]:
            return
        self._chunks.append(y)
        self._held += y.shape[0]
        self._fed += y.shape[0]
        while self._held - self._chunks[0].shape[0] >= self._keep:
            self._held -= self._chunks.popleft().shape[0]

    def _turn_audio(self) -> np.ndarray:
        """The turn so far at 16 kHz (from 300 ms before its onset, at most the last 8.5 s)."""
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        first = self._fed - audio.shape[0]  # 16 kHz index of audio[0]
        begin = max(self._turn_start16 - self._pre - first, 0)
        return audio[begin:]
