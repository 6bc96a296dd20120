"""live.openai in whole pipelines over real sockets on 127.0.0.1: the shipped demo, reconnects, the key.

The demo conversation is eSpeak NG speech heard by the local server's pocketsphinx; every
client event the processor sends is checked strictly against the SDK's Live union.
"""

from __future__ import annotations

import base64
import json
import logging
import re

import anyio
import numpy as np
import pytest
from websockets.asyncio.server import serve

from live_canonical import validate_client_event, validate_server_event
from pipeline.loader import load, load_text
from pipeline.runner import Runner
from pipelines import shipped
from processors.live.protocol import LiveProtocol

pytestmark = pytest.mark.anyio


#: The caller of the demo test (the demo's own conversation, shorter): each line, then the silence (s) after it.
CALLER = (("what is the weather in paris", 6.0), ("tell me a story", 3.0), ("what is the weather in tokyo", 5.5),
          ("goodbye", 1.0))


def caller_wav(path):
    """The caller's lines spoken by eSpeak NG at 16 kHz, as the demo's sample is."""
    from processors.files.wavfile import write_wav
    from speech_fixtures import utterance

    parts = [np.zeros(8000, np.int16)]
    for text, pause_s in CALLER:
        parts += [(utterance(text, 16000) * 32767 * 0.5).astype(np.int16), np.zeros(int(16000 * pause_s), np.int16)]
    write_wav(path, np.concatenate(parts), 16000)
    return path


@pytest.mark.slow
async def test_live_demo_conversation_with_a_delegation_and_a_barge_in(tmp_path, capsys, monkeypatch):
    """The shipped live_agent pipeline: a client delegation through tools.router, a barge-in told to the model."""
    sent: list[dict] = []
    original = LiveProtocol._send

    def record(self, event):  # the events the shell writes to the socket, in order
        original(self, event)
        sent.append(json.loads(json.dumps(event)))

    monkeypatch.setattr(LiveProtocol, "_send", record)
    monkeypatch.delenv("VOXPIPE_LIVE_URL", raising=False)
    conv, assistant = tmp_path / "conversation.wav", tmp_path / "assistant.wav"
    graph = load(shipped("live_agent.yaml"), overrides=[f"record.path={conv}", f"assistant_wav.path={assistant}",
                                                         f"mic.path={caller_wav(tmp_path / 'caller.wav')}"])
    with anyio.fail_after(120):  # a deadline for a loaded machine, not a timing check
        result = await Runner(graph, realtime=True).run()
    assert result.ok, result.errors
    text = capsys.readouterr().out
    for line in ("user      : what is the weather in paris", "tool call : get_weather({'location': 'Paris'})",
                 "It is 18 degrees and partly cloudy in Paris.", "(the user barged in: playback flushed)",
                 "user      : what is the weather in tokyo", "It is 25 degrees and humid and clear in Tokyo.",
                 "assistant : Goodbye! Talk to you soon."):
        assert line in text, line
    assert re.search(r"assistant : Once upon a time.* \[cut: the user barged in after \d\.\d s", text)
    assert "three days and three nights" not in text
    for event in sent:
        validate_client_event(event)
    kinds = [e["type"] for e in sent]
    assert kinds[0] == "session.start" and kinds[-1] == "session.close"
    answers = [e for e in sent if e["type"] == "session.commentary.append"]
    assert len(answers) == 2 and all(e["delegation_id"] and e["content"].startswith("Result of get_weather") for e in answers)
    [told] = [e for e in sent if e["type"] == "session.thinking.append"]
    heard = re.search(r"heard only up to: '(.*)'", told["content"]).group(1)
    assert heard.startswith("Once upon a time") and "clockmaker" not in heard
    stats = graph.nodes["model"].processor.statistics()
    assert stats["live_barge_ins"] == 1 and stats["live_delegations"] == 2 and stats["live_malformed_events"] == 0


def test_voxpipe_demo_model_live_runs_the_live_pipeline(monkeypatch, tmp_path):
    """`voxpipe demo --model live` runs the shipped live_agent pipeline."""
    import pipelines.demo
    from pipeline.cli import main

    ran = []
    monkeypatch.setattr(pipelines.demo, "run_demo", lambda **kw: ran.append(kw) or 0)
    assert main(["demo", "--model", "live", "--out", str(tmp_path)]) == 0
    assert ran[0]["pipeline"].name == "live_agent.yaml"
    assert main(["demo", "--out", str(tmp_path)]) == 0 and ran[1]["pipeline"].name == "demo.yaml"


TONE = """\
voxpipe: 1
name: live-reconnect
processors:
  src: {type: capture.tone, params: {sample_rate: 24000, duration_s: 1.2, realtime: true}}
  model:
    type: live.openai
    params:
      url: URL
      api_key: sk-secret-live-123
      end_timeout_s: 1
      reconnect: {initial_delay_s: 0.05, max_delay_s: 0.1, seed: 1}
  out: {type: playback.null}
links:
  - src -> model -> out
"""


async def test_a_dropped_connection_is_restored_with_history_and_the_audio_replayed(caplog):
    """The server drops the socket (1012): the client reconnects, starts again with its history, loses no audio."""
    caplog.set_level(logging.DEBUG)
    starts: list[dict] = []
    audio: dict[int, list[bytes]] = {1: [], 2: []}
    conns = 0

    async def handler(ws) -> None:
        nonlocal conns
        conns += 1
        me = conns
        start = json.loads(await ws.recv())
        validate_client_event(start)
        starts.append(start)
        started = {"type": "session.started", "event_id": f"e{me}", "session": {
            "id": f"s{me}", "expires_at": 0, "model": "gpt-live-1", "status": "active"}}
        await ws.send(json.dumps(started))
        n = 0
        async for message in ws:
            event = json.loads(message)
            validate_client_event(event)
            if event["type"] == "session.input_audio.append":
                audio[me].append(base64.b64decode(event["audio"]))
                n += 1
                if me == 1 and n == 2:  # what came so far is answered: a restore need not repeat it
                    heard = {"type": "session.input_transcript.delta", "event_id": "t1", "delta": "hello there",
                             "start_ms": 0, "end_ms": 80}
                    validate_server_event(heard)
                    await ws.send(json.dumps(heard))
                if me == 1 and n == 8:
                    await ws.close(1012, "restarting")
                    return
            elif event["type"] == "session.close":
                closed = {"type": "session.closed", "event_id": "c", "reason": "close_requested",
                          "session": started["session"], "usage": {"seconds": 1.0}}
                await ws.send(json.dumps(closed))
                return

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        graph = load_text(TONE.replace("URL", f"ws://127.0.0.1:{port}/v1/live/sessions"))
        with anyio.fail_after(30):
            result = await Runner(graph, realtime=True).run()
    assert result.ok, result.errors
    assert conns == 2
    assert "input" not in starts[0]["session"]
    assert starts[1]["session"]["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there"}]}]
    first, second = (np.frombuffer(b"".join(audio[i]), "<i2") for i in (1, 2))
    total = int(1.2 * 24000)
    stream = np.concatenate([first, second[first.shape[0] - (total - second.shape[0]):]])
    # the new session hears everything after the answered part, with no gap: what the lost session
    # heard unanswered (bytes written into the dying socket included), what came meanwhile, the rest
    assert 2 * 960 <= total - second.shape[0] <= first.shape[0]
    assert np.array_equal(second, stream[total - second.shape[0]:]) and stream.shape[0] == total
    model = graph.nodes["model"].processor
    assert model.connections == 2 and model.statistics()["live_dropped_audio_ms"] == 0
    assert not any("sk-secret-live-123" in r.getMessage() for r in caplog.records)
    assert any("reconnecting" in r.getMessage() for r in caplog.records)


async def test_a_refused_start_is_one_clear_error():
    """An error instead of session.started ends the run with the server's reason, not a hang."""
    async def handler(ws) -> None:
        await ws.recv()
        await ws.send(json.dumps({"type": "error", "event_id": "e", "error": {
            "type": "invalid_request_error", "code": "invalid_value", "message": "Unknown voice.",
            "param": "session.audio.output.voice"}}))
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        graph = load_text(TONE.replace("URL", f"ws://127.0.0.1:{port}/v1/live/sessions"))
        with anyio.fail_after(30):
            result = await Runner(graph, realtime=True).run()
    assert not result.ok
    message = " ".join(e.message for e in result.errors)
    assert "Unknown voice" in message and "session.audio.output.voice" in message


async def test_a_phone_call_on_the_live_api(monkeypatch):
    """live_phone_agent: 8 kHz mu-law both ways, a delegated weather question answered in the caller's ear."""
    from phone_network import TOKENS, SimulatedCall
    from processors.web.server import web_server

    monkeypatch.delenv("VOXPIPE_LIVE_URL", raising=False)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKENS["twilio"])
    async with web_server(shipped("live_phone_agent.yaml")) as server:
        call = SimulatedCall(server.url, "twilio", speed=2.0)
        assert await call.fetch_webhook() == 200
        async with anyio.create_task_group() as tg:
            await tg.start(call.run)
            call.say("what is the weather in paris")
            await call.wait_heard(2.5, timeout=40)  # "One moment." and the answer
            await call.wait_quiet(600)
            await call.hang_up()
            tg.cancel_scope.cancel()
        with anyio.fail_after(10):
            await server.telephony.wait_idle()
        (result,) = server.telephony.results.values()
    tools = result.stats["tools"]["tools"]["get_weather"]
    assert tools["calls"] == 1 and tools["failures"] == 0
    assert result.stats["model"]["live_delegations"] == 1
    heard = call.heard.audio()
    assert heard.shape[0] > 2 * 8000 and np.abs(heard.astype(np.int32)).max() > 1000


RESPONSES = """\
voxpipe: 1
name: live-responses
processors:
  mic: {type: capture.wav, params: {path: WAV, realtime: true, pad_ms: 5000}}
  resample: {type: audio.resample, params: {rate: 24000}}
  model:
    type: live.openai
    params: {url: local, delegation: {type: responses, model: gpt-5.4-mini, instructions: "Use the tools."}}
  console: {type: debug.console}
  tools: {type: tools.router, params: {functions: {get_weather: "processors.tools.examples:get_weather"}}}
  speaker: {type: playback.null}
links:
  - mic -> resample -> model -> console -> tools -> speaker
"""


@pytest.mark.slow
async def test_a_responses_delegation_runs_through_the_router(tmp_path, capsys):
    """delegation: responses: the backend's function call goes to tools.router; the answer is spoken."""
    from processors.files.wavfile import write_wav
    from speech_fixtures import utterance

    wav = tmp_path / "q.wav"
    speech = (utterance("what is the weather in paris", 16000) * 16000).astype(np.int16)
    write_wav(wav, np.concatenate([np.zeros(8000, np.int16), speech]), 16000)
    graph = load_text(RESPONSES.replace("WAV", str(wav)))
    with anyio.fail_after(60):
        result = await Runner(graph, realtime=True).run()
    assert result.ok, result.errors
    text = capsys.readouterr().out
    assert "tool call : get_weather({'location': 'Paris'})" in text
    assert "It is 18 degrees and partly cloudy in Paris." in text
    stats = graph.nodes["model"].processor.statistics()
    assert stats["live_delegations"] == 1 and stats["live_malformed_events"] == 0
