"""The processors that speak the protocol inside each connection's graph.

Each websocket connection of the local realtime server runs its own voxpipe graph
(``pipelines/realtime_server.yaml``)::

    protocol_in -> stt -> responder -> tts -> protocol_out

around one :class:`~.conversation.ServerConversation` (the sans-I/O protocol core). The
graph's processors share a :class:`ConnectionContext`: the core, the server's shared speech
resources, and the callbacks that send the core's events. The server binds it to every
:class:`ConnectionProcessor` of the graph before the graph runs.

* :class:`ProtocolInput` (``realtime_server.input``, the source) turns the core's commands
  into frames: a committed user audio segment (:class:`~.commands.Transcribe`) becomes one
  :class:`AudioFrame` tagged with the item id (turn 0: never stale); a response
  (:class:`~.commands.Generate`) becomes a :class:`ResponseRequestFrame` with a turn of its
  own; a cancelled response (:class:`~.commands.StopGeneration`) becomes a
  :class:`ResponseCancelledFrame` and, usually, an :class:`InterruptionFrame` (below).
* :class:`ProtocolOutput` (``realtime_server.output``, the sink) turns what the stages
  produce back into core calls: transcripts into ``transcription_done``, a tool call into
  ``add_function_call``, text into ``add_text``, audio into ``add_audio`` (each clause's
  words go with its first audio), the end into ``finish_response``.

Server VAD is not a node of the graph: it lives in the core, with the input audio buffer.
``session.update`` retunes it mid-stream, a commit must take exactly the VAD's segment, and
``speech_started`` must cancel the active response in the same step as the append that
found it; a VAD node downstream of the protocol would see the audio later than the buffer
and could not keep those guarantees. The graph starts where the core hands out work.

A response is a turn: frames of one response carry its turn number, and a stage tells
concurrent responses apart by it. When the core cancels response *t* (barge-in,
``response.cancel``, a truncate) the input pushes a :class:`ResponseCancelledFrame` (a system
frame: it overtakes queued work, and the responder abandons that response's pending reply)
and, when no response started before *t* is still running, an :class:`InterruptionFrame` of
turn *t + 1*, which drops the cancelled response's queued frames everywhere at once. An
out-of-band response started earlier is never cut by another's cancel: then the stages stop
the cancelled response by the core's state instead (synthesis checks it between pieces).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import anyio
import numpy as np

from pipeline.frames import (
    AudioFrame,
    Direction,
    EndFrame,
    Frame,
    FrameKind,
    InterruptionFrame,
    ResponseEndFrame,
    TextFrame,
    ToolCallFrame,
    TranscriptionFrame,
)
from pipeline.processor import Processor
from pipeline.queue import FrameQueue

from .commands import Command, Generate, StopGeneration, Transcribe
from .fairness import LoopShare

__all__ = ["COMMAND_QUEUE_SIZE", "CommandFrame", "EVENT_QUEUE_SIZE", "EventFrame", "ConnectionContext", "ConnectionProcessor", "ProtocolInput", "ProtocolOutput", "ResponseCancelledFrame",
           "ResponseRequestFrame", "TranscriptionFailedFrame", "CONNECTION"]

log = logging.getLogger("voxpipe.realtime_server")

_DOWN = Direction.DOWNSTREAM


@dataclass(slots=True)
class ResponseRequestFrame(Frame):
    """Produce the response ``command`` describes (control: travels in order, never dropped).

    Pushed by the protocol input; the responder passes it on ahead of the response's
    content so that synthesis and the protocol output learn the response's settings
    (modalities, output format, speed) from the frame itself.
    """

    kind: ClassVar[FrameKind] = FrameKind.CONTROL
    command: Generate


@dataclass(slots=True)
class ResponseCancelledFrame(Frame):
    """The core cancelled ``response_id`` (system: overtakes queued frames); stop working on it."""

    kind: ClassVar[FrameKind] = FrameKind.SYSTEM
    response_id: str


@dataclass(slots=True)
class TranscriptionFailedFrame(Frame):
    """Recognition of user item ``item_id`` failed with ``error`` (a message for the client)."""

    item_id: str
    error: str


@dataclass
class ConnectionContext:
    """What one connection's graph shares: the protocol core, speech resources, callbacks.

    ``flush`` sends the events the core produced (None, the default: :meth:`send_core_events`;
    the context never holds its shell's bound methods, so a closed connection is freed by
    reference counting alone); ``model_delay_s`` holds back each
    response's first output; ``output_pace`` > 0 streams audio at most that many times
    faster than real time. The maps are the graph's shared bookkeeping: ``emit_transcripts``
    (item id -> whether the session asked for transcription events), ``call_ids`` (the
    core's call_id -> the responder's own), ``failures`` (response id -> error message).
    """

    core: Any  # ServerConversation
    resources: Any  # SpeechResources
    flush: Callable[[], None] | None = None
    model_delay_s: float = 0.0
    output_pace: float = 0.0
    emit_transcripts: dict[str, bool] = field(default_factory=dict)
    call_ids: dict[str, str] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    #: The core's commands on their way to the graph's input (block policy: none is lost).
    commands: FrameQueue = field(default_factory=lambda: FrameQueue(COMMAND_QUEUE_SIZE))
    #: Server events on their way to the socket writer (block policy: none is lost).
    events: FrameQueue = field(default_factory=lambda: FrameQueue(EVENT_QUEUE_SIZE))
    #: Called once when a queue is full: the peer (or the graph) is not keeping up.
    on_overflow: Callable[[str], None] | None = None
    closed: bool = False
    #: Why a bounded queue overflowed (the connection then closes with 1008), or None.
    overflowed: str | None = None
    #: The connection's share of the server's event loop: its work is charged here
    #: (:class:`~.fairness.LoopShare`; by default a share of its own, which never waits).
    account: Any = field(default_factory=lambda: LoopShare().open())

    def dispatch(self) -> None:
        """Hand the core's queued commands to the graph's input (call after each core call)."""
        for command in self.core.commands():
            if self.closed:
                return  # the graph is gone: the connection is closing
            if not self.commands.put_nowait(CommandFrame(command), _DOWN):
                self.overflow(f"more than {COMMAND_QUEUE_SIZE} commands wait for the connection's graph")
                return

    def send_event(self, event: dict[str, Any]) -> bool:
        """Queue one server event for the socket writer; False once the connection is closing."""
        if self.closed:
            return False
        if not self.events.put_nowait(EventFrame(event), _DOWN):
            self.overflow(f"more than {EVENT_QUEUE_SIZE} server events wait for the client to read them")
            return False
        return True

    def overflow(self, why: str) -> None:
        """A bounded queue is full: the connection cannot keep up, so it is closed (once)."""
        if self.closed:
            return
        log.warning("closing the connection: %s", why)
        self.overflowed = why
        self.close()
        if self.on_overflow is not None:
            self.on_overflow(why)

    def send_core_events(self) -> None:
        """Queue every event the core produced for the writer (stops once the connection closes)."""
        if self.flush is not None:
            self.flush()
            return
        for event in self.core.events_to_send():
            if not self.send_event(event):
                return  # the writer is gone, or the client does not read: the connection is closing

    def after_core_call(self) -> None:
        """Dispatch new commands and send new events: what a shell does after driving the core."""
        self.dispatch()
        self.send_core_events()

    def close(self) -> None:
        """No more commands or events: the graph's input and the socket writer end at once."""
        if not self.closed:
            self.closed = True
            self.commands.put_front(EndFrame(), _DOWN)
            self.events.put_front(EndFrame(), _DOWN)


#: Bounds no real client meets: a command per commit or response, an event per delta.
COMMAND_QUEUE_SIZE = 1024
EVENT_QUEUE_SIZE = 8192


@dataclass(slots=True)
class CommandFrame(Frame):
    """A protocol core's command on its way to the connection's graph input."""

    kind: ClassVar[FrameKind] = FrameKind.CONTROL
    command: Command


@dataclass(slots=True)
class EventFrame(Frame):
    """A server event on its way to the socket writer."""

    kind: ClassVar[FrameKind] = FrameKind.CONTROL
    event: dict[str, Any]


#: The key of a connection's :class:`ConnectionContext` in its session's ``attachments``.
CONNECTION = "connection"


class ConnectionProcessor(Processor):
    """A processor that works for one server connection, found in ``context.attachments``."""

    @property
    def connection(self) -> ConnectionContext:
        """The connection's context; raises a RuntimeError saying where this processor can run."""
        connection = self.context.attachments.get(CONNECTION)
        if connection is None:
            raise RuntimeError(f"{self.name}: {type(self).__name__} runs only inside the local realtime server "
                               "(`voxpipe realtime-server`, pipelines/realtime_server.yaml), which hands each "
                               "connection's graph its context; it cannot run in a standalone pipeline")
        return connection


class ProtocolInput(ConnectionProcessor):
    """Source: turns the protocol core's commands into frames for the connection's graph."""

    async def start(self) -> None:
        self._ctx = self.connection
        self._turn = 0
        self._turns: dict[str, int] = {}  # response id -> its turn (pruned as responses end)

    async def produce(self) -> None:
        commands = self.connection.commands
        while True:
            frame = (await commands.get())[0]
            if type(frame) is EndFrame:
                return
            await self._push_command(frame.command)

    def statistics(self) -> dict[str, Any]:
        """The processor's figures, with the command queue's (``commands``) and the event queue's (``events``)."""
        out = super().statistics()
        connection = self.context.attachments.get(CONNECTION)
        if connection is not None:
            for name in ("commands", "events"):
                q = getattr(connection, name).statistics()
                out[name] = {"queued": q.size, "max_size": q.max_size, "dropped": q.dropped}
        return out

    async def _push_command(self, command: Command) -> None:
        if isinstance(command, Transcribe):  # the segment is its own stream: pts from 0
            self._ctx.emit_transcripts[command.item_id] = command.emit_events
            await self.push(AudioFrame(command.samples, command.sample_rate, item_id=command.item_id))
        elif isinstance(command, Generate):
            core = self._ctx.core
            self._turns = {rid: t for rid, t in self._turns.items() if core.response_is_active(rid)}
            self._turn += 1
            self._turns[command.response_id] = self._turn
            await self.push(ResponseRequestFrame(command=command, turn=self._turn))
        elif isinstance(command, StopGeneration):
            turn = self._turns.pop(command.response_id, None)
            if turn is None:
                return
            await self.push(ResponseCancelledFrame(command.response_id))
            core = self._ctx.core
            if not any(t < turn and core.response_is_active(r) for r, t in self._turns.items()):
                self._turn = max(self._turn, turn + 1)
                await self.push(InterruptionFrame(turn=turn + 1))

    async def process(self, frame: Frame, direction: Direction) -> None:
        """Frames coming back upstream end here."""


@dataclass
class _Reply:
    """The protocol output's view of one response in flight."""

    response_id: str
    audio: bool
    begun: bool = False
    called: bool = False
    words: str = ""  # transcript waiting for the next audio


class ProtocolOutput(ConnectionProcessor):
    """Sink: turns transcripts, tool calls, text and speech back into protocol core calls."""

    async def start(self) -> None:
        self._ctx = self.connection
        self._replies: dict[int, _Reply] = {}  # turn -> response

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is not _DOWN:
            return
        with self._ctx.account.timed():  # building the events (audio base64-encoded) is the connection's
            self._process(frame)

    def _process(self, frame: Frame) -> None:
        core = self._ctx.core
        kind = type(frame)
        if kind is AudioFrame:
            reply = self._reply(frame.turn)
            if reply is not None:
                core.add_audio(reply.response_id, frame.samples, reply.words)
                reply.words = ""
        elif kind is TextFrame:
            reply = self._reply(frame.turn)
            if reply is None:
                return
            if reply.audio:
                reply.words += frame.text
                return
            core.add_text(reply.response_id, frame.text)  # False: the core ended the response; it said so
        elif kind is ResponseRequestFrame:
            command = frame.command
            self._replies[frame.turn] = _Reply(command.response_id, "audio" in command.modalities)
            return
        elif kind is TranscriptionFrame and frame.role == "user" and frame.final and frame.item_id:
            emit = self._ctx.emit_transcripts.pop(frame.item_id, True)
            core.transcription_done(frame.item_id, frame.text, emit_events=emit)
        elif kind is TranscriptionFailedFrame:
            emit = self._ctx.emit_transcripts.pop(frame.item_id, True)
            core.transcription_done(frame.item_id, None, error=frame.error, emit_events=emit)
        elif kind is ToolCallFrame:
            reply = self._replies.get(frame.turn)
            if reply is None:
                return
            reply.called = True
            call_id = core.add_function_call(reply.response_id, frame.name, json.dumps(frame.arguments))
            if call_id is not None:
                self._ctx.call_ids[call_id] = frame.call_id
        elif kind is ResponseEndFrame:
            reply = self._replies.pop(frame.turn, None)
            if reply is None:
                return
            error = self._ctx.failures.pop(reply.response_id, None)
            if error is None and not reply.called:
                if not reply.begun:
                    reply.begun = core.begin_message(reply.response_id) is not None
                if reply.words and reply.audio:
                    core.add_audio(reply.response_id, np.zeros(0, np.int16), reply.words)
            core.finish_response(reply.response_id, error=error)
        else:
            return
        self._ctx.after_core_call()

    def _reply(self, turn: int) -> _Reply | None:
        """The response of ``turn``, its assistant message opened (None once the core ended it)."""
        reply = self._replies.get(turn)
        if reply is None:
            return None
        if not reply.begun:
            if self._ctx.core.begin_message(reply.response_id) is None:
                return None
            reply.begun = True
            self._ctx.send_core_events()
        return reply
