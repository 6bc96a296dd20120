"""LiveServerSession: the sans-I/O core of the local server's Live side (one websocket).

Theory of operation
-------------------
Client text goes in (:meth:`receive_text`); server events come out in order
(:meth:`events_to_send`) with the jobs the shell must do (:meth:`jobs`: recognise an
utterance, stop speaking, speak a delegation's result, continue a backend response). The
core never awaits and reads no clock: the session's timeline is the media time of the
user audio received (milliseconds since the session started), so what it does is the same
on every run.

Phases (one table, :data:`TRANSITIONS`): ``AWAITING_START`` until a valid
``session.start`` (every other command is refused with ``session_not_started``),
``ACTIVE``, then ``CLOSED`` after ``session.close`` (``session.closed`` with the usage) or a
lost connection. The model's speech has its own two states (``SILENT`` / ``SPEAKING``), apart
from the user's: the local model is full duplex. It goes on speaking while the user talks
and *yields* once the user has kept talking for :data:`YIELD_MS` (a backchannel shorter than
that does not stop it); what it had said by then is what enters its history.

Every client event is checked against the shapes of the SDK's ``ClientEvent`` union (the
fields each event may carry, their types, the required ones); a bad event gets an
``error`` event (``invalid_request_error`` with a code, the ``param`` and the client's
``event_id``) and the connection stays usable. User audio is decoded with the format chosen
at startup (:mod:`processors.realtime.wire`), segmented by the server VAD
(:class:`processors.realtime.server.turns.TurnDetector`) into utterances for recognition.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from processors.realtime.wire import AudioCodec, live_format_rate

from ..catalogue import parse_catalogue
from .events import CLIENT_EVENTS, ContinueBackend, Heard, SpeakResult, StopSpeaking, _Bad

__all__ = ["Heard", "LiveServerSession", "ServerPhase", "SpeakResult", "StopSpeaking", "ContinueBackend",
           "TRANSITIONS", "YIELD_MS", "parse_catalogue"]

log = logging.getLogger("voxpipe.realtime_server.live")

#: The user has kept talking this long over the model's speech: the model stops.
YIELD_MS = 400
#: A ``session.usage.updated`` every this much session time.
USAGE_EVERY_MS = 10_000
_SILENCE_MS = 500  # server VAD: silence that ends an utterance
_PAUSE_MS = 100  # a pause this long ends a run of talking (the yield timer starts again)
_MAX_DELTA_MS = 100  # output audio leaves in deltas of at most this
_SESSION_S = 3600  # a local session "expires" after an hour (expires_at)
_MAX_UTTERANCE_S = 30  # a longer utterance is cut and recognised in one piece
_SESSION_KEYS = {"model", "audio", "client", "delegation", "input", "instructions", "safety_identifier", "store",
                 "triggers"}
_MAX_CONTEXT_CHARS = 4000  # 500 tokens, generously
#: Server events the SDK defines without an ``event_id``.
_NO_EVENT_ID = frozenset({"session.output_audio.delta"})
_VOICES = frozenset("alloy ash ballad beacon bossa cedar cinder coral delta echo gleam marin meridian quartz "
                    "ripple sage shida shimmer stone tempo verse vesper willow".split())


class ServerPhase(enum.Enum):
    """Where one Live connection of the local server stands."""

    AWAITING_START = "awaiting_start"
    ACTIVE = "active"
    CLOSED = "closed"


TRANSITIONS: dict[tuple[ServerPhase, str], ServerPhase] = {
    (ServerPhase.AWAITING_START, "session.start"): ServerPhase.ACTIVE,
    (ServerPhase.ACTIVE, "session.close"): ServerPhase.CLOSED,
    (ServerPhase.AWAITING_START, "session.close"): ServerPhase.CLOSED,
    (ServerPhase.AWAITING_START, "connection_lost"): ServerPhase.CLOSED,
    (ServerPhase.ACTIVE, "connection_lost"): ServerPhase.CLOSED,
}


class LiveServerSession:
    """One Live session of the local server: protocol state, timeline, VAD, speaking state."""

    def __init__(self, *, new_id: Callable[[str], str] | None = None, now: Callable[[], float] = time.time) -> None:
        self.phase = ServerPhase.AWAITING_START
        self._counter = 0
        self._new_id = new_id or self._next_id
        self._now = now
        self._events: list[dict[str, Any]] = []
        self._jobs: list[Any] = []
        self.session: dict[str, Any] = {}
        self.session_id = ""
        self.rate = 24000
        self.format = "pcm16"
        self.delegation_type = "client"
        self.client_tools: list[dict[str, Any]] = []
        self.instructions = ""
        self.history: list[tuple[str, str]] = []  # (role, text), what the model knows
        self.muted = False
        self.timeline = 0  # samples of user audio received
        self.errors = 0
        self._codec: AudioCodec | None = None
        self._turns: Any = None
        self._utterance: list[np.ndarray] = []
        self._utterance_n = 0
        self._utterance_start = 0
        self._in_speech = False
        self._talk: Any = None
        self._talking_since: int | None = None  # timeline samples: onset of the current run of talking
        self._usage_at = USAGE_EVERY_MS
        # the model's own speech
        self.speaking: int | None = None  # speech id while speaking
        self._speeches = 0
        self._spoken: dict[int, list[str]] = {}
        self._yielded: set[int] = set()
        self._out_ms = 0.0  # session time the model's speech reaches
        # delegations: id -> (target, the brain's call, backend state)
        self.delegations: dict[str, dict[str, Any]] = {}
        self._outputs: dict[str, str] = {}  # responses: call id -> output, until response.create

    def _next_id(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}_{self._counter:06d}"

    def _go(self, trigger: str) -> None:
        new = TRANSITIONS.get((self.phase, trigger))
        if new is None:
            raise _Bad("invalid_request", f"{trigger} is not allowed in a session that is {self.phase.value}")
        log.debug("live session %s: %s -> %s (%s)", self.session_id or "-", self.phase.value, new.value, trigger)
        self.phase = new

    # --- drains ---------------------------------------------------------------------------

    def events_to_send(self) -> list[dict[str, Any]]:
        """Server events to write, in order."""
        out, self._events = self._events, []
        return out

    def jobs(self) -> list[Any]:
        """Work for the shell (:class:`Heard`, :class:`StopSpeaking`, :class:`SpeakResult`, :class:`ContinueBackend`)."""
        out, self._jobs = self._jobs, []
        return out

    @property
    def timeline_ms(self) -> int:
        """Session time: milliseconds of user audio received."""
        return 1000 * self.timeline // self.rate

    def emit(self, event: dict[str, Any], client_event_id: str | None = None) -> None:
        """Queue a server event (an ``event_id`` is added, except to audio deltas: they have none)."""
        kind = event.pop("type")
        event = {"type": kind, **event} if kind in _NO_EVENT_ID else {"type": kind, "event_id": self._new_id("event"),
                                                                       **event}
        if client_event_id is not None:
            event["client_event_id"] = client_event_id
        self._events.append(event)

    # --- client input ---------------------------------------------------------------------

    def receive_text(self, text: str | bytes) -> None:
        """One client message; a bad one is answered with an ``error`` event."""
        client_id = None
        try:
            if isinstance(text, bytes):
                raise _Bad("invalid_json", "Send events as text frames of JSON, not binary frames.")
            try:
                event = json.loads(text)
            except (ValueError, RecursionError):
                raise _Bad("invalid_json", "The message is not valid JSON; send one JSON object per message.") from None
            if not isinstance(event, dict):
                raise _Bad("invalid_json", "The message must be a JSON object with a `type`.")
            if isinstance(event.get("event_id"), str):
                client_id = event["event_id"]
            self._dispatch(event, client_id)
        except _Bad as bad:
            self.error(bad.code, bad.message, bad.param, client_id)

    def error(self, code: str, message: str, param: str | None = None, client_event_id: str | None = None,
              kind: str = "invalid_request_error") -> None:
        """Emit an ``error`` event in the SDK's shape."""
        self.errors += 1
        error: dict[str, Any] = {"type": kind, "code": code, "message": message}
        if param is not None:
            error["param"] = param
        if client_event_id is not None:
            error["client_event_id"] = client_event_id
        self.emit({"type": "error", "error": error}, client_event_id)

    def _dispatch(self, event: dict[str, Any], cid: str | None) -> None:
        kind = event.get("type")
        if not isinstance(kind, str):
            raise _Bad("missing_required_parameter", "Every event needs a string `type`.", "type")
        if kind not in CLIENT_EVENTS:
            raise _Bad("invalid_event_type", f"Unknown event type {kind!r}; the Live client events are: "
                       + ", ".join(CLIENT_EVENTS), "type")
        shape = CLIENT_EVENTS[kind]
        if shape is None:
            raise _Bad("unsupported_event", f"{kind} is not supported by the local server (no audio fixtures and "
                       "no Decisions delegation); the OpenAI API serves it.", "type")
        if "event_id" in event and not isinstance(event["event_id"], str):
            raise _Bad("invalid_type", "`event_id` must be a string.", "event_id")
        for key in event:
            if key not in shape and key not in ("type", "event_id"):
                raise _Bad("unknown_parameter", f"Unknown parameter {key!r} in {kind}.", key)
        for key, (types, required) in shape.items():
            if key not in event:
                if required:
                    raise _Bad("missing_required_parameter", f"{kind} needs {key!r}.", key)
                continue
            if not isinstance(event[key], types):
                raise _Bad("invalid_type", f"{kind}.{key} has the wrong type ({type(event[key]).__name__}).", key)
        if kind == "session.start":
            self._start(event["session"], cid)
            return
        if self.phase is ServerPhase.AWAITING_START:
            raise _Bad("session_not_started", f"Send session.start and wait for session.started before {kind}.")
        if self.phase is ServerPhase.CLOSED:
            raise _Bad("session_closed", f"The session is closed; {kind} was ignored.")
        _ON[kind](self, event, cid)

    # --- session.start / update ------------------------------------------------------------

    def _start(self, config: dict[str, Any], cid: str | None) -> None:
        if self.phase is not ServerPhase.AWAITING_START:
            raise _Bad("session_already_started", "session.start was already accepted on this connection.")
        for key in config:
            if key not in _SESSION_KEYS:
                raise _Bad("unknown_parameter", f"Unknown parameter 'session.{key}'.", f"session.{key}")
        model = config.get("model")
        if not isinstance(model, str) or not model:
            raise _Bad("missing_required_parameter", "session.model is required (e.g. gpt-live-1).", "session.model")
        audio = config.get("audio") or {}
        if not isinstance(audio, dict) or set(audio) - {"format", "output"}:
            raise _Bad("unknown_parameter", "session.audio takes `format` and `output`.", "session.audio")
        fmt = audio.get("format") or {"type": "audio/pcm", "rate": 24000}
        try:
            self.format, self.rate = live_format_rate(fmt)
        except ValueError as exc:
            raise _Bad("invalid_value", str(exc), "session.audio.format") from None
        voice = (audio.get("output") or {}).get("voice", "marin") if isinstance(audio.get("output"), dict) else "marin"
        if isinstance(voice, str) and voice not in _VOICES:
            raise _Bad("invalid_value", f"Unknown voice {voice!r}; use one of {', '.join(sorted(_VOICES))}.",
                       "session.audio.output.voice")
        delegation = config.get("delegation") or {"type": "client"}
        self._set_delegation(delegation, start=True)
        instructions = config.get("instructions")
        if instructions is not None and not isinstance(instructions, str):
            raise _Bad("invalid_type", "session.instructions must be a string.", "session.instructions")
        items = config.get("input") or []
        if not isinstance(items, list) or len(items) > 128:
            raise _Bad("invalid_value", "session.input is a list of at most 128 messages.", "session.input")
        history = []
        for i, item in enumerate(items):
            try:
                role, content = item["role"], item["content"]
                text = content[0]["text"]
                if role not in ("developer", "user", "assistant") or len(content) != 1 or not isinstance(text, str):
                    raise TypeError
            except (KeyError, IndexError, TypeError):
                raise _Bad("invalid_value", "Each session.input message has a role (developer, user, assistant) "
                           "and exactly one text part.", f"session.input[{i}]") from None
            history.append((role, text))
        self._go("session.start")
        self.instructions = instructions or ""
        self.history = history
        self.session_id = self._new_id("sess")
        self._codec = AudioCodec(self.format)
        from processors.realtime.server.turns import TurnDetector

        self._turns = TurnDetector({"type": "server_vad", "silence_duration_ms": _SILENCE_MS}, self.rate)
        # a second, quick VAD times how long the user has been talking without a pause (barge-in)
        self._talk = TurnDetector({"type": "server_vad", "silence_duration_ms": _PAUSE_MS, "prefix_padding_ms": 0},
                                  self.rate)
        self.session = {"id": self.session_id, "model": model, "status": "active",
                        "expires_at": int(self._now()) + _SESSION_S,
                        "audio": {"format": {"type": fmt["type"], "rate": self.rate}, "output": {"voice": voice}},
                        "delegation": self._delegation, "instructions": self.instructions}
        if items:
            self.session["input"] = items
        for key in ("store", "safety_identifier"):
            if key in config:
                self.session[key] = config[key]
        self.emit({"type": "session.started", "session": self.session}, cid)

    def _set_delegation(self, delegation: Any, *, start: bool) -> None:
        if not isinstance(delegation, dict) or delegation.get("type") not in ("client", "responses", "decisions"):
            raise _Bad("invalid_value", "session.delegation.type is client, responses or decisions.",
                       "session.delegation.type")
        kind = delegation["type"]
        if kind == "decisions":
            raise _Bad("unsupported_value", "Decisions delegation is not supported by the local server; use client "
                       "or responses.", "session.delegation.type")
        if not start and kind != self.delegation_type:
            raise _Bad("invalid_value", f"The delegation type cannot change (it is {self.delegation_type}).",
                       "session.delegation.type")
        allowed = {"type", "acknowledgement_delay_ms"} | ({"responses"} if kind == "responses" else set())
        for key in delegation:
            if key not in allowed:
                raise _Bad("unknown_parameter", f"Unknown parameter 'session.delegation.{key}'.",
                           f"session.delegation.{key}")
        if kind == "responses":
            responses = delegation.get("responses")
            if start and (not isinstance(responses, dict) or not isinstance(responses.get("model"), str)):
                raise _Bad("missing_required_parameter", "A responses delegation needs responses.model.",
                           "session.delegation.responses.model")
            tools = (responses or {}).get("tools")
            if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
                raise _Bad("invalid_type", "responses.tools is a list of tool objects.",
                           "session.delegation.responses.tools")
            if start:
                self._delegation = json.loads(json.dumps(delegation))
            else:
                merged = dict(self._delegation.get("responses", {}))
                merged.update(responses or {})
                self._delegation = {**self._delegation, **{k: v for k, v in delegation.items() if k != "responses"},
                                    "responses": merged}
        else:
            self._delegation = {**(getattr(self, "_delegation", {}) if not start else {}), **delegation}
        self.delegation_type = kind

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The tools the local model may delegate to: the client's catalogue, or the backend's functions."""
        if self.delegation_type == "responses":
            return [t for t in self._delegation.get("responses", {}).get("tools") or [] if t.get("type") == "function"]
        return self.client_tools

    def _on_update(self, event: dict[str, Any], cid: str | None) -> None:
        config = event["session"]
        for key in config:
            if key not in ("delegation", "triggers"):
                raise _Bad("unknown_parameter" if key not in _SESSION_KEYS else "immutable_parameter",
                           f"session.{key} cannot be updated; only delegation and triggers can.", f"session.{key}")
        if "delegation" in config:
            self._set_delegation(config["delegation"], start=False)
            self.session["delegation"] = self._delegation
        self.emit({"type": "session.updated", "session": self.session}, cid)

    # --- audio -----------------------------------------------------------------------------

    def _on_append(self, event: dict[str, Any], cid: str | None) -> None:
        assert self._codec is not None
        try:
            samples = self._codec.decode(event["audio"])
        except ValueError as exc:
            raise _Bad("invalid_value", f"session.input_audio.append: {exc}", "audio") from None
        if samples.size == 0:
            return
        if self.muted:
            samples = np.zeros_like(samples)  # a muted input is silence to the model
        self.timeline += samples.shape[0]
        self._hear(samples)
        if self.timeline_ms >= self._usage_at:
            self._usage_at += USAGE_EVERY_MS
            self.emit({"type": "session.usage.updated", "usage": self.usage()})

    def usage(self) -> dict[str, Any]:
        """Cumulative billable duration (whole seconds of session time)."""
        return {"seconds": float(self.timeline_ms // 1000)}

    def _hear(self, samples: np.ndarray) -> None:
        events = self._turns.process(samples)
        self._utterance.append(samples)
        self._utterance_n += samples.shape[0]
        for kind, pos in events:
            if kind == "start" and not self._in_speech:
                self._in_speech = True
                # keep from the padded start: drop what came before it
                self._trim_to(pos)
            elif kind == "stop" and self._in_speech:
                self._in_speech = False
                self._utterance_done(pos)
        for kind, pos in self._talk.process(samples):
            self._talking_since = pos if kind == "start" else None
        if self._talking_since is not None and self.speaking is not None:
            if 1000 * (self.timeline - self._talking_since) // self.rate >= YIELD_MS:
                self._yield()
        if self._in_speech:
            if self._utterance_n >= self.rate * _MAX_UTTERANCE_S:
                self._utterance_done(self.timeline)
        elif self._utterance_n > self.rate:  # no one speaks: keep only the last second
            self._trim_to(self.timeline - self.rate // 2)

    def _trim_to(self, pos: int) -> None:
        start = self.timeline - self._utterance_n  # timeline position of the buffer's first sample
        drop = pos - start
        if drop <= 0:
            return
        buf = np.concatenate(self._utterance) if len(self._utterance) > 1 else self._utterance[0]
        buf = buf[drop:]
        self._utterance, self._utterance_n = [buf], buf.shape[0]

    def _utterance_done(self, end: int) -> None:
        start = self.timeline - self._utterance_n
        buf = np.concatenate(self._utterance) if len(self._utterance) > 1 else self._utterance[0]
        cut = max(0, min(buf.shape[0], end - start))
        samples, rest = buf[:cut], buf[cut:]
        self._utterance, self._utterance_n = [rest], rest.shape[0]
        if samples.shape[0]:
            self._jobs.append(Heard(samples, self.rate, 1000 * start // self.rate, 1000 * end // self.rate))

    def _on_mute(self, event: dict[str, Any], cid: str | None) -> None:
        self.muted = event["type"].endswith(".mute")
        self.emit({"type": "session.input_audio.muted" if self.muted else "session.input_audio.unmuted"}, cid)

    # --- what the model hears and is told ---------------------------------------------------

    def heard(self, text: str, start_ms: int, end_ms: int) -> None:
        """The recogniser's words for a :class:`Heard` utterance: the input transcript."""
        if self.phase is not ServerPhase.ACTIVE or not text:
            return
        self.history.append(("user", text))
        self.emit({"type": "session.input_transcript.delta", "delta": text, "start_ms": start_ms,
                   "end_ms": max(start_ms, end_ms)})

    def _on_context(self, event: dict[str, Any], cid: str | None) -> None:
        kind, content, did = event["type"], event["content"], event["delegation_id"]
        if len(content) > _MAX_CONTEXT_CHARS:
            raise _Bad("string_above_max_length", f"{kind}.content is limited to 500 tokens.", "content")
        if did is not None:
            if self.delegation_type == "responses":
                raise _Bad("invalid_value", "delegation_id must be null with Responses delegation.", "delegation_id")
            if did not in self.delegations:
                raise _Bad("invalid_value", f"Unknown delegation {did!r}: use the id of a session.delegation.created.",
                           "delegation_id")
        at = self.timeline_ms
        appended = kind.replace(".append", ".appended")
        if kind == "session.instructions.append":
            tools = parse_catalogue(content)
            known = {t["name"] for t in self.client_tools}
            self.client_tools.extend(t for t in tools if t["name"] not in known)
            self.instructions += ("\n" if self.instructions else "") + content
        self.history.append(("developer", content))
        self.emit({"type": appended, "start_ms": at, "end_ms": at}, cid)
        if kind == "session.commentary.append" and did is not None:
            record = self.delegations[did]
            if not record.get("answered"):
                record["answered"] = True
                self._jobs.append(SpeakResult(did, content))

    # --- delegations ------------------------------------------------------------------------

    def delegate(self, call: Any) -> str:
        """The local model hands ``call`` (the brain's Call) to the session's delegation; returns its id."""
        did = self._new_id("dlg")
        target = self.delegation_type
        delegation: dict[str, Any] = {"id": did, "target": target, "type": "delegation"}
        record: dict[str, Any] = {"target": target, "call": call}
        if target == "responses":
            rid = self._new_id("resp")
            delegation["response_id"] = rid
            record.update(response_id=rid, call_id=self._new_id("call"), seq=0)
        self.delegations[did] = record
        self.emit({"type": "session.delegation.created", "delegation": delegation, "offset_ms": self.timeline_ms})
        return did

    def backend_event(self, did: str, event: dict[str, Any]) -> None:
        """Emit one nested Responses streaming event of delegation ``did`` (``response.event``)."""
        record = self.delegations[did]
        event = {**event, "sequence_number": record["seq"]}
        record["seq"] += 1
        self.emit({"type": "response.event", "event": event, "delegation_id": did})

    def _on_item(self, event: dict[str, Any], cid: str | None) -> None:
        if self.delegation_type != "responses":
            raise _Bad("invalid_request", "response.item.create needs Responses delegation (session.delegation."
                       "type: responses).", "type")
        item = event["item"]
        if item.get("type") != "function_call_output":
            raise _Bad("unsupported_value", "The local backend takes function_call_output items only.", "item.type")
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str) or not isinstance(output, str):
            raise _Bad("missing_required_parameter", "function_call_output needs a string call_id and output.",
                       "item.call_id" if not isinstance(call_id, str) else "item.output")
        if not any(r.get("call_id") == call_id for r in self.delegations.values()):
            raise _Bad("invalid_value", f"No function call {call_id!r} is waiting for output.", "item.call_id")
        self._outputs[call_id] = output

    def _on_response_create(self, event: dict[str, Any], cid: str | None) -> None:
        if self.delegation_type != "responses":
            raise _Bad("invalid_request", "response.create needs Responses delegation.", "type")
        waiting = [(did, r) for did, r in self.delegations.items()
                   if r.get("call_id") in self._outputs and not r.get("answered")]
        if not waiting:
            raise _Bad("invalid_request", "No delegated response is waiting for tool output; send "
                       "response.item.create with a function_call_output first.")
        for did, record in waiting:
            record["answered"] = True
            self._jobs.append(ContinueBackend(did, {record["call_id"]: self._outputs.pop(record["call_id"])}))

    # --- the model's speech -----------------------------------------------------------------

    def begin_speech(self) -> int:
        """The model starts speaking; returns the speech id (SILENT -> SPEAKING)."""
        self._speeches += 1
        self.speaking = self._speeches
        self._spoken[self.speaking] = []
        self._out_ms = max(self._out_ms, float(self.timeline_ms))
        return self.speaking

    def is_speaking(self, speech_id: int) -> bool:
        """False once speech ``speech_id`` ended or yielded to the user."""
        return self.speaking == speech_id and self.phase is ServerPhase.ACTIVE

    def speak_text(self, speech_id: int, text: str, duration_ms: float) -> None:
        """The transcript of the next clause, which lasts ``duration_ms``."""
        if not self.is_speaking(speech_id):
            return
        start = max(self._out_ms, float(self.timeline_ms))
        self._out_ms = start + duration_ms
        if not self._spoken[speech_id] and speech_id > 1 and not text[:1].isspace():
            text = " " + text  # fragments are concatenated: keep the sentences apart
        self._spoken[speech_id].append(text)
        self.emit({"type": "session.output_transcript.delta", "delta": text, "start_ms": int(start),
                   "end_ms": int(self._out_ms)})

    def speak_audio(self, speech_id: int, samples: np.ndarray) -> None:
        """Audio of the current clause (int16 at the session rate), in deltas of at most 100 ms."""
        if not self.is_speaking(speech_id) or self._codec is None:
            return
        step = self.rate * _MAX_DELTA_MS // 1000
        for start in range(0, samples.shape[0], step):
            self.emit({"type": "session.output_audio.delta", "delta": self._codec.encode(samples[start:start + step])})

    def end_speech(self, speech_id: int) -> None:
        """Speech ``speech_id`` is done (SPEAKING -> SILENT); it enters the history."""
        said = " ".join(s.strip() for s in self._spoken.pop(speech_id, []) if s.strip())
        if said:
            self.history.append(("assistant", said))
        if self.speaking == speech_id:
            self.speaking = None

    def _yield(self) -> None:
        sid = self.speaking
        if sid is None:
            return
        log.info("live session %s: the user kept talking for %d ms; the model stops", self.session_id, YIELD_MS)
        self._yielded.add(sid)
        self.end_speech(sid)
        self._jobs.append(StopSpeaking(sid))

    # --- the end ----------------------------------------------------------------------------

    def _on_close(self, event: dict[str, Any], cid: str | None) -> None:
        self.finish("close_requested", cid)

    def finish(self, reason: str, cid: str | None = None) -> None:
        """End the session with ``session.closed`` (reason, final snapshot, usage)."""
        if self.phase is not ServerPhase.ACTIVE:
            return
        self._go("session.close")
        self.speaking = None
        self.emit({"type": "session.closed", "reason": reason, "session": self.session, "usage": self.usage()}, cid)

    def connection_lost(self) -> None:
        """The socket is gone."""
        if self.phase is not ServerPhase.CLOSED:
            self._go("connection_lost")


_ON: dict[str, Callable[[LiveServerSession, dict[str, Any], str | None], None]] = {
    "session.update": LiveServerSession._on_update,
    "session.input_audio.append": LiveServerSession._on_append,
    "session.input_audio.mute": LiveServerSession._on_mute,
    "session.input_audio.unmute": LiveServerSession._on_mute,
    "session.instructions.append": LiveServerSession._on_context,
    "session.thinking.append": LiveServerSession._on_context,
    "session.commentary.append": LiveServerSession._on_context,
    "response.item.create": LiveServerSession._on_item,
    "response.create": LiveServerSession._on_response_create,
    "session.close": LiveServerSession._on_close,
}
