"""The shell of one Live connection of the local server: socket, recognition, the brain, speech.

Theory of operation
-------------------
:class:`~.core.LiveServerSession` decides everything about the protocol; this shell does
the work it asks for, with the engine the Realtime side uses (the server's
:class:`~processors.realtime.server.engine.SpeechResources`: pooled pocketsphinx
recognisers, the rules brain, eSpeak NG). Four tasks in one task group:

* the **reader** feeds client messages to the core;
* the **writer** sends the core's events in order as soon as there are any;
* the **listener** recognises each utterance the server VAD cut (one at a time, in order),
  gives the words to the core (the input transcript) and asks the brain for the reply: a
  sentence to say, or a tool call, which becomes a delegation (to the client, or to the
  local stand-in for a Responses backend, whose stream events it emits);
* the **speaker** says the model's sentences one after another: clause by clause it
  synthesises audio in a worker thread and sends it paced at real time, at most
  :data:`LEAD_S` ahead of the listener, so that the model can stop mid-sentence when the
  user keeps talking (the core's :class:`~.core.StopSpeaking`) and the client has little
  audio left to flush.

The Realtime side's graph (``pipelines/realtime_server.yaml``) is not used here: it is driven by
``response.create`` turns, whereas a Live session listens and speaks at once and decides
itself when to answer.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np
from websockets.exceptions import ConnectionClosed

from processors.brain.rules import heard_out_of_grammar

from .core import ContinueBackend, Heard, LiveServerSession, SpeakResult, StopSpeaking

__all__ = ["LEAD_S", "LiveConnection"]

log = logging.getLogger("voxpipe.realtime_server.live")

#: Speech audio leaves at most this far ahead of real time (as a model generating ahead: the client
#: holds up to this much unplayed when the model yields, and must flush it).
LEAD_S = 1.0
_PIECE_S = 0.1
_WPM = 160
_RESULT = re.compile(r"^Result of (?P<name>[\w.-]+)\((?P<args>.*)\): (?P<output>.*)$", re.DOTALL)
_FAILED = re.compile(r"^The task (?P<name>[\w.-]+)\((?P<args>.*)\) failed: (?P<output>.*)$", re.DOTALL)
_ACK = "One moment."


class LiveConnection:
    """One Live websocket of the local server (``/v1/live/sessions``)."""

    def __init__(self, server: Any, ws: Any) -> None:
        from processors.realtime.server.fairness import SegmentedRecognition

        self.server = server
        self.ws = ws
        self.core = LiveServerSession()
        self.recognition = SegmentedRecognition(server.resources)
        self.brain = server.resources.brain
        self._dirty = anyio.Event()
        self._heard_send, self._heard_recv = anyio.create_memory_object_stream[Heard](64)
        self._say_send, self._say_recv = anyio.create_memory_object_stream[str](16)
        self._speaking: dict[int, anyio.CancelScope] = {}
        self._ask: Any = None
        self._closed = False

    async def run(self) -> None:
        """Serve the connection until the client closes it or the session ends."""
        from processors.speech.espeak import native_sample_rate

        self._native = await anyio.to_thread.run_sync(native_sample_rate)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._writer, tg.cancel_scope)
                tg.start_soon(self._listener)
                tg.start_soon(self._speaker)
                try:
                    async for message in self.ws:
                        self.core.receive_text(message)
                        self._after()
                        await anyio.lowlevel.checkpoint()
                except ConnectionClosed:
                    pass
                finally:
                    self._closed = True
                    self.core.connection_lost()
                    tg.cancel_scope.cancel()
        finally:
            self._heard_send.close()
            self._say_send.close()

    def _after(self) -> None:
        """Hand the core's jobs to the tasks and wake the writer."""
        for job in self.core.jobs():
            if isinstance(job, Heard):
                try:
                    self._heard_send.send_nowait(job)
                except anyio.WouldBlock:
                    self.core.error("server_busy", "The local server is still recognising earlier speech; an "
                                    "utterance was skipped.", kind="server_error")
            elif isinstance(job, StopSpeaking):
                scope = self._speaking.pop(job.speech_id, None)
                if scope is not None:
                    scope.cancel()
            elif isinstance(job, SpeakResult):
                self._say(self._result_text(job))
            elif isinstance(job, ContinueBackend):
                self._continue_backend(job)
        self._dirty.set()

    def _say(self, text: str) -> None:
        try:
            self._say_send.send_nowait(text)
        except anyio.WouldBlock:
            log.warning("live session %s: speech queue full; dropped %r", self.core.session_id, text[:40])

    # --- writer -------------------------------------------------------------------------

    async def _writer(self, scope: anyio.CancelScope) -> None:
        try:
            while True:
                await self._dirty.wait()
                self._dirty = anyio.Event()
                for event in self.core.events_to_send():
                    await self.ws.send(json.dumps(event, separators=(",", ":")))
                    if event["type"] == "session.closed":
                        await self.ws.close(1000, "session closed")
                        scope.cancel()
                        return
        except ConnectionClosed:
            scope.cancel()

    # --- listener -----------------------------------------------------------------------

    async def _listener(self) -> None:
        async for job in self._heard_recv:
            core = self.core
            grammar = self.server.resources.grammar_for(core.tools, core.instructions)
            try:
                heard = await self.recognition.recognize(job.samples, job.rate, grammar, core.tools)
            except Exception as exc:  # the utterance is lost, the session lives on
                log.exception("live session %s: recognition failed", core.session_id)
                core.error("server_error", f"The local server failed to recognise speech: {type(exc).__name__}",
                           kind="server_error")
                self._dirty.set()
                continue
            text = heard.strip()  # a plain str: the Heard's flags are read from ``heard``
            if not text:
                continue
            core.heard(text, job.start_ms, job.end_ms)
            # out-of-grammar speech (the general model's words) is answered as such, as on the
            # Realtime side: "Sorry, I can't help with ...", not the nearest phrase's answer
            reply = self.brain.respond(text, core.tools, instructions=core.instructions, pending=self._ask,
                                       out_of_grammar=heard_out_of_grammar(heard))
            self._ask = getattr(reply, "ask", None)
            if hasattr(reply, "arguments"):  # a Call: the local model delegates it
                did = core.delegate(reply)
                if core.delegation_type == "responses":
                    self._backend_call(did)
                else:
                    self._say(_ACK)
            else:
                self._say(reply.text)
            self._dirty.set()

    def _result_text(self, job: SpeakResult) -> str:
        record = self.core.delegations.get(job.delegation_id) or {}
        call = record.get("call")
        for pattern in (_RESULT, _FAILED):
            m = pattern.match(job.content)
            if m and call is not None:
                output = m.group("output")
                if pattern is _FAILED:
                    try:
                        error = json.loads(output).get("error", output)
                    except (ValueError, AttributeError):
                        error = output
                    output = json.dumps({"error": str(error)})
                return self.brain.after_tool(call, output).text
        return job.content

    # --- the local stand-in for a Responses backend --------------------------------------

    def _backend_call(self, did: str) -> None:
        """Stream a backend response that calls the delegated function (Responses event shapes)."""
        core = self.core
        record = core.delegations[did]
        call, rid, call_id = record["call"], record["response_id"], record["call_id"]
        model = core.session["delegation"]["responses"]["model"]
        args = json.dumps(call.arguments, separators=(",", ":"))
        item_id = core._new_id("fc")
        item = {"type": "function_call", "id": item_id, "call_id": call_id, "name": call.name, "arguments": args,
                "status": "completed"}
        core.backend_event(did, {"type": "response.created", "response": _response(rid, model, "in_progress")})
        core.backend_event(did, {"type": "response.output_item.added", "output_index": 0,
                                 "item": {**item, "arguments": "", "status": "in_progress"}})
        core.backend_event(did, {"type": "response.function_call_arguments.done", "item_id": item_id,
                                 "output_index": 0, "arguments": args})
        core.backend_event(did, {"type": "response.output_item.done", "output_index": 0, "item": item})
        core.backend_event(did, {"type": "response.completed",
                                 "response": _response(rid, model, "completed", _usage(args, ""))})

    def _continue_backend(self, job: ContinueBackend) -> None:
        core = self.core
        record = core.delegations[job.delegation_id]
        model = core.session["delegation"]["responses"]["model"]
        output = next(iter(job.outputs.values()))
        text = self.brain.after_tool(record["call"], output).text
        rid = core._new_id("resp")
        msg_id = core._new_id("msg")
        message = {"type": "message", "id": msg_id, "role": "assistant", "status": "completed",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}
        did = job.delegation_id
        core.backend_event(did, {"type": "response.created", "response": _response(rid, model, "in_progress")})
        core.backend_event(did, {"type": "response.output_item.added", "output_index": 0,
                                 "item": {**message, "status": "in_progress", "content": []}})
        core.backend_event(did, {"type": "response.output_text.delta", "item_id": msg_id, "output_index": 0,
                                 "content_index": 0, "delta": text, "logprobs": []})
        core.backend_event(did, {"type": "response.output_text.done", "item_id": msg_id, "output_index": 0,
                                 "content_index": 0, "text": text, "logprobs": []})
        core.backend_event(did, {"type": "response.output_item.done", "output_index": 0, "item": message})
        core.backend_event(did, {"type": "response.completed",
                                 "response": _response(rid, model, "completed", _usage(output, text))})
        self._say(text)  # the Live model speaks the backend's answer

    # --- speaker ------------------------------------------------------------------------

    async def _speaker(self) -> None:
        async for text in self._say_recv:
            core = self.core
            sid = core.begin_speech()
            scope = anyio.CancelScope()
            self._speaking[sid] = scope
            with scope:
                await self._speak(sid, text)
            self._speaking.pop(sid, None)
            core.end_speech(sid)
            self._dirty.set()

    async def _speak(self, sid: int, text: str) -> None:
        from pipeline.dsp.resample import resample
        from processors.realtime.server.engine import split_clauses
        from processors.speech.espeak import synthesize

        core = self.core
        voice = self.server.resources.voice
        t0 = anyio.current_time()
        sent = 0.0  # seconds of audio sent
        for clause in split_clauses(text):
            samples, native = await anyio.to_thread.run_sync(lambda c=clause: synthesize(c, voice=voice,
                                                                                         rate_wpm=_WPM))
            if native != core.rate and samples.size:
                samples = resample(samples, native, core.rate)
            if not core.is_speaking(sid):
                return
            core.speak_text(sid, clause, 1000.0 * samples.shape[0] / core.rate)
            piece = max(1, int(core.rate * _PIECE_S))
            for start in range(0, samples.shape[0], piece):
                delay = t0 + sent - LEAD_S - anyio.current_time()
                if delay > 0:
                    await anyio.sleep(delay)
                if not core.is_speaking(sid):
                    return
                chunk = samples[start:start + piece]
                core.speak_audio(sid, np.ascontiguousarray(chunk))
                sent += chunk.shape[0] / core.rate
                self._dirty.set()


def _response(rid: str, model: str, status: str, usage: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Responses ``response`` snapshot as Live nests it: input omitted; instructions, tools and output cleared."""
    return {"id": rid, "object": "response", "created_at": 0, "model": model, "status": status, "output": [],
            "instructions": None, "tools": [], "tool_choice": "auto", "parallel_tool_calls": True, "usage": usage}


def _usage(prompt: str, text: str) -> dict[str, Any]:
    """Token usage of the local backend: words stand in for tokens."""
    i, o = len(prompt.split()), len(text.split())
    return {"input_tokens": i, "output_tokens": o, "total_tokens": i + o,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}}
