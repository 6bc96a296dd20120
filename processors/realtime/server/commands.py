"""What the server core asks its shell to do, and the context a response is made from.

The core (:mod:`.conversation`) never does slow work itself; it queues commands:
:class:`Transcribe` (recognise a committed user item), :class:`Generate` (produce a
response) and :class:`StopGeneration` (a response was cancelled). A :class:`Generate`
carries a :class:`ResponseContext` built by :func:`build_context` from the conversation
(or from ``response.input``): the latest user words, or the function call a tool output
answers, with the tools the response may call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .items import StoredItem

__all__ = ["Command", "Generate", "ResponseContext", "StopGeneration", "Transcribe", "build_context",
           "input_tokens"]


@dataclass
class Transcribe:
    """Recognise ``samples`` (int16 at ``sample_rate``) of user item ``item_id``.

    Report with :meth:`ServerConversation.transcription_done`. ``emit_events`` says whether
    the session asked for input transcription events.
    """

    item_id: str
    samples: np.ndarray
    sample_rate: int
    emit_events: bool


@dataclass
class ResponseContext:
    """What the responder needs to answer: the user's words or a tool result, and the tools.

    ``user_text`` is None while the user's audio item ``user_item_id`` is still being
    recognised: wait for its :class:`Transcribe` result. ``tool_call`` (name, arguments,
    call_id) with ``tool_output`` is set when the response follows a function call output.
    ``answered_calls`` lists every function call in the context that has its output
    (``name``, ``arguments``, ``output``), so a responder never repeats one.
    """

    user_item_id: str | None = None
    user_text: str | None = None
    tool_call: dict[str, Any] | None = None
    tool_output: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = "auto"
    instructions: str = ""
    answered_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Generate:
    """Produce response ``response_id``: audio (in ``output_format``) or text per ``modalities``."""

    response_id: str
    context: ResponseContext
    modalities: list[str]
    output_format: str
    voice: Any
    speed: float = 1.0


@dataclass
class StopGeneration:
    """Response ``response_id`` is over (cancelled or failed): stop working on it."""

    response_id: str


Command = Transcribe | Generate | StopGeneration


def build_context(items: list[StoredItem], tools: list[dict[str, Any]], tool_choice: Any,
                  instructions: str) -> ResponseContext:
    """What the responder answers: the last user message, or the last tool output and its call."""
    functions = [t for t in tools if isinstance(t, dict) and t.get("type", "function") == "function"]
    ctx = ResponseContext(tools=functions, tool_choice=tool_choice, instructions=instructions)
    calls = {s.item.get("call_id"): s.item for s in items if s.item["type"] == "function_call"}
    ctx.answered_calls = [{"name": calls[s.item["call_id"]]["name"], "arguments": calls[s.item["call_id"]]["arguments"],
                           "output": s.item["output"]}
                          for s in items if s.item["type"] == "function_call_output" and s.item["call_id"] in calls]
    for stored in reversed(items):
        item = stored.item
        if item["type"] == "function_call_output":
            ctx.tool_output = item["output"]
            call = next((s.item for s in items if s.item["type"] == "function_call"
                         and s.item.get("call_id") == item["call_id"]), None)
            ctx.tool_call = {"name": call["name"] if call else "", "call_id": item["call_id"],
                             "arguments": call["arguments"] if call else "{}"}
            return ctx
        if item["type"] == "message" and item.get("role") == "user":
            ctx.user_item_id = stored.id
            ctx.user_text = _user_text(stored)
            return ctx
    return ctx


def _user_text(stored: StoredItem) -> str | None:
    """The words of a user message: typed text, a given transcript, or what was heard."""
    texts = []
    for part in stored.item.get("content", ()):
        if part["type"] == "input_text":
            texts.append(part["text"])
        elif part["type"] == "input_audio":
            if part.get("transcript") is not None:
                texts.append(part["transcript"])
            elif stored.heard_text is not None:
                texts.append(stored.heard_text)
            else:
                return None  # still being recognised
    return " ".join(t for t in texts if t)


def input_tokens(items: list[StoredItem]) -> dict[str, int]:
    """A rough token count of the context, for usage reports (4 characters or 100 ms a token)."""
    text = audio = 0
    for stored in items:
        for part in stored.item.get("content", ()) or ():
            text += math.ceil(len(part.get("text") or part.get("transcript") or "") / 4)
        text += math.ceil(len(stored.item.get("arguments", "") + stored.item.get("output", "")) / 4)
        audio += sum(math.ceil(stored.audio_ms(i) / 100) for i in stored.audio)
    return {"text_tokens": text, "audio_tokens": audio}
