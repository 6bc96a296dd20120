"""The speech stages of a connection's graph: recognition, the responder, synthesis.

Each stage works for one connection (a :class:`~.graph_io.ConnectionProcessor`) but uses
what the whole server shares (:class:`~.engine.SpeechResources`): the pooled pocketsphinx
recognisers, the responder's rules and the eSpeak NG voice. CPU work runs in worker
processes (recognition, by default on the CLI) or threads, never on the event loop. Each
stage charges its connection's :class:`~.fairness.Account` and gives way to lighter
connections before a piece of work (:class:`~.fairness.LoopShare`).

Why not ``stt.pocketsphinx`` / ``brain.scripted`` / ``tts.espeak`` themselves: in the
Realtime protocol the *session* drives these stages, not the audio. Each of those
processors builds its own engine per instance (a pocketsphinx decoder is ~28 MB and
~0.1 s of CPU: one per connection would not scale, so recognisers are pooled per server);
``brain.scripted`` answers every final transcript by itself, whereas a response here
starts on ``response.create`` or a VAD turn with ``create_response``, with per-response
tools, ``tool_choice`` and modalities, and tool follow-ups come from client items; and
``tts.espeak`` speaks at one rate and format for its life, whereas a response has its own
output format (pcm16 24 kHz or G.711 8 kHz) and the session's ``speed``. These stages are
the same jobs with per-response settings (format, speed, the session's voice) read from the
:class:`~.graph_io.ResponseRequestFrame`
that travels ahead of each response.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
import numpy as np

from pipeline.dsp.resample import Resampler
from pipeline.frames import (
    AudioFrame,
    Direction,
    Frame,
    ResponseEndFrame,
    TextFrame,
    ToolCallFrame,
    TranscriptionFrame,
)

from ..wire import SAMPLE_RATE
from .commands import Generate
from .engine import split_clauses
from .graph_io import ConnectionProcessor, ResponseCancelledFrame, ResponseRequestFrame, TranscriptionFailedFrame

__all__ = ["SegmentRecognizer", "SessionResponder", "SessionSynthesizer"]

_DOWN = Direction.DOWNSTREAM
_WPM = 160  # eSpeak NG speaking rate at speed 1.0
_BATCH_MS = 160  # synthesised audio leaves in pieces of about this size (after the first)
_RECOGNITION_DEFER_S = 0.25  # longest a heavy connection's recognition waits for a lighter one's turn


class SegmentRecognizer(ConnectionProcessor):
    """``realtime_server.stt``: recognises each committed user audio segment (one AudioFrame per item).

    Uses the server's pool of pocketsphinx recognisers (worker processes, or at most
    ``workers`` threads) and pushes a final user :class:`TranscriptionFrame` with the item id, or a
    :class:`TranscriptionFailedFrame`. Other frames pass on in order, so a response request
    that follows a segment reaches the responder after that segment's transcript. The
    frame's text is the recogniser's :class:`~processors.speech.sphinx.Heard`, which says
    whether the words are the general model's (out-of-grammar speech) to the responder.
    """

    async def start(self) -> None:
        self._resources = self.connection.resources

    async def process(self, frame: Frame, direction: Direction) -> None:
        if type(frame) is not AudioFrame or direction is not _DOWN or frame.item_id is None:
            await self.push(frame, direction)
            return
        samples = frame.samples if frame.samples.ndim == 1 else frame.samples[:, 0]
        session = self.connection.core.session
        try:
            # the session's tools and instructions as they are now: a session.update between
            # two utterances changes what the next one is heard as
            grammar = self._resources.grammar_for(session.tools, session.config.get("instructions") or "")
            account = self.connection.account
            await account.give_way(_RECOGNITION_DEFER_S)  # a lighter connection's turn goes first
            with account.work():  # and heavier connections give way meanwhile (fairness.LoopShare)
                text = await self._resources.recognize(samples, frame.sample_rate, grammar, session.tools)
        except Exception as exc:
            self.log.exception("recognition of %s failed", frame.item_id)
            await self.push(TranscriptionFailedFrame(item_id=frame.item_id, error=f"{type(exc).__name__}: {exc}"))
            return
        await self.push(TranscriptionFrame(text, role="user", final=True, item_id=frame.item_id))


class SessionResponder(ConnectionProcessor):
    """``realtime_server.responder``: answers each response request from the server's rules.

    For a :class:`ResponseRequestFrame` it asks the rules engine (:class:`processors.brain.Brain`)
    for a reply to the user's words (heard by the recogniser upstream, or typed) or to a tool
    output, then pushes the request on, followed by a :class:`ToolCallFrame` or the reply's
    clauses as assistant :class:`TextFrame` s, then a :class:`ResponseEndFrame`, all of the
    response's turn. Each response runs as its own task, after the server's ``model_delay``;
    a :class:`ResponseCancelledFrame` abandons it if it has not pushed yet.
    """

    async def start(self) -> None:
        self._ctx = self.connection
        self._heard: dict[str, str] = {}  # user item id -> what the recogniser heard (a Heard)
        self._calls: dict[str, Any] = {}  # our call id -> the rule's Call (for its follow-up)
        self._running: dict[str, anyio.CancelScope] = {}  # response id -> its task, until it pushes
        self._ask: Any = None  # the tool argument the last reply asked for (an AskBack), if any
        self._ids = 0

    async def process(self, frame: Frame, direction: Direction) -> None:
        kind = type(frame)
        if kind is TranscriptionFrame and frame.role == "user" and frame.item_id:
            self._heard[frame.item_id] = frame.text
        elif kind is ResponseRequestFrame:
            if self._ctx.core.response_is_active(frame.command.response_id):
                scope = anyio.CancelScope()
                self._running[frame.command.response_id] = scope
                self.spawn(self._respond, frame, scope)
            return
        elif kind is ResponseCancelledFrame:
            scope = self._running.pop(frame.response_id, None)
            if scope is not None:
                scope.cancel()
        await self.push(frame, direction)

    async def _respond(self, request: ResponseRequestFrame, scope: anyio.CancelScope) -> None:
        from processors.brain.scripted import Call

        command, turn = request.command, request.turn
        rid = command.response_id
        try:
            with scope, self._ctx.account.work():
                reply = self._reply(command)
                if self._ctx.model_delay_s:
                    await anyio.sleep(self._ctx.model_delay_s)  # emulated model latency, before any output
            if scope.cancelled_caught:
                return
        except Exception as exc:
            self.log.exception("response %s failed", rid)
            self._ctx.failures[rid] = (f"The local server failed to produce the response: "
                                       f"{type(exc).__name__}: {exc}")
            reply = None
        finally:
            self._running.pop(rid, None)
        await self.push(request)
        if isinstance(reply, Call):
            self._ids += 1
            call_id = f"call_{self._ids}"
            self._calls[call_id] = reply
            await self.push(ToolCallFrame(call_id, reply.name, dict(reply.arguments), rid, turn=turn))
        elif reply is not None:
            for clause in split_clauses(reply.text):
                await self.push(TextFrame(clause, role="assistant", turn=turn))
        await self.push(ResponseEndFrame(rid, turn=turn))

    def _reply(self, command: Generate) -> Any:
        from processors.brain.rules import heard_out_of_grammar
        from processors.brain.scripted import Call

        ctx, brain = command.context, self._ctx.resources.brain
        if ctx.tool_call is not None:
            ours = self._ctx.call_ids.get(ctx.tool_call["call_id"])
            call = self._calls.get(ours) if ours is not None else None
            if call is None:
                call = Call(ctx.tool_call["name"], _parse_arguments(ctx.tool_call["arguments"]))
            self._ask = None
            return brain.after_tool(call, ctx.tool_output or "")
        text = self._user_text(command)
        heard = self._heard.get(ctx.user_item_id) if ctx.user_item_id is not None else None
        # the general model's words (the grammar did not fit the speech), unless the client
        # gave other words for the item since
        out_of_grammar = heard_out_of_grammar(heard, text)
        reply = brain.respond(text, _allowed_tools(ctx.tools, ctx.tool_choice), instructions=ctx.instructions,
                              pending=self._ask, out_of_grammar=out_of_grammar)
        self._ask = getattr(reply, "ask", None)
        if isinstance(reply, Call):
            # A client may add the user's words again after the output (Pipecat does): the
            # output of this very call is already in the conversation, so answer from it.
            for done in reversed(ctx.answered_calls):
                if done["name"] == reply.name and _parse_arguments(done["arguments"]) == reply.arguments:
                    return brain.after_tool(reply, done["output"])
        return reply

    def _user_text(self, command: Generate) -> str:
        ctx = command.context
        if ctx.user_text is not None or ctx.user_item_id is None:
            return ctx.user_text or ""
        if ctx.user_item_id in self._heard:  # its transcript passed here before this request
            return self._heard[ctx.user_item_id]
        stored = self._ctx.core.conversation.find(ctx.user_item_id)
        return (stored.heard_text or "") if stored is not None else ""


class _Speech:
    """Synthesis state of one response: its output rate, resampler and pacing."""

    __slots__ = ("response_id", "audio", "rate", "rate_wpm", "resampler", "started", "sent", "pts", "voice")

    def __init__(self, command: Generate, native: int, server_voice: str) -> None:
        from processors.speech.espeak import DEFAULT_VOICE
        from processors.speech.voices import session_voice

        self.response_id = command.response_id
        # the session's Realtime voice name picks the variant, unless the server was given
        # a voice of its own (--voice), which then speaks for every session
        self.voice = session_voice(command.voice) if server_voice == DEFAULT_VOICE else server_voice
        self.audio = "audio" in command.modalities
        self.rate = SAMPLE_RATE[command.output_format]
        self.rate_wpm = min(450, max(80, round(_WPM * command.speed)))  # session audio.output.speed
        self.resampler = Resampler(native, self.rate)
        self.started = anyio.current_time()
        self.sent = 0
        self.pts = 0


class SessionSynthesizer(ConnectionProcessor):
    """``realtime_server.tts``: speaks each assistant clause of an audio response with eSpeak NG.

    The clause's :class:`TextFrame` goes on first (its words go with its first audio), then
    int16 mono audio at the response's output rate (24 kHz for pcm16, 8 kHz for G.711): the
    first eSpeak block at once (low first-audio latency), then pieces of about 160 ms.
    Synthesis runs in a worker thread; it stops between pieces once the response's turn is
    stale or the core has ended the response. With the server's ``output_pace`` > 0 audio
    leaves at most that many times faster than real time (like a model generating it).
    """

    async def start(self) -> None:
        from processors.speech.espeak import native_sample_rate

        self._ctx = self.connection
        self._native = await anyio.to_thread.run_sync(native_sample_rate)
        self._speech: dict[int, _Speech] = {}  # turn -> response being spoken

    async def process(self, frame: Frame, direction: Direction) -> None:
        kind = type(frame)
        if kind is ResponseRequestFrame:
            self._speech[frame.turn] = _Speech(frame.command, self._native, self._ctx.resources.voice)
        elif kind is TextFrame and direction is _DOWN and frame.role == "assistant":
            speech = self._speech.get(frame.turn)
            await self.push(frame, direction)
            if speech is not None and speech.audio and speech.response_id not in self._ctx.failures:
                try:
                    with self._ctx.account.work():
                        await self._speak(speech, frame)
                except Exception as exc:  # the response fails, the connection lives on
                    self.log.exception("synthesis for %s failed", speech.response_id)
                    self._ctx.failures[speech.response_id] = (f"The local server failed to synthesise the "
                                                              f"response: {type(exc).__name__}: {exc}")
            return
        elif kind is ResponseEndFrame:
            speech = self._speech.pop(frame.turn, None)
            if speech is not None and speech.audio and not self._stale(frame.turn, speech):
                tail = speech.resampler.flush()
                if tail.size:
                    await self._push_audio(speech, tail, frame.turn)
        await self.push(frame, direction)

    def _stale(self, turn: int, speech: _Speech) -> bool:
        return 0 < turn < self.turn or not self._ctx.core.response_is_active(speech.response_id)

    async def _speak(self, speech: _Speech, text: TextFrame) -> None:
        from processors.speech.espeak import synthesize_chunks

        if speech.voice.startswith("piper:"):  # a neural voice: one clause at a time
            samples = await anyio.to_thread.run_sync(_piper, speech.voice[6:], text.text, speech.rate_wpm,
                                                     self._native, speech.resampler)
            if samples.size and not self._stale(text.turn, speech):
                await self._push_audio(speech, samples, text.turn)
            return

        blocks = synthesize_chunks(text.text, voice=speech.voice, rate_wpm=speech.rate_wpm)
        batch = self._native * _BATCH_MS // 1000
        want = 1  # the first pull returns eSpeak's first block: low first-audio latency
        try:
            while not self._stale(text.turn, speech):
                await self._ctx.account.give_way()
                samples, done = await anyio.to_thread.run_sync(_pull, blocks, want, speech.resampler)
                want = batch
                if samples.size:
                    await self._push_audio(speech, samples, text.turn)
                if done:
                    break
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(blocks.close)

    async def _push_audio(self, speech: _Speech, samples: np.ndarray, turn: int) -> None:
        pace = self._ctx.output_pace
        if pace > 0:  # emulate a model generating at `pace` x real time
            delay = speech.started + speech.sent / speech.rate / pace - anyio.current_time()
            if delay > 0:
                await anyio.sleep(delay)
        speech.sent += samples.shape[0]
        frame = AudioFrame(samples, speech.rate, pts=speech.pts, turn=turn)
        speech.pts += samples.shape[0]
        await self.push(frame)


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


def _piper(name: str, text: str, rate_wpm: int, native: int, resampler: Resampler) -> np.ndarray:
    """A clause spoken by Piper voice ``name``, resampled to the response's rate (in a worker thread)."""
    from pipeline.dsp.resample import resample
    from processors.speech.piper import load

    voice = load(name)
    samples = voice.synthesize(text, speed=rate_wpm / _WPM)
    if voice.sample_rate != native and samples.size:
        samples = resample(samples, voice.sample_rate, native)
    return resampler.process(samples) if samples.size else samples


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
