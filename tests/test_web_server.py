"""`voxpipe serve` without a browser: the wire format, sessions, and the server over real sockets on 127.0.0.1.

The graphs are real: an echo (`transport.websocket.input -> transport.websocket.output`) and
a scripted model (:class:`Responder`, below) between the two transports. A websocket
client plays the page's part.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import anyio
import numpy as np
import pytest
from pydantic import BaseModel
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pipeline.errors import PipelineError, VoxpipeError
from pipeline.frames import (
    AudioFrame,
    Direction,
    InterruptionFrame,
    MetricsFrame,
    PlaybackProgressFrame,
    ResponseEndFrame,
    ResponseStartFrame,
)
from pipeline.processor import Processor
from pipeline.testing import run_yaml
from processors.web import WebSession
from processors.web.server import web_server
from processors.web.wire import (
    ClientAudio,
    ClientHello,
    ClientPlayed,
    ClientText,
    WireError,
    max_audio_bytes,
    parse_client_message,
)

RATE = 16000
FRAME = RATE // 50  # 20 ms

ECHO = """\
voxpipe: 1
name: web-echo
processors:
  mic: {type: transport.websocket.input, params: {sample_rate: 16000}}
  out: {type: transport.websocket.output}
links:
  - mic -> out
"""

SCRIPTED = """\
voxpipe: 1
name: web-scripted
processors:
  mic: {type: transport.websocket.input, params: {sample_rate: 16000}}
  model: {type: "test_web_server:Responder", params: {answer_ms: ANSWER_MS}}
  out: {type: transport.websocket.output}
links:
  - mic -> model -> out
"""


class Responder(Processor):
    """A scripted model: the first sample of each frame from the page is a command.

    1 answers (response start, ``answer_ms`` of audio of item ``item_<turn>`` whose samples
    are ``100 * turn``, paced in real time, response end); 2 barges in; 3 raises. Playback
    progress from the page comes back downstream as a ``progress`` MetricsFrame, so the
    client can see what reached the model.
    """

    class Params(BaseModel, extra="forbid"):
        answer_ms: int = 400

    async def start(self) -> None:
        self.turn_no = 0

    async def process(self, frame, direction):
        if isinstance(frame, PlaybackProgressFrame):
            await self.push(MetricsFrame("progress", {"item_id": frame.item_id, "played_ms": frame.played_ms,
                                                      "done": frame.done, "turn": frame.turn}))
        elif isinstance(frame, AudioFrame) and direction is Direction.DOWNSTREAM:
            command = int(frame.samples[0])
            if command == 1:
                self.turn_no += 1
                self.spawn(self._answer, self.turn_no)
            elif command == 2:
                self.turn_no += 1
                await self.push(InterruptionFrame(turn=self.turn_no))
            elif command == 3:
                raise RuntimeError("command 3: failing on purpose")
        else:
            await self.push(frame, direction)

    async def _answer(self, turn: int) -> None:
        await self.push(ResponseStartFrame(response_id=f"r{turn}", turn=turn))
        t0 = self.clock.elapsed()
        for i in range(self.params.answer_ms // 20):
            await self.clock.wait_until(t0 + 0.02 * i)
            await self.push(AudioFrame(np.full(FRAME, 100 * turn, np.int16), RATE, pts=i * FRAME,
                                       item_id=f"item_{turn}", turn=turn))
        await self.push(ResponseEndFrame(response_id=f"r{turn}", turn=turn))


def pcm(value: int, n: int = FRAME) -> bytes:
    return np.full(n, value, np.int16).astype("<i2").tobytes()


class Page:
    """The page's side of a session: collects JSON events and binary audio in arrival order."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.events: list[dict] = []
        self.audio: list[np.ndarray] = []
        self.log: list[dict | bytes] = []

    async def next(self) -> dict | bytes:
        message = await self.ws.recv()
        if isinstance(message, bytes):
            self.audio.append(np.frombuffer(message, "<i2"))
            self.log.append(message)
            return message
        event = json.loads(message)
        self.events.append(event)
        self.log.append(event)
        return event

    async def event(self, kind: str, **match) -> dict:
        """Read until an event of ``kind`` whose fields equal ``match``."""
        while True:
            m = await self.next()
            if isinstance(m, dict) and m["type"] == kind and all(m.get(k) == v for k, v in match.items()):
                return m

    async def audio_frames(self, count: int) -> None:
        """Read until ``count`` binary messages have arrived in all."""
        while len(self.audio) < count:
            await self.next()


@pytest.fixture
def echo_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "web_echo.yaml"
    path.write_text(ECHO)
    return path


def scripted_yaml(tmp_path: Path, answer_ms: int = 400) -> Path:
    path = tmp_path / "web_scripted.yaml"
    path.write_text(SCRIPTED.replace("ANSWER_MS", str(answer_ms)))
    return path


# --- the wire format (sans-I/O) -----------------------------------------------------------------


def test_parse_audio_is_a_view_of_the_pcm():
    """A binary message is int16 mono little-endian PCM, returned without a copy."""
    msg = parse_client_message(pcm(7, 320), max_audio=640)
    assert isinstance(msg, ClientAudio) and msg.samples.dtype == np.int16 and msg.samples.shape == (320,)
    assert int(msg.samples[0]) == 7


@pytest.mark.parametrize(("message", "code"), [
    (b"", "bad_audio"),
    (b"\x01\x02\x03", "bad_audio"),
    (b"\x00" * 642, "audio_too_large"),
    ("not json", "bad_json"),
    ("[1, 2]", "bad_json"),
    ('{"type": 3}', "bad_json"),
    ('{"type": "dance"}', "unknown_type"),
    ('{"type": "played", "ms": 10}', "bad_played"),
    ('{"type": "played", "item_id": "i", "ms": -1}', "bad_played"),
    ('{"type": "played", "item_id": "i", "ms": 1.5}', "bad_played"),
    ('{"type": "played", "item_id": "i", "ms": 1, "done": "yes"}', "bad_played"),
    ('{"type": "hello", "sample_rate": 4000}', "bad_hello"),
    ('{"type": "hello", "sample_rate": true}', "bad_hello"),
    ('{"type": "text", "text": "   "}', "bad_text"),
    ('{"type": "text", "text": "' + "a" * 3000 + '"}', "bad_text"),
    ("{" + " " * 5000 + "}", "message_too_large"),
])
def test_malformed_messages_name_the_rule(message, code):
    """Every malformed message raises WireError with a code; its event is a non-fatal error."""
    with pytest.raises(WireError) as info:
        parse_client_message(message, max_audio=640)
    assert info.value.code == code
    event = info.value.event()
    assert event["type"] == "error" and event["code"] == code and event["fatal"] is False and event["message"]


def test_parse_control_messages():
    """hello, played and text decode to their dataclasses."""
    assert parse_client_message('{"type":"hello","sample_rate":48000}', max_audio=0) == ClientHello(48000)
    assert parse_client_message('{"type":"played","item_id":"it","ms":120,"done":true}', max_audio=0) == \
        ClientPlayed("it", 120, True)
    assert parse_client_message('{"type":"text","text":" hi "}', max_audio=0) == ClientText("hi")
    assert max_audio_bytes(48000, 200) == 19200


def test_session_backlog_drops_oldest_audio():
    """Past max_backlog_ms the oldest queued audio is dropped and counted; text is kept."""
    session = WebSession("t", send=None, max_backlog_ms=100)  # type: ignore[arg-type]
    session.put_text("hello")
    for value in range(8):  # 8 x 20 ms into a 100 ms backlog
        session.put_audio(np.full(FRAME, value, np.int16), RATE)
    assert session.dropped_ms == pytest.approx(60.0)
    kinds = [(kind, int(payload[0]) if kind == "audio" else payload) for kind, payload, _ in session._inbound]
    assert kinds == [("text", "hello")] + [("audio", v) for v in range(3, 8)]


@pytest.mark.anyio
async def test_session_reports_are_checked_and_clamped():
    """A report names an item the session sent; its time is clamped to what was sent; done is sticky."""
    sent: list = []

    async def send(message):
        sent.append(message)
        return True

    session = WebSession("t", send)
    await session.send_audio(pcm(1), item_id="item_a", turn=3, rate=RATE, samples=FRAME)
    assert json.loads(sent[0]) == {"type": "audio", "item_id": "item_a", "turn": 3, "rate": RATE}
    with pytest.raises(WireError) as info:
        session.report_played("item_zzz", 10, False)
    assert info.value.code == "unknown_item"
    session.report_played("item_a", 500, True)
    session.report_played("item_a", 5, False)
    assert await session.next_reports() == {"item_a": (20, True)}
    assert session.item_turn("item_a") == 3


def test_transports_outside_serve_say_how_to_run_them(echo_yaml):
    """`voxpipe run` of a browser pipeline fails at start naming `voxpipe serve`."""
    result = anyio.run(lambda: run_yaml(echo_yaml))
    assert not result.ok
    assert "voxpipe serve" in result.errors[0].message


def test_a_pipeline_without_transports_is_refused(tmp_path):
    """Serving a graph with no websocket transport fails before listening, naming the fix."""
    path = tmp_path / "plain.yaml"
    path.write_text("voxpipe: 1\nprocessors:\n  a: {type: capture.tone}\n  b: {type: playback.null}\nlinks:\n  - a -> b\n")
    with pytest.raises(PipelineError, match="transport.websocket.input"):
        from processors.web.server import WebServer

        WebServer(path)


# --- the server over real sockets ---------------------------------------------------------------


@pytest.mark.anyio
async def test_the_page_is_served(echo_yaml):
    """GET / is the page, its scripts are JavaScript, anything else is a 404."""
    async with web_server(echo_yaml) as srv:
        def get(path: str):
            try:
                with urllib.request.urlopen(srv.url + path.lstrip("/"), timeout=5) as r:
                    return r.status, r.headers["Content-Type"], r.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers["Content-Type"], exc.read().decode()

        status, ctype, body = await anyio.to_thread.run_sync(get, "/")
        assert status == 200 and ctype.startswith("text/html") and 'id="talk"' in body
        for script in ("/app.js", "/worklet.js"):
            status, ctype, body = await anyio.to_thread.run_sync(get, script)
            assert status == 200 and ctype.startswith("text/javascript") and body
        status, _, body = await anyio.to_thread.run_sync(get, "/secret.yaml")
        assert status == 404


@pytest.mark.anyio
async def test_two_sessions_stay_isolated(echo_yaml):
    """Two pages at once each get their own graph: only their own audio comes back; one leaving spares the other."""
    with anyio.fail_after(10):
        async with web_server(echo_yaml) as srv:
            async with connect(srv.ws_url) as a, connect(srv.ws_url) as b:
                pa, pb = Page(a), Page(b)
                ra, rb = await pa.event("ready"), await pb.event("ready")
                assert ra["session"] != rb["session"] and ra["input_rate"] == RATE
                for _ in range(10):
                    await a.send(pcm(111))
                    await b.send(pcm(-222))
                await pa.audio_frames(10)
                await pb.audio_frames(10)
                assert set(np.concatenate(pa.audio).tolist()) == {111}
                assert set(np.concatenate(pb.audio).tolist()) == {-222}
                assert len(srv.sessions) == 2
                await a.close()
                for _ in range(5):
                    await b.send(pcm(-333))
                await pb.audio_frames(15)
                assert np.concatenate(pb.audio)[-5 * FRAME:].tolist() == [-333] * (5 * FRAME)
            await srv.wait_idle()
            assert srv.sessions_total == 2


@pytest.mark.anyio
async def test_a_failing_session_does_not_affect_another(tmp_path):
    """A graph that fails tells its page why and closes (1011); the other session keeps answering."""
    with anyio.fail_after(10):
        async with web_server(scripted_yaml(tmp_path, answer_ms=100)) as srv:
            async with connect(srv.ws_url) as a, connect(srv.ws_url) as b:
                pa, pb = Page(a), Page(b)
                await pa.event("ready")
                await pb.event("ready")
                await a.send(pcm(3))
                err = await pa.event("error", fatal=True)
                assert "failing on purpose" in err["message"] and err["processor"] == "model"
                with pytest.raises(ConnectionClosed) as info:
                    while True:
                        await pa.next()
                assert info.value.rcvd.code == 1011
                await b.send(pcm(1))
                await pb.event("response.end", response_id="r1")
                assert sum(len(x) for x in pb.audio) == 5 * FRAME
            await srv.wait_idle()
            assert not srv.results["s1"].ok and srv.results["s2"].ended == "cancel"


@pytest.mark.anyio
async def test_disconnect_mid_turn_frees_everything(tmp_path):
    """A page that drops its connection in the middle of an answer leaves no task, session or graph behind."""
    with anyio.fail_after(15):
        async with web_server(scripted_yaml(tmp_path, answer_ms=10_000)) as srv:
            before = asyncio.all_tasks()
            ws = await connect(srv.ws_url)
            page = Page(ws)
            await page.event("ready")
            await ws.send(pcm(1))
            await page.event("response.start")
            await page.audio_frames(3)  # mid-turn: the answer is streaming
            assert len(asyncio.all_tasks()) > len(before)
            ws.transport.abort()  # no closing handshake: the network went away
            await srv.wait_idle()
            while leftover := asyncio.all_tasks() - before:
                await anyio.wait_all_tasks_blocked()
                if asyncio.all_tasks() - before == leftover:
                    break
            assert not asyncio.all_tasks() - before, asyncio.all_tasks() - before
            assert srv.sessions == {} and srv.results["s1"].ended == "cancel"
            # and the server still serves
            async with connect(srv.ws_url) as again:
                assert (await Page(again).event("ready"))["session"] == "s2"


@pytest.mark.anyio
async def test_bad_messages_get_an_error_and_the_server_keeps_working(echo_yaml):
    """Malformed and over-long messages get error events; the session goes on; past the hard limit it is closed with 1009."""
    with anyio.fail_after(10):
        async with web_server(echo_yaml, max_message_bytes=64 * 1024) as srv:
            async with connect(srv.ws_url, max_size=None) as ws:
                page = Page(ws)
                ready = await page.event("ready")
                await ws.send("{not json")
                assert (await page.event("error"))["code"] == "bad_json"
                await ws.send(b"\x00" * (ready["max_audio_bytes"] + 2))
                assert (await page.event("error"))["code"] == "audio_too_large"
                await ws.send(json.dumps({"type": "played", "item_id": "nope", "ms": 5}))
                assert (await page.event("error"))["code"] == "unknown_item"
                await ws.send(pcm(5))
                await page.audio_frames(1)
                assert page.audio[0].tolist() == [5] * FRAME
                await ws.send(b"\x00" * (64 * 1024 + 2))
                with pytest.raises(ConnectionClosed) as info:
                    while True:
                        await page.next()
                assert info.value.rcvd.code == 1009
            async with connect(srv.ws_url) as ws:
                page = Page(ws)
                await page.event("ready")
                for _ in range(20):
                    await ws.send("junk")
                with pytest.raises(ConnectionClosed) as info:
                    while True:
                        await page.next()
                assert info.value.rcvd.code == 1008
                assert len([e for e in page.events if e["type"] == "error"]) == 20
            await srv.wait_idle()


@pytest.mark.anyio
async def test_token_is_required_when_set(echo_yaml, monkeypatch):
    """With a token a missing or wrong one is refused with 401 before any graph starts; the right one connects."""
    monkeypatch.delenv("VOXPIPE_TOKEN", raising=False)
    with anyio.fail_after(10):
        async with web_server(echo_yaml, token="s3cret") as srv:
            for url in (srv.ws_url, srv.ws_url + "?token=wrong", srv.ws_url + "?token="):
                with pytest.raises(InvalidStatus) as info:
                    await connect(url)
                assert info.value.response.status_code == 401
            assert srv.sessions_total == 0
            async with connect(srv.ws_url + "?token=s3cret") as ws:
                assert (await Page(ws).event("ready"))["session"] == "s1"


@pytest.mark.anyio
async def test_token_from_the_environment_and_public_hosts(echo_yaml, monkeypatch):
    """VOXPIPE_TOKEN sets the token; binding a non-loopback host without one is refused, naming the fix."""
    monkeypatch.setenv("VOXPIPE_TOKEN", "from-env")
    async with web_server(echo_yaml) as srv:
        assert srv.token == "from-env"
        with pytest.raises(InvalidStatus):
            await connect(srv.ws_url)
    monkeypatch.delenv("VOXPIPE_TOKEN")
    with pytest.raises(VoxpipeError, match="--token"):
        async with web_server(echo_yaml, host="0.0.0.0"):
            pass


@pytest.mark.anyio
async def test_foreign_origins_are_refused(echo_yaml):
    """A page from another origin cannot open a session (403); the server's own origin and listed ones can."""
    with anyio.fail_after(10):
        async with web_server(echo_yaml, origins=["http://app.example"]) as srv:
            with pytest.raises(InvalidStatus) as info:
                await connect(srv.ws_url, origin="http://evil.example")
            assert info.value.response.status_code == 403
            for origin in (f"http://127.0.0.1:{srv.port}", "http://app.example"):
                async with connect(srv.ws_url, origin=origin) as ws:
                    await Page(ws).event("ready")


@pytest.mark.anyio
async def test_playback_reports_reach_the_model_and_barge_in_flushes(tmp_path):
    """The page's played reports arrive upstream as playback progress of the right item and turn; an interruption sends flush."""
    with anyio.fail_after(10):
        async with web_server(scripted_yaml(tmp_path, answer_ms=200)) as srv, connect(srv.ws_url) as ws:
            page = Page(ws)
            await page.event("ready")
            await ws.send(pcm(1))
            header = await page.event("audio")
            assert header == {"type": "audio", "item_id": "item_1", "turn": 1, "rate": RATE}
            await page.event("response.end", response_id="r1", turn=1)
            assert sum(len(x) for x in page.audio) == 10 * FRAME
            await ws.send(json.dumps({"type": "played", "item_id": "item_1", "ms": 120}))
            first = await page.event("metrics", name="progress")
            assert first["values"] == {"item_id": "item_1", "played_ms": 120, "done": False, "turn": 1}
            await ws.send(json.dumps({"type": "played", "item_id": "item_1", "ms": 9999, "done": True}))
            last = await page.event("metrics", name="progress")
            assert last["values"] == {"item_id": "item_1", "played_ms": 200, "done": True, "turn": 1}
            # barge in during a long answer
            await ws.send(pcm(1))
            await page.event("audio", item_id="item_2")
            await ws.send(pcm(2))
            flush = await page.event("flush")
            assert flush["turn"] == 3
            i = page.log.index(flush)
            assert not [m for m in page.log[i:] if isinstance(m, dict) and m["type"] == "audio"]


@pytest.mark.anyio
async def test_a_declared_rate_is_resampled(echo_yaml):
    """A client that says hello at 48 kHz is resampled to the pipeline's 16 kHz: same tone, a third of the samples."""
    with anyio.fail_after(10):
        async with web_server(echo_yaml) as srv, connect(srv.ws_url) as ws:
            page = Page(ws)
            await page.event("ready")
            await ws.send(json.dumps({"type": "hello", "sample_rate": 48000}))
            t = np.arange(48000) / 48000
            tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
            for i in range(0, 48000, 960):
                await ws.send(tone[i : i + 960].astype("<i2").tobytes())
            await page.audio_frames(45)  # 0.9 s of 1 s (the resampler holds back its delay)
            y = np.concatenate(page.audio).astype(np.float64)
            spectrum = np.abs(np.fft.rfft(y[-8000:] * np.hanning(8000)))
            assert abs(np.argmax(spectrum) * RATE / 8000 - 440) <= 2
            assert 7000 < np.abs(y[-8000:]).max() < 8500


@pytest.mark.anyio
async def test_closing_the_server_ends_open_sessions(echo_yaml):
    """Shutting the server down closes open sessions with 1001 and frees their graphs."""
    with anyio.fail_after(10):
        async with web_server(echo_yaml) as srv:
            ws = await connect(srv.ws_url)
            page = Page(ws)
            await page.event("ready")
        assert srv.sessions == {} and srv.results["s1"].ended == "cancel"
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await page.next()
        assert info.value.rcvd.code == 1001


def test_voxpipe_serve_command(echo_yaml):
    """`voxpipe serve FILE --port 0` prints its URL, serves sessions, and stops on Ctrl-C."""
    from websockets.sync.client import connect as sync_connect

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "serve", str(echo_yaml), "--port", "0"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = re.search(r"http://(\S+)/", line)
        assert url, line + proc.stderr.read()
        with sync_connect(f"ws://{url.group(1)}/ws", open_timeout=5) as ws:
            assert json.loads(ws.recv(timeout=5))["type"] == "ready"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    refused = subprocess.run([sys.executable, "-m", "pipeline.cli", "serve", str(echo_yaml), "--host", "0.0.0.0"],
                             cwd=root, capture_output=True, text=True, timeout=20,
                             env={**os.environ, "VOXPIPE_TOKEN": ""})
    assert refused.returncode == 2 and "--token" in refused.stderr


def test_exports():
    """Every name in each module's __all__ exists; the package exports the transports and the session."""
    import importlib

    import processors.web

    for name in ("processors.web.server", "processors.web.session", "processors.web.transport", "processors.web.wire"):
        module = importlib.import_module(name)
        assert all(hasattr(module, n) for n in module.__all__), name
    assert set(processors.web.__all__) == {"SessionState", "WebSession", "WebsocketInput", "WebsocketOutput"}
    from pipeline.registry import resolve_type

    assert resolve_type("transport.websocket.input") is processors.web.WebsocketInput
    assert resolve_type("transport.websocket.output") is processors.web.WebsocketOutput
