"""The local server's Live side: the SDK's own Live websocket connection over 127.0.0.1, bad input, full duplex.

Every event either side sends is validated strictly against the SDK's Live unions (and the
nested Responses events against ``ResponseStreamEvent``); the speech is eSpeak NG, heard by
pocketsphinx on the server.
"""

from __future__ import annotations

import base64
import json

import anyio
import numpy as np
import pytest
from websockets.asyncio.client import connect

from live_canonical import validate_client_event, validate_responses_event, validate_server_event
from processors.live.protocol import catalogue_messages
from processors.live.server.core import YIELD_MS, LiveServerSession, StopSpeaking
from processors.realtime.server import serve_local
from speech_fixtures import utterance

pytestmark = pytest.mark.anyio
RATE = 24000
WEATHER = {"type": "function", "name": "get_weather", "description": "Get the current weather for a city.",
           "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City"}},
                          "required": ["location"]}}
RESULT = 'Result of get_weather({"location":"paris"}): {"location":"Paris","temp_c":18,"conditions":"partly cloudy"}'


def speech(text: str, rate: int = RATE, pad_s: float = 0.8) -> np.ndarray:
    x = (utterance(text, rate) * 32767).astype(np.int16)
    pad = np.zeros(int(rate * pad_s), np.int16)
    return np.concatenate([pad[: rate // 5], x, pad])


def appends(samples: np.ndarray, step: int = 960) -> list[dict]:
    return [{"type": "session.input_audio.append", "audio": base64.b64encode(samples[i:i + step].tobytes()).decode()}
            for i in range(0, samples.shape[0], step)]


class Session:
    """The client side over the SDK's AsyncLiveConnection: strict checks both ways, events kept in order."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.events: list[dict] = []
        self.audio_bytes = 0

    async def send(self, event: dict) -> None:
        validate_client_event(event)
        await self.conn.send(event)

    async def next(self) -> dict:
        raw = await self.conn.recv_bytes()
        event = json.loads(raw)
        validate_server_event(event)
        self.conn.parse_event(raw)  # the SDK's own parser takes it too
        if event["type"] == "response.event":
            validate_responses_event(event["event"])
        if event["type"] == "session.output_audio.delta":
            self.audio_bytes += len(base64.b64decode(event["delta"]))
        self.events.append(event)
        return event

    async def until(self, kind: str, text: str | None = None) -> dict:
        while True:
            event = await self.next()
            if event["type"] == kind and (text is None or text in event.get("delta", "")):
                return event


def sdk(server):
    from openai import AsyncOpenAI

    return AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url)


async def test_sdk_conversation_with_a_client_delegation():
    """The SDK opens /v1/live/sessions; a spoken request becomes a client delegation; its result is spoken."""
    with anyio.fail_after(60):
        async with serve_local() as server, sdk(server).live.connect() as conn:
            s = Session(conn)
            await s.send({"type": "session.start", "event_id": "c_start", "session": {
                "model": "gpt-live-1", "audio": {"format": {"type": "audio/pcm", "rate": RATE}, "output": {"voice": "marin"}},
                "instructions": "Delegate weather questions."}})
            started = await s.until("session.started")
            assert started["client_event_id"] == "c_start" and started["session"]["status"] == "active"
            for text in catalogue_messages([WEATHER]):
                await s.send({"type": "session.instructions.append", "content": text, "delegation_id": None})
            await s.until("session.instructions.appended")
            for event in appends(speech("what is the weather in paris")):
                await s.send(event)
            heard = await s.until("session.input_transcript.delta")
            assert heard["delta"] == "what is the weather in paris" and heard["end_ms"] > heard["start_ms"]
            created = await s.until("session.delegation.created")
            assert created["delegation"]["target"] == "client" and "response_id" not in created["delegation"]
            await s.send({"type": "session.commentary.append", "event_id": "c_res", "content": RESULT,
                          "delegation_id": created["delegation"]["id"]})
            await s.until("session.output_transcript.delta", "18 degrees")
            before = s.audio_bytes
            await s.send({"type": "session.close"})
            closed = await s.until("session.closed")
            assert closed["reason"] == "close_requested" and closed["usage"]["seconds"] >= 1
            assert s.audio_bytes > before > 0  # the answer was spoken, not only written
            kinds = [e["type"] for e in s.events]
            assert kinds.index("session.commentary.appended") < kinds.index("session.closed")


async def test_sdk_responses_delegation():
    """With Responses delegation the backend's function call streams as response.event; its output continues it."""
    with anyio.fail_after(60):
        async with serve_local() as server, sdk(server).live.connect() as conn:
            s = Session(conn)
            await s.send({"type": "session.start", "session": {
                "model": "gpt-live-1", "audio": {"format": {"type": "audio/pcmu", "rate": 8000}},
                "delegation": {"type": "responses", "responses": {"model": "gpt-5.4-mini", "tools": [WEATHER]}}}})
            await s.until("session.started")
            ulaw = speech("what is the weather in paris", 8000)
            from pipeline.dsp.g711 import ulaw_encode

            wire = ulaw_encode(ulaw).tobytes()
            for i in range(0, len(wire), 320):
                await s.send({"type": "session.input_audio.append", "audio": base64.b64encode(wire[i:i + 320]).decode()})
            created = await s.until("session.delegation.created")
            assert created["delegation"]["target"] == "responses" and created["delegation"]["response_id"]
            while True:
                event = await s.until("response.event")
                inner = event["event"]
                if inner["type"] == "response.output_item.done":
                    break
            assert event["delegation_id"] == created["delegation"]["id"]
            item = inner["item"]
            assert item["type"] == "function_call" and json.loads(item["arguments"]) == {"location": "Paris"}
            await s.send({"type": "response.item.create", "item": {"type": "function_call_output",
                          "call_id": item["call_id"], "output": '{"temp_c": 18, "conditions": "sunny"}'}})
            await s.send({"type": "response.create"})
            await s.until("session.output_transcript.delta", "18 degrees")
            nested = [e["event"]["type"] for e in s.events if e["type"] == "response.event"]
            assert nested.count("response.completed") == 2 and "response.output_text.done" in nested


async def test_out_of_grammar_speech_is_answered_as_on_the_realtime_side():
    """A phrase gets its rule's answer; a sentence outside the grammar gets the general model's words and "Sorry"."""
    with anyio.fail_after(90):
        async with serve_local() as server, sdk(server).live.connect() as conn:
            s = Session(conn)
            await s.send({"type": "session.start", "session": {"model": "gpt-live-1"}})
            await s.until("session.started")

            async def hear(text: str) -> str:
                """Speak ``text``; what the server heard."""
                for event in appends(speech(text)):
                    await s.send(event)
                return (await s.until("session.input_transcript.delta"))["delta"]

            async def said(expected: str) -> str:
                """The model's output transcript (its clauses joined), as long as ``expected``."""
                reply = ""
                while len(reply.strip()) < len(expected):
                    reply += (await s.until("session.output_transcript.delta"))["delta"]
                return reply.strip()

            assert await hear("hello") == "hello"
            assert await said("Hello! I am the voxpipe local model.") == "Hello! I am the voxpipe local model."
            heard = await hear("what is the capital of france")
            assert heard not in server.resources.phrases and "capital" in heard, heard
            assert await said(f"Sorry, I can't help with {heard}.") == f"Sorry, I can't help with {heard}."
            await s.send({"type": "session.close"})
            await s.until("session.closed")


async def test_bad_input_gets_error_events_and_the_connection_stays_usable():
    """Every kind of bad client message is answered with an SDK-shaped error; the session then works."""
    with anyio.fail_after(30):
        async with serve_local() as server, connect(server.url + "/live/sessions",
                                                    additional_headers={"Authorization": "Bearer x"}) as ws:
            async def ask(message) -> dict:
                await ws.send(message)
                event = json.loads(await ws.recv())
                validate_server_event(event)
                return event

            cases = [
                (b"\x00binary", "invalid_json"),
                ("not json", "invalid_json"),
                ("[1, 2]", "invalid_json"),
                (json.dumps({"type": 5}), "missing_required_parameter"),
                (json.dumps({"type": "session.brand_new", "event_id": "c1"}), "invalid_event_type"),
                (json.dumps({"type": "session.input_audio.mute"}), "session_not_started"),
                (json.dumps({"type": "session.start", "session": {"model": "gpt-live-1", "voice": "x"}}), "unknown_parameter"),
                (json.dumps({"type": "session.start", "session": {}}), "missing_required_parameter"),
                (json.dumps({"type": "session.start", "session": {"model": "m", "audio": {
                    "format": {"type": "audio/pcm", "rate": 44100}}}}), "invalid_value"),
                (json.dumps({"type": "session.start", "session": {"model": "m", "delegation": {
                    "type": "decisions", "decisions": {"model": "m", "questions": []}}}}), "unsupported_value"),
                (json.dumps({"type": "session.output_audio.fixture.play"}), "unsupported_event"),
            ]
            for message, code in cases:
                event = await ask(message)
                assert event["type"] == "error" and event["error"]["code"] == code, (message, event)
                assert event["error"]["type"] == "invalid_request_error" and event["error"]["message"]
            err = await ask(json.dumps({"type": "session.brand_new", "event_id": "c1"}))
            assert err["client_event_id"] == "c1" and err["error"]["client_event_id"] == "c1"
            assert err["error"]["param"] == "type"
            ok = await ask(json.dumps({"type": "session.start", "session": {"model": "gpt-live-1"}}))
            assert ok["type"] == "session.started"
            after = [
                (json.dumps({"type": "session.start", "session": {"model": "gpt-live-1"}}), "session_already_started"),
                (json.dumps({"type": "session.input_audio.append", "audio": "@@@"}), "invalid_value"),
                (json.dumps({"type": "session.input_audio.append"}), "missing_required_parameter"),
                (json.dumps({"type": "session.instructions.append", "content": "x"}), "missing_required_parameter"),
                (json.dumps({"type": "session.commentary.append", "content": "x", "delegation_id": "nope"}), "invalid_value"),
                (json.dumps({"type": "session.thinking.append", "content": 3, "delegation_id": None}), "invalid_type"),
                (json.dumps({"type": "response.create"}), "invalid_request"),
                (json.dumps({"type": "session.update", "session": {"instructions": "new"}}), "immutable_parameter"),
                (json.dumps({"type": "session.update", "session": {"delegation": {
                    "type": "responses", "responses": {"model": "m"}}}}), "invalid_value"),
            ]
            for message, code in after:
                event = await ask(message)
                assert event["type"] == "error" and event["error"]["code"] == code, (message, event)
            assert (await ask(json.dumps({"type": "session.input_audio.mute"})))["type"] == "session.input_audio.muted"
            assert (await ask(json.dumps({"type": "session.input_audio.unmute"})))["type"] == "session.input_audio.unmuted"
            closed = await ask(json.dumps({"type": "session.close"}))
            assert closed["type"] == "session.closed"


async def test_the_realtime_path_still_works_beside_live():
    """/v1/realtime keeps its own protocol; unknown paths name both routes."""
    from websockets.exceptions import InvalidStatus

    async with serve_local() as server:
        async with connect(server.url + "/realtime?model=gpt-realtime",
                           additional_headers={"Authorization": "Bearer x"}) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
        with pytest.raises(InvalidStatus) as info:
            async with connect(server.url + "/live", additional_headers={"Authorization": "Bearer x"}):
                pass
        assert info.value.response.status_code == 404 and b"/v1/live/sessions" in info.value.response.body


# --- the session core: full duplex, usage (no socket) ---------------------------------------------


def _start(core: LiveServerSession) -> None:
    core.receive_text(json.dumps({"type": "session.start", "session": {"model": "gpt-live-1"}}))


def _feed(core: LiveServerSession, samples: np.ndarray) -> list:
    jobs = []
    for event in appends(samples, 480):
        core.receive_text(json.dumps(event))
        jobs += core.jobs()
    return jobs


def test_the_model_talks_over_a_short_interjection_and_yields_to_a_long_one():
    """Full duplex: speech under YIELD_MS does not stop the model; speech that goes on does."""
    core = LiveServerSession()
    _start(core)
    sid = core.begin_speech()
    core.speak_text(sid, "Once upon a time", 1500)
    x = (utterance("what is the weather in tokyo", RATE) * 32767).astype(np.int16)
    short = x[: RATE * (YIELD_MS - 150) // 1000]
    jobs = _feed(core, np.concatenate([np.zeros(RATE // 2, np.int16), short, np.zeros(RATE, np.int16)]))
    assert core.is_speaking(sid) and not [j for j in jobs if isinstance(j, StopSpeaking)]
    jobs = _feed(core, np.concatenate([x, np.zeros(RATE, np.int16)]))
    assert [j for j in jobs if isinstance(j, StopSpeaking)] == [StopSpeaking(sid)]
    assert not core.is_speaking(sid)
    assert ("assistant", "Once upon a time") in core.history  # what it said before it stopped


def test_usage_is_reported_as_the_session_goes():
    """session.usage.updated every 10 s of session time, cumulative seconds; session.closed carries the total."""
    core = LiveServerSession()
    _start(core)
    core.events_to_send()
    _feed(core, np.zeros(RATE * 21, np.int16))
    usage = [e for e in core.events_to_send() if e["type"] == "session.usage.updated"]
    assert [u["usage"]["seconds"] for u in usage] == [10.0, 20.0]
    for u in usage:
        validate_server_event(u)
    core.receive_text(json.dumps({"type": "session.close"}))
    [closed] = core.events_to_send()
    validate_server_event(closed)
    assert closed["usage"]["seconds"] == 21.0
