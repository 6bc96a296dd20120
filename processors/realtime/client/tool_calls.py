"""ToolCalls: the model's function calls, batched by response, from announcement to answer.

A response may carry several calls (reference §4.2). Each call is run once (one
:class:`~pipeline.frames.ToolCallFrame`, whichever of ``function_call_arguments.done``,
``output_item.done`` or ``response.done`` brings its final arguments first); its result
becomes a ``function_call_output`` item; and once every call of a response is answered
*and* that response is done, the model gets ONE ``response.create`` to speak about the
results. A barge-in abandons open batches: their answers still enter the conversation,
but the model is not asked to speak again on their account (the user took the turn).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from pipeline.frames import ToolCallFrame

from .events import MalformedEvent

__all__ = ["Call", "ToolCalls"]

log = logging.getLogger("voxpipe.realtime")


@dataclass
class Call:
    """One function call of the model."""

    call_id: str
    response_id: str
    name: str = ""
    emitted: bool = False  # run (a frame went out) or answered at once
    answered: bool = False


@dataclass
class _Batch:
    calls: list[str] = field(default_factory=list)
    done: bool = False  # its response.done was seen
    abandoned: bool = False
    followed_up: bool = False  # its response.create went out


class ToolCalls:
    """The calls of one session; :meth:`clear` when the session is gone."""

    def __init__(self) -> None:
        self._calls: dict[str, Call] = {}
        self._batches: dict[str, _Batch] = {}

    def get(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    def announce(self, call_id: str, response_id: str, name: str = "") -> Call:
        """A function call item appeared in ``response_id`` (idempotent)."""
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = Call(call_id, response_id, name)
            self._batches.setdefault(response_id, _Batch()).calls.append(call_id)
        call.name = call.name or name
        return call

    def complete(self, call_id: str, response_id: str, name: str, arguments: str, *, turn: int,
                 interrupted: bool) -> tuple[ToolCallFrame | None, str | None]:
        """The call's arguments are final: ``(frame to run it, None)``, ``(None, output)`` to answer
        it at once (invalid arguments, or its response was interrupted), or ``(None, None)``
        when it was already handled."""
        call = self.announce(call_id, response_id, name)
        if call.emitted:
            return None, None
        if not call.name:
            raise MalformedEvent(f"function call {call_id} has no name")
        call.emitted = True
        if interrupted:  # the response was cut: its arguments may be too, and nobody waits for it
            self._batches[response_id].abandoned = True
            return None, json.dumps({"error": "not run: the user interrupted the response"})
        try:
            args = json.loads(arguments) if arguments.strip() else {}
            if not isinstance(args, dict):
                raise ValueError(f"expected a JSON object, got {type(args).__name__}")
        except ValueError as exc:
            log.warning("tool call %s (%s) has invalid arguments %.200r: %s", call_id, call.name, arguments, exc)
            return None, json.dumps({"error": f"arguments are not a valid JSON object: {exc}"})
        return ToolCallFrame(call_id, call.name, args, response_id=response_id, turn=turn), None

    def answered(self, call: Call) -> bool:
        """Mark ``call`` answered; True when its response now needs its ONE follow-up response."""
        call.answered = True
        return self._follow_up(call.response_id)

    def response_done(self, response_id: str) -> bool:
        """``response.done`` was seen; True when it needs its follow-up response now."""
        batch = self._batches.get(response_id)
        if batch is None:
            return False
        batch.done = True
        return self._follow_up(response_id)

    def _follow_up(self, response_id: str) -> bool:
        batch = self._batches.get(response_id)
        if batch is None or not batch.done or batch.abandoned or batch.followed_up:
            return False
        if not all(self._calls[c].answered for c in batch.calls):
            return False
        batch.followed_up = True
        return True

    def abandon_open(self) -> None:
        """A barge-in: open batches will not ask for a follow-up response."""
        for batch in self._batches.values():
            if not batch.done or not all(self._calls[c].answered for c in batch.calls):
                batch.abandoned = True

    def clear(self) -> list[str]:
        """Forget everything (the session is gone); return the ids of unanswered calls."""
        open_calls = [c.call_id for c in self._calls.values() if not c.answered]
        self._calls.clear()
        self._batches.clear()
        return open_calls

    def prune(self) -> None:
        """Forget batches that are finished and fully answered."""
        for rid in [rid for rid, b in self._batches.items()
                    if b.done and all(self._calls[c].answered for c in b.calls)]:
            for c in self._batches.pop(rid).calls:
                del self._calls[c]
