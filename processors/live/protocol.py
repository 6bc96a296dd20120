"""LiveProtocol: the sans-I/O core of ``live.openai`` (events in, events and frames out).

Theory of operation
-------------------
The shell hands the core every server message (:meth:`receive_message`) and every frame
that matters (user audio, playback progress, tool results, tool lists); the core answers
with client events to send (:meth:`events_to_send`) and frames to push
(:meth:`frames_out`), in order. It never awaits and never reads a clock of its own (``now``
is injected), so it is tested with dicts and arrays. The wire facts are in
``docs/live-protocol.md``; the phases in :mod:`.state`.

* **Audio, both ways, all the time.** User audio is cut into ``append_ms`` pieces and sent
  as ``session.input_audio.append`` while the session is active; before ``session.started``
  and while disconnected it is kept (at most ``reconnect.buffer_ms``, oldest dropped) and
  replayed once the session runs again. Output audio deltas become :class:`AudioFrame` s of
  an assistant *segment* (the Live API has no response ids or audio-done event: a segment
  is the model's speech between two user transcripts), tagged ``live_N`` so that playback
  reports how much of it was heard.
* **Barge-in.** The Live model stops talking by itself when the user keeps talking. What
  the client must do is stop *playing* what it already received, and tell the model what
  the user actually heard. The user is heard speaking (a local VAD's speaking frame, or an
  input transcript); once the model has sent no audio for ``YIELD_GAP_S`` while the user
  speaks and playback still holds unplayed audio, the core raises the turn (an
  :class:`InterruptionFrame`: every queue drops the rest) and appends, as silent context,
  the text the user heard, cut at playback progress (``played_ms``), not at bytes received.
* **Client delegation.** ``session.delegation.created`` carries an id, no task text: the task
  is what the user said since the model last spoke or delegated (the input transcript). It becomes a
  :class:`ToolCallFrame` (call id = delegation id) for the tool router: the one ``handler``
  tool, or the tool the words ask for (:class:`processors.brain.tools.ToolMatcher`). The
  result goes back as ``session.commentary.append`` with the delegation id (speakable
  context); an error, a timeout (``timeout_s``, see :meth:`task_timed_out`) or no fitting
  tool is reported the same way, so the model can tell the user and never waits forever.
* **Responses delegation.** Function calls of the backend arrive nested in
  ``response.event`` (``response.output_item.done`` with a ``function_call`` item); each becomes
  a :class:`ToolCallFrame`, and its result goes back as ``response.item.create``
  (``function_call_output``) followed by ``response.create``.
* **Restore.** After a reconnect the session is started again with the conversation so far
  as text history (``input``: what the user said, what they heard), the tool catalogue is
  appended again, then user audio is replayed: what the lost session heard since its last
  input transcript (it was never answered; bytes written just before a drop may not have
  arrived at all) and what came while disconnected, at most ``reconnect.buffer_ms``.
* **Bad input.** An unknown event type or a malformed event is logged, counted in
  :attr:`stats` and skipped; an ``error`` event becomes an :class:`ErrorFrame` (fatal before
  ``session.started``: the session did not start).
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.frames import (
    AudioFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    MetricsFrame,
    ResponseEndFrame,
    ResponseStartFrame,
    TextFrame,
    ToolCallFrame,
    TranscriptionFrame,
)
from processors.realtime.wire import AudioCodec

from .catalogue import CATALOGUE_PREFIX, catalogue_messages, result_commentary
from .segments import Segment, Task
from .params import LiveParams, message_item, session_config
from .state import LOCAL_TRIGGERS, Phase, TRANSITIONS

__all__ = ["CATALOGUE_PREFIX", "YIELD_GAP_S", "LiveProtocol", "LiveProtocolError", "catalogue_messages",
           "result_commentary"]

log = logging.getLogger("voxpipe.live")

#: The model has gone quiet this long while the user speaks: it yielded, playback stops.
YIELD_GAP_S = 0.2
#: Unplayed assistant audio below this is not worth an interruption.
_MIN_UNPLAYED_MS = 40
_HISTORY = 128  # messages kept for a restore (the API's limit on `input`)


class LiveProtocolError(RuntimeError):
    """Local misuse of the core: a command that is not legal in the current phase."""


class LiveProtocol:
    """The Live client's protocol logic; feed it events and commands, drain events and frames.

    ``new_id`` makes client event ids (tests pass a counter); ``now`` is the clock the
    yield gap and latency figures use (seconds).
    """

    def __init__(self, params: LiveParams, *, name: str = "live", new_id: Callable[[str], str] | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.params = params
        self.name = name
        self.rate = params.rate
        self.phase = Phase.DISCONNECTED
        self.turn = 1  # the turn of the next segment (each segment has its own, as each Realtime response)
        self.fatal: ErrorFrame | None = None
        self.session_id: str | None = None
        self.sessions_started = 0
        self.stats: dict[str, int] = {"unknown_events": 0, "malformed_events": 0, "unexpected_events": 0,
                                      "errors": 0, "dropped_audio_ms": 0, "replayed_audio_ms": 0,
                                      "delegations": 0, "late_results": 0, "timeouts": 0, "barge_ins": 0}
        self.usage: dict[str, Any] = {}
        self._now = now
        self._counter = 0
        self._new_id = new_id or self._next_id
        self._events: list[dict[str, Any]] = []
        self._frames: list[Frame] = []
        self._in_codec = AudioCodec(params.audio_format)
        self._out_codec = AudioCodec(params.audio_format)
        self._piece = max(1, self.rate * params.append_ms // 1000)
        self._pending_audio: list[np.ndarray] = []
        self._pending_n = 0
        self._kept: deque[np.ndarray] = deque()  # audio waiting for an active session
        self._kept_n = 0
        self._keep_max = self.rate * params.reconnect.buffer_ms // 1000
        self._sent_since: deque[np.ndarray] = deque()  # sent since the last input transcript
        self._sent_since_n = 0
        self._tools: list[dict[str, Any]] = []
        self._catalogue_sent = False
        self._responses_tools_sent = False
        self._segment: Segment | None = None
        self._segments = 0
        self._by_id: dict[str, Segment] = {}
        self._user_words: list[str] = []  # input transcript since the last delegation
        self._user_turn: list[str] = []  # input transcript of the current user turn (history)
        self._history: deque[dict[str, Any]] = deque(maxlen=_HISTORY)
        self._tasks: dict[str, Task] = {}
        self._user_speaking_since: float | None = None
        self._evidence_until: float | None = None
        self._user_stopped_at: float | None = None
        self._transcript_at: float | None = None

    # --- ids, phases ------------------------------------------------------------------------

    def _next_id(self, kind: str) -> str:
        self._counter += 1
        return f"{kind}_{self._counter}"

    def _go(self, trigger: str) -> bool:
        new = TRANSITIONS.get((self.phase, trigger))
        if new is None:
            if trigger in LOCAL_TRIGGERS:
                raise LiveProtocolError(f"{self.name}: {trigger!r} is not legal in phase {self.phase.value}")
            self.stats["unexpected_events"] += 1
            log.warning("%s: server sent %s in phase %s; skipped", self.name, trigger, self.phase.value)
            return False
        if new is not self.phase:
            log.debug("%s: %s -> %s (%s)", self.name, self.phase.value, new.value, trigger)
            self.phase = new
        return True

    def _send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self._new_id("evt"))
        self._events.append(event)

    # --- drains -----------------------------------------------------------------------------

    @property
    def has_output(self) -> bool:
        """True when events or frames are waiting to be drained."""
        return bool(self._events or self._frames)

    def events_to_send(self) -> list[dict[str, Any]]:
        """The client events to write, in order (the list is handed over)."""
        out, self._events = self._events, []
        return out

    def frames_out(self) -> list[Frame]:
        """The frames to push downstream, in order (the list is handed over)."""
        out, self._frames = self._frames, []
        return out

    @property
    def pending_tasks(self) -> dict[str, str]:
        """Delegated tasks and function calls waiting for the router: call id -> tool name."""
        return {cid: t.name for cid, t in self._tasks.items()}

    # --- the connection ---------------------------------------------------------------------

    def connection_made(self) -> None:
        """A socket is open: start the session (with the history so far after a reconnect)."""
        self._go("connection_made")
        history = list(self._history) if self.sessions_started else []
        if self._user_turn:
            history.append(message_item("user", " ".join(self._user_turn)))
        config = session_config(self.params, history)
        if self.params.delegation.type == "responses" and self._tools:
            responses = config["delegation"]["responses"]
            responses["tools"] = list(responses.get("tools", [])) + [self._responses_tool(t) for t in self._tools]
            self._responses_tools_sent = True
        self._catalogue_sent = False
        self._send({"type": "session.start", "session": config})

    def connection_lost(self, reason: str = "") -> None:
        """The socket is gone: end the segment being spoken; keep user audio until the restore."""
        if self.phase in (Phase.CLOSED, Phase.DISCONNECTED):
            return
        self._go("connection_lost")
        self._end_segment()
        # the lost session heard this audio but never answered it: the next one hears it again,
        # ahead of what was kept meanwhile (the oldest drop first past buffer_ms)
        self._kept.extendleft(reversed(self._sent_since))
        self._kept_n += self._sent_since_n
        self._sent_since, self._sent_since_n = deque(), 0
        while self._kept_n > self._keep_max and self._kept:
            old = self._kept.popleft()
            self._kept_n -= old.shape[0]
            self.stats["dropped_audio_ms"] += 1000 * old.shape[0] // self.rate
        self._responses_tools_sent = False
        log.info("%s: connection lost (%s)", self.name, reason or "no reason")

    def close(self) -> None:
        """Closed for good: nothing more is sent or pushed."""
        if self.phase is not Phase.CLOSED:
            self._go("close")
        self._events.clear()

    def end_of_input(self) -> None:
        """The user's audio ended: send what is pending, then ``session.close``."""
        self._flush_audio(final=True)
        if self.phase in (Phase.ACTIVE, Phase.STARTING):
            self._go("session.close")
            self._send({"type": "session.close"})

    # --- commands from the graph --------------------------------------------------------------

    def append_audio(self, samples: np.ndarray) -> None:
        """User audio (int16 mono at the session rate): sent in ``append_ms`` pieces, or kept."""
        self._pending_audio.append(samples)
        self._pending_n += samples.shape[0]
        if self._pending_n >= self._piece:
            self._flush_audio()

    def _flush_audio(self, final: bool = False) -> None:
        if not self._pending_n:
            return
        chunk = self._pending_audio[0] if len(self._pending_audio) == 1 else np.concatenate(self._pending_audio)
        self._pending_audio, self._pending_n = [], 0
        if self.phase is Phase.ACTIVE and not self._kept:
            self._send({"type": "session.input_audio.append", "audio": self._in_codec.encode(chunk)})
            self._unheard(chunk)
            return
        if self.phase in (Phase.CLOSING, Phase.CLOSED):
            return
        self._kept.append(chunk)
        self._kept_n += chunk.shape[0]
        while self._kept_n > self._keep_max and self._kept:
            old = self._kept.popleft()
            self._kept_n -= old.shape[0]
            self.stats["dropped_audio_ms"] += 1000 * old.shape[0] // self.rate

    def _unheard(self, chunk: np.ndarray) -> None:
        """Keep audio sent since the last input transcript: a new session must hear it again."""
        self._sent_since.append(chunk)
        self._sent_since_n += chunk.shape[0]
        while self._sent_since_n > self._keep_max and self._sent_since:
            self._sent_since_n -= self._sent_since.popleft().shape[0]

    def _replay(self) -> None:
        while self._kept:
            chunk = self._kept.popleft()
            self._kept_n -= chunk.shape[0]
            self.stats["replayed_audio_ms"] += 1000 * chunk.shape[0] // self.rate
            for start in range(0, chunk.shape[0], self._piece):
                self._send({"type": "session.input_audio.append",
                            "audio": self._in_codec.encode(chunk[start:start + self._piece])})
            self._unheard(chunk)

    def user_started_speaking(self) -> None:
        """A local VAD heard the user start (barge-in evidence; optional)."""
        self._user_speaking_since = self._now()
        self._evidence_until = None

    def user_stopped_speaking(self) -> None:
        """A local VAD heard the user stop: the next reply's latency counts from here."""
        self._user_speaking_since = self._evidence_until = None
        self._user_stopped_at = self._now()

    def on_playback_progress(self, item_id: str, played_ms: int, done: bool = False) -> None:
        """Playback played ``played_ms`` of segment ``item_id`` (what the user heard)."""
        seg = self._by_id.get(item_id)
        if seg is not None and played_ms > seg.played_ms:
            seg.played_ms = played_ms
        if done:
            self._by_id.pop(item_id, None)

    def add_tools(self, tools: list[dict[str, Any]]) -> None:
        """Tools a router announced: described to the model (client) or given to the backend (responses)."""
        known = {t.get("name") for t in self._tools}
        self._tools.extend(t for t in tools if isinstance(t, dict) and t.get("name") not in known)
        if self.phase is Phase.ACTIVE:
            self._announce_tools()

    def _announce_tools(self) -> None:
        if not self._tools:
            return
        if self.params.delegation.type == "client":
            if self.params.describe_tools and not self._catalogue_sent:
                self._catalogue_sent = True
                for text in catalogue_messages(self._tools):
                    self._send({"type": "session.instructions.append", "content": text, "delegation_id": None})
        elif not self._responses_tools_sent:
            self._responses_tools_sent = True
            tools = list(self.params.delegation.tools) + [self._responses_tool(t) for t in self._tools]
            self._send({"type": "session.update",
                        "session": {"delegation": {"type": "responses", "responses": {"tools": tools}}}})

    @staticmethod
    def _responses_tool(tool: dict[str, Any]) -> dict[str, Any]:
        out = {"type": "function", "name": tool["name"]}
        for key in ("description", "parameters"):
            if tool.get(key):
                out[key] = tool[key]
        return out

    def tool_result(self, call_id: str, output: str, is_error: bool = False) -> None:
        """The router's answer to a delegated task or backend function call."""
        task = self._tasks.pop(call_id, None)
        if task is None:
            self.stats["late_results"] += 1
            log.info("%s: result for %s came after it was answered or timed out; dropped", self.name, call_id)
            return
        if self.phase is not Phase.ACTIVE:
            log.warning("%s: result for %s arrived while the session is %s; dropped", self.name, call_id,
                        self.phase.value)
            return
        if task.kind == "client":
            self._send({"type": "session.commentary.append", "delegation_id": call_id,
                        "content": result_commentary(task.name, task.arguments, output, is_error)})
        else:
            self._send({"type": "response.item.create",
                        "item": {"type": "function_call_output", "call_id": call_id, "output": output}})
            self._send({"type": "response.create"})

    def task_timed_out(self, call_id: str) -> None:
        """``timeout_s`` passed for ``call_id``: report it to the model as failed (no-op if answered)."""
        if call_id not in self._tasks:
            return
        self.stats["timeouts"] += 1
        name = self._tasks[call_id].name
        limit = self.params.delegation.timeout_s
        log.warning("%s: task %s (%s) got no answer within %.1fs; told the model it failed", self.name,
                    call_id, name, limit)
        self.tool_result(call_id, json.dumps({"error": f"{name} did not finish within {limit:g} seconds"}),
                         is_error=True)

    def tick(self) -> None:
        """Check the barge-in condition now (the shell calls it while the user speaks)."""
        seg = self._segment
        if seg is None or self._user_speaking_since is None:
            return
        now = self._now()
        if self._evidence_until is not None and now > self._evidence_until:
            self._user_speaking_since = self._evidence_until = None  # the transcript's evidence expired
            return
        if now - max(seg.last_audio_at, self._user_speaking_since) >= YIELD_GAP_S:
            self._barge_in()

    @property
    def watching(self) -> bool:
        """True while a barge-in may be coming (the shell should :meth:`tick`)."""
        return self._segment is not None and self._user_speaking_since is not None

    # --- server events ----------------------------------------------------------------------

    def receive_message(self, message: str | bytes) -> None:
        """One websocket message from the server; bad ones are counted and skipped."""
        if self.phase is Phase.CLOSED:
            return
        try:
            event = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            self._malformed("not JSON", str(message)[:80])
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self._malformed("no event type", str(message)[:80])
            return
        self.receive_event(event)

    def _malformed(self, why: str, what: Any) -> None:
        self.stats["malformed_events"] += 1
        log.warning("%s: malformed server event (%s): %r; skipped", self.name, why, what)

    def receive_event(self, event: dict[str, Any]) -> None:
        """One parsed server event."""
        kind = event["type"]
        handler = _HANDLERS.get(kind)
        if handler is None:
            if kind in _IGNORED:
                return
            self.stats["unknown_events"] += 1
            log.warning("%s: unknown server event %r; skipped", self.name, kind)
            return
        for key, typ in _REQUIRED.get(kind, ()):
            if not isinstance(event.get(key), typ):
                self._malformed(f"{kind} without a valid {key!r}", {k: event[k] for k in list(event)[:4]})
                return
        handler(self, event)

    def _on_started(self, event: dict[str, Any]) -> None:
        if not self._go("session.started"):
            return
        self.sessions_started += 1
        self.session_id = event["session"].get("id")
        self._announce_tools()
        self._replay()
        self._flush_audio()

    def _on_closed(self, event: dict[str, Any]) -> None:
        if self.phase is Phase.CLOSED:
            return
        self._go("session.closed")
        self._end_segment()
        usage = event.get("usage") if isinstance(event.get("usage"), dict) else {}
        self._frames.append(MetricsFrame("live.usage", {**usage, "final": True, "reason": event.get("reason")},
                                         processor=self.name))

    def _on_error(self, event: dict[str, Any]) -> None:
        err = event["error"]
        self.stats["errors"] += 1
        code = err.get("code") if isinstance(err.get("code"), str) else None
        message = f"{err.get('message') or 'error'}" + (f" (param {err['param']})" if err.get("param") else "")
        fatal = self.phase is Phase.STARTING
        frame = ErrorFrame(f"{self.name}: Live API error{' at startup' if fatal else ''}: {message}",
                           processor=self.name, fatal=fatal, code=code)
        log.warning("%s", frame.message)
        if fatal:
            self.fatal = frame
        self._frames.append(frame)

    def _on_audio(self, event: dict[str, Any]) -> None:
        if self.phase is not Phase.ACTIVE:
            return
        try:
            samples = self._out_codec.decode(event["delta"])
        except ValueError as exc:
            self._malformed(str(exc), event["delta"][:40])
            return
        seg = self._segment or self._new_segment()
        now = self._now()
        seg.last_audio_at = now
        if seg.first_audio_at is None:
            seg.first_audio_at = now
            self._turn_metrics(seg, now)
        if samples.size:
            self._frames.append(AudioFrame(samples, self.rate, pts=seg.received, item_id=seg.id, turn=seg.turn))
            seg.received += samples.shape[0]

    def _on_output_text(self, event: dict[str, Any]) -> None:
        if self.phase is not Phase.ACTIVE:
            return
        seg = self._segment or self._new_segment()
        seg.pieces.append((1000.0 * seg.received / self.rate, event["delta"]))
        self._frames.append(TextFrame(event["delta"], role="assistant", item_id=seg.id, turn=seg.turn))

    def _on_input_text(self, event: dict[str, Any]) -> None:
        text = event["delta"]
        now = self._transcript_at = self._now()
        seg = self._segment
        if seg is not None:
            if self._unplayed_ms(seg) < _MIN_UNPLAYED_MS:
                self._end_segment()
            elif now - seg.last_audio_at >= YIELD_GAP_S:
                self._barge_in()  # the model went quiet and the user is talking: it yielded
            elif self._user_speaking_since is None:
                # evidence of speech without a local VAD: it holds for a little while
                self._user_speaking_since = now
                self._evidence_until = now + 2 * YIELD_GAP_S
        self._sent_since, self._sent_since_n = deque(), 0  # answered: a restore need not repeat it
        if text.strip():
            self._user_words.append(text.strip())
            self._user_turn.append(text.strip())
        self._frames.append(TranscriptionFrame(text, role="user", final=True, turn=self.turn))

    def _on_delegation(self, event: dict[str, Any]) -> None:
        d = event["delegation"]
        if not isinstance(d.get("id"), str) or not d["id"]:
            self._malformed("delegation without an id", d)
            return
        self.stats["delegations"] += 1
        if d.get("target") != "client":
            log.info("%s: delegation %s to %s", self.name, d.get("id"), d.get("target"))
            return
        task_text = " ".join(self._user_words).strip()
        self._user_words = []
        delegation = self.params.delegation
        if delegation.type != "client":
            return
        did = d["id"]
        if delegation.handler:
            self._call(did, "client", delegation.handler, {"task": task_text})
            return
        from processors.brain.tools import AskBack, ToolMatcher

        found = ToolMatcher(self._tools).match(task_text) if self._tools and task_text else None
        if isinstance(found, AskBack):
            self._send({"type": "session.commentary.append", "delegation_id": did,
                        "content": f"To do that, ask the user: {found.question}"})
        elif found is None:
            self._send({"type": "session.commentary.append", "delegation_id": did,
                        "content": f"No tool of this application can do the task {task_text!r}."})
        else:
            self._call(did, "client", found.name, dict(found.arguments))

    def _on_response_event(self, event: dict[str, Any]) -> None:
        inner = event["event"]
        kind = inner.get("type")
        if kind == "response.output_item.done":
            item = inner.get("item") if isinstance(inner.get("item"), dict) else {}
            if item.get("type") == "function_call" and isinstance(item.get("call_id"), str):
                try:
                    arguments = json.loads(item.get("arguments") or "{}")
                except ValueError:
                    arguments = None
                if not isinstance(arguments, dict):
                    self._send({"type": "response.item.create",
                                "item": {"type": "function_call_output", "call_id": item["call_id"],
                                         "output": json.dumps({"error": "arguments are not a JSON object"})}})
                    self._send({"type": "response.create"})
                    return
                self._call(item["call_id"], "responses", str(item.get("name")), arguments,
                           response_id=(inner.get("response") or {}).get("id") or event.get("delegation_id"))
        elif kind in ("response.completed", "response.done"):
            usage = (inner.get("response") or {}).get("usage")
            if isinstance(usage, dict):
                self._frames.append(MetricsFrame("live.responses_usage", dict(usage), processor=self.name))

    def _on_usage(self, event: dict[str, Any]) -> None:
        self.usage = dict(event["usage"])
        values = dict(self.usage)
        if isinstance(event.get("context_window"), dict):
            values["context_usage_ratio"] = event["context_window"].get("usage_ratio")
        self._frames.append(MetricsFrame("live.usage", values, processor=self.name))

    # --- helpers ----------------------------------------------------------------------------

    def _call(self, call_id: str, kind: str, name: str, arguments: dict[str, Any], response_id: str | None = None) -> None:
        self._tasks[call_id] = Task(kind, name, arguments)
        self._frames.append(ToolCallFrame(call_id, name, arguments, response_id, turn=self.turn))

    def _new_segment(self) -> Segment:
        self._segments += 1
        seg = Segment(f"live_{self._segments}", self.turn)
        self.turn += 1
        self._segment = seg
        self._by_id[seg.id] = seg
        self._user_words = []  # the model answered what came before: a later task is about what follows
        self._out_codec.reset()
        self._frames.append(ResponseStartFrame(seg.id, turn=seg.turn))
        return seg

    def _end_segment(self, status: str = "completed") -> None:
        seg, self._segment = self._segment, None
        if seg is None:
            return
        if self._user_turn:
            self._history.append(message_item("user", " ".join(self._user_turn)))
            self._user_turn = []
        heard = seg.text() if status == "completed" else seg.heard(self.rate)
        if heard.strip():
            self._history.append(message_item("assistant", heard.strip()))
        self._frames.append(ResponseEndFrame(seg.id, status=status, turn=seg.turn))

    def _unplayed_ms(self, seg: Segment) -> float:
        return 1000.0 * seg.received / self.rate - seg.played_ms

    def _barge_in(self) -> None:
        seg = self._segment
        if seg is None:
            return
        if self._unplayed_ms(seg) < _MIN_UNPLAYED_MS:
            self._end_segment()
            return
        self.stats["barge_ins"] += 1
        if self._evidence_until is not None:  # a transcript's evidence is used up by this barge-in
            self._user_speaking_since = self._evidence_until = None
        self._frames.append(InterruptionFrame(turn=self.turn))  # the next segment's turn: older frames go
        heard, full = seg.heard(self.rate).strip(), seg.text().strip()
        self._end_segment("incomplete")
        if self.phase is Phase.ACTIVE and full and heard != full:
            said = f"only up to: {heard!r}" if heard else "none of it"
            self._send({"type": "session.thinking.append", "delegation_id": None,
                        "content": f"The user interrupted your last reply and heard {said}."})

    def _turn_metrics(self, seg: Segment, now: float) -> None:
        values: dict[str, Any] = {"response_id": seg.id, "status": "completed", "turn": seg.turn}
        if self._user_stopped_at is not None:
            values["ttfb_ms"] = round(1000 * (now - self._user_stopped_at), 1)
            self._user_stopped_at = None
        if self._transcript_at is not None:
            values["first_audio_ms"] = round(1000 * (now - self._transcript_at), 1)
            self._transcript_at = None
        self._frames.append(MetricsFrame("realtime.turn", values, processor=self.name))


_HANDLERS: dict[str, Callable[[LiveProtocol, dict[str, Any]], None]] = {
    "session.started": LiveProtocol._on_started,
    "session.closed": LiveProtocol._on_closed,
    "error": LiveProtocol._on_error,
    "session.output_audio.delta": LiveProtocol._on_audio,
    "session.output_transcript.delta": LiveProtocol._on_output_text,
    "session.input_transcript.delta": LiveProtocol._on_input_text,
    "session.delegation.created": LiveProtocol._on_delegation,
    "response.event": LiveProtocol._on_response_event,
    "session.usage.updated": LiveProtocol._on_usage,
}
#: Server events the client reads no further (acknowledgements, notices, sideband-only events).
_IGNORED = frozenset({
    "session.updated", "session.input_audio.muted", "session.input_audio.unmuted", "session.instructions.appended",
    "session.thinking.appended", "session.commentary.appended", "info", "session.output_audio.fixture.playing",
    "session.output_audio.fixture.played", "decision.event", "decision.item.created", "decision.item.deleted",
    "session.input_audio.append", "transport.dtmf.received", "transport.dtmf.send", "transport.dtmf.sent",
    "transport.ringing", "transport.answered", "transport.failed",
})
#: Fields an event must have, with their types, before its handler reads it.
_REQUIRED: dict[str, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
    "session.started": (("session", dict),),
    "error": (("error", dict),),
    "session.output_audio.delta": (("delta", str),),
    "session.output_transcript.delta": (("delta", str),),
    "session.input_transcript.delta": (("delta", str),),
    "session.delegation.created": (("delegation", dict),),
    "response.event": (("event", dict),),
    "session.usage.updated": (("usage", dict),),
}
