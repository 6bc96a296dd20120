"""What every connection of one local realtime server shares: the speech resources.

:class:`SpeechResources` holds the responder's rules (:class:`processors.brain.Brain`, from
YAML), a small pool of pocketsphinx recognisers and the eSpeak NG voice. Each session is heard
with a grammar of the rules' phrases and its own tools (:meth:`SpeechResources.grammar_for`,
cached by content; exact on scripted dialogue), and with the general English model as the
fallback for speech outside it: by default gated (``fallback="gated"``: decoded again only
when the grammar pass is unsure, the general model loaded at the first such utterance;
docs/local-model.md). One shared pool of recognisers keeps memory flat (a
pocketsphinx decoder is about 28 MB and 0.1 s of CPU to build; one per connection would be
1.4 GB at 50 sessions). Two ways to run it:

* ``processes=N`` (``voxpipe realtime-server`` default: one per core): recognition runs in
  N worker processes (:class:`processors.speech.pool.RecognizerPool`), so it uses every
  core and never holds the event loop's GIL. Each worker keeps one recogniser for its life.
* ``processes=0`` (the Python API default: tests, ``url: local``, a single session):
  recognition runs in threads of this process (``anyio.to_thread``), at most ``workers`` at
  once. pocketsphinx holds the GIL while it decodes, so this uses one core, shared with the
  event loop; it starts in 0.2 s instead of a process per core.

Synthesis stays in this process in both: with 20 sessions speaking at once, the time from
the transcript to the first audio (responder, synthesis, events) was a median 6-9 ms with
worker processes against 451-526 ms from speech end to the transcript
(``benchmarks/recognition_pool.py``): recognition, not synthesis, is where turns wait.

The work itself is done by each connection's graph (``pipelines/realtime_server.yaml``:
:mod:`.graph_io` and :mod:`.stages`), whose stages use these resources.
:func:`split_clauses` cuts a reply where synthesis streams it clause by clause.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from pipeline.errors import VoxpipeError

__all__ = ["SettingError", "SpeechResources", "split_clauses"]

log = logging.getLogger("voxpipe.realtime_server")

_RECOGNIZER_RATE = 16000  # the pocketsphinx model's rate
_FEED = _RECOGNIZER_RATE // 10  # samples per decode step (100 ms)
_CLAUSE = re.compile(r"[^.!?;:,]+[.!?;:,]*\s*")


def split_clauses(text: str) -> list[str]:
    """``text`` cut after punctuation, keeping every character (the pieces join back to it)."""
    pieces = _CLAUSE.findall(text)
    joined = "".join(pieces)
    if joined != text:  # leading punctuation or whitespace: keep it with the first piece
        pieces = [text[: len(text) - len(joined)] + (pieces[0] if pieces else "")] + pieces[1:]
    return [p for p in pieces if p]


class SettingError(VoxpipeError, ValueError):
    """A local realtime server setting is out of range; the message says what to give."""


class SpeechResources:
    """What every connection of one server shares: responder, recognisers, voice."""

    def __init__(self, rules: str | Path | None = None, *, voice: str = "en-us+klatt", workers: int = 2,
                 fallback: bool | str = "gated", processes: int = 0) -> None:
        from processors.brain.scripted import DEMO_RULES, Brain

        self.rules_path = Path(rules) if rules is not None else DEMO_RULES
        if not self.rules_path.is_file():
            raise FileNotFoundError(f"realtime server rules file {self.rules_path} does not exist; pass "
                                    "--rules FILE (see processors/brain/demo_rules.yaml for the format)")
        self.brain = Brain.from_yaml(self.rules_path)
        self.phrases = list(self.brain.phrases() or [])
        self.voice = voice
        from processors.speech.sphinx import FALLBACK_MODES

        if fallback not in (*FALLBACK_MODES, True, False):
            raise SettingError(f"fallback={fallback!r} (general_fallback): give one of {', '.join(FALLBACK_MODES)}")
        #: out-of-grammar speech: "off", "gated" (the general model only when the grammar pass is unsure) or "always"
        self.fallback = fallback
        self._idle: list[Any] = []
        self._limiter = anyio.CapacityLimiter(workers)
        self._grammars: OrderedDict[str, Any] = OrderedDict()  # tools + instructions -> Grammar
        if processes < 0:
            raise SettingError(f"processes={processes} (--processes): give 0 (recognise in threads of this "
                               "process) or the number of recognition worker processes (one per core uses every core)")
        self.processes = processes
        self._pool: Any = None
        if processes:
            from processors.speech.pool import RecognizerPool

            self._pool = RecognizerPool(processes, self.phrases or None, fallback=fallback)

    @property
    def idle_recognizers(self) -> int:
        """Recognisers ready for the next utterance (in threads, or worker processes)."""
        return self._pool.statistics()["idle"] if self._pool is not None else len(self._idle)

    def statistics(self) -> dict[str, int]:
        """The recognition pool's figures (processes, live, idle, jobs, cancelled, restarts).

        In threads (``processes=0``): processes 0, alive 0, idle recognisers, and how many of
        those have loaded the general English model (the gated fallback loads it lazily).
        """
        if self._pool is not None:
            return self._pool.statistics()
        return {"processes": 0, "alive": 0, "idle": len(self._idle),
                "general_loaded": sum(r.general_loaded for r in self._idle)}

    def grammar_for(self, tools: list[dict[str, Any]], instructions: str = "") -> Any:
        """The recogniser grammar of a session: the rules' phrases and its tools' rules.

        Cached by content (at most 64), so sessions declaring the same tools share one and
        each pooled decoder compiles it once.
        """
        from processors.brain.tools import tools_corpus
        from processors.speech.sphinx import Grammar, grammar_phrases

        key = json.dumps([tools, instructions], sort_keys=True, default=str)
        grammar = self._grammars.get(key)
        if grammar is None:
            corpus = grammar_phrases(tools_corpus(tools, instructions)) if tools else []
            grammar = Grammar(tuple(grammar_phrases(self.phrases)), tuple(corpus))
            self._grammars[key] = grammar
            while len(self._grammars) > 64:
                self._grammars.popitem(last=False)
        self._grammars.move_to_end(key)
        return grammar

    async def warm_up(self) -> None:
        """Load the recognisers (one, or every worker process) and the synthesiser now.

        So the first turn does not pay for it. With worker processes, undo it with :meth:`aclose`.
        """
        if self._pool is not None:
            await self._pool.start()
        else:
            recognizer = await anyio.to_thread.run_sync(self._new_recognizer, limiter=self._limiter)
            self._idle.append(recognizer)
        await anyio.to_thread.run_sync(self._warm_synthesis)

    async def aclose(self) -> None:
        """Stop the recognition worker processes, if any (each within its deadline; none is left)."""
        if self._pool is not None:
            await self._pool.aclose()

    def _warm_synthesis(self) -> None:
        from processors.speech.espeak import synthesize

        synthesize("ready", voice=self.voice)

    def _new_recognizer(self) -> Any:
        from processors.speech.sphinx import Recognizer

        return Recognizer(self.phrases or None, fallback=self.fallback)

    def _recognize_sync(self, recognizer: Any, samples: np.ndarray, rate: int, grammar: Any = None,
                        tools: list[dict[str, Any]] | None = None, stop: Any = None) -> tuple[Any, str | None]:
        # pocketsphinx holds the GIL while it decodes: feed it 100 ms at a time so the event
        # loop (every other connection) gets the interpreter between pieces.
        from pipeline.dsp.resample import resample

        if recognizer is None:
            recognizer = self._new_recognizer()
        audio = resample(samples, rate, _RECOGNIZER_RATE) if rate != _RECOGNIZER_RATE else samples
        if grammar is not None:
            recognizer.use_grammar(grammar)
        recognizer.start_utterance()
        for start in range(0, audio.shape[0], _FEED):
            if stop is not None and stop.is_set():  # pre-empted for a lighter connection (fairness.LoopShare)
                recognizer.cancel_utterance()
                return recognizer, None
            recognizer.feed(audio[start:start + _FEED])
        # 8 kHz input (G.711) has nothing above 4 kHz: the general model fails on it. The
        # general pass (out-of-grammar speech) is the long step: it looks at ``stop`` too.
        return recognizer, recognizer.end_utterance(narrowband=rate <= 8000,
                                                    stop=stop.is_set if stop is not None else None)

    async def recognize(self, samples: np.ndarray, rate: int, grammar: Any = None,
                        tools: list[dict[str, Any]] | None = None, *, stop: Any = None) -> str | None:
        """The words in ``samples`` (int16 at ``rate``), from a pooled recogniser.

        ``grammar`` (from :meth:`grammar_for`) is what the session expects; None keeps the
        recogniser's current grammar. ``tools`` are the session's (kept for callers; the
        grammar already holds them). Heard in a worker process, or in a thread (``processes=0``).
        ``stop`` (a :class:`threading.Event`; threads only, a worker process is stopped by
        cancelling the call): once set, the thread stops at its next 100 ms block and the
        call returns None (:class:`~.fairness.SegmentedRecognition` pre-empts this way).
        The words are a :class:`processors.speech.sphinx.Heard`: its ``fallback`` is set when
        they are the general model's (out-of-grammar speech).
        """
        if self._pool is not None:
            return await self._pool.recognize(samples, rate, grammar)
        async with self._limiter:
            recognizer = self._idle.pop() if self._idle else None
            if recognizer is None:
                recognizer = await anyio.to_thread.run_sync(self._new_recognizer)
            try:
                # not cancellable while the thread runs; a cancel lands after it, and the
                # recogniser still goes back to the pool (it starts each utterance afresh)
                _, text = await anyio.to_thread.run_sync(self._recognize_sync, recognizer, samples, rate, grammar,
                                                         tools, stop)
            finally:
                self._idle.append(recognizer)
        return text
