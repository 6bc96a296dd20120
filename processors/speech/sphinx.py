"""Speech recognition with pocketsphinx 5 and the US English model shipped in its wheel.

:class:`Recognizer` decodes one utterance at a time from 16 kHz int16 audio. Given a list
of expected phrases it decodes with a JSGF grammar of exactly those phrases, which turns
a weak general-purpose recogniser into an exact one for a scripted dialogue; without
phrases it uses the general trigram language model (slower to load, about 0.7 s, and far
less accurate on synthetic speech).

Grammar phrases are normalised (lower-case; punctuation, digits and symbols become word
breaks). A word missing from the pronunciation dictionary cannot be recognised: it is
replaced by two dictionary words it is made of when possible ("voxpipe" -> "vox pipe"),
otherwise dropped, and a warning names it. :attr:`Recognizer.replaced` and
:attr:`Recognizer.dropped` record what happened.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import numpy as np

__all__ = ["NOISE_FLOOR", "Recognizer", "grammar_phrases", "normalize_words", "recognize", "word_error_rate"]

log = logging.getLogger("voxpipe.speech.sphinx")

#: RMS (int16 units) of the seeded noise added before decoding; 10 is about -70 dBFS.
NOISE_FLOOR = 10.0

_NON_WORD = re.compile(r"[^a-z']+")
_MIN_PART = 2  # shortest dictionary word used when splitting an unknown word


def normalize_words(text: str) -> list[str]:
    """Lower-case words of ``text``: punctuation, digits and symbols split words."""
    return [w.strip("'") for w in _NON_WORD.split(text.lower()) if w.strip("'")]


def grammar_phrases(phrases: Iterable[str]) -> list[str]:
    """``phrases`` normalised and de-duplicated, in order (before dictionary checks)."""
    seen: dict[str, None] = {}
    for phrase in phrases:
        words = " ".join(normalize_words(phrase))
        if words:
            seen.setdefault(words, None)
    return list(seen)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word edit distance between normalised texts, over the reference's word count."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    if not ref:
        return float(bool(hyp))
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)


class Recognizer:
    """One pocketsphinx decoder: feed an utterance's 16 kHz audio, get its transcript.

    With ``phrases`` the decoder only hears those phrases (a JSGF grammar), otherwise it
    uses the general language model. Construction loads the model (0.2 s with a grammar,
    0.7 s without): make one per stream and reuse it across utterances. Not thread-safe;
    one thread at a time per instance. ``noise_floor`` is the RMS of the seeded noise added
    before decoding (see :data:`NOISE_FLOOR`; 0 turns it off).
    """

    def __init__(
        self, phrases: list[str] | None = None, sample_rate: int = 16000, *, noise_floor: float = NOISE_FLOOR
    ) -> None:
        if sample_rate != 16000:
            raise ValueError(
                f"Recognizer(sample_rate={sample_rate}): the shipped pocketsphinx model is 16 kHz; "
                "resample the audio to 16000 Hz first (or use recognize(), which resamples)"
            )
        import pocketsphinx

        pocketsphinx.set_loglevel("FATAL")
        self.sample_rate = sample_rate
        self._floor = _NoiseFloor(noise_floor)
        self.replaced: dict[str, str] = {}
        self.dropped: list[str] = []
        self.phrases: list[str] = []
        wanted = grammar_phrases(phrases or [])
        if wanted:
            self._decoder = pocketsphinx.Decoder(lm=None, loglevel="FATAL")
            self.phrases = self._in_vocabulary(wanted)
            if self.phrases:
                self._decoder.add_jsgf_string("phrases", _jsgf(self.phrases))
                self._decoder.activate_search("phrases")
            else:
                log.warning("no grammar phrase has a word in the pocketsphinx dictionary; "
                            "using the general language model")
                self._decoder.add_lm_file("lm", _model_file("en-us.lm.bin"))
                self._decoder.activate_search("lm")
        else:
            self._decoder = pocketsphinx.Decoder(loglevel="FATAL")
        # Live cepstral mean normalisation adapts its estimate across utterances, so the
        # same audio decoded after other audio gave another transcript (and one session's
        # speech changed a pooled recogniser's results for the next). Every utterance
        # starts from the decoder's initial estimate instead: same audio, same words.
        self._cmn_initial = self._decoder.get_cmn(False)
        self._in_utterance = False

    @property
    def uses_grammar(self) -> bool:
        """True when decoding is restricted to :attr:`phrases`."""
        return bool(self.phrases)

    def _in_vocabulary(self, phrases: list[str]) -> list[str]:
        lookup = self._decoder.lookup_word
        out: list[str] = []
        for phrase in phrases:
            words: list[str] = []
            for word in phrase.split():
                if lookup(word) is not None:
                    words.append(word)
                    continue
                split = self.replaced.get(word) or _split_known(word, lookup)
                if split:
                    self.replaced[word] = split
                    words.extend(split.split())
                elif word not in self.dropped:
                    self.dropped.append(word)
            if words:
                out.append(" ".join(words))
        if self.replaced:
            log.warning("grammar words not in the pocketsphinx dictionary, replaced: %s",
                        ", ".join(f"{k!r} -> {v!r}" for k, v in self.replaced.items()))
        if self.dropped:
            log.warning("grammar words not in the pocketsphinx dictionary, dropped (they cannot be "
                        "recognised; reword the phrases): %s", ", ".join(map(repr, self.dropped)))
        return list(dict.fromkeys(out))

    def start_utterance(self) -> None:
        """Begin a new utterance (ends an unfinished one, discarding it)."""
        if self._in_utterance:
            self._decoder.end_utt()
        self._decoder.set_cmn(self._cmn_initial)
        self._decoder.start_utt()
        self._floor.reset()
        self._in_utterance = True

    def feed(self, samples: np.ndarray) -> None:
        """Decode a block of int16 mono audio at 16 kHz (any length; call repeatedly)."""
        if not self._in_utterance:
            raise RuntimeError("Recognizer.feed() before start_utterance(); call start_utterance() first")
        if samples.dtype != np.int16:
            raise TypeError(f"Recognizer.feed() takes int16 samples, got {samples.dtype}; "
                            "convert float audio with (x * 32767).astype(np.int16)")
        if samples.size:
            samples = self._floor.apply(samples.reshape(-1))
            self._decoder.process_raw(samples.view(np.uint8), False, False)

    def partial(self) -> str:
        """The current best hypothesis of the unfinished utterance ('' when none)."""
        if not self._in_utterance:
            return ""
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def end_utterance(self) -> str:
        """Finish the utterance and return its final transcript ('' when nothing was heard)."""
        if not self._in_utterance:
            return ""
        self._decoder.end_utt()
        self._in_utterance = False
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def recognize(self, samples: np.ndarray, sample_rate: int) -> str:
        """Transcribe a whole utterance of int16 or float32 mono audio at any rate."""
        self.start_utterance()
        self.feed(_to_16k_int16(samples, sample_rate))
        return self.end_utterance()


def recognize(samples: np.ndarray, sample_rate: int, *, phrases: list[str] | None = None) -> str:
    """One-shot transcription of an utterance (loads a model per call: tests, scripts)."""
    return Recognizer(phrases).recognize(samples, sample_rate)


def _to_16k_int16(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    if samples.ndim == 2:
        samples = samples.mean(axis=1).astype(samples.dtype) if samples.shape[1] > 1 else samples[:, 0]
    if samples.dtype not in (np.int16, np.float32):
        raise TypeError(f"recognize() takes int16 or float32 audio, got {samples.dtype}")
    if sample_rate != 16000 and samples.size:
        import soxr

        samples = soxr.resample(samples, sample_rate, 16000)
    if samples.dtype == np.float32:
        samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    return samples


class _NoiseFloor:
    """Adds a fixed, seeded noise floor to int16 audio, reusing its buffers.

    Digital silence (synthetic speech, gated or padded audio) starves pocketsphinx's noise
    and cepstral-mean estimators: on eSpeak NG speech the grammar decoder cut phrases short
    ("what is the weather in") and the first utterance of a fresh decoder was often wrong.
    A -70 dBFS floor, inaudible on real recordings, fixed every case we measured. The noise
    restarts with each utterance, so decoding is deterministic.
    """

    _TABLE = 16000  # one second of noise, reused cyclically

    def __init__(self, rms: float) -> None:
        self.rms = rms
        self._table = np.round(np.random.default_rng(0).normal(0.0, rms, self._TABLE)).astype(np.int32)
        self._wide = np.zeros(0, dtype=np.int32)
        self._out = np.zeros(0, dtype=np.int16)
        self._pos = 0

    def reset(self) -> None:
        self._pos = 0

    def apply(self, samples: np.ndarray) -> np.ndarray:
        """``samples`` plus the floor, in a reused buffer valid until the next call."""
        if self.rms <= 0:
            return np.ascontiguousarray(samples)
        n = samples.shape[0]
        if self._wide.shape[0] < n:
            self._wide = np.zeros(n, dtype=np.int32)
            self._out = np.zeros(n, dtype=np.int16)
        wide, out = self._wide[:n], self._out[:n]
        done = 0
        while done < n:
            take = min(n - done, self._TABLE - self._pos)
            np.add(samples[done:done + take], self._table[self._pos:self._pos + take], out=wide[done:done + take])
            done += take
            self._pos = (self._pos + take) % self._TABLE
        np.clip(wide, -32768, 32767, out=wide)
        np.copyto(out, wide, casting="unsafe")
        return out


def _jsgf(phrases: list[str]) -> str:
    alternatives = "\n    | ".join(phrases)
    return f"#JSGF V1.0;\ngrammar voxpipe;\npublic <utterance> = {alternatives} ;\n"


def _split_known(word: str, lookup) -> str | None:
    """``word`` as two dictionary words ("voxpipe" -> "vox pipe"), longest first part."""
    parts = [p for p in word.split("'") if p]
    if len(parts) > 1 and all(lookup(p) is not None for p in parts):
        return " ".join(parts)
    for i in range(len(word) - _MIN_PART, _MIN_PART - 1, -1):
        head, tail = word[:i], word[i:]
        if lookup(head) is not None and lookup(tail) is not None:
            return f"{head} {tail}"
    return None


def _model_file(name: str) -> str:
    import os

    import pocketsphinx

    return os.path.join(pocketsphinx.get_model_path(), "en-us", name)
