"""Server VAD turns on the session timeline, from the DSP energy VAD.

:class:`TurnDetector` maps a session's ``turn_detection`` config onto
:class:`pipeline.dsp.vad.EnergyVAD` and reports turn edges as positions on the session's
input timeline (samples since the first appended sample), which is what
``speech_started.audio_start_ms`` and ``speech_stopped.audio_end_ms`` count (reference
§7.1): a start is the speech onset minus ``prefix_padding_ms``, a stop is the end of
speech plus ``silence_duration_ms`` (the trailing silence is included, as the real
server's ``audio_end_ms`` is).

The audio is cut into 20 ms frames before the VAD sees it, so the turns found do not
depend on how the client sized its appends.

``semantic_vad`` judges each 200 ms pause the way ``turn.semantic`` does without words
(:mod:`processors.turn.decision`: the Smart Turn v3 model's probability and the final pitch
movement) when the model is installed (``pip install --no-deps pipecat-ai``): ``eagerness``
sets how sure the model must be, the wait when the signals are unsure and the longest pause
waited out (:data:`EAGERNESS_RULE`; medium/auto are ``turn.semantic``'s defaults). The model
and the pitch tracker run inline, 50-100 ms per pause, on the connection's loop. Without the
model it falls back to the energy VAD with a silence duration chosen by ``eagerness``
(high 300 ms, medium/auto 600 ms, low 1200 ms), keeping the real API's ordering of
eagerness to turn-end delay.
"""

from __future__ import annotations

from typing import Any

import logging

import numpy as np

from pipeline.dsp.rechunk import Rechunker
from pipeline.dsp.vad import EnergyVAD

__all__ = ["EAGERNESS_RULE", "EAGERNESS_SILENCE_MS", "TurnDetector"]

#: Silence that ends a turn for each ``semantic_vad`` eagerness (without the model).
EAGERNESS_SILENCE_MS = {"high": 300, "medium": 600, "auto": 600, "low": 1200}
#: (model threshold, wait when unsure, longest pause waited out; ms) for each eagerness (with the model).
EAGERNESS_RULE = {"high": (0.6, 600.0, 1000.0), "medium": (0.8, 1000.0, 1500.0), "auto": (0.8, 1000.0, 1500.0),
                  "low": (0.9, 1500.0, 3000.0)}
log = logging.getLogger("voxpipe.realtime_server")


def _semantic_detector(rate: int, eagerness: str):
    """(SemanticTurnDetector, TurnRule) for ``eagerness``, or None when the model is not installed."""
    try:
        from pipeline.dsp.smart_turn import shared_model
        from pipeline.dsp.turn import SemanticTurnDetector

        model = shared_model()
    except (ImportError, FileNotFoundError) as exc:
        log.info("semantic_vad without Smart Turn (%s): using the eagerness silence timer", exc)
        return None
    from processors.turn.decision import TurnRule

    threshold, unsure_ms, max_silence_ms = EAGERNESS_RULE[eagerness]
    rule = TurnRule(threshold=threshold, unsure_wait_ms=unsure_ms, max_wait_ms=max_silence_ms)
    detector = SemanticTurnDetector(rate, threshold=threshold, max_silence_ms=max_silence_ms, model=model,
                                    min_speech_ms=_MIN_SPEECH_MS, defer_model=True)
    return detector, rule
_FRAME_MS = 20
_MIN_SPEECH_MS = 100  # a click or a cough does not open a turn


class TurnDetector:
    """Speech start / stop positions for one session's input stream (server VAD).

    ``keep_samples`` is how much audio before the current position a future speech start
    can still claim (prefix padding plus the VAD's decision delay): the input buffer keeps
    that much while no one speaks and drops the rest.
    """

    def __init__(self, config: dict[str, Any], rate: int, *, start: int = 0) -> None:
        self._semantic = self._rule = None
        if config.get("type") == "semantic_vad":
            eagerness = config.get("eagerness") or "auto"
            silence_ms = EAGERNESS_SILENCE_MS[eagerness]
            threshold, prefix_ms = 0.5, 300
            semantic = _semantic_detector(rate, eagerness)
            if semantic is not None:
                self._semantic, self._rule = semantic
        else:
            silence_ms = config.get("silence_duration_ms", 200)
            threshold, prefix_ms = config.get("threshold", 0.5), config.get("prefix_padding_ms", 300)
        self.rate = rate
        self.prefix_samples = rate * prefix_ms // 1000
        self.keep_samples = rate * (prefix_ms + _MIN_SPEECH_MS + 4 * _FRAME_MS) // 1000
        self._vad = EnergyVAD(rate, threshold=threshold, prefix_padding_ms=prefix_ms,
                              silence_duration_ms=silence_ms, min_speech_ms=_MIN_SPEECH_MS)
        self._frames = Rechunker(rate * _FRAME_MS // 1000)
        self._next = start  # timeline position of the next frame's first sample
        self._origin = start  # no padding reaches before the stream (re)started

    @property
    def in_speech(self) -> bool:
        if self._semantic is not None:
            return self._semantic.state.value != "idle"
        return self._vad.speaking

    def process(self, samples: np.ndarray) -> list[tuple[str, int]]:
        """Feed the next samples; returns ('start' | 'stop', padded timeline position)s."""
        out = []
        if self._semantic is not None:
            # semantic: a start is the onset minus the prefix padding, a stop is where the
            # turn was judged over (the trailing silence included, as for server_vad)
            det = self._semantic
            for frame in self._frames.process(samples):
                events = det.process(frame, self._next)
                if det.query is not None:
                    from processors.turn.decision import judge_pause

                    v = judge_pause(self._rule, det.model, det.query, None)
                    events += det.answer(v.probability, complete=v.complete, wait_ms=v.wait_ms)
                for event in events:
                    if event.started:
                        out.append(("start", max(self._origin, event.pts - self.prefix_samples)))
                    else:
                        out.append(("stop", event.pts))
                self._next += frame.shape[0]
            return out
        vad = self._vad
        for frame in self._frames.process(samples):
            for event in vad.process(frame, self._next):
                if event.started:
                    out.append(("start", max(self._origin, event.pts - self.prefix_samples)))
                else:
                    out.append(("stop", event.padded_pts))
            self._next += frame.shape[0]
        return out

    def reset(self, position: int) -> None:
        """Start over at timeline position ``position`` (after a commit or clear)."""
        self._vad.reset()
        if self._semantic is not None:
            self._semantic.reset()
        self._frames.reset()
        self._next = self._origin = position
