"""RealtimeProtocol: the sans-I/O client core of the OpenAI Realtime API (GA and beta dialects).

Theory of operation
-------------------
The core is a plain object, as ``websockets``' protocol or h11's connection: the shell feeds
it what the server said (:meth:`RealtimeProtocol.receive_event`) and what the graph asked
(``append_audio``, ``commit_and_respond``, ``interrupt``, ``tool_result``,
``on_playback_progress``, ...), then drains :meth:`~RealtimeProtocol.events_to_send` (client
events for the socket, in order) and :meth:`~RealtimeProtocol.frames_out` (frames for the
graph, in order). It never awaits, never reads a socket, and reads time only through the
injected ``now`` (for latency metrics); event ids come from the injected ``new_id``.

It is assembled from small parts, each with its own theory of operation:
:mod:`.state` (phases and the one transition table), :mod:`..wire` (the wire facts shared
with the local server: audio codecs and the dialect name map, by which server events are
renamed to GA names on the way in, so one set of handlers serves both), :mod:`.events`,
:mod:`.user_audio` (batched appends, audio kept while offline), :mod:`.assistant_audio`
(audio received versus heard, where to cut on barge-in), :mod:`.tool_calls` (calls
batched by response) and :mod:`.errors` (error classification).

Turns. Every response gets a turn number, from 1. An interruption announces the turn the
next response will carry, so the graph drops what is left of the interrupted one.

Barge-in (reference §4.3). The core announces an
:class:`~pipeline.frames.InterruptionFrame`, sends ``response.cancel`` only when the server
will not cancel by itself (``interrupt_response`` false, turn detection off, a local
interruption, or our ``response.create`` still on its way), and cuts every item the user
has not fully heard (truncate at the played position, or delete).

Reconnection. On :meth:`~RealtimeProtocol.connection_lost` the running response ends
(``ResponseEndFrame`` with status ``failed``), open tool calls are dropped (their ids do not
exist in a new session) and user audio is kept in a bounded buffer; on the next
``session.created`` the session config (with announced tools) is sent again and the kept
audio follows. The conversation itself cannot be restored: a new session starts empty.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.frames import (
    AudioFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    ResponseEndFrame,
    ResponseStartFrame,
    TextFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)

from .assistant_audio import AssistantAudio, Cut
from .errors import BENIGN_ERROR_CODES, RealtimeProtocolError, describe_error
from ..wire import BETA_TO_GA, CODEC, MIN_COMMIT_MS, AudioCodec, wire_samples
from .events import IGNORED_EVENTS, MalformedEvent, field
from .responses import Response
from .session import RealtimeParams, check_tool, session_payload, tools_update
from .state import LOCAL_TRIGGERS, ONLINE, OPEN, TRANSITIONS, Phase
from .tool_calls import Call, ToolCalls
from .user_audio import UserAudio

__all__ = ["RealtimeProtocol", "random_ids"]

log = logging.getLogger("voxpipe.realtime")

#: Typed user messages kept while there is no session (more are dropped, with a warning).
MAX_TEXTS_PENDING = 16


def random_ids(prefix: str = "evt") -> Callable[[], str]:
    """A generator of unique client ids like ``evt_3f9c...`` (24 characters)."""
    return lambda: f"{prefix}_{secrets.token_hex(10)}"


class RealtimeProtocol:
    """The client side of one Realtime API conversation, with no I/O.

    Create one per processor; call :meth:`connection_made` when a socket opens and
    :meth:`connection_lost` when it closes (the same object carries on across reconnects).
    After every call, drain :meth:`events_to_send` to the socket and :meth:`frames_out` to
    the graph. ``stats`` counts what was skipped (unknown, malformed, surprising events).
    With ``g711_frames`` a G.711 model's audio leaves as its codes (``AudioFrame.codec``
    set), not decoded: the processor sets it so that the graph decides where to decode.
    """

    def __init__(
        self,
        params: RealtimeParams | None = None,
        *,
        new_id: Callable[[], str] | None = None,
        now: Callable[[], float] = time.monotonic,
        name: str = "realtime",
        g711_frames: bool = False,
    ) -> None:
        self.params = p = params or RealtimeParams()
        self.name = name
        self._new_id = new_id or random_ids()
        self._now = now
        self.phase = Phase.DISCONNECTED
        self.stats: dict[str, int] = {}
        self.session: dict[str, Any] | None = None  # the server's effective session
        self.rate_limits: list[Any] = []
        self.fatal: ErrorFrame | None = None  # the first fatal error: the shell stops on it
        self._events: list[dict[str, Any]] = []
        self._frames: list[Frame] = []
        self._in_rate = p.input_rate
        self._out_rate = p.output_rate
        #: The model's G.711 audio leaves as codes (``AudioFrame.codec``), never decoded.
        self._out_codec = CODEC[p.output_audio_format] if g711_frames else None
        self._server_vad = p.turn_detection.enabled
        self._server_interrupts = p.turn_detection.interrupt_response
        self._audio_in = UserAudio(AudioCodec(p.input_audio_format), batch_samples=p.append_ms * self._in_rate // 1000,
                                   keep_samples=p.reconnect.buffer_ms * self._in_rate // 1000)
        self._audio_out = AssistantAudio(p.output_audio_format)
        self._tool_calls = ToolCalls()
        self._commit_pending = False
        self._texts_pending: list[str] = []  # typed while there was no session: sent when it comes
        self._epoch = 0  # connection number
        self._session_update_id: str | None = None
        self._configured = False  # the server accepted our session.update
        self._tools: list[dict[str, Any]] = []
        self._current: Response | None = None
        self._want_response = False
        self._response_create_id: str | None = None
        self._cancelled_request = False  # our response.create was cancelled before it started
        self._next_turn = 1
        self._out_pts = 0
        self._user_speaking = False
        self._speech_stopped_at: float | None = None
        self._unknown_seen: set[str] = set()
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "session.created": self._on_session_created,
            "session.updated": self._on_session_updated,
            "error": self._on_error,
            "input_audio_buffer.speech_started": self._on_speech_started,
            "input_audio_buffer.speech_stopped": self._on_speech_stopped,
            "input_audio_buffer.cleared": self._on_buffer_cleared,
            "conversation.item.added": self._on_item_added,
            "conversation.item.truncated": self._on_item_truncated,
            "conversation.item.deleted": self._on_item_deleted,
            "conversation.item.input_audio_transcription.delta": self._on_transcription_delta,
            "conversation.item.input_audio_transcription.completed": self._on_transcription_completed,
            "conversation.item.input_audio_transcription.failed": self._on_transcription_failed,
            "response.created": self._on_response_created,
            "response.done": self._on_response_done,
            "response.output_item.added": self._on_output_item_added,
            "response.output_item.done": self._on_output_item_done,
            "response.content_part.added": self._on_content_part_added,
            "response.output_audio.delta": self._on_audio_delta,
            "response.output_audio.done": self._on_audio_done,
            "response.output_audio_transcript.delta": self._on_text_delta,
            "response.output_text.delta": self._on_text_delta,
            "response.function_call_arguments.done": self._on_arguments_done,
            "rate_limits.updated": self._on_rate_limits,
        }

    # --- drains ---------------------------------------------------------------------------

    @property
    def has_output(self) -> bool:
        """True when :meth:`events_to_send` or :meth:`frames_out` has something."""
        return bool(self._events or self._frames)

    def events_to_send(self) -> list[dict[str, Any]]:
        """Client events to write to the socket, in order (each one JSON object)."""
        out, self._events = self._events, []
        return out

    def frames_out(self) -> list[Frame]:
        """Frames for the graph, in order."""
        out, self._frames = self._frames, []
        return out

    # --- state ----------------------------------------------------------------------------

    def _set_phase(self, trigger: str) -> bool:
        """Apply ``trigger``; False (logged, counted) when the server surprised us."""
        new = TRANSITIONS.get((self.phase, trigger))
        if new is None:
            if trigger in LOCAL_TRIGGERS:
                raise RealtimeProtocolError(f"{self.name}: cannot do {trigger!r} in phase {self.phase.name}")
            self._count("surprises")
            log.warning("%s: unexpected %r in phase %s; skipped", self.name, trigger, self.phase.name)
            return False
        if new is not self.phase:
            log.debug("%s: phase %s -> %s on %s", self.name, self.phase.name, new.name, trigger)
            self.phase = new
        return True

    def _count(self, what: str, n: int = 1) -> None:
        self.stats[what] = self.stats.get(what, 0) + n

    @property
    def online(self) -> bool:
        """True when a session exists and client events can be sent."""
        return self.phase in ONLINE

    @property
    def busy(self) -> str | None:
        """What the conversation still waits for (None when nothing): used for a graceful end."""
        if self.phase in (Phase.DISCONNECTED, Phase.CONNECTING) and (self._audio_in.kept or self._commit_pending):
            return "user audio waits for the connection"
        if self.phase in (Phase.DISCONNECTED, Phase.CONNECTING) and self._texts_pending:
            return "user text waits for the connection"
        if self.phase is Phase.REQUESTED:
            return "a response was requested"
        if self.phase is Phase.RESPONDING and self._current is not None:
            return f"response {self._current.id} is running"
        if self._want_response:
            return "a response is queued"
        if self._user_speaking and self._server_vad:
            return "the user's turn is still open"
        return None

    @property
    def tools(self) -> list[dict[str, Any]]:
        """The tools announced so far (besides ``params.tools``)."""
        return list(self._tools)

    # --- connection -----------------------------------------------------------------------

    def connection_made(self) -> None:
        """A socket is open; the server's ``session.created`` comes next."""
        self._set_phase("connection_made")
        self._epoch += 1
        self._configured = False
        self._session_update_id = None

    def connection_lost(self, reason: str = "") -> None:
        """The socket closed: end what ran in the old session, keep user audio for the next."""
        if self.phase not in OPEN:
            return
        self._set_phase("connection_lost")
        self._events.clear()  # unsent events belong to a session that no longer exists
        self._keep(self._audio_in.take_batch())
        self._audio_in.uncommitted = 0
        r = self._current
        if r is not None:
            log.warning("%s: connection lost during response %s (%s)", self.name, r.id, reason or "no reason")
            self._frames.append(ResponseEndFrame(response_id=r.id, status="failed", turn=r.turn))
        dropped = self._tool_calls.clear()
        if dropped:
            log.warning("%s: tool calls %s dropped with the old session", self.name, ", ".join(dropped))
        self._current = None
        self._want_response = False
        self._cancelled_request = False
        self._user_speaking = False
        self._speech_stopped_at = None
        self._configured = False

    def close(self) -> None:
        """Close for good; later commands raise, later server events are ignored."""
        if self.phase is not Phase.CLOSED:
            self._set_phase("close")

    # --- server -> core -------------------------------------------------------------------

    def receive_message(self, data: str | bytes) -> None:
        """Feed one websocket message (JSON text); invalid JSON is logged and skipped."""
        try:
            event = json.loads(data)
        except (ValueError, TypeError) as exc:
            self._count("malformed")
            log.warning("%s: skipping a server message that is not JSON: %s", self.name, exc)
            return
        self.receive_event(event)

    def receive_event(self, event: Any) -> None:
        """Feed one server event (a decoded JSON object). Never raises for bad input."""
        if self.phase is Phase.CLOSED:
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self._count("malformed")
            log.warning("%s: skipping a server event without a string `type`: %.120r", self.name, event)
            return
        etype = BETA_TO_GA.get(event["type"], event["type"])
        handler = self._handlers.get(etype)
        if handler is None:
            if etype not in IGNORED_EVENTS:
                self._count("unknown")
                if etype not in self._unknown_seen:
                    self._unknown_seen.add(etype)
                    log.warning("%s: skipping unknown server event %r", self.name, etype)
            return
        try:
            handler(event)
        except MalformedEvent as exc:
            self._count("malformed")
            log.warning("%s: skipping malformed %r event: %s", self.name, etype, exc)

    def _on_session_created(self, ev: dict[str, Any]) -> None:
        session = field(ev, "session", dict)
        if not self._set_phase("session.created"):
            return
        self.session = session
        self._session_update_id = self._send({"type": "session.update",
                                              "session": session_payload(self.params, self._tools)})
        kept = self._audio_in.take_kept()
        if kept is not None:
            log.info("%s: sending %d ms of user audio kept while disconnected", self.name,
                     kept.shape[0] * 1000 // self._in_rate)
            self._append_wire(kept)
        if self._commit_pending:
            self._commit_pending = False
            self.commit_and_respond()
        texts, self._texts_pending = self._texts_pending, []
        for text in texts:
            self.send_user_text(text)

    def _on_session_updated(self, ev: dict[str, Any]) -> None:
        session = field(ev, "session", dict)
        self.session = session
        self._configured = True
        # mirror the server's turn detection: it decides who cancels on barge-in (§7.14)
        holder = session.get("audio", {}).get("input", {}) if "audio" in session else session
        if isinstance(holder, dict) and "turn_detection" in holder:
            td = holder["turn_detection"]
            self._server_vad = isinstance(td, dict)
            self._server_interrupts = bool(td.get("interrupt_response", True)) if isinstance(td, dict) else False

    def _on_error(self, ev: dict[str, Any]) -> None:
        err = field(ev, "error", dict)
        code = err.get("code")
        if code in BENIGN_ERROR_CODES:
            self._count("benign_errors")
            log.debug("%s: benign server error %s: %s", self.name, code, err.get("message"))
            return
        refers_to = err.get("event_id")
        if self.phase is Phase.REQUESTED and (
                code == "conversation_already_has_active_response"
                or (refers_to is not None and refers_to == self._response_create_id)):
            self._set_phase("response.refused")
            self._cancelled_request = False
        param = err.get("param") if isinstance(err.get("param"), str) else ""
        session_level = not self._configured and (
            param.startswith("session") or (refers_to is not None and refers_to == self._session_update_id))
        text, fatal = describe_error(err, session_level=session_level)
        self._count("errors")
        self._error(text, code if isinstance(code, str) else None, fatal)

    def _error(self, text: str, code: str | None, fatal: bool) -> None:
        (log.error if fatal else log.warning)("%s: %s", self.name, text)
        frame = ErrorFrame(text, processor=self.name, fatal=fatal, code=code)
        if fatal and self.fatal is None:
            self.fatal = frame
        self._frames.append(frame)

    def _on_speech_started(self, ev: dict[str, Any]) -> None:
        start_ms = field(ev, "audio_start_ms", int)
        self._user_speaking = True
        self._frames.append(UserStartedSpeakingFrame(pts=start_ms * self._in_rate // 1000, sample_rate=self._in_rate))
        self._barge_in(server_cancels=self._server_interrupts)

    def _on_speech_stopped(self, ev: dict[str, Any]) -> None:
        end_ms = field(ev, "audio_end_ms", int)
        self._user_speaking = False
        self._speech_stopped_at = self._now()
        self._frames.append(UserStoppedSpeakingFrame(pts=end_ms * self._in_rate // 1000, sample_rate=self._in_rate))

    def _on_buffer_cleared(self, ev: dict[str, Any]) -> None:
        self._audio_in.uncommitted = 0

    def _on_item_added(self, ev: dict[str, Any]) -> None:
        item = field(ev, "item", dict)
        r = self._current
        if (r is not None and item.get("type") == "message" and item.get("role") == "assistant"
                and isinstance(item.get("id"), str)):
            self._audio_out.track(item["id"], r.id, self._epoch)

    def _on_item_truncated(self, ev: dict[str, Any]) -> None:
        log.debug("%s: item %s truncated at %d ms", self.name, field(ev, "item_id", str), field(ev, "audio_end_ms", int))

    def _on_item_deleted(self, ev: dict[str, Any]) -> None:
        self._audio_out.forget(field(ev, "item_id", str))

    def _on_transcription_delta(self, ev: dict[str, Any]) -> None:
        item_id = field(ev, "item_id", str)
        delta = ev.get("delta")
        if isinstance(delta, str) and delta:
            self._frames.append(TranscriptionFrame(delta, role="user", final=False, item_id=item_id))

    def _on_transcription_completed(self, ev: dict[str, Any]) -> None:
        item_id = field(ev, "item_id", str)
        transcript = field(ev, "transcript", str)
        self._frames.append(TranscriptionFrame(transcript, role="user", final=True, item_id=item_id))

    def _on_transcription_failed(self, ev: dict[str, Any]) -> None:
        item_id = field(ev, "item_id", str)
        err = ev.get("error") if isinstance(ev.get("error"), dict) else {}
        reason = err.get("message") or err.get("code") or "no reason given"
        self._error(f"transcription of user item {item_id} failed: {reason}", err.get("code") or "transcription_failed", False)

    def _on_response_created(self, ev: dict[str, Any]) -> None:
        rid = field(field(ev, "response", dict), "id", str)
        if not self._set_phase("response.created"):
            return
        r = Response(rid, self._next_turn, self._now(), speech_stopped_at=self._speech_stopped_at,
                     interrupted=self._cancelled_request)  # the server created what we cancelled
        self._cancelled_request = False
        self._next_turn += 1
        self._speech_stopped_at = None
        self._current = r
        self._frames.append(ResponseStartFrame(response_id=rid, turn=r.turn))

    def _on_response_done(self, ev: dict[str, Any]) -> None:
        response = field(ev, "response", dict)
        rid = field(response, "id", str)
        r = self._current
        if r is None or r.id != rid:
            # a late done of a response we no longer run (or never saw start): §7.7
            self._count("surprises")
            log.warning("%s: response.done for %s, which is not running (phase %s); skipped",
                        self.name, rid, self.phase.name)
            return
        self._set_phase("response.done")
        status = response.get("status") if isinstance(response.get("status"), str) else "completed"
        usage = response.get("usage") if isinstance(response.get("usage"), dict) else None
        for out in response.get("output") or []:
            if isinstance(out, dict) and out.get("type") == "function_call":
                self._call_from_item(out, r)
        self._current = None
        if status == "failed":
            details = response.get("status_details") if isinstance(response.get("status_details"), dict) else {}
            err = details.get("error") if isinstance(details.get("error"), dict) else {}
            text, fatal = describe_error(err, what=f"response {rid} failed:")
            self._error(text, err.get("code"), fatal)
        self._frames.append(ResponseEndFrame(response_id=rid, status=status, usage=usage, turn=r.turn))
        self._frames.append(r.metrics(self._now(), status, usage, self.name))
        if self._tool_calls.response_done(rid):
            self._want_response = True
        if self._want_response:
            self.request_response()
        self._tool_calls.prune()
        self._audio_out.prune(self._epoch, None)

    def _running(self, response_id: str) -> Response | None:
        r = self._current
        if r is None or r.id != response_id:
            self._count("stale_events")
            return None
        return r

    def _on_output_item_added(self, ev: dict[str, Any]) -> None:
        rid = field(ev, "response_id", str)
        item = field(ev, "item", dict)
        item_id = field(item, "id", str)
        if self._running(rid) is None:
            return
        if item.get("type") == "message":
            self._audio_out.track(item_id, rid, self._epoch)
        elif item.get("type") == "function_call":
            name = item.get("name") if isinstance(item.get("name"), str) else ""
            self._tool_calls.announce(field(item, "call_id", str), rid, name)

    def _on_output_item_done(self, ev: dict[str, Any]) -> None:
        rid = field(ev, "response_id", str)
        item = field(ev, "item", dict)
        r = self._running(rid)
        if r is not None and item.get("type") == "function_call":
            self._call_from_item(item, r)

    def _on_content_part_added(self, ev: dict[str, Any]) -> None:
        field(ev, "item_id", str)

    def _on_audio_delta(self, ev: dict[str, Any]) -> None:
        rid = field(ev, "response_id", str)
        item_id = field(ev, "item_id", str)
        delta = field(ev, "delta", str)
        r = self._current
        item = self._audio_out.get(item_id)
        if r is None or r.id != rid or r.interrupted or (item is not None and item.closed):
            self._count("stale_audio_deltas")
            return
        if item is None:
            item = self._audio_out.track(item_id, rid, self._epoch)
        codec = self._out_codec
        try:
            samples = item.codec.decode(delta) if codec is None else item.codec.decode_wire(delta)
        except ValueError as exc:
            raise MalformedEvent(str(exc)) from None
        n = samples.shape[0]
        if n == 0:
            return
        if r.first_audio_at is None:
            r.first_audio_at = self._now()
        item.received += n
        self._frames.append(AudioFrame(samples, self._out_rate, pts=self._out_pts, item_id=item_id, turn=r.turn,
                                       codec=codec))
        self._out_pts += n

    def _on_audio_done(self, ev: dict[str, Any]) -> None:
        item = self._audio_out.get(field(ev, "item_id", str))
        if item is not None:
            item.codec.reset()

    def _on_text_delta(self, ev: dict[str, Any]) -> None:
        rid = field(ev, "response_id", str)
        item_id = field(ev, "item_id", str)
        delta = field(ev, "delta", str)
        r = self._current
        if r is None or r.id != rid or r.interrupted:
            self._count("stale_text_deltas")
            return
        if delta:
            self._frames.append(TextFrame(delta, role="assistant", item_id=item_id, turn=r.turn))

    def _on_arguments_done(self, ev: dict[str, Any]) -> None:
        rid = field(ev, "response_id", str)
        call_id = field(ev, "call_id", str)
        arguments = field(ev, "arguments", str)
        r = self._running(rid)
        if r is not None:
            name = ev.get("name") if isinstance(ev.get("name"), str) else ""  # GA only (§7.15)
            self._complete_call(r, call_id, name, arguments)

    def _on_rate_limits(self, ev: dict[str, Any]) -> None:
        self.rate_limits = field(ev, "rate_limits", list)

    # --- tools ----------------------------------------------------------------------------

    def _call_from_item(self, item: dict[str, Any], r: Response) -> None:
        call_id, arguments = item.get("call_id"), item.get("arguments")
        if isinstance(call_id, str) and isinstance(arguments, str):
            self._complete_call(r, call_id, item.get("name") if isinstance(item.get("name"), str) else "", arguments)

    def _complete_call(self, r: Response, call_id: str, name: str, arguments: str) -> None:
        frame, output = self._tool_calls.complete(call_id, r.id, name, arguments, turn=r.turn, interrupted=r.interrupted)
        if frame is not None:
            self._frames.append(frame)
        elif output is not None:
            call = self._tool_calls.get(call_id)
            assert call is not None
            self._answer(call, output)

    def _answer(self, call: Call, output: str) -> None:
        self._send({"type": "conversation.item.create",
                    "item": {"type": "function_call_output", "call_id": call.call_id, "output": output}})
        if self._tool_calls.answered(call):
            self.request_response()

    def tool_result(self, call_id: str, output: str, is_error: bool = False) -> None:
        """Give the model the result of tool call ``call_id`` (a JSON string).

        The result goes into the conversation at once; when it answers the last open call of
        its response and that response is done, one ``response.create`` follows.
        """
        self._check_open("tool_result")
        call = self._tool_calls.get(call_id)
        if call is None or call.answered or not self.online:
            self._count("orphan_tool_results")
            log.warning("%s: result for tool call %s dropped: %s", self.name, call_id,
                        "it was answered already" if call is not None and call.answered
                        else "unknown call (from an older session?)")
            return
        if is_error:
            log.info("%s: tool call %s (%s) answered with an error", self.name, call_id, call.name)
        self._answer(call, output)

    def add_tools(self, tools: list[dict[str, Any]]) -> None:
        """Add function tools to the session (a later tool of the same name replaces)."""
        self._check_open("add_tools")
        by_name = {t["name"]: t for t in self._tools}
        for i, t in enumerate(tools):
            try:
                check_tool(t, f"tool {i}")
            except ValueError as exc:
                log.warning("%s: skipping an announced tool: %s", self.name, exc)
                continue
            by_name[t["name"]] = t
        self._tools = list(by_name.values())
        if self.online:
            self._send({"type": "session.update", "session": tools_update(self.params, self._tools)})

    # --- user audio and turns -------------------------------------------------------------

    def append_audio(self, samples: np.ndarray, codec: str | None = None) -> None:
        """Queue user audio (mono at the input rate); sent in ``append_ms`` batches.

        int16 or float32 PCM, or G.711 codes when ``codec`` ("ulaw", "alaw") says so: codes
        of the session's own format are sent as they are, never decoded.
        """
        self._check_open("append_audio")
        try:
            x = wire_samples(self.params.input_audio_format, samples, codec)
        except ValueError as exc:
            raise ValueError(f"{self.name}: {exc}") from None
        self._append_wire(x)

    def _append_wire(self, x: np.ndarray) -> None:
        if not self.online:
            self._keep(x)
            return
        for payload in self._audio_in.add(x):
            self._send({"type": "input_audio_buffer.append", "audio": payload})

    def flush_audio(self) -> None:
        """Send the partly filled batch now (before a commit, or at the end)."""
        if self.online:
            payload = self._audio_in.flush()
            if payload is not None:
                self._send({"type": "input_audio_buffer.append", "audio": payload})

    def commit_and_respond(self) -> bool:
        """Commit the user's audio and ask for a response (turn detection off).

        Returns False when less than ``MIN_COMMIT_MS`` (100 ms) were appended since the last commit (the server
        would refuse it). While disconnected the commit waits for the next session.
        """
        self._check_open("commit_and_respond")
        if not self.online:
            self._commit_pending = True
            return True
        self.flush_audio()
        uncommitted = self._audio_in.uncommitted
        if uncommitted * 1000 < MIN_COMMIT_MS * self._in_rate:
            self._count("short_commits_skipped")
            log.info("%s: not committing %d ms of user audio (the server needs %d ms)",
                     self.name, uncommitted * 1000 // self._in_rate, MIN_COMMIT_MS)
            return False
        self._send({"type": "input_audio_buffer.commit"})
        self._audio_in.uncommitted = 0
        self.request_response()
        return True

    def request_response(self) -> None:
        """Ask for a response now, or right after the running one's ``response.done``."""
        self._check_open("request_response")
        if self.phase is Phase.IDLE:
            self._want_response = False
            self._response_create_id = self._send({"type": "response.create"})
            self._set_phase("response.create")
        elif self.online:
            self._want_response = True
        else:
            log.info("%s: response not requested: no session", self.name)

    def send_user_text(self, text: str) -> None:
        """Add a typed user message to the conversation and ask for a response."""
        self._check_open("send_user_text")
        if not self.online:  # before the first session, or between reconnects: kept, sent when it comes
            if len(self._texts_pending) >= MAX_TEXTS_PENDING:
                log.warning("%s: user text dropped: %d messages already wait for the connection: %.60r",
                            self.name, MAX_TEXTS_PENDING, text)
                return
            log.info("%s: user text kept until the session starts: %.60r", self.name, text)
            self._texts_pending.append(text)
            return
        self._send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
        self.request_response()

    def user_started_speaking(self) -> bool:
        """A local VAD heard speech; with turn detection off this barges in. True if it did."""
        self._check_open("user_started_speaking")
        if self._server_vad:
            return False  # the server's own speech_started decides
        self._user_speaking = True
        return self._barge_in(server_cancels=False)

    def user_stopped_speaking(self) -> bool:
        """A local VAD heard the speech end; with turn detection off: commit and respond."""
        self._check_open("user_stopped_speaking")
        if self._server_vad:
            return False
        self._user_speaking = False
        self._speech_stopped_at = self._now()
        return self.commit_and_respond()

    def end_of_input(self) -> None:
        """The user audio ended for good: close an open turn so that its answer still comes."""
        if self.phase is Phase.CLOSED:
            return
        if self._user_speaking and self._server_vad and self.online:
            td = self.params.turn_detection
            if td.type == "server_vad":  # trailing silence lets the server's VAD end the turn
                pad_ms = (td.silence_duration_ms if td.silence_duration_ms is not None else 500) + 300
                self.append_audio(np.zeros(pad_ms * self._in_rate // 1000, dtype=np.int16))
            else:  # semantic VAD has no fixed silence: commit by hand (§7.6)
                self._user_speaking = False
                self._speech_stopped_at = self._now()
                self.commit_and_respond()
        elif self._user_speaking and not self._server_vad:
            self.user_stopped_speaking()
        self.flush_audio()

    # --- barge-in -------------------------------------------------------------------------

    def interrupt(self, *, announce: bool = True) -> bool:
        """Barge in from the client side: stop playback, cancel, cut. True if anything was playing.

        ``announce=False`` when an InterruptionFrame is already travelling (it came from
        upstream); call :meth:`sync_turn` with its turn first.
        """
        self._check_open("interrupt")
        return self._barge_in(server_cancels=False, announce=announce)

    def sync_turn(self, turn: int) -> None:
        """Make the next response's turn at least ``turn`` (an interruption came from elsewhere)."""
        self._next_turn = max(self._next_turn, turn)

    def _barge_in(self, *, server_cancels: bool, announce: bool = True) -> bool:
        active = self.phase in (Phase.REQUESTED, Phase.RESPONDING)
        unheard = self._audio_out.unheard(self._current.id if self._current is not None else None)
        if not active and not unheard:
            return False
        if announce:
            self._frames.append(InterruptionFrame(turn=self._next_turn))
        # the server cancels by itself only a running response, on its own VAD's speech
        # start, with interrupt_response (§4.3)
        if self.phase is Phase.REQUESTED or (self.phase is Phase.RESPONDING and not server_cancels):
            self._cancelled_request = self.phase is Phase.REQUESTED
            cancel: dict[str, Any] = {"type": "response.cancel"}
            if self._current is not None:
                cancel["response_id"] = self._current.id
            self._send(cancel)
        if self._current is not None:
            self._current.interrupted = True
        self._tool_calls.abandon_open()
        self._want_response = False
        if self.params.audio_out:
            self._send_cuts(self._audio_out.interrupt(unheard, epoch=self._epoch if self.online else None))
        return True

    @property
    def truncations_pending(self) -> bool:
        """True while an interrupted item waits for playback's final report."""
        return self._audio_out.pending

    def settle_truncations(self) -> int:
        """Cut interrupted items at their last reported position; return how many.

        For items playback never reported as finished (it may never have received them):
        the shell calls it a short while after an interruption.
        """
        cuts = self._audio_out.settle()
        self._send_cuts(cuts)
        return len(cuts)

    def truncate(self, played_ms: int, item_id: str | None = None) -> None:
        """Truncate assistant item ``item_id`` (default: the latest) to ``played_ms`` of audio.

        The value is clamped to the audio received; when it is 0 the item is deleted instead
        (the server refuses to truncate to nothing, reference §7.1).
        """
        self._check_open("truncate")
        item = self._audio_out.get(item_id) if item_id is not None else self._audio_out.latest()
        if item is None:
            raise RealtimeProtocolError(f"{self.name}: truncate(): no assistant item {item_id!r} "
                                        f"(known: {', '.join(self._audio_out.ids()) or 'none'})")
        self._send_cuts([self._audio_out.cut(item, played_ms)])

    def on_playback_progress(self, item_id: str, played_ms: int, done: bool = False) -> None:
        """Playback heard ``played_ms`` of item ``item_id`` (``done``: it finished or dropped it)."""
        self._send_cuts(self._audio_out.progress(item_id, played_ms, done))

    def played_ms(self, item_id: str) -> tuple[int, int]:
        """(played, received) milliseconds of an assistant item, as the core counts them."""
        item = self._audio_out.get(item_id)
        if item is None:
            raise KeyError(item_id)
        return item.played_ms, self._audio_out.received_ms(item)

    def _send_cuts(self, cuts: list[Cut]) -> None:
        for cut in cuts:
            if cut.epoch != self._epoch:
                continue  # the item belongs to a session that is gone
            if cut.end_ms == 0:
                self._send({"type": "conversation.item.delete", "item_id": cut.item_id})
            else:
                self._send({"type": "conversation.item.truncate", "item_id": cut.item_id, "content_index": 0,
                            "audio_end_ms": cut.end_ms})

    # --- helpers --------------------------------------------------------------------------

    def _send(self, event: dict[str, Any]) -> str:
        event_id = self._new_id()
        if not self.online:  # no session: the event would land in the next one, out of context
            self._count("dropped_offline_events")
            log.debug("%s: %s dropped: no session", self.name, event["type"])
            return event_id
        self._events.append({"type": event["type"], "event_id": event_id,
                             **{k: v for k, v in event.items() if k != "type"}})
        return event_id

    def _check_open(self, command: str) -> None:
        if self.phase is Phase.CLOSED:
            raise RealtimeProtocolError(f"{self.name}: {command}() after close()")

    def _keep(self, x: np.ndarray | None) -> None:
        if x is not None:
            dropped = self._audio_in.dropped
            self._audio_in.keep(x)
            if self._audio_in.dropped > dropped:
                self._count("offline_dropped_samples", self._audio_in.dropped - dropped)
