"""The event ladder of one response (reference §4 and the §8 checklist).

A :class:`ResponseLadder` is told what the responder produces (a message with audio or
text, a function call) and emits, through the ``emit`` callback, exactly the events a real
server sends, in order::

    response.created
      (per output item) response.output_item.added -> conversation.item.added
        message:  response.content_part.added -> (transcript / audio | text deltas)*
                  -> output_audio.done -> output_audio_transcript.done | output_text.done
                  -> response.content_part.done
        function: response.function_call_arguments.delta* -> .done
      -> response.output_item.done -> conversation.item.done
    rate_limits.updated -> response.done

It keeps the invariants a conformance client checks: ``output_index`` is the item's place
in ``response.output``, ``content_index`` is 0 (one part per message), every ``*.done``
text equals the concatenation of the deltas actually sent, and ``response.done`` is
emitted exactly once, whether the response completes, is cancelled (the open item is
closed out as ``incomplete``) or fails. Event names are GA; the caller's ``emit`` renames
them for a beta connection.
"""

from __future__ import annotations

import base64
import enum
import math
from typing import Any, Callable

from ..wire import FORMAT_TYPES, FORMATS, bytes_per_ms, format_name, ga_format
from .errors import invalid_type, invalid_value
from .items import Conversation, StoredItem, render_item
from .session import Dialect, Session

__all__ = ["LadderState", "ResponseLadder", "ResponseSettings", "settings_from_request"]

Emit = Callable[..., None]



def _quoted(values: Any) -> str:
    return ", ".join(f"'{v}'" for v in values)


class LadderState(enum.Enum):
    """Where a response is: running, or finished with a final status."""

    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    INCOMPLETE = "incomplete"
    FAILED = "failed"


# Legal transitions (STYLE §2): a response only ever leaves IN_PROGRESS, once.
TRANSITIONS = {(LadderState.IN_PROGRESS, end) for end in LadderState if end is not LadderState.IN_PROGRESS}


class ResponseSettings:
    """The effective settings of one response: the session's, overridden by response.create."""

    __slots__ = ("conversation", "instructions", "max_output_tokens", "metadata", "modalities",
                 "output_format", "temperature", "tool_choice", "tools", "voice")

    def __init__(self, *, modalities: list[str], voice: Any, output_format: str, instructions: str,
                 tools: list[dict[str, Any]], tool_choice: Any, max_output_tokens: int | str,
                 conversation: str = "auto", metadata: dict[str, str] | None = None,
                 temperature: float = 0.8) -> None:
        self.modalities = modalities
        self.voice = voice
        self.output_format = output_format
        self.instructions = instructions
        self.tools = tools
        self.tool_choice = tool_choice
        self.max_output_tokens = max_output_tokens
        self.conversation = conversation
        self.metadata = metadata
        self.temperature = temperature

    @property
    def audio(self) -> bool:
        return "audio" in self.modalities


def settings_from_request(session: Session, params: dict[str, Any]) -> ResponseSettings:
    """The settings of a ``response.create``: the session's, overridden by ``params``."""
    s = session
    beta = session.dialect is Dialect.BETA
    modalities = s.output_modalities
    if beta and params.get("modalities") is not None:
        m = params["modalities"]
        if not isinstance(m, list) or not m or not set(m) <= {"text", "audio"}:
            raise invalid_value("response.modalities", f"Invalid value: {m!r}. Supported combinations are: "
                                "['text'] and ['text', 'audio'].")
        modalities = ["audio"] if "audio" in m else ["text"]
    elif not beta and params.get("output_modalities") is not None:
        m = params["output_modalities"]
        if m not in (["audio"], ["text"]):
            raise invalid_value("response.output_modalities", f"Invalid value: {m!r}. Supported combinations "
                                "are: ['text'] and ['audio'].")
        modalities = list(m)
    voice, fmt = s.voice, s.output_format
    if beta:
        if params.get("voice") is not None:
            voice = params["voice"]
        if params.get("output_audio_format") is not None:
            fmt = params["output_audio_format"]
            if fmt not in FORMATS:
                raise invalid_value("response.output_audio_format", f"Invalid value: '{fmt}'. Supported "
                                    f"values are: {_quoted(FORMATS)}.")
    else:
        out = ((params.get("audio") or {}).get("output") or {}) if isinstance(params.get("audio"), dict) else {}
        if out.get("voice") is not None:
            voice = out["voice"]
        if out.get("format") is not None:
            fmt_obj = out["format"]
            if not isinstance(fmt_obj, dict) or fmt_obj.get("type") not in FORMAT_TYPES.values():
                raise invalid_value("response.audio.output.format.type", "Invalid value. Supported values are: "
                                    f"{_quoted(FORMAT_TYPES.values())}.")
            fmt = format_name(fmt_obj)
    tools = params.get("tools") if params.get("tools") is not None else s.tools
    if not isinstance(tools, list):
        raise invalid_type("response.tools", "an array", tools)
    conversation = params.get("conversation", "auto") or "auto"
    if conversation not in ("auto", "none"):
        raise invalid_value("response.conversation", f"Invalid value: '{conversation}'. Supported values are: "
                            "'auto' and 'none'.")
    metadata = params.get("metadata")
    if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16
                                 or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise invalid_value("response.metadata", "Invalid 'response.metadata': expected at most 16 string "
                            "keys with string values.")
    max_key = "max_response_output_tokens" if beta else "max_output_tokens"
    max_tokens = params.get(max_key)
    if max_tokens is None:
        max_tokens = s.config.get("max_output_tokens", "inf")
    elif max_tokens != "inf" and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                  or not 1 <= max_tokens <= 4096):
        raise invalid_value(f"response.{max_key}", f"Invalid 'response.{max_key}': expected an integer "
                            f"between 1 and 4096 or 'inf', but got {max_tokens!r} instead.")
    instructions = params.get("instructions")
    return ResponseSettings(
        modalities=modalities, voice=voice, output_format=fmt,
        instructions=instructions if isinstance(instructions, str) else s.config.get("instructions", ""),
        tools=tools, tool_choice=params.get("tool_choice") or s.tool_choice, max_output_tokens=max_tokens,
        conversation=conversation, metadata=metadata, temperature=s.temperature)


class _OpenMessage:
    __slots__ = ("audio", "output_index", "parts_text", "stored")

    def __init__(self, stored: StoredItem, output_index: int, audio: bool) -> None:
        self.stored = stored
        self.output_index = output_index
        self.audio = audio
        self.parts_text: list[str] = []


class ResponseLadder:
    """Builds the events of one response; see the module docstring for the order.

    ``conversation`` is None for an out-of-band response (``conversation: "none"``): its
    items are not added to the default conversation and no ``conversation.item.*`` events
    are sent. ``input_tokens`` feeds the usage report of ``response.done``.
    """

    def __init__(self, response_id: str, settings: ResponseSettings, *, dialect: Dialect,
                 conversation: Conversation | None, emit: Emit, new_id: Callable[[str], str],
                 input_tokens: dict[str, int] | None = None, max_delta_ms: int = 200) -> None:
        self.id = response_id
        self.settings = settings
        self.dialect = dialect
        self.conversation = conversation
        self._emit = emit
        self._new_id = new_id
        self.state = LadderState.IN_PROGRESS
        self.output: list[StoredItem] = []
        self.audio_sent = False
        self._open: _OpenMessage | None = None
        self._input_tokens = input_tokens or {"text_tokens": 0, "audio_tokens": 0}
        self._text_tokens = 0
        self._audio_tokens = 0
        self._max_delta_bytes = max(1, max_delta_ms) * bytes_per_ms(settings.output_format)
        self._emit("response.created", response=self._response_object())

    @property
    def active(self) -> bool:
        return self.state is LadderState.IN_PROGRESS

    @property
    def bytes_per_ms(self) -> int:
        return bytes_per_ms(self.settings.output_format)

    # --- what the responder produced --------------------------------------------------------

    def begin_message(self) -> str:
        """Open an assistant message (audio or text per the response's modalities); its id."""
        self._close_open("completed")
        audio = self.settings.audio
        stored = StoredItem({"id": self._new_id("item"), "type": "message", "status": "in_progress",
                             "role": "assistant", "content": []},
                            audio_format=self.settings.output_format, response_id=self.id)
        index = self._add_output(stored)
        self._open = _OpenMessage(stored, index, audio)
        part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        self._emit("response.content_part.added", **self._coords(self._open), part=part)
        return stored.id

    def add_audio(self, data: bytes, transcript_delta: str = "") -> bool:
        """Stream audio (bytes in the output format) with the words it speaks; False if over.

        The transcript delta goes first (the real server's transcript runs ahead of its
        audio); the audio is split into deltas of at most ``max_delta_ms``.
        """
        if not self.active:
            return False
        message = self._open or self._reopen()
        coords = self._coords(message)
        if transcript_delta:
            message.parts_text.append(transcript_delta)
            self._text_tokens += _tokens(transcript_delta)
            self._emit("response.output_audio_transcript.delta", **coords, delta=transcript_delta)
        step = self._max_delta_bytes
        buf = message.stored.audio.setdefault(0, bytearray())
        for start in range(0, len(data), step):
            piece = data[start:start + step]
            buf.extend(piece)
            self._emit("response.output_audio.delta", **coords, delta=base64.b64encode(piece).decode("ascii"))
        if data:
            self.audio_sent = True
            self._audio_tokens = math.ceil(len(buf) / self.bytes_per_ms / 50)
        return self._within_budget()

    def add_text(self, delta: str) -> bool:
        """Stream text of a text-only response; False once the response is over."""
        if not self.active:
            return False
        message = self._open or self._reopen()
        if delta:
            message.parts_text.append(delta)
            self._text_tokens += _tokens(delta)
            self._emit("response.output_text.delta", **self._coords(message), delta=delta)
        return self._within_budget()

    def add_function_call(self, name: str, arguments: str, call_id: str | None = None) -> str:
        """Emit a whole function-call item (announced, argument deltas, done); its call_id."""
        self._close_open("completed")
        call_id = call_id or self._new_id("call")
        stored = StoredItem({"id": self._new_id("item"), "type": "function_call", "status": "in_progress",
                             "name": name, "call_id": call_id, "arguments": ""}, response_id=self.id)
        index = self._add_output(stored)
        coords = {"response_id": self.id, "item_id": stored.id, "output_index": index, "call_id": call_id}
        for piece in _split_arguments(arguments):
            self._emit("response.function_call_arguments.delta", **coords, delta=piece)
        done = dict(coords, arguments=arguments)
        if self.dialect is Dialect.GA:
            done["name"] = name  # GA added `name`; the beta schema has none (reference §3.2)
        self._emit("response.function_call_arguments.done", **done)
        self._text_tokens += _tokens(arguments)
        stored.item.update(status="completed", arguments=arguments)
        self._item_done(stored, index)
        return call_id

    # --- ending ---------------------------------------------------------------------------

    def finish(self, status: str = "completed", *, reason: str | None = None,
               error: dict[str, Any] | None = None) -> None:
        """Close the open item and emit ``response.done`` (once; later calls do nothing)."""
        end = LadderState(status)
        if (self.state, end) not in TRANSITIONS:
            return
        self._close_open("completed" if end is LadderState.COMPLETED else "incomplete")
        self.state = end
        details = None
        if end is not LadderState.COMPLETED:
            details = {"type": status}
            if reason:
                details["reason"] = reason
            if error:
                details["error"] = error
        if end is LadderState.COMPLETED or self.output:
            self._emit("rate_limits.updated", rate_limits=[
                {"name": "requests", "limit": 10_000, "remaining": 9_999, "reset_seconds": 0.006},
                {"name": "tokens", "limit": 2_000_000, "remaining": 2_000_000 - self._total_tokens(),
                 "reset_seconds": 0.0}])
        self._emit("response.done", response=self._response_object(details))

    # --- internals ------------------------------------------------------------------------

    def _within_budget(self) -> bool:
        limit = self.settings.max_output_tokens
        if limit != "inf" and self._text_tokens + self._audio_tokens >= int(limit):
            self.finish("incomplete", reason="max_output_tokens")
            return False
        return True

    def _reopen(self) -> _OpenMessage:
        self.begin_message()
        assert self._open is not None
        return self._open

    def _coords(self, message: _OpenMessage) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": message.stored.id, "output_index": message.output_index,
                "content_index": 0}

    def _add_output(self, stored: StoredItem) -> int:
        index = len(self.output)
        self.output.append(stored)
        rendered = render_item(stored, self.dialect)
        self._emit("response.output_item.added", response_id=self.id, output_index=index, item=rendered)
        if self.conversation is not None:
            previous = self.conversation.insert(stored)
            self._emit("conversation.item.added", previous_item_id=previous, item=rendered)
        return index

    def _close_open(self, status: str) -> None:
        message, self._open = self._open, None
        if message is None:
            return
        coords = self._coords(message)
        text = "".join(message.parts_text)
        if message.audio:
            self._emit("response.output_audio.done", **coords)
            self._emit("response.output_audio_transcript.done", **coords, transcript=text)
            part = {"type": "audio", "transcript": text}
            message.stored.item["content"] = [{"type": "output_audio", "transcript": text}]
        else:
            self._emit("response.output_text.done", **coords, text=text)
            part = {"type": "text", "text": text}
            message.stored.item["content"] = [{"type": "output_text", "text": text}]
        self._emit("response.content_part.done", **coords, part=part)
        message.stored.item["status"] = status
        self._item_done(message.stored, message.output_index)

    def _item_done(self, stored: StoredItem, index: int) -> None:
        rendered = render_item(stored, self.dialect)
        self._emit("response.output_item.done", response_id=self.id, output_index=index, item=rendered)
        if self.conversation is not None and stored.id in self.conversation:
            self._emit("conversation.item.done", previous_item_id=self.conversation.previous_of(stored.id),
                       item=rendered)

    def _total_tokens(self) -> int:
        return sum(self._input_tokens.values()) + self._text_tokens + self._audio_tokens

    def _response_object(self, details: dict[str, Any] | None = None) -> dict[str, Any]:
        s = self.settings
        done = self.state is not LadderState.IN_PROGRESS
        obj: dict[str, Any] = {
            "object": "realtime.response", "id": self.id, "status": self.state.value, "status_details": details,
            "output": [render_item(o, self.dialect) for o in self.output] if done else [],
            "conversation_id": self.conversation.id if self.conversation is not None else None,
            "max_output_tokens": s.max_output_tokens,
            "usage": self._usage() if done else None,
            "metadata": s.metadata,
        }
        if self.dialect is Dialect.GA:
            obj["output_modalities"] = list(s.modalities)
            obj["audio"] = {"output": {"format": ga_format(s.output_format), "voice": s.voice}}
        else:
            obj["modalities"] = ["text", "audio"] if s.audio else ["text"]
            obj["voice"] = s.voice if isinstance(s.voice, str) else s.voice.get("id", "alloy")
            obj["output_audio_format"] = s.output_format
            obj["temperature"] = s.temperature
        return obj

    def _usage(self) -> dict[str, Any]:
        text_in, audio_in = self._input_tokens.get("text_tokens", 0), self._input_tokens.get("audio_tokens", 0)
        out = self._text_tokens + self._audio_tokens
        usage: dict[str, Any] = {
            "total_tokens": text_in + audio_in + out, "input_tokens": text_in + audio_in, "output_tokens": out,
            "input_token_details": {"text_tokens": text_in, "audio_tokens": audio_in, "cached_tokens": 0},
            "output_token_details": {"text_tokens": self._text_tokens, "audio_tokens": self._audio_tokens},
        }
        if self.dialect is Dialect.GA:
            usage["input_token_details"].update(image_tokens=0, cached_tokens_details={
                "text_tokens": 0, "audio_tokens": 0, "image_tokens": 0})
        return usage


def _tokens(text: str) -> int:
    """A rough token count (4 characters a token), as a tokenizer-free estimate."""
    return math.ceil(len(text) / 4)


def _split_arguments(arguments: str) -> list[str]:
    """Split a JSON argument string into a few deltas, as a model streams them."""
    if len(arguments) <= 8:
        return [arguments] if arguments else [""]
    cut1, cut2 = len(arguments) // 3, 2 * len(arguments) // 3
    return [arguments[:cut1], arguments[cut1:cut2], arguments[cut2:]]
