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
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

__all__ = ["SessionTracer", "tracer_provider"]

log = logging.getLogger("voxpipe.serving")

#: Responses kept open per session (a misbehaving model cannot grow this without end).
MAX_OPEN = 16


def tracer_provider(exporter: Any = None) -> Any:
    """An SDK TracerProvider: ``exporter`` through a SimpleSpanProcessor (tests), else from ``OTEL_*``.

    ``OTEL_TRACES_EXPORTER``: ``otlp`` (default, OTLP over HTTP/protobuf), ``console`` or ``none``.
    """
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "voxpipe")})
    provider = TracerProvider(resource=resource)
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return provider
    kind = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if kind == "none":
        return provider
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        return provider
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        from pipeline.errors import VoxpipeError

        raise VoxpipeError("--otel exports OTLP over HTTP: pip install 'voxpipe[serve]' (or set "
                           "OTEL_TRACES_EXPORTER=console)") from None
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


class SessionTracer:
    """The spans of one session; a :class:`~processors.serving.observer.SessionSink`."""

    def __init__(self, tracer: Any, session_id: str, attributes: dict[str, Any]) -> None:
        from opentelemetry import trace

        self._trace = trace
        self.tracer = tracer
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

    # --- SessionSink ----------------------------------------------------------------------------

    def user_speech(self, start: float, end: float, decided: float) -> None:
        # start/end count the page's samples (the input's media time), which began a little after the session's
        # clock: the span is placed on the clock by the moment the speech's end was detected, with its length
        length = max(0.0, end - start)
        self._open_turn(decided - length)
        self._speech_end = decided
        span = self._child("voxpipe.user_speech", decided - length,
                           {"voxpipe.speech_start_s": start, "voxpipe.speech_end_s": end,
                            "voxpipe.speech_ms": round(1000 * length, 1), "voxpipe.detected_s": decided})
        span.end(end_time=self._ns(decided))

    def response_start(self, turn: int, response_id: str, at: float) -> None:
        if self.turn is None:  # a greeting, or a reply to typed text: no speech opened the turn
            self._open_turn(at)
        if len(self._responses) >= MAX_OPEN:
            self._responses.pop(next(iter(self._responses))).end()
        self._responses[turn] = self._child("voxpipe.model_response", at, {"voxpipe.response_id": response_id,
                                                                            "voxpipe.model_turn": turn})

    def first_audio(self, item: str, turn: int, at: float) -> None:
        span = self._responses.get(turn)
        if span is not None:
            span.add_event("first_audio", timestamp=self._ns(at), attributes={"voxpipe.item_id": item})
            span.set_attribute("voxpipe.first_audio_s", at)
            if self._speech_end is not None:
                span.set_attribute("voxpipe.speech_end_to_first_audio_ms", round(1000 * (at - self._speech_end), 1))

    def turn_metrics(self, values: dict[str, Any], at: float) -> None:
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

    def response_end(self, turn: int, status: str, at: float) -> None:
        span = self._responses.pop(turn, None)
        if span is not None:  # ended once its usage (the realtime.turn metrics, right behind) is on it
            span.set_attribute("voxpipe.status", status)
            span.set_attribute("voxpipe.truncated", status in ("cancelled", "incomplete"))
            if len(self._ended) >= MAX_OPEN:
                old, end_ns = self._ended.pop(next(iter(self._ended)))
                old.end(end_time=end_ns)
            self._ended[turn] = (span, self._ns(at))

    def tool_call(self, name: str, call_id: str, at: float) -> None:
        if len(self._tools) >= MAX_OPEN:
            self._tools.pop(next(iter(self._tools))).end()
        self._tools[call_id] = self._child("voxpipe.tool_call", at, {"voxpipe.tool": name, "voxpipe.call_id": call_id})

    def tool_result(self, name: str, call_id: str, is_error: bool, at: float) -> None:
        span = self._tools.pop(call_id, None)
        if span is None:
            return
        span.set_attribute("voxpipe.tool_error", is_error)
        if is_error:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, "the tool returned an error"))
        span.end(end_time=self._ns(at))

    def playback(self, item: str, start: float, end: float, played_ms: int, interrupted: bool) -> None:
        span = self._child("voxpipe.playback", start, {"voxpipe.item_id": item, "voxpipe.played_ms": played_ms,
                                                       "voxpipe.interrupted": interrupted})
        span.end(end_time=self._ns(end))

    def barge_in(self, turn: int, at: float) -> None:
        if self.turn is not None:
            self.turn.add_event("barge_in", timestamp=self._ns(at), attributes={"voxpipe.model_turn": turn})

    def end(self, outcome: str, at: float) -> None:
        """Close every open span: the session ended with ``outcome``."""
        for span in self._tools.values():
            span.end(end_time=self._ns(at))
        self._tools.clear()
        self._close_turn(at)
        self.session.set_attribute("voxpipe.outcome", outcome)
        self.session.set_attribute("voxpipe.turns", self._turn_n)
        self.session.end(end_time=self._ns(at))
