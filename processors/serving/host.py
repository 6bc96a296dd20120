"""ServingHost: what ``voxpipe serve`` adds around its sessions: probes, metrics, traces, admission, drain.

Theory of operation
-------------------
:class:`~processors.web.server.WebServer` asks the host before each session
(:meth:`ServingHost.refusal`: admission, :mod:`.admission`), tells it when one opens
(:meth:`ServingHost.open`: the session observer goes into the graph copy,
:mod:`.observer`) and when it ends (:meth:`ServingHost.close`, with the outcome). Its HTTP
hook answers ``GET /healthz`` (200 while the process runs), ``GET /readyz`` (200, or 503
with the reason while draining or at capacity), ``GET /metrics`` (:mod:`.metrics`) and
``POST /drain`` (from this machine, or with the token).

One sampler per worker (:meth:`ServingHost.sample`, a chain of 20 ms loop timers) records
how late each timer ran (event-loop lag; a warning past 100 ms, as LiveKit Agents
warns); once a second it adds the process's CPU time, the queue drops and stale frames
of every live session's nodes (by processor type) and the pages' playback underruns to
the counters, and moves the drain on.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from websockets.datastructures import Headers
from websockets.http11 import Response

from .admission import Admission, Phase, Refusal
from .metrics import ServingMetrics, available

__all__ = ["LAG_WARN_S", "SAMPLE_S", "ServingHost"]

log = logging.getLogger("voxpipe.serving")

#: Event-loop sampling period and the lag that is logged as a warning.
SAMPLE_S = 0.020
LAG_WARN_S = 0.100


class _Live:
    """One live session as the host sees it: its runner, page and sinks, and the counts already added."""

    __slots__ = ("sid", "runner", "page", "sinks", "tracer", "seen", "underruns", "metrics")

    def __init__(self, sid: str, sinks: list, tracer: Any, metrics: Any) -> None:
        self.sid = sid
        self.runner: Any = None
        self.page: Any = None
        self.sinks = sinks
        self.tracer = tracer
        self.seen: dict[str, tuple[int, int]] = {}
        self.underruns = 0
        self.metrics = metrics


class _MetricsSink:
    """Session events into the worker's Prometheus counters (a SessionSink)."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.m = metrics
        self.speech_end: float | None = None  # one sink per session (see ServingHost.open)

    def user_speech(self, start: float, end: float, decided: float) -> None:
        self.speech_end = decided  # on the session clock, as voxpipe bench's speech end -> first audio

    def first_audio(self, item: str, turn: int, at: float) -> None:
        """A reply starts to be heard: a turn; its latency from the user's speech end (tool calls included)."""
        self.m.turns.inc()
        if self.speech_end is not None:
            self.m.turn_latency.observe(max(0.0, at - self.speech_end))
            self.speech_end = None

    def turn_metrics(self, values: dict[str, Any], at: float) -> None:
        for key, direction in (("input_tokens", "input"), ("output_tokens", "output")):
            if isinstance(values.get(key), int):
                self.m.tokens.labels(direction).inc(values[key])

    def barge_in(self, turn: int, at: float) -> None:
        self.m.barge_ins.inc()

    def tool_call(self, name: str, call_id: str, at: float) -> None:
        self.m.tool_calls.labels(name).inc()

    def tool_result(self, name: str, call_id: str, is_error: bool, at: float) -> None:
        if is_error:
            self.m.tool_failures.labels(name).inc()

    def __getattr__(self, name: str) -> Callable[..., None]:  # the events it does not count
        return _ignore


def _ignore(*args: Any) -> None:
    return None


def _response(status: HTTPStatus, body: bytes | str, content_type: str = "text/plain; charset=utf-8") -> Response:
    data = body.encode() if isinstance(body, str) else body
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(data))),
                       ("Cache-Control", "no-store")])
    return Response(status.value, status.phrase, headers, data)


class ServingHost:
    """Probes, metrics, traces, admission and drain for one worker (see the module docstring).

    ``max_sessions`` / ``max_cpu`` / ``drain_timeout_s`` go to :class:`Admission`.
    ``tracer_provider``: an OpenTelemetry SDK provider (``--otel``); None: no tracing, and
    OpenTelemetry is never imported. ``metrics``: False turns Prometheus off (it is also off
    when prometheus_client is not installed).
    """

    def __init__(self, *, max_sessions: int | None = None, max_cpu: float | None = None,
                 drain_timeout_s: float = 3600.0, tracer_provider: Any = None, metrics: bool = True,
                 pipeline: str = "") -> None:
        self.admission = Admission(max_sessions=max_sessions, max_cpu=max_cpu, drain_timeout_s=drain_timeout_s)
        self.metrics = ServingMetrics() if metrics and available() else None
        self.provider = tracer_provider
        self.tracer = tracer_provider.get_tracer("voxpipe.serve") if tracer_provider is not None else None
        self.pipeline = pipeline
        self.live: dict[str, _Live] = {}
        self.token: str | None = None
        self.stopping = anyio.Event()  # the serve loop waits for it: drained, or forced
        self.started_total = 0
        self.ended: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.lag_max_s = 0.0
        if self.metrics is not None:
            self.metrics.ready.set(1)
            self.metrics.draining.set(0)

    # --- admission and drain ---------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """What /readyz says: admitting sessions now."""
        return self.admission.refusal(len(self.live)) is None

    def refusal(self, active: int) -> Refusal | None:
        """None to admit a session now; else the refusal (counted).

        ``active`` is the caller's count of the sessions holding a slot; the host's own live
        sessions of every kind (pages, phone calls) count when they are more.
        """
        refused = self.admission.refusal(max(active, len(self.live)))
        if refused is not None:
            self.count_refusal(refused)
        return refused

    def count_refusal(self, refused: Refusal) -> None:
        """Count a refusal made elsewhere (a phone host's own call limit) with the host's own.

        It shows in ``refused`` and ``voxpipe_sessions_refused_total{reason}``, as the
        host's own refusals do.
        """
        self.refused[refused.reason] = self.refused.get(refused.reason, 0) + 1
        if self.metrics is not None:
            self.metrics.sessions_refused.labels(refused.reason).inc()

    def drain(self) -> bool:
        """Stop admitting; live sessions go on until they end or the deadline. False if already draining."""
        if not self.admission.drain(time.monotonic()):
            return False
        log.warning("draining: %d live sessions; no new ones; deadline in %.0f s", len(self.live),
                    self.admission.drain_timeout_s)
        self._publish_phase()
        self.tick()
        return True

    def force(self) -> None:
        """End the drain now (a second SIGTERM)."""
        if self.admission.force():
            log.warning("stopping now: closing %d live sessions", len(self.live))
        self._publish_phase()
        self.stopping.set()

    def tick(self) -> Phase:
        phase = self.admission.tick(time.monotonic(), len(self.live))
        if phase is Phase.STOPPING:
            self._publish_phase()
            self.stopping.set()
        return phase

    def _publish_phase(self) -> None:
        if self.metrics is not None:
            self.metrics.ready.set(1 if self.admission.phase is Phase.SERVING else 0)
            self.metrics.draining.set(1 if self.admission.phase is Phase.DRAINING else 0)

    # --- sessions --------------------------------------------------------------------------------

    def open(self, sid: str, graph: Any, attributes: dict[str, Any] | None = None) -> _Live:
        """A session starts on ``graph`` (a fresh copy): put the observer in, start its trace."""
        from .observer import attach_session_observer

        sinks: list = [_MetricsSink(self.metrics)] if self.metrics is not None else []
        tracer = None
        if self.tracer is not None:
            from .tracing import SessionTracer

            tracer = SessionTracer(self.tracer, sid, {"voxpipe.pipeline": self.pipeline, **(attributes or {})})
            sinks.append(tracer)
        if sinks:
            attach_session_observer(graph, tuple(sinks))
        live = self.live[sid] = _Live(sid, sinks, tracer, self.metrics)
        self.started_total += 1
        if self.metrics is not None:
            self.metrics.sessions_started.inc()
            self.metrics.sessions_active.inc()
        return live

    def close(self, live: _Live, outcome: str) -> None:
        """The session ended with ``outcome`` (end, client_closed, error, drained, cancel)."""
        if self.live.pop(live.sid, None) is None:
            return
        self._count_nodes(live)
        self.ended[outcome] = self.ended.get(outcome, 0) + 1
        if self.metrics is not None:
            self.metrics.sessions_active.dec()
            self.metrics.sessions_ended.labels(outcome).inc()
        if live.tracer is not None:
            clock = getattr(live.runner, "clock", None)
            live.tracer.end(outcome, clock.elapsed() if clock is not None else 0.0)
        self.tick()

    def _count_nodes(self, live: _Live) -> None:
        """Add what the session's queues dropped and its page's underruns since the last look."""
        m = self.metrics
        if m is None:
            return
        for node in getattr(live.runner, "nodes", None) or ():
            q = node.queue
            dropped, stale = q.dropped, q.stale
            old_d, old_s = live.seen.get(node.id, (0, 0))
            if dropped > old_d:
                m.queue_dropped.labels(node.type).inc(dropped - old_d)
            if stale > old_s:
                m.queue_stale.labels(node.type).inc(stale - old_s)
            live.seen[node.id] = (dropped, stale)
        underruns = getattr(live.page, "underruns", 0) or 0
        if underruns > live.underruns:
            m.underruns.inc(underruns - live.underruns)
            live.underruns = underruns

    # --- the sampler -----------------------------------------------------------------------------

    async def sample(self) -> None:
        """Event-loop lag every 20 ms; CPU, queue counts and the drain once a second. Runs until cancelled.

        The sampler is a chain of ``loop.call_at`` timer callbacks, not a task that sleeps:
        a task wake-up through anyio's sleep cost 0.007-0.008 of a core at 50 Hz on this
        project's VM, a bare timer callback 0.0035 (measured over 8 s each), and it measures
        the same thing, how late the loop ran a timer that was due.
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        state = {"cpu0": time.process_time(), "wall0": time.monotonic(), "lag_max": 0.0, "handle": None}

        def tick(due: float) -> None:
            try:
                self._sample_once(max(0.0, loop.time() - due), state)
            except BaseException as exc:  # never let the chain die silently: end sample() with the error
                if not done.done():
                    done.set_exception(exc)
                return
            nxt = loop.time() + SAMPLE_S
            state["handle"] = loop.call_at(nxt, tick, nxt)

        first = loop.time() + SAMPLE_S
        state["handle"] = loop.call_at(first, tick, first)
        try:
            await done
        finally:
            state["handle"].cancel()

    def _sample_once(self, lag: float, state: dict) -> None:
        m = self.metrics
        if lag > LAG_WARN_S:
            log.warning("event loop blocked: a 20 ms timer fired %.0f ms late (%d live sessions)", 1000 * lag,
                        len(self.live))
        state["lag_max"] = max(state["lag_max"], lag)
        if m is not None:
            m.loop_lag.observe(lag)
        now = time.monotonic()
        if now - state["wall0"] >= 1.0:
            cpu = time.process_time()
            self.admission.cpu = (cpu - state["cpu0"]) / (now - state["wall0"])
            self.lag_max_s = state["lag_max"]
            if m is not None:
                m.cpu_seconds.inc(cpu - state["cpu0"])
                m.cpu_load.set(self.admission.cpu)
                m.loop_lag_max.set(state["lag_max"])
                for live in list(self.live.values()):
                    self._count_nodes(live)
            state.update(cpu0=cpu, wall0=now, lag_max=0.0)
            self.tick()

    # --- HTTP ------------------------------------------------------------------------------------

    def http(self, connection: Any, request: Any) -> Response | None:
        """Answer the probes, /metrics and POST /drain; None for any other request."""
        path = urlsplit(request.path).path
        method = getattr(request, "method", "GET")
        if path == "/healthz" and method == "GET":
            return _response(HTTPStatus.OK, "ok\n")
        if path == "/readyz" and method == "GET":
            refused = self.admission.refusal(len(self.live))
            if refused is None:
                return _response(HTTPStatus.OK, f"ready: {len(self.live)} sessions\n")
            return _response(HTTPStatus.SERVICE_UNAVAILABLE, f"not ready: {refused.reason}: {refused.message}\n")
        if path == "/metrics" and method == "GET":
            if self.metrics is None:
                return _response(HTTPStatus.NOT_IMPLEMENTED, "metrics need prometheus-client: pip install "
                                                             "'voxpipe[serve]'\n")
            body, content_type = self.metrics.render()
            return _response(HTTPStatus.OK, body, content_type)
        if path == "/drain":
            if method != "POST":
                return _response(HTTPStatus.METHOD_NOT_ALLOWED, "drain with POST /drain\n")
            if not self._may_drain(connection, request):
                return _response(HTTPStatus.FORBIDDEN, "POST /drain is taken from this machine (not from a web "
                                                       "page), or with ?token=\n")
            started = self.drain()
            state = "draining" if started else "already " + self.admission.phase.value
            return _response(HTTPStatus.ACCEPTED, f"{state}: {len(self.live)} live sessions\n")
        return None

    def _may_drain(self, connection: Any, request: Any) -> bool:
        if request.headers.get("Origin") is not None:  # a web page's form POST (CSRF): never a preStop hook
            return False
        if self.token:
            given = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
            if hmac.compare_digest(given.encode(), self.token.encode()):
                return True
        try:
            import ipaddress

            return ipaddress.ip_address(connection.remote_address[0]).is_loopback
        except (ValueError, TypeError, IndexError, AttributeError):
            return False
