"""The sans-I/O core of the local realtime server: client events in, server events out.

Theory of operation
-------------------
:class:`ServerConversation` is one connection's protocol state, as a plain object (STYLE
§1): no socket, no clock, no thread. The shell feeds it each client message
(:meth:`~ServerConversation.receive_text`) and drains two lists:

* :meth:`~ServerConversation.events_to_send`: server events, in order, each with a unique
  ``event_id``, already in the connection's dialect;
* :meth:`~ServerConversation.commands`: work the core needs done outside it, which is
  CPU-heavy or slow: :class:`Transcribe` (speech recognition of a committed user item),
  :class:`Generate` (run the responder and synthesis for a response) and
  :class:`StopGeneration` (a response was cancelled: stop working on it).

The shell reports results back with :meth:`~ServerConversation.transcription_done` and
drives a response's ladder through :meth:`~ServerConversation.begin_message`,
:meth:`~ServerConversation.add_audio`, :meth:`~ServerConversation.add_text`,
:meth:`~ServerConversation.add_function_call` and
:meth:`~ServerConversation.finish_response`. Calls for a response that is no longer
active (cancelled by barge-in or ``response.cancel``) are ignored and return False, so a
worker that loses the race with a cancel does no harm.

What it implements (reference §2, §4, §7, §8, §9): the session with its ``session.update``
merge (:mod:`.session`); the conversation as a linked list (:mod:`.items`); the input audio
buffer with server VAD turns (``speech_started`` / ``speech_stopped`` / ``committed``,
``create_response``, ``interrupt_response`` with reason ``turn_detected``, turn detection
off); one response at a time in the default conversation plus out-of-band ones
(:mod:`.responses`); truncate, delete, retrieve; and error events with the real API's
codes for every bad client event (:mod:`.errors`). Nothing a client sends can raise out
of :meth:`receive_text`: a refused event becomes one ``error`` event and the session lives on.

Dialect: events are built with GA names and renamed once, in :meth:`_emit`, for a beta
connection (by :data:`..wire.GA_TO_BETA`) (``response.audio.delta``, ``conversation.item.created`` and no
``conversation.item.done``), so the two can never mix on one connection (reference §7.5).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import random
import re
import secrets
import time
from typing import Any, Callable

import numpy as np

from ..wire import GA_TO_BETA, MIN_COMMIT_MS, NOT_IN_BETA, SAMPLE_RATE, bytes_per_ms, decode, decode_base64, encode
from .errors import (
    ClientEventError,
    active_response,
    cancel_not_active,
    commit_empty,
    invalid_type,
    invalid_value,
    missing_parameter,
    string_too_long,
)
from .commands import Command, Generate, ResponseContext, StopGeneration, Transcribe, build_context, input_tokens
from .input_buffer import InputAudioBuffer
from .items import Conversation, StoredItem, normalize_client_item, render_item
from .responses import ResponseLadder, settings_from_request
from .session import Dialect, Session
from .state import TRANSITIONS, Phase
from .turns import TurnDetector

__all__ = [
    "CLIENT_EVENTS",
    "Generate",
    "ResponseContext",
    "ServerConversation",
    "StopGeneration",
    "Transcribe",
    "new_id_factory",
]

log = logging.getLogger("voxpipe.realtime_server")

#: Client event types of each dialect (reference §2).
CLIENT_EVENTS = {
    Dialect.GA: (
        "session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear",
        "conversation.item.create", "conversation.item.truncate", "conversation.item.delete",
        "conversation.item.retrieve", "response.create", "response.cancel", "output_audio_buffer.clear",
    ),
}
CLIENT_EVENTS[Dialect.BETA] = CLIENT_EVENTS[Dialect.GA] + ("transcription_session.update",)

#: Audio kept per conversation, newest items first: older items keep their duration
#: (truncate, usage) but not their bytes, so ``conversation.item.retrieve`` returns them
#: without audio. Two minutes covers any truncate (it targets the item being played) and
#: retrieving the last turns; it is 5.6 MiB of pcm16. See docs/realtime-server-limits.md.
AUDIO_KEPT_MS = 120_000
#: Items kept per conversation; past it the oldest is deleted (``conversation.item.deleted``).
MAX_ITEMS = 4096
#: Audio one append may carry, decoded: the real API's documented 15 MiB.
MAX_APPEND_BYTES = 15 * 1024 * 1024
#: Audio the input buffer holds, so the longest commit (or audio item) recognised: six minutes.
#: With turn detection off an append past it is refused; with server VAD a turn that long is
#: ended (speech_stopped, committed) and the next one begins.
MAX_BUFFER_MS = 360_000
#: Out-of-band responses (``conversation: "none"``) running at once per connection.
MAX_OUT_OF_BAND = 16
#: Longest client ``event_id`` accepted (it is echoed back in errors).
MAX_EVENT_ID = 512

#: Deepest JSON nesting accepted in a client message (a tool's parameter schema needs perhaps
#: ten); checked before parsing, so neither the parser nor a copy of the session recurses far.
MAX_JSON_DEPTH = 100

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth(text: str, limit: int) -> int:
    """How deep ``text`` nests arrays and objects, counted up to just past ``limit``.

    Cheap for what clients send: a message with at most ``limit`` brackets (every audio
    append: base64 has none) is not scanned at all.
    """
    if text.count("[") + text.count("{") <= limit:
        return 0
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRING.sub("", text)):
        if match.group() in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_id_factory() -> Callable[[str], str]:
    """Ids like the real server's: ``prefix_`` + 21 base62 characters, time-ordered.

    Unique per connection (a counter) and across connections (a random tail); not secrets.
    """
    counter = itertools.count()
    rng = random.Random(secrets.randbits(64))

    def new_id(prefix: str) -> str:
        n = (time.time_ns() // 1_000_000) * 4096 + next(counter) % 4096
        head = ""
        while n:
            n, r = divmod(n, 62)
            head = _BASE62[r] + head
        tail = "".join(rng.choices(_BASE62, k=21 - len(head)))
        return f"{prefix}_{head}{tail}"

    return new_id


class ServerConversation:
    """One realtime connection's protocol state (see the module docstring).

    ``new_id(prefix)`` makes ids (tests pass a counter); ``now()`` gives Unix seconds for
    ``expires_at``; ``max_delta_ms`` bounds each output audio delta (keeps every message far
    below 1 MiB); ``kind`` is ``"transcription"`` for ``?intent=transcription`` sessions.
    """

    def __init__(self, *, dialect: Dialect = Dialect.GA, model: str = "gpt-realtime", kind: str = "realtime",
                 new_id: Callable[[str], str] | None = None, now: Callable[[], float] = time.time,
                 max_delta_ms: int = 200, session_lifetime_s: int = 3600, max_event_bytes: int = 1 << 20) -> None:
        self.dialect = dialect
        self._new_id = new_id or new_id_factory()
        self.session = Session(dialect, session_id=self._new_id("sess"), model=model,
                               expires_at=int(now()) + session_lifetime_s, kind=kind)
        self.conversation = Conversation(self._new_id("conv"))
        self.buffer = InputAudioBuffer(self.session.input_format)
        self._turns: TurnDetector | None = None
        self._turns_stale = True
        self._speech_item: str | None = None  # item id announced by speech_started
        self._events: list[dict[str, Any]] = []
        self._commands: list[Command] = []
        self._responses: dict[str, ResponseLadder] = {}
        self._default_response: str | None = None  # its id while the phase is RESPONDING
        self.phase = Phase.TRANSCRIPTION if kind == "transcription" else Phase.IDLE
        self._assistant_audio = False
        self._max_delta_ms = max_delta_ms
        self._max_event_bytes = max_event_bytes
        self._client_event_id: str | None = None
        self._idle_start = 0
        self._idle_deadline: int | None = None  # timeline position of the idle timeout
        # plain functions, not bound methods: a table of bound methods on self is a reference
        # cycle, which kept a closed connection (and its audio) alive until the next gc run
        self._handlers = {etype: _HANDLERS[etype] for etype in CLIENT_EVENTS[dialect]}
        self._configure_turns()
        self._emit("session.created", session=self.session.render())

    # --- outputs ------------------------------------------------------------------------------

    def events_to_send(self) -> list[dict[str, Any]]:
        """Server events produced since the last call, in order."""
        out, self._events = self._events, []
        return out

    def commands(self) -> list[Command]:
        """Work for the shell produced since the last call, in order."""
        out, self._commands = self._commands, []
        return out

    @property
    def active_response_id(self) -> str | None:
        """The response writing to the default conversation, if any."""
        return self._default_response

    def response_is_active(self, response_id: str) -> bool:
        return response_id in self._responses

    # --- inputs: client messages -------------------------------------------------------------

    def receive_text(self, text: str | bytes) -> None:
        """Handle one websocket message; never raises for anything a client sends."""
        self._client_event_id = None
        try:
            if isinstance(text, (bytes, bytearray, memoryview)):
                raise ClientEventError("invalid_event", "Binary messages are not supported: send each client "
                                       "event as JSON in a text message (audio goes base64 in "
                                       "input_audio_buffer.append).")
            depth = json_depth(text, MAX_JSON_DEPTH)
            if depth > MAX_JSON_DEPTH:
                raise ClientEventError("invalid_event", f"The message nests JSON more than {MAX_JSON_DEPTH} levels "
                                       "deep; no client event needs more than a few.")
            try:
                event = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise ClientEventError("invalid_event", f"The message is not valid JSON: {exc}.") from None
            self._dispatch(event)
        except ClientEventError as err:
            self._error(err)
        except RecursionError:  # a nesting the depth check let through (it should not): one line, no traceback
            log.warning("client event refused: nested too deep to process")
            self._error(ClientEventError("invalid_event", "The message is nested too deeply to be processed."))
        except Exception as exc:  # a server bug: report it as the real API does, keep the session
            log.exception("realtime server core failed on a client event")
            self._error(ClientEventError(None, f"The server had an error while processing your request: "
                                         f"{type(exc).__name__}: {exc}", type="server_error"))

    def receive_event(self, event: dict[str, Any]) -> None:
        """Handle one already-parsed client event (tests); same guarantees as receive_text."""
        self.receive_text(json.dumps(event))

    def _dispatch(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise ClientEventError("invalid_event", "A client event must be a JSON object with a 'type' field.")
        client_id = event.get("event_id")
        if isinstance(client_id, str) and len(client_id) > MAX_EVENT_ID:
            raise string_too_long("event_id", MAX_EVENT_ID, len(client_id))  # not echoed
        self._client_event_id = client_id if isinstance(client_id, str) else None
        etype = event.get("type")
        if etype is None:
            raise ClientEventError("invalid_event", "The 'type' field is missing.", "type")
        handler = self._handlers.get(etype) if isinstance(etype, str) else None
        if handler is None:
            known = ", ".join(f"'{t}'" for t in CLIENT_EVENTS[self.dialect])
            raise ClientEventError("invalid_event", f"Invalid value: '{etype}'. Supported values are: {known}.",
                                   "type")
        handler(self, event)

    def close(self) -> None:
        """The connection is gone: drop its audio, items and responses now (call once, last)."""
        self._responses.clear()  # each active ladder holds self._emit: a cycle
        self._default_response = None
        self.conversation = Conversation(self.conversation.id)
        self.buffer.clear()
        self._turns = None
        self._events, self._commands = [], []

    def _keep_bounded(self) -> None:
        """Hold at most :data:`MAX_ITEMS` items and :data:`AUDIO_KEPT_MS` of their audio."""
        conversation = self.conversation
        while len(conversation) > MAX_ITEMS:
            oldest = conversation.find(conversation.head)
            if oldest is not None and oldest.response_id in self._responses:
                break  # never the item a response is writing
            conversation.pop_oldest()
            self._emit("conversation.item.deleted", item_id=oldest.id)
        conversation.keep_audio(AUDIO_KEPT_MS)

    # --- phase (the one table is in .state) ------------------------------------------------------

    def _next_phase(self, trigger: str) -> Phase:
        """The phase ``trigger`` leads to; raises the client's error when it is not allowed now."""
        new = TRANSITIONS.get((self.phase, trigger))
        if new is not None:
            return new
        if trigger == "response.create" and self.phase is Phase.RESPONDING:
            raise active_response(self._default_response or "")
        if trigger == "response.create" and self.phase is Phase.TRANSCRIPTION:
            raise invalid_value("type", "A transcription session does not create responses; open a realtime "
                                "session (?model=...) to get responses.")
        if trigger == "response.cancel":
            raise cancel_not_active()
        raise ClientEventError("invalid_event", f"'{trigger}' cannot be applied while the session is "
                               f"{self.phase.name}.", "type")

    def _set_phase(self, trigger: str, response_id: str | None, why: str = "") -> None:
        """Apply ``trigger`` (see :mod:`.state`); ``response_id`` is the default response from now on."""
        new = self._next_phase(trigger)
        log.debug("phase %s -> %s on %s%s", self.phase.name, new.name, trigger, f" ({why})" if why else "")
        self.phase = new
        self._default_response = response_id if new is Phase.RESPONDING else None

    # --- session -------------------------------------------------------------------------------

    def _on_session_update(self, event: dict[str, Any]) -> None:
        if event.get("session") is None:
            raise missing_parameter("session")
        self._update_session(event["session"])
        self._emit("session.updated", session=self.session.render())

    def _update_session(self, patch: Any) -> None:
        before_format = self.session.input_format
        before_turns = self.session.turn_detection
        self.session.update(patch, voice_locked=self._assistant_audio)
        if self.session.input_format != before_format:
            self.buffer.reformat(self.session.input_format)
        if self.session.turn_detection != before_turns or self.session.input_format != before_format:
            self._configure_turns()

    def _on_transcription_session_update(self, event: dict[str, Any]) -> None:
        patch = event.get("session")
        if patch is None:
            raise missing_parameter("session")
        if not isinstance(patch, dict):
            raise invalid_type("session", "an object", patch)
        known = {k: patch[k] for k in ("input_audio_format", "input_audio_transcription", "turn_detection",
                                       "input_audio_noise_reduction") if k in patch}
        self._update_session(known)
        cfg = self.session.render()
        self._emit("transcription_session.updated", session={
            "client_secret": {"value": "ek_local", "expires_at": cfg["expires_at"]},
            "input_audio_format": cfg["input_audio_format"],
            "input_audio_transcription": cfg["input_audio_transcription"],
            "modalities": cfg["modalities"], "turn_detection": cfg["turn_detection"]})

    def _configure_turns(self) -> None:
        # the detector is built on the first append: sessions without audio never need one
        self._turns = None
        self._turns_stale = True
        self._speech_item = None

    def _turn_detector(self) -> TurnDetector | None:
        if self._turns_stale:
            turn = self.session.turn_detection
            self._turns = None if turn is None else TurnDetector(turn, self.buffer.rate, start=self.buffer.end)
            self._turns_stale = False
        return self._turns

    # --- input audio buffer --------------------------------------------------------------------

    def _on_input_audio_buffer_append(self, event: dict[str, Any]) -> None:
        audio = event.get("audio")
        if audio is None:
            raise missing_parameter("audio")
        if not isinstance(audio, str):
            raise invalid_type("audio", "a base64-encoded string", audio)
        if len(audio) * 3 // 4 > MAX_APPEND_BYTES + 2:
            raise invalid_value("audio", f"Invalid 'audio': {len(audio) * 3 // 4} bytes of audio in one append; "
                                f"at most {MAX_APPEND_BYTES} bytes (15 MiB) are accepted. Send it in pieces.")
        try:
            data = decode_base64(audio)
        except ValueError:
            raise invalid_value("audio", "Invalid 'audio': expected base64-encoded audio bytes.") from None
        self.append_audio(data)

    def append_audio(self, data: bytes) -> None:
        """Add wire bytes of the input format to the buffer and run server VAD over them.

        Raises ``invalid_value`` when the buffer would hold more than :data:`MAX_BUFFER_MS`
        with turn detection off (or the append alone is longer); with server VAD a turn
        that reaches it is ended first.
        """
        turns = self._turn_detector()
        cap = self.buffer.position(MAX_BUFFER_MS)
        incoming = len(data) // self.buffer.width
        if incoming > cap or (turns is None and self.buffer.samples + incoming > cap):
            raise invalid_value("audio", f"The input audio buffer would hold {self.buffer.ms(self.buffer.samples + incoming)}"
                                f"ms of audio; it holds at most {MAX_BUFFER_MS}ms. Commit or clear it first.")
        if turns is not None and self.buffer.samples + incoming > cap:
            log.info("a turn reached %d ms: ended by the server", MAX_BUFFER_MS)
            if turns.in_speech:
                self._speech_stopped(self.buffer.end)
            else:
                self.buffer.trim_to(self.buffer.end)
            turns.reset(self.buffer.end)
        samples = self.buffer.append(data)
        if turns is None:
            return
        for kind, position in turns.process(samples):
            if kind == "start":
                self._speech_started(position)
            else:
                self._speech_stopped(position)
        if not turns.in_speech:
            if self._idle_deadline is not None and self.buffer.end >= self._idle_deadline:
                self._idle_timeout()
            self.buffer.trim_to(self.buffer.end - turns.keep_samples)

    def _idle_timeout(self) -> None:
        # reference §4.1 "Idle timeout": no speech for idle_timeout_ms after the response and
        # its playback: the silent audio is committed and a response is created. Counted in
        # media time (audio appended), never wall time.
        item_id = self._new_id("item")
        start, self._idle_deadline = self._idle_start, None
        self._emit("input_audio_buffer.timeout_triggered", audio_start_ms=self.buffer.ms(start),
                   audio_end_ms=self.buffer.ms(self.buffer.end), item_id=item_id)
        self._commit(item_id)
        if self.phase is Phase.IDLE:
            self._start_response({}, trigger="idle timeout")

    def _arm_idle_timeout(self, ladder: ResponseLadder) -> None:
        turn = self.session.turn_detection
        idle_ms = (turn or {}).get("idle_timeout_ms")
        if (not idle_ms or self.dialect is not Dialect.GA or turn.get("type") != "server_vad"
                or ladder.conversation is None):
            return
        played_ms = sum(o.audio_ms(0) for o in ladder.output)
        self._idle_start = self.buffer.end + self.buffer.position(played_ms)
        self._idle_deadline = self._idle_start + self.buffer.position(idle_ms)

    def _speech_started(self, start: int) -> None:
        turn = self.session.turn_detection or {}
        self._idle_deadline = None
        self._speech_item = self._new_id("item")
        start = max(self.buffer.start, start)
        self.buffer.trim_to(start)
        self._emit("input_audio_buffer.speech_started", audio_start_ms=self.buffer.ms(start),
                   item_id=self._speech_item)
        if turn.get("interrupt_response", True) and self.phase is Phase.RESPONDING:
            self._cancel(self._default_response, "turn_detected")

    def _speech_stopped(self, end: int) -> None:
        item_id = self._speech_item or self._new_id("item")
        self._speech_item = None
        self._emit("input_audio_buffer.speech_stopped", audio_end_ms=self.buffer.ms(end), item_id=item_id)
        self._commit(item_id, upto=end)
        turn = self.session.turn_detection or {}
        if turn.get("create_response", True) and self.phase is not Phase.TRANSCRIPTION:
            if self.phase is Phase.IDLE:
                self._start_response({}, trigger="turn")
            else:
                log.info("speech stopped while %s is active (interrupt_response is off): no new response",
                         self._default_response)

    def _on_input_audio_buffer_commit(self, event: dict[str, Any]) -> None:
        if self.buffer.buffered_ms < MIN_COMMIT_MS:
            raise commit_empty(self.buffer.buffered_ms)
        self._speech_item = None
        if self._turns is not None:
            self._turns.reset(self.buffer.end)
        self._commit(self._new_id("item"))

    def _on_input_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        self.buffer.clear()
        if self._turns is not None:
            self._turns.reset(self.buffer.end)
        self._speech_item = None
        self._emit("input_audio_buffer.cleared")

    def _commit(self, item_id: str, upto: int | None = None) -> None:
        fmt = self.buffer.format
        data = self.buffer.commit(upto)
        stored = StoredItem({"id": item_id, "type": "message", "status": "completed", "role": "user",
                             "content": [{"type": "input_audio", "transcript": None}]},
                            audio={0: bytearray(data)}, audio_format=fmt)
        previous = self.conversation.insert(stored)
        self._emit("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        self._announce_item(stored, previous)
        transcribe = self.session.transcription is not None
        self._commands.append(Transcribe(item_id, decode(fmt, data), self.buffer.rate, transcribe))
        self._keep_bounded()

    # --- transcription results -------------------------------------------------------------------

    def transcription_done(self, item_id: str, text: str | None, *, error: str | None = None,
                           emit_events: bool = True) -> None:
        """Report the recognition of ``item_id`` (``text`` None and ``error`` set if it failed)."""
        stored = self.conversation.find(item_id)
        if stored is not None:
            stored.heard_text = text or ""
        transcription = self.session.transcription
        if transcription is None or not emit_events:
            return
        if error is not None or text is None:
            self._emit("conversation.item.input_audio_transcription.failed", item_id=item_id, content_index=0,
                       error={"type": "transcription_error", "code": "audio_unintelligible",
                              "message": error or "The audio could not be transcribed.", "param": None})
            return
        words = text.split(" ")
        for i, word in enumerate(words):
            delta = word if i == 0 else " " + word
            if delta:
                self._emit("conversation.item.input_audio_transcription.delta", item_id=item_id, content_index=0,
                           delta=delta)
        if stored is not None:
            stored.item["content"][0]["transcript"] = text
        seconds = stored.audio_ms() / 1000.0 if stored is not None else 0.0
        if str(transcription.get("model", "")).startswith("whisper"):
            usage: dict[str, Any] = {"type": "duration", "seconds": round(seconds, 3)}
        else:
            audio_tokens = math.ceil(seconds * 10)
            out_tokens = math.ceil(len(text) / 4)
            usage = {"type": "tokens", "input_tokens": audio_tokens, "output_tokens": out_tokens,
                     "total_tokens": audio_tokens + out_tokens,
                     "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens}}
        self._emit("conversation.item.input_audio_transcription.completed", item_id=item_id, content_index=0,
                   transcript=text, usage=usage)

    # --- conversation items ----------------------------------------------------------------------

    def _on_conversation_item_create(self, event: dict[str, Any]) -> None:
        previous_id = event.get("previous_item_id")
        if previous_id is not None and not isinstance(previous_id, str):
            raise invalid_type("previous_item_id", "a string", previous_id)
        stored = normalize_client_item(event.get("item"), self.dialect, self._new_id("item"), self._new_id("call"))
        stored.audio_format = self.session.input_format
        for index in stored.audio:
            if stored.audio_ms(index) > MAX_BUFFER_MS:
                raise invalid_value(f"item.content[{index}].audio", f"The audio is {int(stored.audio_ms(index))}ms "
                                    f"long; an item takes at most {MAX_BUFFER_MS}ms.")
        item = stored.item
        if (self.dialect is Dialect.BETA and item["type"] == "function_call_output"
                and not any(s.item.get("call_id") == item["call_id"] and s.item["type"] == "function_call"
                            for s in self.conversation)):
            raise invalid_value("item.call_id", f"Tool call output for call_id '{item['call_id']}' does not "
                                "match any function_call item in the conversation.")
        previous = self.conversation.insert(stored, previous_id)
        self._announce_item(stored, previous)
        audio = stored.audio.get(0)
        if item["type"] == "message" and item["role"] == "user" and audio:
            part = item["content"][0]
            if part.get("type") == "input_audio" and part.get("transcript") is None:
                samples = decode(stored.audio_format, bytes(audio))
                self._commands.append(Transcribe(stored.id, samples, SAMPLE_RATE[stored.audio_format], False))
        self._keep_bounded()

    def _announce_item(self, stored: StoredItem, previous: str | None) -> None:
        rendered = render_item(stored, self.dialect)
        self._emit("conversation.item.added", previous_item_id=previous, item=rendered)
        self._emit("conversation.item.done", previous_item_id=previous, item=rendered)

    def _item_id_param(self, event: dict[str, Any]) -> str:
        item_id = event.get("item_id")
        if item_id is None:
            raise missing_parameter("item_id")
        if not isinstance(item_id, str):
            raise invalid_type("item_id", "a string", item_id)
        return item_id

    def _on_conversation_item_delete(self, event: dict[str, Any]) -> None:
        item_id = self._item_id_param(event)
        stored = self.conversation.delete(item_id)
        self._emit("conversation.item.deleted", item_id=item_id)
        if stored.response_id is not None and stored.response_id in self._responses:
            self._cancel(stored.response_id, "client_cancelled")

    def _on_conversation_item_retrieve(self, event: dict[str, Any]) -> None:
        stored = self.conversation.get(self._item_id_param(event))
        item = render_item(stored, self.dialect, with_audio=True)
        audio_chars = sum(len(p.get("audio") or "") for p in item.get("content", ()))
        if audio_chars > self._max_event_bytes - 64 * 1024:
            # keep every message under the 1 MiB that older clients accept (reference §1.4)
            log.warning("conversation.item.retrieved for %s: %d chars of audio left out to stay under %d bytes",
                        stored.id, audio_chars, self._max_event_bytes)
            item = render_item(stored, self.dialect)
        self._emit("conversation.item.retrieved", item=item)

    def _on_conversation_item_truncate(self, event: dict[str, Any]) -> None:
        item_id = self._item_id_param(event)
        for key in ("content_index", "audio_end_ms"):
            if event.get(key) is None:
                raise missing_parameter(key)
            if isinstance(event[key], bool) or not isinstance(event[key], int):
                raise invalid_type(key, "an integer", event[key])
        content_index, end_ms = event["content_index"], event["audio_end_ms"]
        stored = self.conversation.get(item_id)
        item = stored.item
        parts = item.get("content") or []
        is_audio = (item["type"] == "message" and item.get("role") == "assistant"
                    and (stored.response_id is not None) and (0 in stored.audio or
                                                              any(p["type"] == "output_audio" for p in parts)))
        if not is_audio:
            raise invalid_value("item_id", "Only model output audio messages can be truncated")
        if content_index != 0:
            raise invalid_value("content_index", f"Invalid 'content_index': {content_index}. The item has one "
                                "audio content part, at index 0.")
        if end_ms < 0:
            raise invalid_value("audio_end_ms", f"Invalid 'audio_end_ms': expected a non-negative integer, but "
                                f"got {end_ms} instead.")
        if stored.response_id in self._responses:
            # the client heard only part of an item still being generated: stop generating it
            self._cancel(stored.response_id, "client_cancelled")
        have_ms = int(stored.audio_ms(0))
        if end_ms > have_ms:
            # the real API refuses, then truncates at the real end anyway (reference §3.5)
            self._error(invalid_value("audio_end_ms", f"Audio content of {have_ms}ms is already shorter "
                                      f"than {end_ms}ms"))
            end_ms = have_ms
        data = stored.audio.get(0)
        if data is not None:
            del data[end_ms * bytes_per_ms(stored.audio_format):]
        elif 0 in stored.released:  # its audio is gone (AUDIO_KEPT_MS); its duration is what it was heard for
            stored.released[0] = float(end_ms)
        for part in parts:
            if part["type"] == "output_audio":
                part["transcript"] = ""  # no unheard text stays in the context (reference §2)
        self._emit("conversation.item.truncated", item_id=item_id, content_index=0, audio_end_ms=end_ms)

    def _on_output_audio_buffer_clear(self, event: dict[str, Any]) -> None:
        raise ClientEventError("invalid_event", "'output_audio_buffer.clear' is only supported on WebRTC and SIP "
                               "connections; on a WebSocket send response.cancel and truncate the item instead.",
                               "type")

    # --- responses ---------------------------------------------------------------------------------

    def _on_response_create(self, event: dict[str, Any]) -> None:
        params = event.get("response")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise invalid_type("response", "an object", params)
        self._start_response(params, trigger="client")

    def _start_response(self, params: dict[str, Any], *, trigger: str) -> None:
        if self.phase is Phase.TRANSCRIPTION:
            self._next_phase("response.create")  # refused: says why
        settings = settings_from_request(self.session, params)
        oob = settings.conversation == "none"
        if oob:
            running = sum(1 for ladder in self._responses.values() if ladder.conversation is None)
            if running >= MAX_OUT_OF_BAND:
                raise invalid_value("response.conversation", f"{running} out-of-band responses are in progress; "
                                    f"at most {MAX_OUT_OF_BAND} run at once. Wait for a response.done.")
        else:
            self._next_phase("response.create")  # refused now, before any work, if one is running
        context_items = self._context_items(params.get("input"))
        response_id = self._new_id("resp")
        ladder = ResponseLadder(response_id, settings, dialect=self.dialect,
                                conversation=None if oob else self.conversation, emit=self._emit,
                                new_id=self._new_id, input_tokens=input_tokens(context_items),
                                max_delta_ms=self._max_delta_ms)
        self._responses[response_id] = ladder
        if not oob:
            self._set_phase("response.create", response_id, trigger)
            self._idle_deadline = None
        context = build_context(context_items, settings.tools, settings.tool_choice, settings.instructions)
        speed = (self.session.config["audio"].get("output") or {}).get("speed", 1.0)
        self._commands.append(Generate(response_id, context, list(settings.modalities), settings.output_format,
                                       settings.voice, speed))
        log.debug("response %s created (%s)", response_id, trigger)

    def _context_items(self, given: Any) -> list[StoredItem]:
        if given is None:
            return list(self.conversation)
        if not isinstance(given, list):
            raise invalid_type("response.input", "an array", given)
        items = []
        for i, entry in enumerate(given):
            if isinstance(entry, dict) and entry.get("type") == "item_reference":
                items.append(self.conversation.get(entry.get("id"), f"response.input[{i}].id"))
            else:
                try:
                    items.append(normalize_client_item(entry, self.dialect, self._new_id("item"),
                                                       self._new_id("call")))
                except ClientEventError as err:
                    err.param = f"response.input[{i}]" + (err.param or "")[4:]
                    raise
        return items

    def _on_response_cancel(self, event: dict[str, Any]) -> None:
        wanted = event.get("response_id")
        if wanted is not None and not isinstance(wanted, str):
            raise invalid_type("response_id", "a string", wanted)
        target = wanted if wanted is not None else self._default_response
        if target is None or target not in self._responses:
            raise cancel_not_active()
        self._cancel(target, "client_cancelled")

    def _cancel(self, response_id: str, reason: str) -> None:
        ladder = self._responses.pop(response_id)
        if self._default_response == response_id:
            self._set_phase("response.cancel", None, reason)
        ladder.finish("cancelled", reason=reason)
        self._assistant_audio |= ladder.audio_sent
        self._commands.append(StopGeneration(response_id))
        self._keep_bounded()

    # --- the shell drives a response ------------------------------------------------------------

    def begin_message(self, response_id: str) -> str | None:
        """Open the assistant message of ``response_id``; its item id, or None if it is over."""
        ladder = self._responses.get(response_id)
        return ladder.begin_message() if ladder is not None else None

    def add_audio(self, response_id: str, samples: np.ndarray, transcript_delta: str = "") -> bool:
        """Stream int16 samples at the output format's rate (24 kHz pcm16, 8 kHz G.711).

        Returns False once the response is over (cancelled, out of tokens): stop producing.
        """
        ladder = self._responses.get(response_id)
        if ladder is None:
            return False
        ok = ladder.add_audio(encode(ladder.settings.output_format, samples), transcript_delta)
        self._assistant_audio |= ladder.audio_sent
        if not ok:
            self._end(response_id)
        return ok

    def add_text(self, response_id: str, delta: str) -> bool:
        """Stream text of a text-only response; False once the response is over."""
        ladder = self._responses.get(response_id)
        if ladder is None:
            return False
        ok = ladder.add_text(delta)
        if not ok:
            self._end(response_id)
        return ok

    def add_function_call(self, response_id: str, name: str, arguments: str) -> str | None:
        """Add a function call to ``response_id``; its call_id, or None if the response is over."""
        ladder = self._responses.get(response_id)
        return ladder.add_function_call(name, arguments) if ladder is not None else None

    def finish_response(self, response_id: str, *, error: str | None = None) -> None:
        """End ``response_id``: completed, or failed with ``error`` (a message for the client)."""
        ladder = self._responses.get(response_id)
        if ladder is None:
            return
        if error is None:
            ladder.finish("completed")
        else:
            ladder.finish("failed", error={"type": "server_error", "code": "server_error", "message": error})
        self._end(response_id)

    def _end(self, response_id: str) -> None:
        ladder = self._responses.pop(response_id, None)
        if ladder is not None:
            self._assistant_audio |= ladder.audio_sent
            self._arm_idle_timeout(ladder)
        if self._default_response == response_id:
            self._set_phase("response.done", None)
        self._keep_bounded()

    # --- emitting ---------------------------------------------------------------------------------

    def _emit(self, etype: str, **fields: Any) -> None:
        if self.dialect is Dialect.BETA:
            if etype in NOT_IN_BETA:
                return
            etype = GA_TO_BETA.get(etype, etype)
        self._events.append({"type": etype, "event_id": self._new_id("event"), **fields})

    def _error(self, err: ClientEventError) -> None:
        log.info("client event refused: %s (%s)", err.message, err.code)
        self._emit("error", error=err.payload(self._client_event_id))


#: The dispatch table: client event type -> handler, called as ``handler(conversation, event)``.
_HANDLERS: dict[str, Callable[[ServerConversation, dict[str, Any]], None]] = {
    "session.update": ServerConversation._on_session_update,
    "input_audio_buffer.append": ServerConversation._on_input_audio_buffer_append,
    "input_audio_buffer.commit": ServerConversation._on_input_audio_buffer_commit,
    "input_audio_buffer.clear": ServerConversation._on_input_audio_buffer_clear,
    "conversation.item.create": ServerConversation._on_conversation_item_create,
    "conversation.item.truncate": ServerConversation._on_conversation_item_truncate,
    "conversation.item.delete": ServerConversation._on_conversation_item_delete,
    "conversation.item.retrieve": ServerConversation._on_conversation_item_retrieve,
    "response.create": ServerConversation._on_response_create,
    "response.cancel": ServerConversation._on_response_cancel,
    "output_audio_buffer.clear": ServerConversation._on_output_audio_buffer_clear,
    "transcription_session.update": ServerConversation._on_transcription_session_update,  # beta only
}

