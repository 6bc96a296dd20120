"""realtime.openai over a real websocket on 127.0.0.1, against a scripted peer replaying canonical events."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import pytest
from realtime_canonical import (
    BETA_VAD_TURN,
    GA_BARGE_IN,
    GA_FUNCTION_CALL,
    GA_VAD_TURN,
    server_events,
    validate_client_event,
)

from pipeline.frames import (
    AudioFrame,
    Direction,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    MetricsFrame,
    PlaybackProgressFrame,
    ResponseEndFrame,
    ResponseStartFrame,
    TextFrame,
    ToolCallFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipeline.graph import Graph
from pipeline.processor import Processor
from pipeline.runner import Runner
from processors.realtime.client import OpenAIRealtime

RATE = 24000
KEY = "sk-test-do-not-log-9f3a"


def tone(ms: float, freq: float = 440.0, start: int = 0) -> np.ndarray:
    n = int(RATE * ms / 1000)
    t = (np.arange(n) + start) / RATE
    return (0.3 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def mic_frames(x: np.ndarray, frame: int = 480) -> list[AudioFrame]:
    return [AudioFrame(x[i : i + frame], RATE, pts=i) for i in range(0, len(x), frame)]


# --- a scripted peer server -------------------------------------------------------------------


class PeerConnection:
    """One client connection seen by the peer: what it sent (validated), and how to answer."""

    def __init__(self, ws, dialect: str) -> None:
        self.ws = ws
        self.dialect = dialect
        self.headers = ws.request.headers
        self.path = ws.request.path
        self.received: list[dict[str, Any]] = []

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def send_all(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            await self.send(ev)

    async def recv(self) -> dict[str, Any]:
        event = json.loads(await self.ws.recv())
        validate_client_event(event, self.dialect)
        self.received.append(event)
        return event

    async def expect(self, etype: str) -> dict[str, Any]:
        """Read until an event of ``etype`` (appends on the way are recorded)."""
        while True:
            ev = await self.recv()
            if ev["type"] == etype:
                return ev

    def appended(self) -> np.ndarray:
        chunks = [np.frombuffer(base64.b64decode(e["audio"]), "<i2") for e in self.received
                  if e["type"] == "input_audio_buffer.append"]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    async def wait_appended(self, n: int) -> None:
        while self.appended().shape[0] < n:
            await self.recv()

    async def open_session(self) -> dict[str, Any]:
        """session.created, then the client's session.update, answered by session.updated."""
        await self.send({"type": "session.created", "event_id": "event_0",
                         "session": {"type": "realtime", "object": "realtime.session", "id": "sess_1"}})
        update = await self.expect("session.update")
        await self.send({"type": "session.updated", "event_id": "event_00", "session": update["session"]})
        return update


class Peer:
    """A websocket server on 127.0.0.1 running ``script(conn)`` per connection."""

    def __init__(self, script: Callable[[PeerConnection], Any], dialect: str = "ga", process_request=None) -> None:
        self.script = script
        self.dialect = dialect
        self.process_request = process_request
        self.connections: list[PeerConnection] = []
        self.errors: list[BaseException] = []

    async def __aenter__(self) -> Peer:
        from websockets.asyncio.server import serve

        self.server = await serve(self._handler, "127.0.0.1", 0, max_size=None, process_request=self.process_request)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1/realtime"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()
        with anyio.move_on_after(5):
            await self.server.wait_closed()
        if self.errors:
            raise self.errors[0]

    async def _handler(self, ws) -> None:
        from websockets.exceptions import ConnectionClosed

        conn = PeerConnection(ws, self.dialect)
        self.connections.append(conn)
        try:
            with anyio.fail_after(10):  # a script that waits forever fails the test instead
                await self.script(conn)
            while True:  # keep recording until the client closes
                await conn.recv()
        except ConnectionClosed:
            pass
        except Exception as exc:  # surfaces in the test, not in a websockets log line
            self.errors.append(exc)


# --- a graph around the processor -------------------------------------------------------------


class ScriptSource(Processor):
    """Pushes frames, waiting at each anyio.Event step until it is set."""

    def __init__(self, steps: list) -> None:
        super().__init__(name="source")
        self.steps = steps

    async def produce(self) -> None:
        for step in self.steps:
            if isinstance(step, anyio.Event):
                await step.wait()
            elif isinstance(step, tuple):
                frame, _ = step
                await self.push(frame, Direction.UPSTREAM)
            else:
                await self.push(step)


class Sink(Processor):
    """Collects frames; ``when(pred)`` gives an Event set by the first frame matching ``pred``."""

    def __init__(self, on_frame: Callable[[Sink, Frame], Any] | None = None) -> None:
        super().__init__(name="sink")
        self.frames: list[Frame] = []
        self._waits: list[tuple[Callable[[Frame], bool], anyio.Event]] = []
        self.on_frame = on_frame

    def when(self, pred: Callable[[Frame], bool]) -> anyio.Event:
        event = anyio.Event()
        self._waits.append((pred, event))
        return event

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.frames.append(frame)
        for pred, event in self._waits:
            if pred(frame):
                event.set()
        if self.on_frame is not None:
            await self.on_frame(self, frame)

    def of(self, cls: type) -> list:
        return [f for f in self.frames if isinstance(f, cls)]


async def run(source: ScriptSource, model: OpenAIRealtime, sink: Sink, *extra: Processor, timeout_s: float = 15.0):
    graph = Graph.chain(source, model, *extra, sink, name="realtime-test")
    graph.check()
    with anyio.fail_after(timeout_s):
        return await Runner(graph, realtime=False).run()


def model(url: str, **params) -> OpenAIRealtime:
    return OpenAIRealtime({"url": url, "api_key": KEY, "reconnect": {"initial_delay_s": 0.01, "seed": 1}, **params},
                          name="model")


def renamed(events: list[dict], rid: str) -> list[dict]:
    """Canonical events re-addressed to response ``rid``."""
    return [{**ev, "response": {**ev["response"], "id": rid}} if "response" in ev else
            {**ev, "response_id": rid} if "response_id" in ev else ev for ev in events]


def with_audio(events: list[dict], deltas: list[np.ndarray]) -> list[dict]:
    """Canonical events with the audio delta replaced by real audio, one delta per array."""
    out = []
    for ev in events:
        if ev["type"] in ("response.output_audio.delta", "response.audio.delta"):
            for n, d in enumerate(deltas):
                out.append({**ev, "event_id": f"{ev['event_id']}_{n}",
                            "delta": base64.b64encode(d.astype("<i2").tobytes()).decode()})
        else:
            out.append(ev)
    return out


# --- tests ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("dialect,seq", [("ga", GA_VAD_TURN), ("beta", BETA_VAD_TURN)])
async def test_vad_turn_over_a_socket(dialect, seq):
    """Mic audio goes out losslessly in batches; the canonical turn comes back as frames of turn 1."""
    x = tone(500)
    reply = [tone(100, 600.0, i * 2400) for i in range(3)]

    async def script(conn: PeerConnection) -> None:
        update = await conn.open_session()
        assert ("type" in update["session"]) is (dialect == "ga")
        await conn.wait_appended(7200)  # 300 ms heard: the canonical turn starts
        await conn.send_all(with_audio(server_events(seq), reply))

    async with Peer(script, dialect) as peer:
        sink = Sink()
        done = sink.when(lambda f: isinstance(f, ResponseEndFrame))
        result = await run(ScriptSource([*mic_frames(x), done]), model(peer.url, dialect=dialect), sink)
    assert result.ok, result.errors
    (conn,) = peer.connections
    assert conn.headers["Authorization"] == f"Bearer {KEY}"
    assert conn.headers.get("OpenAI-Beta") == ("realtime=v1" if dialect == "beta" else None)
    assert conn.path == "/v1/realtime?model=gpt-realtime"
    np.testing.assert_array_equal(conn.appended(), x)
    assert [len(base64.b64decode(e["audio"])) // 2 for e in conn.received[1:-1]] == [1440] * 8
    kinds = [type(f) for f in sink.frames if not isinstance(f, (AudioFrame, TextFrame))]
    assert kinds[:4] == [UserStartedSpeakingFrame, UserStoppedSpeakingFrame, ResponseStartFrame, ResponseEndFrame]
    audio = sink.of(AudioFrame)
    np.testing.assert_array_equal(np.concatenate([f.samples for f in audio]), np.concatenate(reply))
    assert {(f.item_id, f.turn, f.sample_rate) for f in audio} == {("item_A1", 1, RATE)}
    assert [f.pts for f in audio] == [0, 2400, 4800]
    assert "".join(f.text for f in sink.of(TextFrame)) == "Hi there!"
    assert sink.of(ResponseEndFrame)[0].usage["total_tokens"] == 253
    assert "ttfb_ms" in sink.of(MetricsFrame)[0].values


@pytest.mark.anyio
async def test_graceful_end_waits_for_the_response():
    """At the end of input the processor flushes the last audio and waits for the running response."""
    x = tone(250)  # 4 batches of 60 ms and a 10 ms tail, sent only at the end
    reply = [tone(80, 700.0)]

    async def script(conn: PeerConnection) -> None:
        await conn.open_session()
        events = with_audio(server_events(GA_VAD_TURN), reply)
        await conn.send_all(events[:6])  # ... response.created
        await conn.wait_appended(len(x))
        await conn.send_all(events[6:])

    async with Peer(script) as peer:
        sink = Sink()
        started = sink.when(lambda f: isinstance(f, ResponseStartFrame))
        result = await run(ScriptSource([*mic_frames(x), started]), model(peer.url), sink)
    assert result.ok, result.errors
    np.testing.assert_array_equal(peer.connections[0].appended(), x)
    np.testing.assert_array_equal(np.concatenate([f.samples for f in sink.of(AudioFrame)]), reply[0])
    assert sink.of(ResponseEndFrame)[0].status == "completed"


@pytest.mark.anyio
async def test_reconnect_in_the_middle_of_a_response():
    """A socket dropped mid-response: the response ends as failed, the session and the user audio carry on."""
    first, second = tone(300, 300.0), tone(200, 500.0, 7200)
    reply = [tone(60, 800.0)]

    async def script(conn: PeerConnection) -> None:
        update = await conn.open_session()
        if len(peer.connections) == 1:
            assert update["session"]["tools"] == []
            events = with_audio(server_events(GA_VAD_TURN), reply)
            await conn.send_all(events[:11])  # up to the first audio delta of resp_2
            await conn.wait_appended(len(first))
            conn.ws.transport.abort()  # no close frame: abnormal closure (1006)
        else:
            await conn.wait_appended(len(second))
            await conn.send_all(with_audio(renamed(server_events(GA_VAD_TURN), "resp_7"), reply))

    async with Peer(script) as peer:
        sink = Sink()
        lost = sink.when(lambda f: isinstance(f, ResponseEndFrame) and f.status == "failed")
        done = sink.when(lambda f: isinstance(f, ResponseEndFrame) and f.status == "completed")
        m = model(peer.url, append_ms=20)
        result = await run(ScriptSource([*mic_frames(first), lost, *mic_frames(second), done]), m, sink)
    assert result.ok, result.errors
    assert m.connections == 2 and len(peer.connections) == 2
    a, b = peer.connections
    assert a.received[0]["session"] == b.received[0]["session"]  # the session config is restored
    np.testing.assert_array_equal(np.concatenate([a.appended(), b.appended()]), np.concatenate([first, second]))
    ends = sink.of(ResponseEndFrame)
    assert [(e.response_id, e.status, e.turn) for e in ends] == [("resp_2", "failed", 1), ("resp_7", "completed", 2)]
    lost_errors = [f for f in sink.of(ErrorFrame) if f.code == "connection_lost"]
    assert len(lost_errors) == 1 and not lost_errors[0].fatal and "reconnecting" in lost_errors[0].message
    assert [f.turn for f in sink.of(AudioFrame)] == [1, 2]


@pytest.mark.anyio
async def test_barge_in_truncates_at_the_position_playback_reports():
    """Speech during playback: interruption downstream, late audio dropped, truncate at playback's final report."""
    reply = [tone(100, 600.0, i * 2400) for i in range(20)]  # 2 s of audio, faster than real time
    barge = anyio.Event()

    async def playback(sink: Sink, frame: Frame) -> None:
        # a playback that has played 1200 ms when the user speaks, and stops there
        if isinstance(frame, AudioFrame) and sum(f.num_samples for f in sink.of(AudioFrame)) == 1200 * 24:
            await sink.push(PlaybackProgressFrame("item_A1", 1180), Direction.UPSTREAM)
            barge.set()
        elif isinstance(frame, InterruptionFrame):
            await sink.push(PlaybackProgressFrame("item_A1", 1200, done=True), Direction.UPSTREAM)

    async def script(conn: PeerConnection) -> None:
        await conn.open_session()
        events = server_events(GA_VAD_TURN)
        await conn.send_all(with_audio(events[5:11], reply))  # response.created ... 2 s of audio deltas
        await barge.wait()
        await conn.send_all(server_events(GA_BARGE_IN)[:1])  # speech_started
        truncate = await conn.expect("conversation.item.truncate")
        assert (truncate["item_id"], truncate["audio_end_ms"]) == ("item_A1", 1200)
        await conn.send_all(with_audio(events[10:11], [tone(100, 900.0)]))  # a late delta
        await conn.send_all(server_events(GA_BARGE_IN)[1:])

    async with Peer(script) as peer:
        sink = Sink(on_frame=playback)
        done = sink.when(lambda f: isinstance(f, ResponseEndFrame))
        result = await run(ScriptSource([done]), model(peer.url), sink)
    assert result.ok, result.errors
    sent = [e["type"] for e in peer.connections[0].received]
    assert "response.cancel" not in sent  # interrupt_response: the server cancels by itself
    (interruption,) = sink.of(InterruptionFrame)
    assert interruption.turn == 2
    i = sink.frames.index(interruption)
    assert not [f for f in sink.frames[i:] if isinstance(f, AudioFrame)]
    assert sink.of(ResponseEndFrame)[0].status == "cancelled"
    assert not [f for f in sink.of(ErrorFrame)]  # response_cancel_not_active is benign


@pytest.mark.anyio
async def test_function_call_through_the_tool_router():
    """The router's tools reach the session; its result goes back as function_call_output plus one response.create."""
    from processors.tools.router import ToolRouter

    async def script(conn: PeerConnection) -> None:
        update = await conn.open_session()
        tools = update["session"]["tools"]
        if not tools:  # the router's announcement may come as a tools-only update
            tools = (await conn.expect("session.update"))["session"]["tools"]
        assert [t["name"] for t in tools] == ["get_weather"]
        events = server_events(GA_FUNCTION_CALL)[1:-3]
        args = json.dumps({"location": "Paris"})
        for ev in events:
            for holder in (ev, ev.get("item") or {}):
                if holder.get("arguments"):
                    holder["arguments"] = args
            for out in (ev.get("response") or {}).get("output") or []:
                out["arguments"] = args
        await conn.send_all(events)
        output = await conn.expect("conversation.item.create")
        assert output["item"]["call_id"] == "call_abc" and json.loads(output["item"]["output"])["temp_c"] == 18
        await conn.expect("response.create")
        await conn.send_all(server_events(GA_FUNCTION_CALL)[-3:-1])
        await conn.send_all(renamed(server_events(GA_VAD_TURN)[5:-1], "resp_4"))  # the spoken answer

    async with Peer(script) as peer:
        sink = Sink()
        answered = sink.when(lambda f: isinstance(f, ResponseEndFrame) and f.response_id == "resp_4")
        router = ToolRouter({"modules": ["processors.tools.examples"]}, name="tools")
        result = await run(ScriptSource([answered]), model(peer.url), sink, router)
    assert result.ok, result.errors
    assert not sink.of(ToolCallFrame)  # consumed by the router
    assert [e["type"] for e in peer.connections[0].received].count("response.create") == 1
    assert [(f.response_id, f.turn) for f in sink.of(ResponseStartFrame)] == [("resp_3", 1), ("resp_4", 2)]


@pytest.mark.anyio
async def test_fatal_error_event_stops_the_pipeline_without_leaking_the_key(caplog):
    """An invalid_api_key error is fatal: the run fails with a message naming the fix, never the key."""
    async def script(conn: PeerConnection) -> None:
        await conn.send({"type": "session.created", "event_id": "e0", "session": {"type": "realtime"}})
        await conn.send({"type": "error", "event_id": "e1", "error": {
            "type": "invalid_request_error", "code": "invalid_api_key", "param": None, "event_id": None,
            "message": "Incorrect API key provided."}})

    caplog.set_level(logging.DEBUG)
    async with Peer(script) as peer:
        result = await run(ScriptSource([anyio.Event()]), model(peer.url), Sink())
    assert not result.ok and result.ended == "error"
    (err,) = result.errors
    assert "Incorrect API key provided." in err.message and "OPENAI_API_KEY" in err.message and err.fatal
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith("websockets.server")]  # not the peer's
    assert not [m for m in ours if KEY in m] and all(KEY not in e.message for e in result.errors)


@pytest.mark.anyio
async def test_handshake_refused_with_401_is_fatal(caplog):
    """HTTP 401 on the handshake is not retried and says which setting to check."""
    from websockets.datastructures import Headers
    from websockets.http11 import Response

    def refuse(connection, request):
        return Response(401, "Unauthorized", Headers(), b"invalid key")

    caplog.set_level(logging.DEBUG)
    async with Peer(lambda conn: None, process_request=refuse) as peer:
        m = model(peer.url)
        result = await run(ScriptSource([anyio.Event()]), m, Sink())
    assert not result.ok and m.connections == 0
    (err,) = result.errors
    assert "401" in err.message and "OPENAI_API_KEY" in err.message
    assert not [r for r in caplog.records if not r.name.startswith("websockets.server") and KEY in r.getMessage()]


@pytest.mark.anyio
async def test_connection_refused_gives_up_after_max_attempts():
    """A port nobody listens on is retried max_attempts times, then the run fails naming the setting."""
    async with Peer(lambda conn: None) as peer:
        url = peer.url
    m = OpenAIRealtime({"url": url, "api_key": KEY, "reconnect": {"initial_delay_s": 0.001, "max_attempts": 2}})
    sink = Sink()
    result = await run(ScriptSource([anyio.Event()]), m, sink)
    assert not result.ok
    assert "gave up after 2 attempts" in result.errors[0].message and "reconnect.max_attempts" in result.errors[0].message
    assert len([f for f in sink.of(ErrorFrame) if f.code == "connection_lost"]) == 2


@pytest.mark.anyio
async def test_user_transcription_and_input_format():
    """G.711 params change the declared input caps; transcription events arrive as frames."""
    m = OpenAIRealtime({"url": "ws://127.0.0.1:1/v1/realtime", "api_key": KEY, "input_audio_format": "g711_ulaw",
                        "output_audio_format": "g711_ulaw"})
    assert (m.input_format.rate, m.output_format(None).rate) == (8000, 8000)
    assert OpenAIRealtime.input_format.rate == RATE

    async def script(conn: PeerConnection) -> None:
        await conn.open_session()
        await conn.send_all(server_events(GA_VAD_TURN)[-1:])

    async with Peer(script) as peer:
        sink = Sink()
        got = sink.when(lambda f: isinstance(f, TranscriptionFrame))
        result = await run(ScriptSource([got]), model(peer.url), sink)
    assert result.ok
    (t,) = sink.of(TranscriptionFrame)
    assert (t.text, t.role, t.final, t.item_id) == ("Hello?", "user", True, "item_U1")


def test_missing_key_is_a_start_error(monkeypatch):
    """Without a key the processor fails at start, naming OPENAI_API_KEY and url: local."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    async def main():
        return await run(ScriptSource([]), OpenAIRealtime({}), Sink())

    result = anyio.run(main)
    assert not result.ok and "OPENAI_API_KEY" in result.errors[0].message and "url: local" in result.errors[0].message


def test_exports():
    """The package exports exactly its public names."""
    import processors.realtime.client as pkg

    assert sorted(pkg.__all__) == ["OpenAIRealtime", "Phase", "RealtimeError", "RealtimeParams",
                                   "RealtimeProtocol", "RealtimeProtocolError"]
    for module in ("protocol", "session", "backoff", "client", "state", "events", "errors", "user_audio",
                   "assistant_audio", "tool_calls", "responses"):
        mod = __import__(f"processors.realtime.client.{module}", fromlist=["__all__"])
        assert mod.__all__ and all(hasattr(mod, name) for name in mod.__all__)


@pytest.mark.anyio
async def test_end_to_end_with_the_local_server():
    """`url: local`: eSpeak speech in, the offline server hears it, calls the router's tool, and speaks the answer."""
    pytest.importorskip("pocketsphinx")
    pytest.importorskip("espeakng_loader")
    from pipeline.dsp import resample
    from processors.speech.espeak import synthesize
    from processors.tools.router import ToolRouter

    x, sr = synthesize("what is the weather in paris")
    speech = (np.clip(resample(x.astype(np.float32) / 32768.0, sr, RATE), -1, 1) * 32767).astype(np.int16)
    mic = np.concatenate([np.zeros(RATE // 2, np.int16), speech, np.zeros(RATE * 3 // 2, np.int16)])
    sink = Sink()
    answered = sink.when(lambda f: isinstance(f, ResponseEndFrame) and f.turn == 2)
    m = OpenAIRealtime({"url": "local", "input_transcription": "whisper-1"}, name="model")
    router = ToolRouter({"modules": ["processors.tools.examples"]}, name="tools")
    result = await run(ScriptSource([*mic_frames(mic), answered]), m, sink, router, timeout_s=60)
    assert result.ok, result.errors
    assert m.url.startswith("ws://127.0.0.1:") and m.url.endswith("/v1/realtime?model=gpt-realtime")
    assert not sink.of(ErrorFrame) and not m.core.stats.get("malformed") and not m.core.stats.get("unknown")
    (said,) = [f for f in sink.of(TranscriptionFrame) if f.final]
    assert said.text == "what is the weather in paris"
    assert [type(f) for f in sink.frames[:2]] == [UserStartedSpeakingFrame, UserStoppedSpeakingFrame]
    ends = sink.of(ResponseEndFrame)
    assert [(e.turn, e.status) for e in ends] == [(1, "completed"), (2, "completed")]
    assert "".join(f.text for f in sink.of(TextFrame)) == "It is 18 degrees and partly cloudy in Paris."
    audio = sink.of(AudioFrame)
    assert audio and {(f.turn, f.sample_rate) for f in audio} == {(2, RATE)} and len({f.item_id for f in audio}) == 1
    y = np.concatenate([f.samples for f in audio]).astype(np.float64)
    assert y.shape[0] > RATE and np.sqrt(np.mean(y**2)) > 300  # over a second of audible speech


@pytest.mark.parametrize("overrides,url", [([], "wss://api.openai.com/v1/realtime"), (["model.url=local"], "local")])
def test_voice_agent_pipeline_validates(monkeypatch, overrides, url):
    """pipelines/voice_agent.yaml loads and checks (mic -> aec -> denoise -> turn -> model -> tools -> speaker)."""
    from pathlib import Path

    from pipeline.loader import load

    monkeypatch.delenv("VOXPIPE_REALTIME_URL", raising=False)
    graph = load(Path(__file__).parents[1] / "pipelines" / "voice_agent.yaml", overrides=overrides)
    assert [n.type for n in graph.nodes.values()] == ["capture.microphone", "audio.aec", "audio.denoise",
                                                      "turn.semantic", "realtime.openai", "tools.router",
                                                      "playback.speaker"]
    assert graph.nodes["speaker"].processor.params.echo_reference  # the aec's reference comes back up the chain
    m = graph.nodes["model"].processor
    assert isinstance(m, OpenAIRealtime) and m.params.url == url and m.params.api_key is None
    # turn.semantic ends the user's turn: the client commits and asks for the response itself
    assert m.params.turn_detection.type == "none" and graph.formats["model"].rate == RATE


def test_push_queue_is_bounded_and_in_statistics():
    """The pusher's queue is a bounded FrameQueue (block policy) whose figures show in statistics()."""
    proc = OpenAIRealtime({"url": "ws://127.0.0.1:9/v1/realtime", "api_key": "k"})
    assert proc.statistics()["push_queue"] == {"queued": 0, "max_size": 4096, "dropped": 0, "stale": 0}
    assert proc._push_queue.drop_oldest is False
