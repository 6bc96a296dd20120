"""The local realtime server over real sockets on 127.0.0.1, driven by the official SDK.

Every server event received is validated strictly against the SDK's server-event union of
the dialect (reference §6.3) and checked for the cross-event invariants (§8). Speech is
eSpeak NG audio; recognition, the responder and synthesis are the real ones.
"""

from __future__ import annotations

import base64
import functools
import json
import time

import anyio
import numpy as np
import pytest
from openai import AsyncOpenAI
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pipeline.dsp.resample import resample
from processors.realtime.server import Dialect, InvariantChecker, serve_local, strict_validator
from processors.realtime.server.server import main
from processors.speech.sphinx import Recognizer

pytestmark = pytest.mark.anyio

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                               "required": ["location"]}}
STRICT = {Dialect.GA: strict_validator(Dialect.GA), Dialect.BETA: strict_validator(Dialect.BETA)}
HELLO_REPLY = "Hello! I am the voxpipe local model."


@functools.lru_cache(maxsize=None)
def utterance(text: str, lead_ms: int = 300, tail_ms: int = 600) -> bytes:
    """pcm16 24 kHz bytes of eSpeak NG saying ``text`` between quiet seeded noise."""
    from processors.speech.espeak import synthesize

    x, rate = synthesize(text)
    rng = np.random.default_rng(len(text))
    quiet = lambda ms: rng.normal(0, 30, 24 * ms).astype(np.int16)
    return np.concatenate([quiet(lead_ms), resample(x, rate, 24000), quiet(tail_ms)]).astype("<i2").tobytes()


class Events:
    """Receives from an SDK connection; validates every event; keeps the largest message size."""

    def __init__(self, conn, dialect: Dialect = Dialect.GA) -> None:
        self.conn = conn
        self.validate = STRICT[dialect]
        self.checker = InvariantChecker(dialect)
        self.seen: list[dict] = []
        self.largest = 0

    async def next(self) -> dict:
        raw = await self.conn.recv_bytes()
        self.largest = max(self.largest, len(raw))
        self.validate(raw)
        event = self.checker.check(raw)
        self.seen.append(event)
        return event

    async def until(self, etype: str, **match) -> list[dict]:
        """Events up to and including the first ``etype`` whose fields match."""
        out = []
        with anyio.fail_after(20):
            while True:
                event = await self.next()
                out.append(event)
                if event["type"] == etype and all(event.get(k) == v for k, v in match.items()):
                    return out


async def say(conn, text: str, chunk_ms: int = 100, tail_ms: int = 600) -> None:
    """Stream speech as input_audio_buffer.append events (faster than real time)."""
    data = utterance(text, tail_ms=tail_ms)
    step = 48 * chunk_ms
    for i in range(0, len(data), step):
        await conn.input_audio_buffer.append(audio=base64.b64encode(data[i:i + step]).decode())


def audio_of(events: list[dict], kind: str = "response.output_audio.delta") -> np.ndarray:
    return np.frombuffer(b"".join(base64.b64decode(e["delta"]) for e in events if e["type"] == kind), "<i2")


def of_type(events: list[dict], etype: str) -> list[dict]:
    return [e for e in events if e["type"] == etype]


async def test_sdk_conversation_with_speech_function_call_and_spoken_reply():
    """GA: spoken question -> transcript and get_weather(Paris) -> tool output -> spoken answer."""
    async with serve_local() as server:
        client = AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            events = Events(conn)
            assert (await events.next())["type"] == "session.created"
            await conn.session.update(session={"type": "realtime", "tools": [WEATHER_TOOL], "audio": {
                "input": {"transcription": {"model": "gpt-4o-transcribe"}}}})
            updated = await events.until("session.updated")
            assert updated[-1]["session"]["tools"][0]["name"] == "get_weather"
            await say(conn, "what is the weather in paris")
            turn = await events.until("response.done")
            kinds = [e["type"] for e in turn]
            assert kinds[:5] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                                 "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
            if "conversation.item.input_audio_transcription.completed" not in kinds:
                turn += await events.until("conversation.item.input_audio_transcription.completed")
            (heard,) = of_type(turn, "conversation.item.input_audio_transcription.completed")
            assert heard["transcript"] == "what is the weather in paris"
            done = turn[-1]["response"] if turn[-1]["type"] == "response.done" else of_type(turn, "response.done")[0]["response"]
            (call,) = done["output"]
            assert call["type"] == "function_call" and call["name"] == "get_weather"
            assert json.loads(call["arguments"]) == {"location": "Paris"}
            await conn.conversation.item.create(item={"type": "function_call_output", "call_id": call["call_id"],
                                                      "output": json.dumps({"temp_c": 21, "conditions": "sunny"})})
            await conn.response.create()
            reply = await events.until("response.done")
            (transcript,) = of_type(reply, "response.output_audio_transcript.done")
            assert transcript["transcript"] == "It is 21 degrees and sunny in Paris."
            speech = audio_of(reply)
            assert len(speech) > 24000  # more than a second of speech
            heard_back = Recognizer(["it is twenty one degrees and sunny in paris", "hello i am the local model",
                                     "what is the weather in london"]).recognize(speech, 24000)
            assert heard_back == "it is twenty one degrees and sunny in paris"
            assert reply[-1]["response"]["status"] == "completed"
    events.checker.finish()
    assert events.largest < 1 << 20


async def test_beta_sdk_conversation():
    """Beta (OpenAI-Beta header): a spoken hello gets beta events, transcription and a reply."""
    async with serve_local() as server:
        client = AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url)
        async with client.beta.realtime.connect(model="gpt-4o-realtime-preview") as conn:
            events = Events(conn, Dialect.BETA)
            created = await events.next()
            assert created["session"]["modalities"] == ["text", "audio"]
            await conn.session.update(session={"input_audio_transcription": {"model": "whisper-1"}})
            await events.until("session.updated")
            await say(conn, "hello")
            turn = await events.until("response.done")
            kinds = [e["type"] for e in turn]
            assert "conversation.item.created" in kinds and "response.audio.delta" in kinds
            assert "conversation.item.added" not in kinds and "response.output_audio.delta" not in kinds
            (transcript,) = of_type(turn, "response.audio_transcript.done")
            assert transcript["transcript"] == HELLO_REPLY
            assert len(audio_of(turn, "response.audio.delta")) > 12000
            if "conversation.item.input_audio_transcription.completed" not in kinds:
                turn += await events.until("conversation.item.input_audio_transcription.completed")
            assert of_type(turn, "conversation.item.input_audio_transcription.completed")[0]["transcript"] == "hello"
    events.checker.finish()


async def test_barge_in_cancels_the_response_over_the_socket():
    """Speech during a paced response: speech_started, close-out, cancelled turn_detected."""
    async with serve_local(output_pace=4.0) as server:
        client = AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            events = Events(conn)
            await say(conn, "tell me a story")
            story = await events.until("response.output_audio.delta")
            rid = story[-1]["response_id"]
            item_id = story[-1]["item_id"]
            await say(conn, "hello", tail_ms=0)  # still speaking: no speech_stopped yet
            cut = await events.until("response.done")
            kinds = [e["type"] for e in cut]
            start = kinds.index("input_audio_buffer.speech_started")
            assert kinds[start + 1:] == [
                "response.output_audio.done", "response.output_audio_transcript.done", "response.content_part.done",
                "response.output_item.done", "conversation.item.done", "rate_limits.updated", "response.done"]
            done = cut[-1]["response"]
            assert done["id"] == rid and done["status"] == "cancelled"
            assert done["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
            assert done["output"][0]["status"] == "incomplete"
            assert of_type(cut, "response.output_audio_transcript.done")[0]["transcript"].startswith("Once upon a time")
            heard_ms = len(audio_of(story + cut)) // 24
            await conn.response.cancel()  # the server already cancelled: the benign error
            await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=min(200, heard_ms))
            answers = await events.until("conversation.item.truncated")
            assert [e["error"]["code"] for e in of_type(answers, "error")] == ["response_cancel_not_active"]
            assert answers[-1]["item_id"] == item_id and answers[-1]["audio_end_ms"] == min(200, heard_ms)
            await conn.input_audio_buffer.append(audio=base64.b64encode(bytes(48 * 600)).decode())  # silence
            rest = await events.until("response.done")
            assert of_type(rest, "input_audio_buffer.committed")[0]["previous_item_id"] == item_id
            assert rest[-1]["response"]["status"] == "completed"
            assert of_type(rest, "response.output_audio_transcript.done")[0]["transcript"] == HELLO_REPLY
    events.checker.finish()


async def _raw(url: str, **kwargs):
    return ws_connect(url + "/realtime?model=gpt-realtime", max_size=None, **kwargs)


async def test_bad_input_gets_error_events_and_the_connection_stays_usable():
    """Each bad client message gets its error event; then a normal turn works on that socket."""
    validate = STRICT[Dialect.GA]
    checker = InvariantChecker(Dialect.GA)

    async def expect_error(ws, message, code):
        await ws.send(message)
        event = checker.check(await ws.recv())
        validate(event)
        assert event["type"] == "error" and event["error"]["code"] == code, event
        return event["error"]

    async with serve_local() as server:
        async with await _raw(server.url, additional_headers={"Authorization": "Bearer sk-local"}) as ws:
            validate(checker.check(await ws.recv()))
            await expect_error(ws, "{this is not json", "invalid_event")
            await expect_error(ws, b"\x00\x01binary", "invalid_event")
            await expect_error(ws, json.dumps({"event_id": "mine"}), "invalid_event")
            await expect_error(ws, json.dumps({"type": "conversation.item.make"}), "invalid_event")
            await expect_error(ws, json.dumps({"type": "session.update", "session": {"voice": "ash"}}),
                               "missing_required_parameter")
            await expect_error(ws, json.dumps({"type": "input_audio_buffer.commit"}), "input_audio_buffer_commit_empty")
            await expect_error(ws, json.dumps({"type": "conversation.item.truncate", "item_id": "item_nope",
                                               "content_index": 0, "audio_end_ms": 10}), "item_not_found")
            await expect_error(ws, json.dumps({"type": "conversation.item.delete"}), "missing_required_parameter")
            await expect_error(ws, json.dumps({"type": "response.cancel"}), "response_cancel_not_active")
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {
                "input": {"turn_detection": None}}}}))
            validate(checker.check(await ws.recv()))
            big = base64.b64encode(bytes(2 * 1024 * 1024)).decode()  # 2 MiB of silence: over the 1 MiB default
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": big}))
            await ws.send(json.dumps({"type": "input_audio_buffer.clear"}))
            assert checker.check(await ws.recv())["type"] == "input_audio_buffer.cleared"
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}}))
            await ws.send(json.dumps({"type": "response.create"}))
            await ws.send(json.dumps({"type": "response.create"}))
            seen = []
            with anyio.fail_after(20):
                while not seen or seen[-1]["type"] != "response.done":
                    seen.append(checker.check(await ws.recv()))
                    validate(seen[-1])
            assert [e["error"]["code"] for e in of_type(seen, "error")] == ["conversation_already_has_active_response"]
            event = seen[-1]
            assert event["response"]["status"] == "completed"
            assert event["response"]["output"][0]["content"][0]["transcript"] == HELLO_REPLY
    checker.finish()


async def test_handshake_auth_subprotocols_and_paths():
    """Bearer or subprotocol key required; `realtime` echoed only when offered; beta by subprotocol."""
    async with serve_local() as server:
        with pytest.raises(InvalidStatus) as refused:
            async with await _raw(server.url):
                pass
        assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(server.url + "/chat", additional_headers={"Authorization": "Bearer x"}):
                pass
        assert refused.value.response.status_code == 404
        async with await _raw(server.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            assert ws.subprotocol is None
            assert json.loads(await ws.recv())["session"]["type"] == "realtime"
        browser = ["realtime", "openai-insecure-api-key.ek_test", "openai-beta.realtime-v1"]
        async with await _raw(server.url, subprotocols=browser) as ws:
            assert ws.subprotocol == "realtime"
            created = json.loads(await ws.recv())
            STRICT[Dialect.BETA](created)
            assert created["session"]["modalities"] == ["text", "audio"]
        async with ws_connect(server.url + "/realtime?intent=transcription",
                              subprotocols=["realtime", "openai-insecure-api-key.k"]) as ws:
            created = json.loads(await ws.recv())
            STRICT[Dialect.GA](created)
            assert created["session"]["type"] == "transcription"
        with pytest.raises(InvalidStatus) as refused:
            async with ws_connect(server.url + "/realtime?call_id=rtc_1", additional_headers={"Authorization": "Bearer x"}):
                pass
        assert refused.value.response.status_code == 400


async def test_twenty_concurrent_connections_each_complete_a_turn():
    """20 SDK connections speak at once; each gets its transcript and a completed spoken reply."""
    results: dict[int, tuple[str, str, int]] = {}

    async def one(server, n: int) -> None:
        client = AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            events = Events(conn)
            await conn.session.update(session={"type": "realtime", "audio": {"input": {
                "transcription": {"model": "whisper-1"}}}})
            await say(conn, "hello")
            turn = await events.until("response.done")
            if not of_type(turn, "conversation.item.input_audio_transcription.completed"):
                turn += await events.until("conversation.item.input_audio_transcription.completed")
            heard = of_type(turn, "conversation.item.input_audio_transcription.completed")[0]["transcript"]
            done = of_type(turn, "response.done")[0]["response"]
            results[n] = (heard, done["output"][0]["content"][0]["transcript"], len(audio_of(turn)))
            assert done["status"] == "completed"
            events.checker.finish()

    async with serve_local() as server:
        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for n in range(20):
                tg.start_soon(one, server, n)
        elapsed = time.perf_counter() - t0
        assert server.connections_total == 20
    print(f"\n20 concurrent connections, one spoken turn each: {elapsed:.2f} s")
    assert sorted(results) == list(range(20))
    assert {r[:2] for r in results.values()} == {("hello", HELLO_REPLY)}
    assert min(r[2] for r in results.values()) > 12000


async def test_close_ends_open_connections_and_main_serves():
    """Closing the server closes clients with 1001; main() serves until cancelled."""
    async with serve_local() as server:
        ws = await ws_connect(server.url + "/realtime", additional_headers={"Authorization": "Bearer x"})
        await ws.recv()
    with pytest.raises(ConnectionClosed) as closed:
        await ws.recv()
    assert closed.value.rcvd.code == 1001
    assert server.connections == 0
    async with anyio.create_task_group() as tg:
        url = await tg.start(main, "127.0.0.1", 0, None, 0)
        async with ws_connect(url + "/realtime?model=gpt-realtime", additional_headers={"Authorization": "Bearer x"}) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
        tg.cancel_scope.cancel()


async def test_model_delay_holds_the_first_output_and_barge_in_cancels_it():
    """With model_delay_ms the response waits; speech meanwhile cancels it with no output."""
    async with serve_local(model_delay_ms=30_000) as server:
        client = AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            events = Events(conn)
            await say(conn, "hello")
            created = await events.until("response.created")
            assert "response.output_item.added" not in [e["type"] for e in created]
            await say(conn, "goodbye", tail_ms=0)
            cut = await events.until("response.done")
            assert [e["type"] for e in cut] == ["input_audio_buffer.speech_started", "response.done"]
            assert cut[-1]["response"]["status_details"]["reason"] == "turn_detected"
            assert cut[-1]["response"]["output"] == []
            await conn.input_audio_buffer.append(audio=base64.b64encode(bytes(48 * 600)).decode())
            await events.until("response.created")  # the next response now waits 30 s...
        # ...and leaving the connection cancels that wait: the server closes without its deadline
    assert server.connections == 0


async def test_each_connection_runs_the_shipped_graph(capsys, tmp_path):
    """pipelines/realtime_server.yaml validates, has the protocol/stage nodes, renders, and is built per connection."""
    from pipeline.cli import main as cli_main
    from pipeline.loader import load
    from processors.realtime.server.connection_graph import CONNECTION_PIPELINE, ConnectionGraphTemplate
    from processors.realtime.server.graph_io import ConnectionContext

    assert CONNECTION_PIPELINE.name == "realtime_server.yaml" and CONNECTION_PIPELINE.parent.name == "pipelines"
    graph = load(CONNECTION_PIPELINE)
    assert [graph.nodes[n].type for n in graph.topological()] == [
        "realtime_server.input", "realtime_server.stt", "realtime_server.responder", "realtime_server.tts",
        "realtime_server.output"]
    assert cli_main(["graph", str(CONNECTION_PIPELINE)]) == 0
    drawn = capsys.readouterr().out
    assert drawn.startswith("flowchart LR") and "protocol_in --> stt" in drawn and "tts --> protocol_out" in drawn
    async with serve_local() as server:
        assert server.graph_template.path == CONNECTION_PIPELINE
        contexts = [ConnectionContext(None, server.resources, lambda: None) for _ in range(2)]
        one, two = server.graph_template.build(), server.graph_template.build()
        assert {n: node.type for n, node in one.nodes.items()} == {n: graph.nodes[n].type for n in graph.nodes}
        for n in one.nodes:  # fresh processors per connection
            assert one.nodes[n].processor is not two.nodes[n].processor
        sessions = [server.graph_template.session(c) for c in contexts]
        assert [s.attachments["connection"] for s in sessions] == contexts and sessions[0].id != sessions[1].id
    with pytest.raises(Exception, match="realtime_server.output"):
        ConnectionGraphTemplate(_connection_yaml(tmp_path, "protocol_out", "protocol_in -> stt -> responder -> tts"))


def _connection_yaml(tmp_path, drop: str, links: str) -> str:
    """The shipped connection graph without node ``drop``, linked as ``links``."""
    from processors.realtime.server.connection_graph import CONNECTION_PIPELINE

    kept = [line for line in CONNECTION_PIPELINE.read_text().splitlines() if not line.lstrip().startswith(f"{drop}:")]
    text = "\n".join(kept).replace("protocol_in -> stt -> responder -> tts -> protocol_out", links)
    path = tmp_path / "connection.yaml"
    path.write_text(text)
    return str(path)


async def test_the_connection_graph_file_is_what_answers(tmp_path):
    """A connection graph with no synthesis stage answers in words only: the server runs the given file."""
    validate, checker = STRICT[Dialect.GA], InvariantChecker(Dialect.GA)
    pipeline = _connection_yaml(tmp_path, "tts", "protocol_in -> stt -> responder -> protocol_out")
    async with serve_local(pipeline=pipeline) as server:
        async with await _raw(server.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            validate(checker.check(await ws.recv()))
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]}}))
            await ws.send(json.dumps({"type": "response.create"}))
            seen = []
            with anyio.fail_after(20):
                while not seen or seen[-1]["type"] != "response.done":
                    seen.append(checker.check(await ws.recv()))
                    validate(seen[-1])
    assert seen[-1]["response"]["status"] == "completed"
    assert of_type(seen, "response.output_audio_transcript.done")[0]["transcript"] == HELLO_REPLY
    assert len(audio_of(seen)) == 0


async def test_text_and_g711_responses_take_their_settings_from_the_request():
    """Per-response settings travel with the request frame: text-only, tool_choice none, then G.711 speech."""
    validate, checker = STRICT[Dialect.GA], InvariantChecker(Dialect.GA)

    async def until_done(ws) -> list[dict]:
        seen = []
        with anyio.fail_after(20):
            while not seen or seen[-1]["type"] != "response.done":
                seen.append(checker.check(await ws.recv()))
                validate(seen[-1])
        return seen

    async with serve_local() as server:
        async with await _raw(server.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            validate(checker.check(await ws.recv()))
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "tools": [WEATHER_TOOL],
                                      "audio": {"output": {"format": {"type": "audio/pcmu"}}}}}))
            await ws.send(json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                      "content": [{"type": "input_text", "text": "what is the weather in paris"}]}}))
            await ws.send(json.dumps({"type": "response.create", "response": {"output_modalities": ["text"],
                                                                               "tool_choice": "none"}}))
            text = await until_done(ws)
            (part,) = text[-1]["response"]["output"][0]["content"]
            assert part["type"] == "output_text" and "get weather" in part["text"]
            assert not of_type(text, "response.output_audio.delta")
            await ws.send(json.dumps({"type": "response.create", "response": {"tool_choice": "none"}}))
            spoken = await until_done(ws)
            ulaw = b"".join(base64.b64decode(e["delta"]) for e in of_type(spoken, "response.output_audio.delta"))
            transcript = of_type(spoken, "response.output_audio_transcript.done")[0]["transcript"]
            assert transcript == part["text"]
    checker.finish()
    from processors.realtime.server.engine import split_clauses
    from processors.speech.espeak import native_sample_rate, synthesize

    native = native_sample_rate()  # one byte a sample at 8 kHz: as long as eSpeak's speech of the clauses
    expected = sum(synthesize(c)[0].shape[0] for c in split_clauses(transcript)) * 8000 / native
    assert abs(len(ulaw) - expected) < 0.02 * expected


async def test_a_failed_connection_graph_closes_its_connection(tmp_path):
    """A processor failing in the connection graph stops it (on_error: stop); the client gets 1011, the server lives."""
    from processors.realtime.server.connection_graph import CONNECTION_PIPELINE

    text = CONNECTION_PIPELINE.read_text().replace("processors:\n", "processors:\n  boom: {type: \"procs:Boom\"}\n")
    path = tmp_path / "connection.yaml"
    path.write_text(text.replace("protocol_in -> stt", "protocol_in -> boom -> stt"))
    silence = json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(bytes(48 * 200)).decode()})
    async with serve_local(pipeline=str(path)) as server:
        async with await _raw(server.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {
                "input": {"turn_detection": None}}}}))
            with pytest.raises(ConnectionClosed) as closed, anyio.fail_after(20):
                for _ in range(3):  # procs:Boom raises on the third audio frame: the third committed segment
                    await ws.send(silence)
                    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                while True:
                    await ws.recv()
        assert closed.value.rcvd.code == 1011
        async with await _raw(server.url, additional_headers={"Authorization": "Bearer x"}) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
