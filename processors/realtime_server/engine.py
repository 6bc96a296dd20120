"""The speech work behind each connection: recognition, the responder, synthesis.

The sans-I/O core (:mod:`.conversation`) decides *what* must happen and hands out
commands; this module does the slow part, off the event loop:

* :class:`SpeechResources` is shared by every connection of a server: the responder
  (:class:`processors.brain.Brain`, rules from YAML), a small pool of pocketsphinx
  recognisers built with the responder's phrases (a JSGF grammar: exact on scripted
  dialogue), and the eSpeak NG voice. Recognition and synthesis run in worker threads
  (``anyio.to_thread``), at most ``workers`` recognitions at once, so many connections
  stay responsive on a 2-core machine.
* :class:`ConnectionEngine` runs one connection's commands as tasks of the connection's
  task group: :class:`~.conversation.Transcribe` -> recognise and report;
  :class:`~.conversation.Generate` -> wait for the user's words, ask the responder, then
  either add a function call or stream synthesised speech (each clause's transcript goes
  with its first audio); :class:`~.conversation.StopGeneration` -> cancel that task.

The pipeline per connection is thus: protocol in (core) -> server VAD (core, energy VAD)
-> recognition (here) -> responder (here) -> synthesis (here) -> protocol out (core).

Why this is not a voxpipe graph of ``vad.energy -> stt.pocketsphinx -> brain.scripted ->
tts.espeak`` per connection: in the Realtime protocol the *session* drives those stages,
not the audio. ``session.update`` retunes the VAD mid-stream and commits must take exactly
the VAD's segment (so the VAD lives with the input buffer, in the core); a response starts
on ``response.create`` (or a VAD turn with ``create_response``), with per-response
modalities, voice, output format and tools, out-of-band responses may run beside it, and
tool follow-ups come from client items, whereas ``brain.scripted`` answers every final
transcript by itself. One shared recogniser pool also keeps memory flat (a pocketsphinx
decoder is about 28 MB; one per connection would be 1.4 GB at 50 sessions).
``model_delay_ms`` holds back the first output of every response, and so its first
audio (an artificial model latency for benchmarks); ``output_pace`` > 0 streams audio at most that many times faster
than real time (like a model generating it), 0 sends it as fast as eSpeak makes it.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Callable

import anyio
import numpy as np

from pipeline.dsp.resample import Resampler

from .conversation import Generate, ServerConversation, StopGeneration, Transcribe
from .input_buffer import WIRE_RATE

__all__ = ["ConnectionEngine", "SpeechResources", "split_clauses"]

log = logging.getLogger("voxpipe.realtime_server")

_RECOGNIZER_RATE = 16000  # the pocketsphinx model's rate
_FEED = _RECOGNIZER_RATE // 10  # samples per decode step (100 ms)
_WPM = 160  # eSpeak NG speaking rate at speed 1.0
_BATCH_MS = 160  # synthesised audio is sent in pieces of about this size (after the first)
_CLAUSE = re.compile(r"[^.!?;:,]+[.!?;:,]*\s*")


def split_clauses(text: str) -> list[str]:
    """``text`` cut after punctuation, keeping every character (the pieces join back to it)."""
    pieces = _CLAUSE.findall(text)
    joined = "".join(pieces)
    if joined != text:  # leading punctuation or whitespace: keep it with the first piece
        pieces = [text[: len(text) - len(joined)] + (pieces[0] if pieces else "")] + pieces[1:]
    return [p for p in pieces if p]


class SpeechResources:
    """What every connection of one server shares: responder, recognisers, voice."""

    def __init__(self, rules: str | Path | None = None, *, voice: str = "en-us+klatt", workers: int = 2) -> None:
        from processors.brain import DEMO_RULES, Brain

        self.rules_path = Path(rules) if rules is not None else DEMO_RULES
        if not self.rules_path.is_file():
            raise FileNotFoundError(f"realtime server rules file {self.rules_path} does not exist; pass "
                                    "--rules FILE (see pipelines/rules/demo_rules.yaml for the format)")
        self.brain = Brain.from_yaml(self.rules_path)
        self.phrases = list(self.brain.phrases() or [])
        self.voice = voice
        self._idle: list[Any] = []
        self._limiter = anyio.CapacityLimiter(workers)

    async def warm_up(self) -> None:
        """Load one recogniser and the synthesiser now, so the first turn does not pay for it."""
        recognizer = await anyio.to_thread.run_sync(self._new_recognizer, limiter=self._limiter)
        self._idle.append(recognizer)
        await anyio.to_thread.run_sync(self._warm_synthesis)

    def _warm_synthesis(self) -> None:
        from processors.speech.espeak import synthesize

        synthesize("ready", voice=self.voice)

    def _new_recognizer(self) -> Any:
        from processors.speech.sphinx import Recognizer

        return Recognizer(self.phrases or None)

    def _recognize_sync(self, recognizer: Any, samples: np.ndarray, rate: int) -> tuple[Any, str]:
        # pocketsphinx holds the GIL while it decodes: feed it 100 ms at a time so the event
        # loop (every other connection) gets the interpreter between pieces.
        from pipeline.dsp.resample import resample

        if recognizer is None:
            recognizer = self._new_recognizer()
        audio = resample(samples, rate, _RECOGNIZER_RATE) if rate != _RECOGNIZER_RATE else samples
        recognizer.start_utterance()
        for start in range(0, audio.shape[0], _FEED):
            recognizer.feed(audio[start:start + _FEED])
        return recognizer, recognizer.end_utterance()

    async def recognize(self, samples: np.ndarray, rate: int) -> str:
        """The words in ``samples`` (int16 at ``rate``), from a pooled recogniser in a thread."""
        async with self._limiter:
            recognizer = self._idle.pop() if self._idle else None
            recognizer, text = await anyio.to_thread.run_sync(self._recognize_sync, recognizer, samples, rate)
            self._idle.append(recognizer)
        return text


class ConnectionEngine:
    """Runs one connection's core commands; ``flush`` sends what the core produced."""

    def __init__(self, core: ServerConversation, resources: SpeechResources, task_group: Any,
                 flush: Callable[[], None], *, model_delay_ms: float = 0.0, output_pace: float = 0.0) -> None:
        self.core = core
        self.resources = resources
        self._tg = task_group
        self._flush = flush
        self.model_delay_s = max(0.0, model_delay_ms) / 1000.0
        self.output_pace = output_pace
        self._heard: dict[str, anyio.Event] = {}
        self._running: dict[str, anyio.CancelScope] = {}
        self._calls: dict[str, Any] = {}  # call_id -> the responder's Call, until its output comes

    def run_commands(self) -> None:
        """Start work for every command the core has queued."""
        for command in self.core.commands():
            if isinstance(command, Transcribe):
                self._heard.setdefault(command.item_id, anyio.Event())
                self._tg.start_soon(self._transcribe, command)
            elif isinstance(command, Generate):
                scope = anyio.CancelScope()
                self._running[command.response_id] = scope
                self._tg.start_soon(self._generate, command, scope)
            elif isinstance(command, StopGeneration):
                scope = self._running.pop(command.response_id, None)
                if scope is not None:
                    scope.cancel()

    def _after_core_call(self) -> None:
        self.run_commands()
        self._flush()

    async def _transcribe(self, command: Transcribe) -> None:
        text: str | None
        error = None
        try:
            text = await self.resources.recognize(command.samples, command.sample_rate)
        except Exception as exc:
            log.exception("recognition of %s failed", command.item_id)
            text, error = None, f"{type(exc).__name__}: {exc}"
        finally:
            self._heard.setdefault(command.item_id, anyio.Event()).set()
        self.core.transcription_done(command.item_id, text, error=error, emit_events=command.emit_events)
        self._after_core_call()

    async def _user_text(self, command: Generate) -> str:
        ctx = command.context
        if ctx.user_text is not None or ctx.user_item_id is None:
            return ctx.user_text or ""
        event = self._heard.get(ctx.user_item_id)
        if event is not None:
            await event.wait()
        stored = self.core.conversation.find(ctx.user_item_id)
        return (stored.heard_text or "") if stored is not None else ""

    async def _generate(self, command: Generate, scope: anyio.CancelScope) -> None:
        rid = command.response_id
        try:
            with scope:
                await self._respond(command)
        except Exception as exc:
            log.exception("response %s failed", rid)
            self.core.finish_response(rid, error=f"The local server failed to produce the response: "
                                                 f"{type(exc).__name__}: {exc}")
        finally:
            self._running.pop(rid, None)
            self._after_core_call()

    async def _respond(self, command: Generate) -> None:
        from processors.brain import Call

        core, rid, ctx = self.core, command.response_id, command.context
        brain = self.resources.brain
        if ctx.tool_call is not None:
            call = self._calls.get(ctx.tool_call["call_id"]) or Call(
                ctx.tool_call["name"], _parse_arguments(ctx.tool_call["arguments"]))
            reply = brain.after_tool(call, ctx.tool_output or "")
        else:
            text = await self._user_text(command)
            reply = brain.respond(text, _allowed_tools(ctx.tools, ctx.tool_choice))
        if self.model_delay_s:
            await anyio.sleep(self.model_delay_s)  # emulated model latency, before the first output
        if isinstance(reply, Call):
            call_id = core.add_function_call(rid, reply.name, json.dumps(reply.arguments))
            if call_id is not None:
                self._calls[call_id] = reply  # keeps the rule's follow-up for after_tool()
            core.finish_response(rid)
            return
        if core.begin_message(rid) is None:
            return
        self._flush()
        if "audio" in command.modalities:
            await self._speak(command, reply.text)
        else:
            for clause in split_clauses(reply.text):
                if not core.add_text(rid, clause):
                    return
                self._flush()
        core.finish_response(rid)

    async def _speak(self, command: Generate, text: str) -> None:
        from processors.speech.espeak import native_sample_rate, synthesize_chunks

        core, rid = self.core, command.response_id
        out_rate = WIRE_RATE[command.output_format]
        native = native_sample_rate()
        resampler = Resampler(native, out_rate)
        batch = native * _BATCH_MS // 1000
        rate_wpm = min(450, max(80, round(_WPM * command.speed)))  # session audio.output.speed
        started, sent = anyio.current_time(), 0
        for clause in split_clauses(text):
            words = clause  # the clause's transcript goes with its first audio
            blocks = synthesize_chunks(clause, voice=self.resources.voice, rate_wpm=rate_wpm)
            want = 1  # the first pull returns eSpeak's first block: low first-audio latency
            try:
                while True:
                    samples, done = await anyio.to_thread.run_sync(_pull, blocks, want, resampler)
                    want = batch
                    if samples.size or (words and done):
                        if not core.add_audio(rid, samples, words):
                            return
                        words = ""
                        self._flush()
                        sent += samples.size
                        if self.output_pace > 0:  # emulate a model generating at `pace` x real time
                            await _sleep_until(started + sent / out_rate / self.output_pace)
                    if done:
                        break
            finally:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(blocks.close)
        tail = resampler.flush()
        if tail.size:
            core.add_audio(rid, tail)


def _pull(blocks: Any, want: int, resampler: Resampler) -> tuple[np.ndarray, bool]:
    """About ``want`` samples from a synthesis stream, resampled (in a worker thread); (audio, ended)."""
    got: list[np.ndarray] = []
    total = 0
    ended = True
    for block in blocks:
        got.append(block)
        total += block.shape[0]
        if total >= want:
            ended = False
            break
    chunk = np.concatenate(got) if len(got) > 1 else got[0] if got else np.zeros(0, np.int16)
    return (resampler.process(chunk) if chunk.size else chunk), ended


async def _sleep_until(deadline: float) -> None:
    delay = deadline - anyio.current_time()
    if delay > 0:
        await anyio.sleep(delay)


def _allowed_tools(tools: list[dict[str, Any]], choice: Any) -> list[dict[str, Any]]:
    """The tools a response may call under ``tool_choice`` ('none', 'auto', or one function)."""
    if choice == "none":
        return []
    if isinstance(choice, dict) and choice.get("type") == "function":
        return [t for t in tools if t.get("name") == choice.get("name")]
    return tools


def _parse_arguments(arguments: str) -> dict[str, Any]:
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}
