"""The end-of-turn decision of ``turn.semantic``: Smart Turn, the final pitch movement and the words.

At each pause the three signals are weighed by one small rule (:meth:`TurnRule.judge`), the
first step that applies deciding::

    1. the words say unfinished (lexical.incomplete_reason)  -> wait, up to max_wait_ms
    2. the pitch rises >= rise_st (0.5 st)                   -> wait, up to unsure_wait_ms if
                                                                 Smart Turn p >= threshold (a
                                                                 question sounds like this),
                                                                 else up to max_wait_ms
    3. Smart Turn p >= threshold (0.8)                        -> complete
    4. the pitch falls >= fall_st (1 st), p >= fall_min_p     -> complete (a statement's end)
    5. p < low_p (0.01)                                       -> wait, up to max_wait_ms
    6. otherwise (level pitch, the model unsure)              -> wait, up to unsure_wait_ms (1 s)

Step 1 only applies when a recogniser's text is available; steps 2 and 4 when the last voiced
300 ms had enough voicing to track (:func:`processors.turn.prosody.final_pitch_movement`).
:func:`judge_pause` computes only what can change the verdict: when the words decide (step 1)
neither the model nor the pitch tracker runs (the model is 20-40 ms of CPU a pause), and when
the model's probability is below both ``low_p`` and ``fall_min_p`` every pitch gives the same
wait (step 2 or 5: ``max_wait_ms``), so the pitch is not tracked.
"Wait" ends the turn when the silence reaches the wait (counted from the end of speech)
unless the user goes on. The defaults were chosen on four eSpeak voices and checked on a
held-out voice (docs/quality.md, ``python benchmarks/quality.py --turn-sweep``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lexical import incomplete_reason
from .prosody import PitchEnd, final_pitch_movement

__all__ = ["TurnRule", "Verdict", "judge_pause"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The rule's answer at a pause: ``complete`` now, or wait up to ``wait_ms``; ``reason`` says which step."""

    complete: bool
    wait_ms: float
    reason: str
    probability: float | None  # None: the words decided, the model was not asked
    pitch_st: float | None = None


@dataclass(frozen=True, slots=True)
class TurnRule:
    """The thresholds of the decision rule (module docstring); the defaults are ``turn.semantic``'s."""

    threshold: float = 0.8
    fall_st: float = 1.0
    fall_min_p: float = 0.02
    rise_st: float = 0.5
    low_p: float = 0.01
    unsure_wait_ms: float = 1000.0
    max_wait_ms: float = 1500.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold is a probability between 0 and 1, got {self.threshold}")
        if not 0.0 < self.unsure_wait_ms <= self.max_wait_ms:
            raise ValueError(f"unsure_wait_ms ({self.unsure_wait_ms}) must be positive and at most "
                             f"max_wait_ms ({self.max_wait_ms})")

    def pitch_matters(self, probability: float) -> bool:
        """Whether the final pitch movement can change the verdict at this model ``probability``.

        Below ``low_p`` and ``fall_min_p`` (and so below ``threshold``) a rising pitch waits
        ``max_wait_ms`` (step 2) and any other pitch does too (step 5): the pitch cannot matter.
        """
        return not (probability < self.low_p and probability < self.fall_min_p and probability < self.threshold)

    def words_verdict(self, words: str | None, probability: float | None = None,
                      pitch_st: float | None = None) -> Verdict | None:
        """Step 1: the wait when the ``words`` stop mid-sentence, else None (no text, or it sounds finished)."""
        why = incomplete_reason(words) if words else None
        return None if why is None else Verdict(False, self.max_wait_ms, f"words: {why}", probability, pitch_st)

    def judge(self, probability: float, pitch: PitchEnd | None, words: str | None) -> Verdict:
        """Weigh the model's ``probability``, the final ``pitch`` movement and the ``words`` (None: no text)."""
        st = pitch.semitones if pitch is not None else None
        by_words = self.words_verdict(words, probability, st)
        if by_words is not None:
            return by_words
        if st is not None and st >= self.rise_st:
            if probability >= self.threshold:
                return Verdict(False, self.unsure_wait_ms, "rising pitch, model: complete", probability, st)
            return Verdict(False, self.max_wait_ms, "rising pitch", probability, st)
        if probability >= self.threshold:
            return Verdict(True, 0.0, "model", probability, st)
        if st is not None and st <= -self.fall_st and probability >= self.fall_min_p:
            return Verdict(True, 0.0, "falling pitch", probability, st)
        if probability < self.low_p:
            return Verdict(False, self.max_wait_ms, "model: unfinished", probability, st)
        return Verdict(False, self.unsure_wait_ms, "unsure", probability, st)


def judge_pause(rule: TurnRule, model, audio16k: np.ndarray, words: str | None) -> Verdict:
    """Judge the pause at the end of the turn's 16 kHz audio (a worker thread's job).

    Only what can change the verdict is computed (module docstring): the words first, then the
    model, then the pitch tracker when :meth:`TurnRule.pitch_matters`.
    """
    by_words = rule.words_verdict(words)
    if by_words is not None:
        return by_words
    p = model.probability(audio16k)
    return rule.judge(p, final_pitch_movement(audio16k) if rule.pitch_matters(p) else None, None)
