"""Server events as the client core reads them: one model for both dialects.

Beta names are mapped to GA names on the way in with :data:`..wire.BETA_TO_GA` (reference
§3.1); beta's single ``conversation.item.created`` stands for GA's
``conversation.item.added``. Events the
client has no use for are listed so that they are not counted as unknown. Fields are read
with :func:`field`, which raises :class:`MalformedEvent` instead of guessing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IGNORED_EVENTS", "MalformedEvent", "field"]

#: Known server events (GA names) this client has no use for.
IGNORED_EVENTS = frozenset({
    "conversation.created", "conversation.item.retrieved", "conversation.item.done",
    "conversation.item.input_audio_transcription.segment", "input_audio_buffer.committed",
    "input_audio_buffer.timeout_triggered", "input_audio_buffer.dtmf_event_received",
    "response.function_call_arguments.delta", "response.output_text.done",
    "response.output_audio_transcript.done", "response.content_part.done",
    "output_audio_buffer.started", "output_audio_buffer.stopped", "output_audio_buffer.cleared",
    "mcp_list_tools.in_progress", "mcp_list_tools.completed", "mcp_list_tools.failed",
    "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done",
    "response.mcp_call.in_progress", "response.mcp_call.completed", "response.mcp_call.failed",
})


class MalformedEvent(Exception):
    """A server event lacks a field this client needs, or has it with the wrong type."""


def field(obj: dict[str, Any], key: str, typ: type | tuple[type, ...]) -> Any:
    """``obj[key]`` if it is a ``typ`` (a bool is not an int); else raise MalformedEvent."""
    value = obj.get(key)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        want = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise MalformedEvent(f"field {key!r} should be {want}, found {type(value).__name__}")
    return value
