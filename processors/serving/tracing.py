"""OpenTelemetry traces of served sessions (``voxpipe serve --otel``): a trace per session, a span per turn.

Imported only with ``--otel`` (nothing of OpenTelemetry is loaded otherwise). Spans::

    voxpipe.session                      session.id, pipeline, outcome
      voxpipe.turn                       voxpipe.turn, voxpipe.ttfb_ms, tokens
        voxpipe.user_speech              input media start/end, voxpipe.speech_ms, voxpipe.detected_s
        voxpipe.model_response           voxpipe.first_audio_ms, voxpipe.ttfb_ms, status, truncated, tokens
        voxpipe.tool_call                tool name, call id, error
        voxpipe.playback                 voxpipe.played_ms, voxpipe.interrupted

Times come from the session's media clock (``clock.elapsed()``, seconds since the run
started), placed on the wall clock by the epoch of the session's start, so a span's start
and end are where the audio says, not when the event reached Python; the latencies are
attributes too (``voxpipe.*_ms``). :func:`tracer_provider` builds the SDK provider with
the OTLP/HTTP exporter, configured by the standard ``OTEL_*`` variables
(``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_SERVICE_NAME``, ``OTEL_TRACES_EXPORTER=console``...).

What it costs a turn (issue 15: under 1 ms p99 of latency). Two things are kept off the
turn's critical path (speech end -> first audio):

* **Span work waits until after the first audio.** A :class:`SessionTracer` call only notes
  the event (a tuple in a list: about a microsecond); the spans are built, given their
  attributes and ended by a loop callback :data:`FLUSH_AFTER_FIRST_AUDIO_S` after the
  reply's first audio went out, in steps of :data:`FLUSH_STEP_S` so that another session's
  audio arriving meanwhile waits one step at most (or :data:`FLUSH_FALLBACK_S` after the first noted event
  when no audio comes, and at once at the session's end). Their times are the media clock's,
  noted with the event, so building them later changes nothing in the trace.
* **Export happens in another process.** The SDK's BatchSpanProcessor encodes and sends
  from a thread of the worker, which takes the GIL from the event loop for milliseconds at a
  time (a waiting thread gets the GIL back only after the 5 ms switch interval). Here
  :class:`ProcessExport` hands each finished span, as a tuple of plain values, to a child
  process (``python -m processors.serving.tracing``) over a pipe, written without blocking
  right after the flush; the child rebuilds the spans and runs the BatchSpanProcessor and
  the exporter chosen by ``OTEL_TRACES_EXPORTER`` with the same ``OTEL_*`` variables.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

__all__ = ["FLUSH_AFTER_FIRST_AUDIO_S", "FLUSH_FALLBACK_S", "ProcessExport", "SessionTracer", "tracer_provider"]

log = logging.getLogger("voxpipe.serving")

#: Responses kept open per session (a misbehaving model cannot grow this without end).
MAX_OPEN = 16
#: Spans are built this long after a reply's first audio (off the turn's critical path).
FLUSH_AFTER_FIRST_AUDIO_S = 0.05
#: ... or this long after the first event noted, when no audio comes (a text reply, a tool call).
FLUSH_FALLBACK_S = 1.0
#: Longest the loop is held by one step of a timer's flush (steps of one event or more, each ~0.05 ms).
FLUSH_STEP_S = 0.0002
#: Events noted before a flush is forced at once (a session cannot grow the list without end).
MAX_PENDING = 512


def tracer_provider(exporter: Any = None) -> Any:
    """An SDK TracerProvider: ``exporter`` through a SimpleSpanProcessor (tests), else from ``OTEL_*``.

    ``OTEL_TRACES_EXPORTER``: ``otlp`` (default, OTLP over HTTP/protobuf), ``console`` or
    ``none``. ``otlp`` and ``console`` export from a child process (:class:`ProcessExport`).
    """
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=_resource())
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return provider
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if kind == "none":
        return provider
    if kind != "console":
        try:
            import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401  (the child needs it)
        except ImportError:
            from pipeline.errors import VoxpipeError

            raise VoxpipeError("--otel exports OTLP over HTTP: pip install 'voxpipe[serve]' (or set "
                               "OTEL_TRACES_EXPORTER=console)") from None
    provider.add_span_processor(ProcessExport())
    return provider


def _resource() -> Any:
    from opentelemetry.sdk.resources import Resource

    return Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "voxpipe")})


# --- export from a child process ------------------------------------------------------------------

_HEADER = struct.Struct("!I")  # a batch's length, then its pickle (a list of span tuples)


def _span_tuple(span: Any) -> tuple:
    """A finished span as plain values (picklable, cheap): what the child needs to rebuild it."""
    ctx, parent, status, scope = span.context, span.parent, span.status, span.instrumentation_scope
    return (span.name, ctx.trace_id, ctx.span_id, int(ctx.trace_flags),
            None if parent is None else (parent.span_id, parent.is_remote),
            span.start_time, span.end_time, span.kind.value, status.status_code.value, status.description,
            dict(span.attributes or {}), [(e.name, e.timestamp, dict(e.attributes or {})) for e in span.events],
            (scope.name, scope.version) if scope is not None else ("voxpipe.serve", None))


def _rebuild(t: tuple, resource: Any) -> Any:
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    name, trace_id, span_id, flags, parent, start, end, kind, code, description, attributes, events, scope = t
    flags = TraceFlags(flags)
    return ReadableSpan(
        name=name, context=SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags),
        parent=None if parent is None else SpanContext(trace_id, parent[0], is_remote=parent[1], trace_flags=flags),
        resource=resource, attributes=attributes, events=[Event(n, a, timestamp=ts) for n, ts, a in events],
        kind=SpanKind(kind), status=Status(StatusCode(code), description), start_time=start, end_time=end,
        instrumentation_scope=InstrumentationScope(*scope))


class ProcessExport:
    """A span processor that exports from a child process, so no exporter thread takes the worker's GIL.

    :meth:`on_end` turns the span into a tuple of plain values and queues it; the queue is
    written to the child's stdin (one pickle per batch, without blocking: what the pipe
    does not take now waits in a bounded buffer, past ``max_buffer_bytes`` spans are dropped
    and counted in :attr:`dropped`) by a loop callback right after the current one (the
    :class:`SessionTracer` flush), so a whole flush goes in one write. The child
    (``python -m processors.serving.tracing``, started here, with this process's
    environment) rebuilds each span and hands it to a BatchSpanProcessor with the exporter
    ``OTEL_TRACES_EXPORTER`` names, configured by the other ``OTEL_*`` variables as usual.
    :meth:`shutdown` writes what is left, closes the pipe (the child flushes and exits) and
    waits ``stop_timeout_s`` before it kills the child. If the child dies, spans are dropped
    with one warning; serving goes on.
    """

    def __init__(self, *, stop_timeout_s: float = 10.0, max_buffer_bytes: int = 8 << 20) -> None:
        self.stop_timeout_s = stop_timeout_s
        self.max_buffer_bytes = max_buffer_bytes
        self.dropped = 0  # spans lost: the child was gone, or not reading
        self.sent = 0  # spans written to the child
        self._lock = threading.Lock()
        self._spans: list[tuple] = []
        self._out = bytearray()
        self._scheduled = False
        self._stopped = False  # shutdown() was called
        self._broken = False  # the child is gone
        self._warned = False
        self._proc = subprocess.Popen([sys.executable, "-m", "processors.serving.tracing"], stdin=subprocess.PIPE,
                                      env=dict(os.environ), close_fds=True)
        self._fd = self._proc.stdin.fileno()
        os.set_blocking(self._fd, False)

    @property
    def pid(self) -> int:
        """The exporting child's process id."""
        return self._proc.pid

    # --- SpanProcessor ------------------------------------------------------------------------------

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: Any) -> None:
        t = _span_tuple(span)
        with self._lock:
            if self._stopped or self._broken:
                self.dropped += 1
                return
            self._spans.append(t)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            asyncio.get_running_loop().call_soon(self._send)  # after the flush that is ending spans now
        except RuntimeError:  # no event loop in this thread: write now
            self._send()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Write every queued span to the child (blocking up to ``timeout_millis``)."""
        self._send()
        return self._drain(timeout_millis / 1000.0)

    def shutdown(self) -> None:
        """Write what is left, close the pipe and wait for the child (then kill it) within ``stop_timeout_s``."""
        with self._lock:
            if self._stopped:
                return
        self._send()
        self._drain(self.stop_timeout_s)
        with self._lock:
            self._stopped = True
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("the span exporter (pid %d) did not exit within %.0f s: killed", self._proc.pid,
                        self.stop_timeout_s)
            self._proc.kill()
            self._proc.wait()

    # --- the pipe -----------------------------------------------------------------------------------

    def _send(self) -> None:
        with self._lock:
            self._scheduled = False
            spans, self._spans = self._spans, []
            if self._broken:
                self.dropped += len(spans)
                return
            if spans:
                if len(self._out) > self.max_buffer_bytes:
                    self.dropped += len(spans)
                    self._warn("the span exporter is not keeping up: spans dropped")
                else:
                    data = pickle.dumps(spans, protocol=pickle.HIGHEST_PROTOCOL)
                    self._out += _HEADER.pack(len(data)) + data
                    self.sent += len(spans)
            self._write()

    def _write(self) -> None:
        while self._out:
            try:
                n = os.write(self._fd, self._out)
            except BlockingIOError:
                return  # the pipe is full: the rest goes with the next batch (or force_flush)
            except (BrokenPipeError, OSError, ValueError):
                self._out.clear()
                self._broken = True
                self._warn(f"the span exporter (pid {self._proc.pid}) is gone: spans are dropped from now on")
                return
            del self._out[:n]

    def _drain(self, timeout_s: float) -> bool:
        import select

        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                self._write()
                if not self._out:
                    return True
            left = deadline - time.monotonic()
            if left <= 0 or self._broken:
                return False
            select.select([], [self._fd], [], min(left, 0.1))

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("%s", message)


def _child_main() -> int:
    """The exporting child: rebuild the spans from stdin and export them; flush and exit at its end."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker stops us, in order (stdin ends)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format=f"voxpipe span exporter {os.getpid()}: %(message)s")
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        exporter: Any = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    processor, resource = BatchSpanProcessor(exporter), _resource()
    stdin = sys.stdin.buffer
    try:
        while True:
            header = stdin.read(_HEADER.size)
            if len(header) < _HEADER.size:
                break
            body = stdin.read(_HEADER.unpack(header)[0])
            for t in pickle.loads(body):
                processor.on_end(_rebuild(t, resource))
    finally:
        processor.shutdown()  # exports what is queued (within the exporter's timeout)
    return 0


class SessionTracer:
    """The spans of one session; a :class:`~processors.serving.observer.SessionSink`.

    Each sink call only notes the event; the spans are made by :meth:`flush`, which a loop
    timer runs :data:`FLUSH_AFTER_FIRST_AUDIO_S` after a reply's first audio (or
    :data:`FLUSH_FALLBACK_S` after the first event noted), and :meth:`end` at once. Called
    outside an event loop, every call flushes at once.
    """

    def __init__(self, tracer: Any, session_id: str, attributes: dict[str, Any]) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.tracer = tracer
        self.session_id = session_id
        self.epoch_ns = time.time_ns()  # media time 0 on the wall clock (the runner starts right after)
        self.session = tracer.start_span("voxpipe.session", attributes={"session.id": session_id, **attributes})
        self._ctx = trace.set_span_in_context(self.session)
        self.turn: Any = None
        self._turn_ctx: Any = None
        self._turn_n = 0
        self._responses: dict[int, Any] = {}
        self._ended: dict[int, tuple[Any, int]] = {}  # response spans waiting for their metrics frame
        self._tools: dict[str, Any] = {}
        self._speech_end: float | None = None
        self._pending: deque[tuple[Any, tuple]] = deque()  # (implementation, arguments) noted, not yet made spans
        self._timer: Any = None
        self._due = 0.0
        self._closed = False
        self._failed = False

    # --- SessionSink: note the event; the spans come with the next flush ------------------------------

    def user_speech(self, start: float, end: float, decided: float) -> None:
        self._note(self._user_speech, (start, end, decided))

    def response_start(self, turn: int, response_id: str, at: float) -> None:
        self._note(self._response_start, (turn, response_id, at))

    def first_audio(self, item: str, turn: int, at: float) -> None:
        self._note(self._first_audio, (item, turn, at), FLUSH_AFTER_FIRST_AUDIO_S)

    def turn_metrics(self, values: dict[str, Any], at: float) -> None:
        self._note(self._turn_metrics, (dict(values), at), FLUSH_AFTER_FIRST_AUDIO_S)

    def response_end(self, turn: int, status: str, at: float) -> None:
        self._note(self._response_end, (turn, status, at), FLUSH_AFTER_FIRST_AUDIO_S)

    def tool_call(self, name: str, call_id: str, at: float) -> None:
        self._note(self._tool_call, (name, call_id, at))

    def tool_result(self, name: str, call_id: str, is_error: bool, at: float) -> None:
        self._note(self._tool_result, (name, call_id, is_error, at))

    def playback(self, item: str, start: float, end: float, played_ms: int, interrupted: bool) -> None:
        self._note(self._playback, (item, start, end, played_ms, interrupted), FLUSH_AFTER_FIRST_AUDIO_S)

    def barge_in(self, turn: int, at: float) -> None:
        self._note(self._barge_in, (turn, at))

    def end(self, outcome: str, at: float) -> None:
        """Close every open span: the session ended with ``outcome`` (spans noted so far are made now)."""
        self._pending.append((self._end, (outcome, at)))
        self._closed = True
        self.flush()

    def flush(self) -> None:
        """Make the spans of every event noted so far (in order, with the times noted), now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            self._make(*self._pending.popleft())

    def _flush_soon(self) -> None:
        # the timer's flush, in steps of FLUSH_STEP_S: between two steps the loop serves whatever
        # became ready (another session's audio), so a flush holds it up by one step at most
        self._timer = None
        deadline = time.perf_counter() + FLUSH_STEP_S
        pending = self._pending
        while pending:
            self._make(*pending.popleft())
            if pending and time.perf_counter() >= deadline:
                asyncio.get_running_loop().call_soon(self._flush_soon)
                return

    def _make(self, method: Any, args: tuple) -> None:
        try:
            method(*args)
        except Exception:  # a tracing fault must not stop the session: one log line per session
            if not self._failed:
                self._failed = True
                log.exception("tracing session %s: %s failed", self.session_id, method.__name__)

    def _note(self, method: Any, args: tuple, delay_s: float = FLUSH_FALLBACK_S) -> None:
        self._pending.append((method, args))
        if self._closed or len(self._pending) >= MAX_PENDING:
            self.flush()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop (a script, a test): now
            self.flush()
            return
        due = loop.time() + delay_s
        if self._timer is None or due < self._due:
            if self._timer is not None:
                self._timer.cancel()
            self._timer, self._due = loop.call_at(due, self._flush_soon), due

    # --- the spans ----------------------------------------------------------------------------------

    def _ns(self, media_s: float) -> int:
        return self.epoch_ns + int(media_s * 1e9)

    def _child(self, name: str, start_s: float, attributes: dict[str, Any] | None = None) -> Any:
        return self.tracer.start_span(name, context=self._turn_ctx or self._ctx, start_time=self._ns(start_s),
                                      attributes=attributes or {})

    def _open_turn(self, start_s: float) -> None:
        self._close_turn(start_s)
        self._turn_n += 1
        self.turn = self.tracer.start_span("voxpipe.turn", context=self._ctx, start_time=self._ns(start_s),
                                           attributes={"voxpipe.turn": self._turn_n})
        self._turn_ctx = self._trace.set_span_in_context(self.turn)

    def _close_turn(self, end_s: float) -> None:
        for span, end_ns in self._ended.values():
            span.end(end_time=end_ns)
        self._ended.clear()
        for span in self._responses.values():
            span.set_attribute("voxpipe.ended_by", "next_turn")
            span.end(end_time=self._ns(end_s))
        self._responses.clear()
        if self.turn is not None:
            self.turn.end(end_time=self._ns(end_s))
            self.turn = self._turn_ctx = None

    def _user_speech(self, start: float, end: float, decided: float) -> None:
        # start/end count the page's samples (the input's media time), which began a little after the session's
        # clock: the span is placed on the clock by the moment the speech's end was detected, with its length
        length = max(0.0, end - start)
        self._open_turn(decided - length)
        self._speech_end = decided
        span = self._child("voxpipe.user_speech", decided - length,
                           {"voxpipe.speech_start_s": start, "voxpipe.speech_end_s": end,
                            "voxpipe.speech_ms": round(1000 * length, 1), "voxpipe.detected_s": decided})
        span.end(end_time=self._ns(decided))

    def _response_start(self, turn: int, response_id: str, at: float) -> None:
        if self.turn is None:  # a greeting, or a reply to typed text: no speech opened the turn
            self._open_turn(at)
        if len(self._responses) >= MAX_OPEN:
            self._responses.pop(next(iter(self._responses))).end()
        self._responses[turn] = self._child("voxpipe.model_response", at, {"voxpipe.response_id": response_id,
                                                                            "voxpipe.model_turn": turn})

    def _first_audio(self, item: str, turn: int, at: float) -> None:
        span = self._responses.get(turn)
        if span is not None:
            span.add_event("first_audio", timestamp=self._ns(at), attributes={"voxpipe.item_id": item})
            span.set_attribute("voxpipe.first_audio_s", at)
            if self._speech_end is not None:
                span.set_attribute("voxpipe.speech_end_to_first_audio_ms", round(1000 * (at - self._speech_end), 1))

    def _turn_metrics(self, values: dict[str, Any], at: float) -> None:
        ended = self._ended.pop(values.get("turn"), None)
        span = ended[0] if ended is not None else self._responses.get(values.get("turn"))
        attrs = {f"voxpipe.{k}": v for k, v in values.items()
                 if k in ("ttfb_ms", "first_audio_ms", "response_ms", "input_tokens", "output_tokens", "total_tokens")}
        for target in (span, self.turn):
            if target is not None:
                target.set_attributes(attrs)
        if span is not None:
            span.set_attribute("voxpipe.status", str(values.get("status", "")))
        if ended is not None:
            span.end(end_time=ended[1])

    def _response_end(self, turn: int, status: str, at: float) -> None:
        span = self._responses.pop(turn, None)
        if span is not None:  # ended once its usage (the realtime.turn metrics, right behind) is on it
            span.set_attribute("voxpipe.status", status)
            span.set_attribute("voxpipe.truncated", status in ("cancelled", "incomplete"))
            if len(self._ended) >= MAX_OPEN:
                old, end_ns = self._ended.pop(next(iter(self._ended)))
                old.end(end_time=end_ns)
            self._ended[turn] = (span, self._ns(at))

    def _tool_call(self, name: str, call_id: str, at: float) -> None:
        if len(self._tools) >= MAX_OPEN:
            self._tools.pop(next(iter(self._tools))).end()
        self._tools[call_id] = self._child("voxpipe.tool_call", at, {"voxpipe.tool": name, "voxpipe.call_id": call_id})

    def _tool_result(self, name: str, call_id: str, is_error: bool, at: float) -> None:
        span = self._tools.pop(call_id, None)
        if span is None:
            return
        span.set_attribute("voxpipe.tool_error", is_error)
        if is_error:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, "the tool returned an error"))
        span.end(end_time=self._ns(at))

    def _playback(self, item: str, start: float, end: float, played_ms: int, interrupted: bool) -> None:
        span = self._child("voxpipe.playback", start, {"voxpipe.item_id": item, "voxpipe.played_ms": played_ms,
                                                       "voxpipe.interrupted": interrupted})
        span.end(end_time=self._ns(end))

    def _barge_in(self, turn: int, at: float) -> None:
        if self.turn is not None:
            self.turn.add_event("barge_in", timestamp=self._ns(at), attributes={"voxpipe.model_turn": turn})

    def _end(self, outcome: str, at: float) -> None:
        for span in self._tools.values():
            span.end(end_time=self._ns(at))
        self._tools.clear()
        self._close_turn(at)
        self.session.set_attribute("voxpipe.outcome", outcome)
        self.session.set_attribute("voxpipe.turns", self._turn_n)
        self.session.end(end_time=self._ns(at))


if __name__ == "__main__":
    sys.exit(_child_main())
