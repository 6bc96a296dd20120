"""Speech recognition with pocketsphinx 5 and the US English model shipped in its wheel.

:class:`Recognizer` decodes one utterance at a time from 16 kHz int16 audio. Given a list
of expected phrases it decodes with a JSGF grammar of exactly those phrases, which turns
a weak general-purpose recogniser into an exact one for a scripted dialogue; without
phrases it uses the general trigram language model (slower to load, about 0.7 s, and far
less accurate on synthetic speech).

A :class:`Grammar` goes further: phrases *and* a corpus of sentences a session expects
(:mod:`processors.brain.tools` spells out a session's tools), which train a small bigram
model per session. One decoder holds many grammars as named searches, keyed by their
content, and switches between them per utterance (``activate_search`` costs microseconds;
adding a JSGF grammar about 10 ms, a bigram model of seven tools about 50 ms). With ``fallback=True`` the decoder also loads the
general language model and decodes every utterance twice: when the general model's words
disagree with the grammar's (out-of-grammar speech), its words win rather than the nearest
grammar phrase (:attr:`Recognizer.last_source` says which).

Grammar phrases are normalised (lower-case; punctuation, digits and symbols become word
breaks). A word missing from the pronunciation dictionary cannot be recognised: it is
replaced by two dictionary words it is made of when possible ("voxpipe" -> "vox pipe"),
otherwise dropped, and a warning names it. :attr:`Recognizer.replaced` and
:attr:`Recognizer.dropped` record what happened.
"""

from __future__ import annotations

import logging
import re
import hashlib
import math
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["FALLBACK_MODES", "NOISE_FLOOR", "Grammar", "Heard", "Recognizer", "grammar_phrases", "normalize_words", "recognize", "word_error_rate"]

log = logging.getLogger("voxpipe.speech.sphinx")

#: RMS (int16 units) of the seeded noise added before decoding; 10 is about -70 dBFS.
NOISE_FLOOR = 10.0

_NON_WORD = re.compile(r"[^a-z']+")
_FRAME = 160  # samples per pocketsphinx frame (10 ms at 16 kHz)
_LOUD_DB = 20.0  # a frame within this of the utterance's loudest is speech, for the gate ...
_NOISE_MARGIN_DB = 10.0  # ... when it is also this far above the quietest tenth of the frames
_SPAN_ALLOWANCE = 60  # frames (0.6 s) added to the loud span when scoring per frame, for the gate
_LOOP_PAD = 30  # frames (0.3 s) each side of the loud span over which the phone loop's score is read
_CORPUS_SILENCE_COST = -7.0  # a session model's log score per frame of added silence (measured -5 to -11)
_PAUSE_FRAMES = 10  # frames next to a word that still belong to it (its edges, short pauses)
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
    return _edit_rate(normalize_words(reference), normalize_words(hypothesis))


def _edit_rate(ref: list[str], hyp: list[str]) -> float:
    if not ref:
        return float(bool(hyp))
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / len(ref)


@dataclass(frozen=True)
class Grammar:
    """What a recogniser should expect: whole ``phrases``, and a ``corpus`` of sentences.

    Phrases alone become a JSGF grammar of exactly those phrases. With a ``corpus`` (a
    session's tools, spelled out as sentences by :mod:`processors.brain.tools`) the
    phrases and the corpus train a small bigram language model instead, which also hears
    new orders and combinations of the same words ("set the heating in the kitchen to
    twenty degrees"). Equal content gives an equal :attr:`key`, which is what decoders
    cache searches by.
    """

    phrases: tuple[str, ...] = ()
    corpus: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        digest = hashlib.sha1(repr((self.phrases, self.corpus)).encode()).hexdigest()
        return "g" + digest[:16]

    def __bool__(self) -> bool:
        return bool(self.phrases or self.corpus)

    def jsgf(self) -> str:
        """The phrases as a JSGF grammar."""
        body = "\n    | ".join(self.phrases)
        return f"#JSGF V1.0;\ngrammar voxpipe;\npublic <utterance> = {body} ;\n"

    def arpa(self, phrase_weight: int = 20) -> str:
        """A bigram model (ARPA text) of the phrases (each counted ``phrase_weight`` times) and corpus.

        Absolute discounting (D = 0.5) with back-off to add-one unigrams: every corpus
        word is possible anywhere, seen word pairs are much likelier.
        """
        sentences = [(p.split(), phrase_weight) for p in self.phrases] + [(c.split(), 1) for c in self.corpus]
        uni: dict[str, int] = {}
        bi: dict[tuple[str, str], int] = {}
        for words, weight in sentences:
            seq = ["<s>", *words, "</s>"]
            for w in seq:
                uni[w] = uni.get(w, 0) + weight
            for pair in zip(seq, seq[1:]):
                bi[pair] = bi.get(pair, 0) + weight
        vocab = sorted(uni)
        total = sum(c + 1 for w, c in uni.items() if w != "<s>")
        p_uni = {w: (uni[w] + 1) / total for w in vocab if w != "<s>"}
        discount = 0.5
        followers: dict[str, list[str]] = {}
        for h, w in bi:
            followers.setdefault(h, []).append(w)
        bigrams: list[str] = []
        backoff: dict[str, float] = {}
        for h, ws in followers.items():
            count = sum(bi[(h, w)] for w in ws)
            left = discount * len(ws) / count
            rest = 1.0 - sum(p_uni[w] for w in ws)
            backoff[h] = left / rest if rest > 1e-12 else 1e-9
            bigrams += [f"{math.log10((bi[(h, w)] - discount) / count):.4f} {h} {w}" for w in ws]
        out = ["\\data\\", f"ngram 1={len(vocab)}", f"ngram 2={len(bigrams)}", "", "\\1-grams:"]
        for w in vocab:
            prob = -99.0 if w == "<s>" else math.log10(p_uni[w])
            out.append(f"{prob:.4f} {w} {math.log10(backoff[w]) if w in backoff else 0.0:.4f}")
        out += ["", "\\2-grams:", *bigrams, "", "\\end\\", ""]
        return "\n".join(out)


class Heard(str):
    """A transcript (a ``str``, equal to its words) that also says how it was heard.

    ``fallback`` is True when the grammar pass was unsure of the utterance and the general
    English model's words replaced its words: out-of-grammar speech, which a responder
    should answer as such (:meth:`processors.brain.Brain.respond`'s ``out_of_grammar``).
    ``score`` is the grammar pass's confidence (its path score per 10 ms frame, see
    :attr:`Recognizer.GATE_SCORE`), None when no grammar was used or no fallback is on.
    String methods (``strip()``, ``+``) return plain ``str``: the flags belong to these words.
    """

    fallback: bool
    score: float | None

    def __new__(cls, text: str = "", fallback: bool = False, score: float | None = None) -> Heard:
        heard = super().__new__(cls, text)
        heard.fallback = fallback
        heard.score = score
        return heard

    def __reduce__(self) -> tuple:  # pickles whole (recognition worker processes send these)
        return (Heard, (str(self), self.fallback, self.score))


#: How a :class:`Recognizer` with a grammar treats speech outside it (``fallback=``).
FALLBACK_MODES = ("off", "gated", "always")


def _fallback_mode(fallback: bool | str) -> str:
    if fallback is True:
        return "always"
    if fallback is False or fallback is None:
        return "off"
    if fallback not in FALLBACK_MODES:
        raise ValueError(f"Recognizer(fallback={fallback!r}): give one of {', '.join(FALLBACK_MODES)} "
                         "(or True for 'always', False for 'off')")
    return fallback


class Recognizer:
    """One pocketsphinx decoder: feed an utterance's 16 kHz audio, get its transcript.

    With ``phrases`` (or a :class:`Grammar`) the decoder only hears those, otherwise it
    uses the general language model. Construction loads the model (0.2 s with a grammar,
    0.7 s without): make one per stream and reuse it across utterances; :meth:`use_grammar`
    switches grammars between utterances (cached by content, at most ``max_grammars`` per
    decoder). Not thread-safe; one thread at a time per instance. ``noise_floor`` is the
    RMS of the seeded noise added before decoding (see :data:`NOISE_FLOOR`; 0 turns it off).

    ``fallback`` says what happens to speech outside the grammar (see :meth:`end_utterance`):

    * ``"off"`` (or False): the grammar's words, always (the nearest phrase);
    * ``"gated"``: the grammar pass's confidence (:attr:`GATE_SCORE`, :attr:`GATE_UNEXPLAINED`;
      for a session model :attr:`GATE_BAND_CORPUS` and, inside that band, a ratio to an
      unconstrained phone loop, :attr:`GATE_LOOP_CORPUS`) decides; only when it is unsure
      is the utterance decoded again by the general English model, which is loaded then
      (its first use costs 0.5-2 s, once per recogniser);
    * ``"always"`` (or True): every utterance is decoded by both (6-20x the grammar's cost;
      the gate's verdict, :attr:`last_sure`, is still computed, phone loop included).

    After a second pass the general model's words are the transcript when they disagree with
    the grammar's (:attr:`AGREE_PER`); :attr:`last_source` says which won, and the returned
    :class:`Heard` says so too (``fallback``).
    """

    #: Grammar and general hypotheses closer than this (phone error rate, over the grammar's
    #: phones) count as agreeing. Phones, not words: the general model often hears the
    #: right sounds as other words ("whether a row" for "weather in rome": 0.31). Measured
    #: on eSpeak NG speech: in-grammar phrases up to 0.63, out-of-grammar mostly above 0.9.
    AGREE_PER = 0.65
    #: The same for a session's bigram model (:attr:`Grammar.corpus`), which strings any
    #: of its words together and so sounds closer to out-of-domain speech: measured on
    #: generated requests 0.11-0.69, on held-out sentences 0.13-0.88.
    AGREE_PER_CORPUS = 0.55
    #: ... but this close when the session model's score per frame is below
    #: :attr:`GATE_BAND_CORPUS` (its words were forced onto the sound): there an agreement
    #: at 0.55 is a coincidence of a few shared words. On the tuning half of the gate's
    #: material, the three out-of-grammar sentences kept by agreement all scored below the
    #: band (-60 to -67) and agreed at 0.52-0.53 ("how far is the airport from here" ->
    #: "how five is there for ten paris"), while no in-grammar request scored below it (lowest
    #: -53.3; held-out -54.6). Any limit from 0 to 0.5 gave the same counts on both halves;
    #: 0.3 is :attr:`PHRASE_PER`, what counts as nearly the same words elsewhere. Held-out
    #: (recorded rows): 79/96 out-of-grammar caught at 5/276 false fallbacks, against 77/96
    #: at 5/276 with 0.55 everywhere; ``--gate``'s own run: 77/96 at 6/276 (docs/local-model.md).
    AGREE_PER_BELOW_BAND = 0.3
    #: A session model's words this close (phone error rate) to one of the rules' phrases
    #: give that phrase (the demo's words stay exact when a session declares tools).
    PHRASE_PER = 0.3
    #: ... or this close for narrowband (8 kHz) audio, where the general model is not asked.
    PHRASE_RESCUE_PER = 0.7
    #: A grammar result of at most this many words is kept without agreement (``"always"``
    #: only; under the gate a short result was doubted): the general model is poor on one or
    #: two words of synthetic speech ("hello" -> "fuck off").
    SHORT_WORDS = 2
    #: The gate (``fallback="gated"``): the grammar pass is sure of an utterance when its
    #: best path's score per 10 ms frame of speech (pocketsphinx's log score, base 1.0001, which is
    #: relative to the best-matching sound of every frame, so a path forced through the
    #: wrong words scores low) is at least this, for a phrase grammar ... Chosen on the
    #: tuning half of tests/local_model_cases.py (even OUT_OF_GRAMMAR sentences, requests
    #: of seed 7, even demo phrases; four eSpeak NG voices): in-grammar phrases scored -29
    #: at worst, out-of-grammar sentences mostly -40 to -60 (docs/local-model.md).
    GATE_SCORE = -35.0
    #: For a session's bigram model, which fits any string of its words and so scores lower
    #: on in-domain speech too (requests -55 to -25, out-of-grammar sentences mostly -45 to
    #: -65), the score alone decides only outside this band: at or above its top the pass
    #: is sure, below its bottom unsure. Inside it (a third of the in-grammar turns) the phone
    #: loop decides (:attr:`GATE_LOOP_CORPUS`). On the tuning half the loop's verdict
    #: varied only for scores between -52 and -47 (unsure below, sure above).
    GATE_BAND_CORPUS = (-56.0, -43.0)
    #: ... sure when the score per frame minus the acoustic score per frame of an
    #: unconstrained phone loop over the same speech (pocketsphinx's ``allphone`` search
    #: with the wheel's ``en-us-phone.lm.bin``: the best sounds with almost no language
    #: constraint) is at least this: a log likelihood ratio, the session model's words
    #: against any sounds. Chosen on the tuning half (docs/local-model.md): held-out
    #: 77/96 out-of-grammar sentences caught at 5/276 false fallbacks, against 67/96 at
    #: 2/276 with the score alone (-52) on the same recordings (``--gate``'s own run:
    #: 74/96 at 6/276; the score alone measured 64/96 at 4/276 before).
    GATE_LOOP_CORPUS = -39.0
    #: ... and, for a phrase grammar, when at most this share of the utterance's loud frames
    #: (within 20 dB of its loudest, 10 dB above its quietest tenth) lies outside the
    #: hypothesis' words: a phrase grammar ends its short phrase and calls the rest silence
    #: ("i forgot my keys at home" -> "hi there", then 1.4 s of "silence" that was speech),
    #: with a good score per frame. In-grammar phrases: 0 (every one measured). A session
    #: model can always go on with more of its words, so this does not apply to it.
    GATE_UNEXPLAINED = 0.02

    def __init__(
        self, phrases: list[str] | Grammar | None = None, sample_rate: int = 16000, *,
        noise_floor: float = NOISE_FLOOR, fallback: bool | str = False, max_grammars: int = 16,
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
        self.fallback_mode = _fallback_mode(fallback)
        self.fallback = self.fallback_mode != "off"
        self.max_grammars = max_grammars
        self.last_source = ""  # "grammar" or "general": which search gave the last transcript
        self.last_general = ""  # the general model's words for the last utterance (after a second pass)
        self.last_grammar = ""  # the grammar's words for it (fallback only)
        self.last_phrase = ""  # the nearest of the rules' phrases, with a session model (fallback only)
        self.last_score: float | None = None  # the grammar pass's score per frame (fallback only)
        self.last_unexplained: float | None = None  # share of loud frames outside its words (fallback only)
        self.last_sure: bool | None = None  # the gate's verdict on the last utterance (fallback only)
        self.last_loop: float | None = None  # the session model's ratio to the phone loop (in the band only)
        self.loop_passes = 0  # utterances decoded by the phone loop
        self._loop: tuple[Any, Any] | None = None  # (decoder, initial CMN) of the phone loop, once loaded
        self.general_passes = 0  # utterances decoded again by the general model
        self._general: tuple[Any, Any] | None = None  # (decoder, initial CMN) of the general model, once loaded
        self._searches: OrderedDict[str, list[str]] = OrderedDict()  # grammar key -> its phrases
        self._corpus: dict[str, bool] = {}  # grammar key -> it is a bigram model
        # A bigram model added to the main decoder took 5-14 s (pocketsphinx walks its whole
        # 134k-word dictionary for a new n-gram search); a decoder of its own with a
        # dictionary of just the model's words takes 20 ms. So each session model gets one.
        self._models: dict[str, tuple[Any, Any]] = {}  # grammar key -> (decoder, its initial CMN)
        self._active: Any = None  # the decoder of the active search
        self._phrase_searches: dict[str, str] = {}  # session model key -> its phrases' JSGF search
        self._active_cmn: Any = None
        self._audio: list[np.ndarray] = []
        self._in_utterance = False
        grammar = phrases if isinstance(phrases, Grammar) else Grammar(tuple(grammar_phrases(phrases or [])))
        self._current = ""  # the active search's name
        if grammar:
            # the grammar decoders keep pocketsphinx's defaults whatever the fallback, so that
            # the grammar's words and the gate's score do not depend on it; the general model
            # has a decoder of its own (:meth:`_general_decoder`), made when first needed
            self._decoder = pocketsphinx.Decoder(lm=None, loglevel="FATAL")
            self._cmn_initial = self._decoder.get_cmn(False)
            if not self.use_grammar(grammar):
                log.warning("no grammar phrase has a word in the pocketsphinx dictionary; "
                            "using the general language model")
                self._activate("lm")
        else:
            self._decoder = pocketsphinx.Decoder(loglevel="FATAL")
            self._current = "lm"
            # Live cepstral mean normalisation adapts its estimate across utterances, so the
            # same audio decoded after other audio gave another transcript (and one session's
            # speech changed a pooled recogniser's results for the next). Every utterance
            # starts from the decoder's initial estimate instead: same audio, same words.
            self._cmn_initial = self._decoder.get_cmn(False)
            self._general = (self._decoder, self._cmn_initial)  # without a grammar it is the general model
            self._models["lm"] = self._general
        if self._active is None:
            self._active, self._active_cmn = self._decoder, self._cmn_initial
        self._in_utterance = False

    @property
    def general_loaded(self) -> bool:
        """True once the general English model is loaded (at once without a grammar, else lazily)."""
        return self._general is not None

    def load_general(self) -> None:
        """Load the general English model now (0.5-2 s) rather than at the first utterance that needs it."""
        self._general_decoder()

    def _general_decoder(self) -> tuple[Any, Any]:
        if self._general is None:
            import pocketsphinx

            # a single forward pass and a tighter HMM limit make the general pass 0.95 ->
            # 0.62 s per utterance (WER 0.17 -> 0.15 on eight eSpeak NG sentences; measured on
            # this project's 2-core VM). Its own decoder: loading it cannot change what the
            # grammar decoders hear, so a recogniser hears the same before and after.
            decoder = pocketsphinx.Decoder(loglevel="FATAL", fwdflat=False, maxhmmpf=5000)
            self._general = (decoder, decoder.get_cmn(False))
            self._models["lm"] = self._general
        return self._general

    @property
    def uses_grammar(self) -> bool:
        """True when decoding uses a session grammar (:attr:`phrases`, or a corpus model)."""
        return self._current in self._searches

    def _activate(self, name: str) -> None:
        if self._current != name:
            if name == "lm":
                self._general_decoder()
            model = self._models.get(name)
            if model is None:
                self._decoder.activate_search(name)
                self._active, self._active_cmn = self._decoder, getattr(self, "_cmn_initial", None)
            else:
                self._active, self._active_cmn = model
            self._current = name

    def use_grammar(self, grammar: Grammar | None) -> bool:
        """Decode the next utterances with ``grammar`` (None or empty: the general model).

        Between utterances only. The first use of a grammar adds it to the decoder (about
        10 ms for a few tools); later uses switch to it. Returns False when the grammar
        has no word the dictionary knows (then the general model is used).
        """
        if self._in_utterance:
            raise RuntimeError("Recognizer.use_grammar() during an utterance; call it before start_utterance()")
        if not grammar:
            self._activate("lm")
            self.phrases = []
            return False
        key = grammar.key
        if key not in self._searches:
            phrases = self._in_vocabulary(list(grammar.phrases))
            corpus = self._in_vocabulary(list(grammar.corpus)) if grammar.corpus else []
            if not phrases and not corpus:
                return False
            fixed = Grammar(tuple(phrases), tuple(corpus))
            if corpus:
                self._models[key] = self._model_decoder(fixed)
                if phrases:
                    self._decoder.add_jsgf_string(key + "p", Grammar(tuple(phrases)).jsgf())
                    self._phrase_searches[key] = key + "p"
            else:
                self._decoder.add_jsgf_string(key, fixed.jsgf())
            self._searches[key] = phrases
            self._corpus[key] = bool(corpus)
            while len(self._searches) > self.max_grammars:
                old, _ = self._searches.popitem(last=False)
                self._corpus.pop(old, None)
                if old in self._models:
                    if old != self._current:
                        del self._models[old]
                        if self._phrase_searches.pop(old, None):
                            self._decoder.remove_search(old + "p")
                elif old != self._current:
                    self._decoder.remove_search(old)
        self._searches.move_to_end(key)
        self._activate(key)
        self.phrases = self._searches[key]
        return True

    def _model_decoder(self, grammar: Grammar) -> tuple[Any, Any]:
        """A decoder of ``grammar``'s bigram model, with a dictionary of only its words."""
        import pocketsphinx

        words = sorted({w for line in grammar.phrases + grammar.corpus for w in line.split()})
        with tempfile.TemporaryDirectory() as tmp:
            dict_path, lm_path = os.path.join(tmp, "words.dict"), os.path.join(tmp, "model.lm")
            with open(dict_path, "w", encoding="utf-8") as f:
                f.writelines(f"{w} {self._decoder.lookup_word(w)}\n" for w in words)
            with open(lm_path, "w", encoding="utf-8") as f:
                f.write(grammar.arpa())
            decoder = pocketsphinx.Decoder(lm=None, dict=dict_path, loglevel="FATAL")
            decoder.add_lm_file("model", lm_path)
            decoder.activate_search("model")
        return decoder, decoder.get_cmn(False)

    def _known_words(self, words: list[str]) -> list[str]:
        lookup = self._decoder.lookup_word
        out: list[str] = []
        for word in words:
            if lookup(word) is not None:
                out.append(word)
                continue
            split = self.replaced.get(word) or _split_known(word, lookup)
            if split:
                if word not in self.replaced:
                    log.warning("grammar word %r is not in the pocketsphinx dictionary, replaced by %r", word, split)
                self.replaced[word] = split
                out.extend(split.split())
            elif word not in self.dropped:
                self.dropped.append(word)
                log.warning("grammar word %r is not in the pocketsphinx dictionary, dropped (it cannot be "
                            "recognised; reword the phrase)", word)
        return out

    def _in_vocabulary(self, phrases: list[str]) -> list[str]:
        out = [" ".join(words) for words in (self._known_words(p.split()) for p in phrases) if words]
        return list(dict.fromkeys(out))

    def start_utterance(self) -> None:
        """Begin a new utterance (ends an unfinished one, discarding it)."""
        if self._in_utterance:
            self._active.end_utt()
        # The front end's noise estimate also carries over between utterances: with the
        # faster general pass (a tighter HMM limit) that alone changed the words of the
        # same audio after other speech. Re-initialising it costs 0.1 ms.
        self._active.reinit_feat()
        self._active.set_cmn(self._active_cmn)
        self._active.start_utt()
        self._floor.reset()
        self._audio = []
        self._in_utterance = True

    def cancel_utterance(self) -> None:
        """Drop the unfinished utterance, if any: the recogniser is ready for the next one."""
        if self._in_utterance:
            self._active.end_utt()
            self._in_utterance = False
        self._audio = []

    def feed(self, samples: np.ndarray) -> None:
        """Decode a block of int16 mono audio at 16 kHz (any length; call repeatedly)."""
        if not self._in_utterance:
            raise RuntimeError("Recognizer.feed() before start_utterance(); call start_utterance() first")
        if samples.dtype != np.int16:
            raise TypeError(f"Recognizer.feed() takes int16 samples, got {samples.dtype}; "
                            "convert float audio with (x * 32767).astype(np.int16)")
        if samples.size:
            samples = self._floor.apply(samples.reshape(-1))
            if self.uses_grammar and (self.fallback or self._phrase_searches.get(self._current)):
                self._audio.append(samples.copy())  # for the phrase rescue and the general model's pass
            self._active.process_raw(samples.view(np.uint8), False, False)

    def partial(self) -> str:
        """The current best hypothesis of the unfinished utterance ('' when none)."""
        if not self._in_utterance:
            return ""
        hyp = self._active.hyp()
        return hyp.hypstr if hyp is not None else ""

    def end_utterance(self, *, narrowband: bool = False, stop: Callable[[], bool] | None = None) -> Heard | None:
        """Finish the utterance and return its final transcript ('' when nothing was heard).

        ``stop`` is polled between the 100 ms blocks of the general model's pass (the one
        long step here): when it returns True the pass is abandoned and the result is None,
        so a pre-empted or cancelled recognition gives its core back at once.

        With a grammar and a ``fallback``, the gate first reads the grammar pass: it is sure
        when its score per frame is at least :attr:`GATE_SCORE` and at most
        :attr:`GATE_UNEXPLAINED` of the loud audio lies outside its words (for a session
        model: a score at or above :attr:`GATE_BAND_CORPUS`, or inside that band a ratio to a
        phone loop of at least :attr:`GATE_LOOP_CORPUS`, :attr:`last_loop`). With
        ``"gated"`` a sure utterance keeps the grammar's words and costs nothing more
        (but the phone loop's pass inside the band); otherwise (and always with
        ``"always"``) the utterance is decoded again by the general model. The grammar's
        words are still kept when they agree with the general model's (phone error rate at
        most :attr:`AGREE_PER`; for a session model :attr:`AGREE_PER_CORPUS`, or
        :attr:`AGREE_PER_BELOW_BAND` below its score band; :meth:`agreement_limit`) or are at most
        :attr:`SHORT_WORDS` words (with ``"always"`` only); otherwise the general model's
        words are the transcript (out-of-grammar speech; the :class:`Heard` has ``fallback``
        set).
        With a session model, one of the rules' phrases wins before that when the model
        nearly heard it (:attr:`PHRASE_PER`). For ``narrowband`` audio (telephone rate,
        upsampled) there is no general pass (nor a phone loop), and a phrase within
        :attr:`PHRASE_RESCUE_PER` wins over the session model's words.
        """
        if not self._in_utterance:
            return Heard("")
        decoder = self._active
        decoder.end_utt()
        self._in_utterance = False
        hyp = decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        self.last_source = "grammar" if self.uses_grammar else "general"
        self.last_general = ""
        self.last_score = self.last_unexplained = self.last_sure = self.last_loop = None
        grammar_search = self._current
        phrases = self._phrase_searches.get(grammar_search) if self.uses_grammar else None
        if not (self.uses_grammar and (self.fallback or phrases)):
            self._audio = []
            return Heard(text)
        corpus = self._corpus.get(grammar_search, False)
        score = None
        if self.fallback:
            score, unexplained, loud = self._confidence(decoder, hyp, corpus)
            self.last_score, self.last_unexplained = score, unexplained
            if not corpus:
                self.last_sure = bool(text) and score >= self.GATE_SCORE and unexplained <= self.GATE_UNEXPLAINED
            else:
                low, high = self.GATE_BAND_CORPUS
                # narrowband audio never gets a general pass (below), so its verdict would go
                # unused: no phone loop (it ran on 17 of 21 telephone-band requests, ~0.1 s each)
                if text and low <= score < high and not narrowband:
                    self.last_loop = self._loop_ratio(score, loud)
                self.last_sure = bool(text) and (score >= high or (
                    self.last_loop is not None and self.last_loop >= self.GATE_LOOP_CORPUS))
        # a session model strings its words freely ("what is a weather in paris"): when it
        # nearly heard one of the rules' phrases, that phrase is the transcript, exactly.
        # Telephone-band audio (narrowband) defeats the general model: there a phrase that
        # is not far wins ("what is a weather by unit at it ng" is 0.67 from its phrase),
        # and there is no general pass.
        heard_phrase = self._decode_main(phrases) if phrases and text else ""
        self.last_grammar, self.last_phrase = text, heard_phrase
        near = self.phone_error_rate(heard_phrase, text) if heard_phrase else float("inf")
        if near <= (self.PHRASE_RESCUE_PER if narrowband else self.PHRASE_PER) or narrowband:
            self._audio = []
            self._activate(grammar_search)
            return Heard(heard_phrase if near <= self.PHRASE_RESCUE_PER else text, score=score)
        if not self.fallback or (self.fallback_mode == "gated" and self.last_sure):
            self._audio = []  # the phrase rescue only, or the gate is sure: no general pass
            self._activate(grammar_search)
            return Heard(text, score=score)
        general = self._decode_general(stop)
        self._audio = []
        self._activate(grammar_search)
        if general is None:
            return None
        self.last_general = general
        words = text.split()
        limit = self.agreement_limit(corpus, score)
        # ("always") a short phrase is kept without agreement; under the gate it was doubted
        short = len(words) <= self.SHORT_WORDS and self.fallback_mode == "always"
        if words and (short or self.phone_error_rate(text, general) <= limit):
            return Heard(text, score=score)
        if not general:
            return Heard(text, score=score)
        self.last_source = "general"
        return Heard(general, fallback=True, score=score)

    @classmethod
    def agreement_limit(cls, corpus: bool, score: float | None) -> float:
        """The phone error rate up to which the general model's words agree with the grammar's.

        :attr:`AGREE_PER` for a phrase grammar; for a session model (``corpus``)
        :attr:`AGREE_PER_CORPUS`, or :attr:`AGREE_PER_BELOW_BAND` when its ``score`` per
        frame is below :attr:`GATE_BAND_CORPUS`.
        """
        if not corpus:
            return cls.AGREE_PER
        if score is not None and score < cls.GATE_BAND_CORPUS[0]:
            return cls.AGREE_PER_BELOW_BAND
        return cls.AGREE_PER_CORPUS

    def _confidence(self, decoder: Any, hyp: Any, corpus: bool) -> tuple[float, float, tuple[int, int] | None]:
        """The grammar pass's score per frame of speech, the share of loud frames outside its words, the loud span.

        Per frame of the span from the first to the last loud frame plus 0.6 s (the
        padding the thresholds were measured with), not per frame of the whole segment:
        silence frames cost less than speech, so seconds of silence around out-of-grammar
        speech made it look sure (with 1 s each side, 8 of 8 sentences on a session model);
        the silence beyond the span is charged at its own measured cost instead.
        """
        frames = decoder.n_frames()
        if hyp is None or frames <= 0 or hyp.score <= 0.0:
            return float("-inf"), 1.0, None
        raw = decoder.get_logmath().log(hyp.score)
        audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)
        n = min(frames, audio.shape[0] // _FRAME)
        if n == 0:
            return raw / frames, 0.0, None
        blocks = audio[:n * _FRAME].astype(np.float64).reshape(n, _FRAME)
        energy = 10.0 * np.log10(np.mean(blocks * blocks, axis=1) + 1.0)
        # loud: near the utterance's peak and well above its quietest tenth (the noise)
        loud = energy > max(energy.max() - _LOUD_DB, float(np.percentile(energy, 10)) + _NOISE_MARGIN_DB)
        where = np.flatnonzero(loud)
        span = int(where[-1] - where[0] + 1) if where.size else frames
        counted = min(frames, span + _SPAN_ALLOWANCE)
        # each frame of the silence beyond still costs the bigram decoder about 7 (a phrase
        # grammar next to nothing): added back, so padding neither hides nor fakes doubt
        score = (raw - (_CORPUS_SILENCE_COST if corpus else 0.0) * (frames - counted)) / counted
        words = np.zeros(n, dtype=bool)
        for seg in decoder.seg() or ():
            if not seg.word.startswith(("<", "[", "+")):
                words[max(0, seg.start_frame):max(0, seg.end_frame + 1)] = True
        # a word's own edges and short pauses between words are not "outside" it
        near = np.convolve(words.astype(np.int32), np.ones(2 * _PAUSE_FRAMES + 1, np.int32), "same") > 0
        span_frames = (int(where[0]), int(where[-1])) if where.size else None
        return score, float(np.count_nonzero(loud & ~near) / max(1, where.size)), span_frames

    def _loop_ratio(self, score: float, loud: tuple[int, int] | None) -> float:
        """``score`` minus the phone loop's acoustic score per frame over the loud span (plus 0.3 s each side).

        The buffered utterance is decoded by an unconstrained phone loop (its own decoder,
        loaded at the first utterance that needs it, about 0.1 s; 80-100 ms for 2.5 s of
        speech). Only its segments' acoustic scores are read, over the frames of the loud
        span, so silence around the speech counts for neither side.
        """
        decoder, cmn = self._loop_decoder()
        self.loop_passes += 1
        self._replay(decoder, cmn)
        frames = decoder.n_frames()
        first, last = loud if loud is not None else (0, frames - 1)
        lo, hi = max(0, first - _LOOP_PAD), min(frames - 1, last + _LOOP_PAD)
        if hi < lo:
            return float("-inf")
        logmath = decoder.get_logmath()
        acoustic = 0.0
        for seg in decoder.seg() or ():
            overlap = min(seg.end_frame, hi) - max(seg.start_frame, lo) + 1
            if overlap > 0 and seg.ascore > 0.0:
                acoustic += logmath.log(seg.ascore) * overlap / (seg.end_frame - seg.start_frame + 1)
        return score - acoustic / (hi - lo + 1)

    def _loop_decoder(self) -> tuple[Any, Any]:
        if self._loop is None:
            import pocketsphinx

            # lw 2 (a phone bigram barely weighed) and beams of 1e-20: the settings the
            # threshold was tuned with; 1e-10 beams were 25% faster and gave 77/96 at 6/276
            path = os.path.join(pocketsphinx.get_model_path(), "en-us", "en-us-phone.lm.bin")
            decoder = pocketsphinx.Decoder(allphone=path, lm=None, lw=2.0, beam=1e-20, pbeam=1e-20, loglevel="FATAL")
            self._loop = (decoder, decoder.get_cmn(False))
        return self._loop

    def phone_error_rate(self, reference: str, hypothesis: str) -> float:
        """Phone edit distance between two transcripts (dictionary pronunciations), over the reference's."""
        return _edit_rate(self._phones(reference), self._phones(hypothesis))

    def _phones(self, text: str) -> list[str]:
        out: list[str] = []
        for word in text.split():
            pron = self._decoder.lookup_word(word)
            out += pron.split() if pron else [word]
        return out

    def _decode_main(self, search: str) -> str:
        """The buffered utterance decoded again by ``search`` of the main decoder."""
        self._activate(search)
        self._replay(self._decoder, self._cmn_initial)
        hyp = self._decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def _decode_general(self, stop: Callable[[], bool] | None = None) -> str | None:
        """The buffered utterance decoded by the general model (loaded now if it is not yet); None if stopped."""
        decoder, cmn = self._general_decoder()
        self.general_passes += 1
        if not self._replay(decoder, cmn, stop):
            return None
        hyp = decoder.hyp()
        return hyp.hypstr if hyp is not None else ""

    def _replay(self, decoder: Any, cmn: Any, stop: Callable[[], bool] | None = None) -> bool:
        """Decode the buffered utterance with ``decoder`` from the fresh state ``cmn``; False if ``stop`` said so.

        Every pass starts from the same front end and CMN, so that a second pass (or a phone
        loop) hears the same audio the same way whatever it decoded before.
        """
        decoder.reinit_feat()
        decoder.set_cmn(cmn)
        decoder.start_utt()
        for block in self._audio:
            if stop is not None and stop():
                decoder.end_utt()
                return False
            decoder.process_raw(block.view(np.uint8), False, False)
        decoder.end_utt()
        return True

    def general_words(self, samples: np.ndarray, sample_rate: int) -> str:
        """What the general English model alone hears in a whole utterance (loading it if needed).

        The grammar is not consulted; for measuring the fallback (its word error rate).
        Between utterances only.
        """
        if self._in_utterance:
            raise RuntimeError("Recognizer.general_words() during an utterance; call it after end_utterance()")
        self._floor.reset()
        self._audio = [self._floor.apply(_to_16k_int16(samples, sample_rate).reshape(-1)).copy()]
        try:
            return self._decode_general()
        finally:
            self._audio = []

    def recognize(self, samples: np.ndarray, sample_rate: int) -> Heard:
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
