"""Serving at scale, one worker at a time: admission and drain, probes, /metrics and traces, --workers.

Real sockets on 127.0.0.1, real graphs: the echo pipeline (page -> page) where only the
serving machinery is under test, and pipelines/web_agent.yaml with the offline local
realtime server where turns, tool calls and traces are (pages: tests/serve_page.py, real
eSpeak NG speech at real time). /metrics is read over HTTP and parsed with
``prometheus_client.parser``; spans come from the OpenTelemetry SDK's in-memory exporter.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from processors.serving.admission import Admission, Phase
from processors.serving.host import ServingHost
from processors.web.server import web_server
from serve_page import converse
from serving_procs import ROOT, Worker, free_port, get
from test_web_server import ECHO

FRAME = np.full(320, 1000, np.int16).astype("<i2").tobytes()  # 20 ms at 16 kHz


@pytest.fixture
def echo_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "web_echo.yaml"
    path.write_text(ECHO)
    return path


def metrics(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a /metrics body, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def aget(url: str) -> tuple[int, str]:
    """GET from a worker thread: the server under test may run on this event loop."""
    return await anyio.to_thread.run_sync(get, url)


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def echoes(ws) -> bool:
    """The session still answers: one frame sent comes back."""
    await ws.send(FRAME)
    with anyio.fail_after(10):
        while True:
            if isinstance(await ws.recv(), bytes):
                return True


async def closed(ws, timeout: float = 10.0) -> tuple[int | None, str]:
    with anyio.fail_after(timeout):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    return ws.close_code, ws.close_reason


# --- admission (sans-I/O) ---------------------------------------------------------------------


def test_admission_table():
    """Capacity and CPU refuse with a reason; drain ends on idle, on the deadline, or when forced."""
    a = Admission(max_sessions=2, max_cpu=0.8, drain_timeout_s=10)
    assert a.refusal(1) is None
    assert a.refusal(2).reason == "capacity" and "2 sessions" in a.refusal(2).message
    a.cpu = 0.95
    assert a.refusal(0).reason == "cpu" and "95%" in a.refusal(0).message
    a.cpu = 0.1
    assert a.drain(now=100.0) and not a.drain(now=101.0)
    assert a.refusal(0).reason == "draining"
    assert a.tick(105.0, active=3) is Phase.DRAINING
    assert a.tick(110.0, active=3) is Phase.STOPPING  # the deadline
    b = Admission(drain_timeout_s=10)
    b.drain(0.0)
    assert b.tick(1.0, active=0) is Phase.STOPPING  # the last session ended
    c = Admission()
    c.drain(0.0)
    assert c.force() and c.phase is Phase.STOPPING and not c.force()
    for bad in ({"max_sessions": 0}, {"max_cpu": 0}, {"drain_timeout_s": -1}):
        with pytest.raises(ValueError):
            Admission(**bad)


# --- one worker in this process ---------------------------------------------------------------


async def test_capacity_refuses_with_a_reason_and_readyz_says_so_first(echo_yaml):
    host = ServingHost(max_sessions=1)
    async with web_server(echo_yaml, serving=host, max_sessions=1) as web:
        assert (await aget(web.url + "readyz"))[0] == 200 and (await aget(web.url + "healthz")) == (200, "ok\n")
        async with connect(web.ws_url) as first:
            assert json.loads(await first.recv())["type"] == "ready"
            status, body = await aget(web.url + "readyz")
            assert status == 503 and "capacity" in body
            async with connect(web.ws_url) as second:
                code, reason = await closed(second)
            assert code == 1013 and "at capacity (1 sessions)" in reason, reason
            assert await echoes(first)
        with anyio.fail_after(5):
            while host.live:
                await anyio.sleep(0.02)
        assert (await aget(web.url + "readyz"))[0] == 200
        assert host.refused == {"capacity": 1}


async def test_the_sampler_measures_a_blocked_loop_and_stops_when_cancelled(caplog):
    """A 150 ms block of the loop is one lag sample >= 100 ms and one warning; cancelling leaves no timer."""
    import asyncio

    host = ServingHost()
    loop = asyncio.get_running_loop()
    task = loop.create_task(host.sample())
    await anyio.sleep(0.1)
    time.sleep(0.15)  # the event loop is blocked: the next timer runs ~150 ms late
    await anyio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    warned = [r.getMessage() for r in caplog.records if "event loop blocked" in r.getMessage()]
    assert warned, "no lag warning after a 150 ms block"
    assert int(re.search(r"fired (\d+) ms late", warned[0]).group(1)) >= 100
    live_timers = [h for h in getattr(loop, "_scheduled", []) if not h.cancelled()
                   and getattr(h, "_callback", None) is not None and "tick" in getattr(h._callback, "__qualname__", "")]
    assert live_timers == [], "the sampler left a timer running after it was cancelled"
    hist = {s.name: s.value for metric in host.metrics.loop_lag.collect() for s in metric.samples}
    assert hist["voxpipe_event_loop_lag_seconds_count"] >= 10
    assert hist["voxpipe_event_loop_lag_seconds_sum"] >= 0.1


async def test_post_drain_keeps_live_sessions_and_refuses_new_ones(echo_yaml):
    async with web_server(echo_yaml) as web:
        async with connect(web.ws_url) as live:
            assert json.loads(await live.recv())["type"] == "ready"
            import urllib.request

            def post(path: str, headers: dict | None = None) -> tuple[int, str]:
                req = urllib.request.Request(web.url.rstrip("/") + path, b"", headers or {}, method="POST")
                try:
                    with urllib.request.urlopen(req, timeout=5) as resp:
                        return resp.status, resp.read().decode()
                except urllib.error.HTTPError as exc:
                    return exc.code, exc.read().decode()

            assert (await anyio.to_thread.run_sync(post, "/drain", {"Origin": "http://evil.example"}))[0] == 403
            assert (await aget(web.url + "drain"))[0] == 405  # a GET (an <img> on some page) drains nothing
            assert (await aget(web.url + "readyz"))[0] == 200
            status, body = await anyio.to_thread.run_sync(post, "/drain")
            assert status == 202 and "draining" in body
            status, body = await aget(web.url + "readyz")
            assert status == 503 and "draining" in body
            async with connect(web.ws_url) as late:
                code, reason = await closed(late)
            assert code == 1013 and "draining" in reason
            assert await echoes(live)  # the live session goes on
        with anyio.fail_after(5):
            await web.serving.stopping.wait()  # its last session ended: the drain is over


def _serve(echo_yaml: Path, tmp_path: Path, *extra: str) -> Worker:
    w = Worker("serve", echo_yaml, free_port(), tmp_path, *extra)
    w.wait_ready()
    return w


async def _sigterm_with_a_live_session(w: Worker, second_sigterm: bool) -> tuple[int | None, str, float]:
    """SIGTERM ``w`` while a page talks: readyz turns 503 at once and the page goes on; how it was closed."""
    try:
        async with connect(f"ws://127.0.0.1:{w.port}/ws") as live:
            assert json.loads(await live.recv())["type"] == "ready"
            w.terminate()
            with anyio.fail_after(10):
                while (await aget(w.url + "/readyz"))[0] != 503:
                    await anyio.sleep(0.02)
            assert await echoes(live)
            if second_sigterm:
                w.terminate()
            code, reason = await closed(live)
            after = time.monotonic() - w.sigterm_at
        assert await anyio.to_thread.run_sync(w.wait, 15) == 0
        return code, reason, after
    finally:
        w.kill()


async def test_sigterm_drains_until_the_deadline_then_closes_with_the_reason(echo_yaml, tmp_path):
    """SIGTERM: readyz 503 at once, the live session goes on; at the deadline it is closed (1012), exit 0."""
    w = _serve(echo_yaml, tmp_path, "--drain-timeout", "1.5")
    code, reason, after_s = await _sigterm_with_a_live_session(w, second_sigterm=False)
    assert code == 1012 and "drain deadline passed" in reason, reason
    assert after_s >= 1.5  # not before the deadline


async def test_a_second_sigterm_closes_the_rest_now(echo_yaml, tmp_path):
    w = _serve(echo_yaml, tmp_path)  # the default deadline: an hour
    code, reason, _ = await _sigterm_with_a_live_session(w, second_sigterm=True)
    assert code == 1012 and "server stopping" in reason, reason


@pytest.mark.slow
async def test_metrics_and_traces_match_a_scripted_conversation():
    """Two pages speak to web_agent.yaml; /metrics counts what they did; the spans tell one conversation."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from processors.serving.tracing import tracer_provider

    exporter = InMemorySpanExporter()
    host = ServingHost(max_sessions=2, tracer_provider=tracer_provider(exporter), pipeline="web_agent.yaml")
    async with web_server(ROOT / "pipelines" / "web_agent.yaml", serving=host, max_sessions=2) as web:
        convs = {}

        async def talk(name: str, texts: list[str]) -> None:
            convs[name] = await converse(web.ws_url, texts, turn_timeout_s=30)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(talk, "a", ["hello", "what is the weather in paris"])
                await anyio.sleep(0.3)
                tg.start_soon(talk, "b", ["hello"])
                await anyio.sleep(1.5)
                refused = await converse(web.ws_url, [])  # a third page while two talk
            while host.live:
                await anyio.sleep(0.02)
        status, body = await aget(web.url + "metrics")
    assert status == 200
    m = metrics(body)
    a, b = convs["a"], convs["b"]
    assert a.completed and b.completed and refused.close_code == 1013
    assert value(m, "voxpipe_sessions_started_total") == 2
    assert value(m, "voxpipe_sessions_ended_total", outcome="client_closed") == 2
    assert value(m, "voxpipe_sessions_refused_total", reason="capacity") == 1
    assert value(m, "voxpipe_sessions_active") == 0
    assert value(m, "voxpipe_turns_total") == len(a.turns) + len(b.turns) == 3
    assert value(m, "voxpipe_turn_latency_seconds_count") == 3  # every utterance was answered
    assert value(m, "voxpipe_tool_calls_total", tool="get_weather") == 1 == a.tool_calls.count("get_weather")
    assert value(m, "voxpipe_tool_failures_total", tool="get_weather") == 0
    assert value(m, "voxpipe_barge_ins_total") == 0
    assert value(m, "voxpipe_tokens_total", direction="output") > 0
    assert value(m, "voxpipe_event_loop_lag_seconds_count") > 0
    assert value(m, "voxpipe_process_cpu_seconds_total") > 0
    assert value(m, "voxpipe_worker_ready") == 1
    # the spans of conversation a, one by one
    spans = exporter.get_finished_spans()
    root = next(s for s in spans if s.name == "voxpipe.session" and s.attributes["session.id"] == a.session)
    mine = [s for s in spans if s.context.trace_id == root.context.trace_id]
    assert root.parent is None and root.attributes["voxpipe.outcome"] == "client_closed"
    assert root.attributes["voxpipe.turns"] == 2 and root.attributes["voxpipe.pipeline"] == "web_agent.yaml"
    turns = sorted((s for s in mine if s.name == "voxpipe.turn"), key=lambda s: s.start_time)
    assert [t.attributes["voxpipe.turn"] for t in turns] == [1, 2]
    assert all(t.parent.span_id == root.context.span_id for t in turns)

    def children(turn):
        return sorted((s for s in mine if s.parent is not None and s.parent.span_id == turn.context.span_id),
                      key=lambda s: (s.start_time, s.name))

    first = children(turns[0])
    assert [s.name for s in first] == ["voxpipe.user_speech", "voxpipe.model_response", "voxpipe.playback"], first
    speech, reply, playback = first
    assert speech.attributes["voxpipe.speech_end_s"] >= speech.attributes["voxpipe.speech_start_s"] > 0
    assert speech.end_time <= reply.start_time  # detected, then answered: one clock
    assert reply.attributes["voxpipe.status"] == "completed" and reply.attributes["voxpipe.truncated"] is False
    assert [e.name for e in reply.events] == ["first_audio"]
    assert reply.attributes["voxpipe.first_audio_s"] > speech.attributes["voxpipe.detected_s"]
    assert reply.attributes["voxpipe.speech_end_to_first_audio_ms"] > 0
    assert reply.attributes["voxpipe.output_tokens"] > 0 and "voxpipe.ttfb_ms" in reply.attributes
    assert playback.attributes["voxpipe.played_ms"] > 0 and playback.attributes["voxpipe.interrupted"] is False
    assert turns[0].attributes["voxpipe.output_tokens"] == reply.attributes["voxpipe.output_tokens"]
    second = children(turns[1])
    names = [s.name for s in second]
    assert names == ["voxpipe.user_speech", "voxpipe.model_response", "voxpipe.tool_call", "voxpipe.model_response",
                     "voxpipe.playback"], names
    tool = second[2]
    assert tool.attributes["voxpipe.tool"] == "get_weather" and tool.attributes["voxpipe.tool_error"] is False
    calling, answer = second[1], second[3]
    assert "voxpipe.first_audio_s" not in calling.attributes  # the call itself had no audio
    assert answer.attributes["voxpipe.speech_end_to_first_audio_ms"] > 0
    assert answer.start_time >= tool.end_time  # the answer follows the tool's result
    for s in mine:  # every span closed within its session
        assert root.start_time <= s.start_time <= s.end_time <= root.end_time, s.name


def _scripted_turn(tracer) -> None:
    tracer.response_end(1, "completed", 2.5)
    tracer.turn_metrics({"turn": 1, "status": "completed", "ttfb_ms": 250.0, "output_tokens": 5}, 2.5)
    tracer.playback("i1", 1.9, 3.0, 1100, False)


async def test_otel_spans_are_made_after_the_first_audio_and_exported_from_a_child_process(monkeypatch):
    """--otel's cost off the critical path: events are noted, spans made after the first audio, export elsewhere.

    In memory: after a turn's speech, response start and first audio nothing is a span yet
    (three events noted); once the loop has run the flush, the speech span exists with the
    media-clock times noted. Then the same session through ``tracer_provider()`` as ``--otel``
    builds it, against a real OTLP/HTTP collector on 127.0.0.1: no exporter thread in this
    process, and the collector receives every span with its parent, attributes and times.
    """
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from processors.serving import tracing
    from processors.serving.tracing import SessionTracer, tracer_provider

    memory = InMemorySpanExporter()
    local = tracer_provider(memory)
    session = SessionTracer(local.get_tracer("t"), "s1", {"voxpipe.pipeline": "p.yaml"})
    session.user_speech(0.5, 1.5, 1.6)
    session.response_start(1, "r1", 1.65)
    session.first_audio("i1", 1, 1.9)
    assert memory.get_finished_spans() == () and len(session._pending) == 3  # nothing built on the critical path
    with anyio.fail_after(10):
        while session._pending:
            await anyio.sleep(tracing.FLUSH_AFTER_FIRST_AUDIO_S / 5)
    speech = next(s for s in memory.get_finished_spans() if s.name == "voxpipe.user_speech")
    assert speech.end_time - speech.start_time == 1_000_000_000 and speech.end_time == session._ns(1.6)
    _scripted_turn(session)
    session.end("client_closed", 3.5)  # the rest at once
    made = {s.name: s for s in memory.get_finished_spans()}
    assert set(made) == {"voxpipe.session", "voxpipe.turn", "voxpipe.user_speech", "voxpipe.model_response",
                         "voxpipe.playback"}
    assert made["voxpipe.model_response"].attributes["voxpipe.speech_end_to_first_audio_ms"] == 300.0

    received: list[bytes] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{collector.server_port}")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "voxpipe-test")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    provider = tracer_provider()
    try:
        (export,) = provider._active_span_processor._span_processors
        assert isinstance(export, tracing.ProcessExport) and export.pid != os.getpid()
        session = SessionTracer(provider.get_tracer("voxpipe.serve"), "s2", {"voxpipe.pipeline": "p.yaml"})
        session.user_speech(0.5, 1.5, 1.6)
        session.response_start(1, "r1", 1.65)
        session.first_audio("i1", 1, 1.9)
        _scripted_turn(session)
        session.end("client_closed", 3.5)
        await anyio.sleep(0)  # the write to the child, after the flush
        assert not [t for t in threading.enumerate() if t.name.startswith("OtelBatch")]  # no exporter thread here
    finally:
        with anyio.fail_after(30):
            await anyio.to_thread.run_sync(provider.shutdown)  # the child exports what it has and exits
        collector.shutdown()
    assert export.sent == 5 and export.dropped == 0 and export._proc.returncode == 0
    spans = {}
    for body in received:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for rs in request.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}["service.name"]
            assert service == "voxpipe-test"
            for ss in rs.scope_spans:
                spans.update({sp.name: sp for sp in ss.spans})
    assert set(spans) == set(made)
    root, turn = spans["voxpipe.session"], spans["voxpipe.turn"]
    assert root.parent_span_id == b"" and turn.parent_span_id == root.span_id
    assert all(spans[n].parent_span_id == turn.span_id
               for n in ("voxpipe.user_speech", "voxpipe.model_response", "voxpipe.playback"))
    assert spans["voxpipe.user_speech"].end_time_unix_nano - spans["voxpipe.user_speech"].start_time_unix_nano \
        == 1_000_000_000
    reply = {a.key: a.value for a in spans["voxpipe.model_response"].attributes}
    assert reply["voxpipe.speech_end_to_first_audio_ms"].double_value == 300.0
    assert reply["voxpipe.output_tokens"].int_value == 5 and reply["voxpipe.status"].string_value == "completed"
    assert [e.name for e in spans["voxpipe.model_response"].events] == ["first_audio"]


# --- several workers on one port ----------------------------------------------------------------


async def test_workers_share_the_port_and_a_crash_loses_only_its_sessions(echo_yaml, tmp_path):
    """--workers 2: sessions spread over both; /metrics answers for both; SIGKILL one: the other's go on."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", str(echo_yaml), "--workers", "2",
                             "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/ with 2 workers \(pids (\d+), (\d+)\)", line)
        assert found, line + proc.stderr.read()
        port, pids = int(found.group(1)), [int(found.group(2)), int(found.group(3))]
        url = f"ws://127.0.0.1:{port}/ws"
        async with connect(url) as w0:  # warm both up
            await w0.recv()
        socks = []
        try:
            for _ in range(12):
                ws = await connect(url)
                assert json.loads(await ws.recv())["type"] == "ready"
                socks.append(ws)
            status, body = await aget(f"http://127.0.0.1:{port}/metrics")
            m = metrics(body)
            assert value(m, "voxpipe_sessions_active") == 12  # the machine's total, whichever worker answered
            assert value(m, "voxpipe_sessions_started_total") == 13
            os.kill(pids[0], signal.SIGKILL)
            lost, kept = [], []
            for ws in socks:
                try:
                    await echoes(ws)
                    kept.append(ws)
                except (ConnectionClosed, TimeoutError):
                    lost.append(ws)
            assert lost and kept and len(lost) + len(kept) == 12  # 12 sessions: all on one worker 1 time in 2,048
        finally:
            for ws in socks:
                await ws.close()
        for _ in range(4):  # the port serves throughout (the other worker, then the new one too)
            async with connect(url) as again:
                assert json.loads(await again.recv())["type"] == "ready"
        with anyio.fail_after(30):  # the supervisor started a new worker
            while True:
                body = (await aget(f"http://127.0.0.1:{port}/metrics"))[1]
                live = {int(p) for p in re.findall(r'voxpipe_worker_ready\{pid="(\d+)"\} 1', body)}
                if len(live) == 2 and pids[0] not in live:
                    break
                await anyio.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "worker 0" in (err := proc.stderr.read()) and "starting a new one" in err, err
    finally:
        proc.kill()
        proc.wait(timeout=10)


# --- memory across sessions -------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", text).group(1))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")
async def test_rss_after_500_sessions_is_within_5_percent_of_after_50(tmp_path):
    """500 short sessions one after another on one web_agent.yaml worker (local model in the process).

    Each connects (a graph copy, its runner, its connection to the local server and the
    server's own graph), streams 100 ms of audio and leaves; every 100th speaks a whole turn.
    """
    w = Worker("rss", ROOT / "pipelines" / "web_agent.yaml", free_port(), tmp_path, "--idle-timeout", "0")
    frame = np.zeros(480, np.int16).astype("<i2").tobytes()
    rss = {}
    try:
        w.wait_ready()
        url = f"ws://127.0.0.1:{w.port}/ws"
        with anyio.fail_after(150):
            for i in range(1, 501):
                if i % 100 == 1:  # now and then a whole spoken turn: recognition, the reply, playback reports
                    conv = await converse(url, ["hello"], turn_timeout_s=20)
                    assert conv.completed and len(conv.turns) == 1
                else:
                    async with connect(url) as ws:
                        assert json.loads(await ws.recv())["type"] == "ready"
                        for _ in range(5):
                            await ws.send(frame)
                while "ready: 0 sessions" not in (await aget(w.url + "/readyz"))[1]:
                    await anyio.sleep(0.005)
                if i in (50, 500):
                    rss[i] = _rss_kib(w.proc.pid)
        status, body = await aget(w.url + "/metrics")
        assert value(metrics(body), "voxpipe_sessions_ended_total", outcome="client_closed") == 500
    finally:
        w.kill()
    growth = rss[500] / rss[50] - 1
    print(f"RSS after 50 sessions {rss[50]} KiB, after 500 {rss[500]} KiB ({100 * growth:+.1f}%)")
    assert growth < 0.05, rss


def test_without_otel_nothing_of_opentelemetry_is_imported(echo_yaml):
    """--otel off is free: a served session (the observer in its graph) loads no OpenTelemetry module."""
    code = f"""
import sys, json, anyio
from websockets.asyncio.client import connect
from processors.web.server import web_server

async def main():
    async with web_server({str(ROOT / "pipelines" / "web_agent.yaml")!r}) as web:
        async with connect(web.ws_url) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            await ws.send(bytes(960))
        assert web.serving.metrics is not None
    print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))

anyio.run(main)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
