"""``brain.scripted``: a rules-driven stand-in for a language model, for offline graphs.

The rules engine itself is :class:`Brain` (pure, in :mod:`processors.brain.rules`, re-exported
here with :class:`Say` and :class:`Call`). :class:`ScriptedResponder` wraps it as a processor
that behaves like a model in a graph:

* a final user :class:`TranscriptionFrame` (or a user :class:`TextFrame`) starts a response:
  ``ResponseStartFrame``, then a ``TextFrame`` (role assistant) or a ``ToolCallFrame``, then
  ``ResponseEndFrame``, all downstream and stamped with the response's turn. The
  transcript itself is passed on first, so a protocol or recorder downstream sees it;
* a ``ToolResultFrame`` (from either direction) answering one of its calls starts the
  follow-up response, spoken from the rule's ``then`` template;
* ``ToolsAvailableFrame`` (either direction) declares the tools it may call (the ``tools``
  param declares some up front);
* as a model numbers its responses, each response gets a new turn (from 1). With
  ``interrupt_on_speech`` a ``UserStartedSpeakingFrame`` after a response pushes an
  ``InterruptionFrame`` of the next turn downstream, so speech synthesis and playback
  flush what is left of the reply (barge-in). Downstream processors must treat an
  interruption with nothing in flight as a no-op.
"""

from __future__ import annotations

import itertools
from importlib.resources import files
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from pipeline.frames import (
    Direction,
    Frame,
    InterruptionFrame,
    ResponseEndFrame,
    ResponseStartFrame,
    TextFrame,
    ToolCallFrame,
    ToolResultFrame,
    ToolsAvailableFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
)
from pipeline.processor import Processor

from .rules import Brain, Call, Reply, RulesError, Say

__all__ = ["DEMO_RULES", "Brain", "Call", "Reply", "RulesError", "Say", "ScriptedResponder"]

#: The rules shipped with voxpipe (greeting, weather tool, a long story, time, goodbye).
DEMO_RULES = Path(str(files(__package__).joinpath("demo_rules.yaml")))


class ScriptedResponder(Processor):
    """Answers user transcripts from YAML rules: spoken replies or calls of declared tools.

    Use it where a model would sit when there is no model: the local realtime server,
    offline demos, tests of a whole voice graph.
    """

    class Params(BaseModel, extra="forbid"):
        rules: str | None = Field(None, description="rules YAML file; default: processors/brain/demo_rules.yaml")
        echo: bool | None = Field(None, description="repeat the user's words (overrides the file's `echo`)")
        tools: list[dict[str, Any]] = Field(default_factory=list, description="tools declared up front (flat Realtime schemas)")
        interrupt_on_speech: bool = Field(True, description="barge-in: speech after a response flushes its rest")

    async def start(self) -> None:
        path = Path(self.params.rules) if self.params.rules else DEMO_RULES
        if not path.is_file():
            raise RulesError(f"{self.name}: rules file {path} does not exist; set params.rules to a YAML file "
                             f"(see {DEMO_RULES} for the format)")
        self.brain = Brain.from_yaml(path)
        if self.params.echo is not None:
            self.brain.echo = self.params.echo
        self.tools: list[dict[str, Any]] = list(self.params.tools)
        self._pending: dict[str, Call] = {}
        self._response_turn = 0
        self._answered = False  # a response went out since the last interruption
        self._ids = itertools.count(1)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, TranscriptionFrame) and frame.role == "user" and frame.final:
            await self.push(frame, direction)
            await self._respond(self.brain.respond(frame.text, self.tools))
        elif isinstance(frame, TextFrame) and frame.role == "user":
            await self.push(frame, direction)
            await self._respond(self.brain.respond(frame.text, self.tools))
        elif isinstance(frame, ToolResultFrame) and frame.call_id in self._pending:
            call = self._pending.pop(frame.call_id)
            await self._respond(self.brain.after_tool(call, frame.output))
        elif isinstance(frame, ToolsAvailableFrame):
            self.tools = list(frame.tools)
            await self.push(frame, direction)
        elif isinstance(frame, UserStartedSpeakingFrame):
            if self.params.interrupt_on_speech and self._answered:
                self._response_turn = max(self._response_turn, self.turn) + 1
                self._answered = False
                await self.push(InterruptionFrame(turn=self._response_turn))
            await self.push(frame, direction)
        else:
            await self.push(frame, direction)

    def _new_id(self, kind: str) -> str:
        # Deterministic ids (resp_1, call_2, item_3...): unique within this responder, which
        # is all a session needs; a protocol layer may map them to its own.
        return f"{kind}_{next(self._ids)}"

    async def _respond(self, reply: Reply) -> None:
        turn = self._response_turn = max(self._response_turn, self.turn) + 1
        self._answered = True
        response_id = self._new_id("resp")
        await self.push(ResponseStartFrame(response_id, turn=turn))
        if isinstance(reply, Call):
            call_id = self._new_id("call")
            self._pending[call_id] = reply
            await self.push(ToolCallFrame(call_id, reply.name, dict(reply.arguments), response_id, turn=turn))
        else:
            await self.push(TextFrame(reply.text, role="assistant", item_id=self._new_id("item"), turn=turn))
        await self.push(ResponseEndFrame(response_id, turn=turn))
