"""live.openai's sans-I/O core and params: events in, events and frames out, no socket.

Every client event the core emits is validated strictly against the SDK's Live
``ClientEvent`` union (unknown fields rejected at any depth); server events fed to it are
validated against ``ServerEvent`` so the tests cannot drift from the wire.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from pydantic import ValidationError

from live_canonical import validate_client_event, validate_server_event
from pipeline.errors import VoxpipeError
from pipeline.frames import (
    AudioFrame,
    ErrorFrame,
    InterruptionFrame,
    MetricsFrame,
    TextFrame,
    ToolCallFrame,
    TranscriptionFrame,
)
from processors.live import LiveParams, LiveProtocol, LiveProtocolError, Phase
from processors.live.protocol import CATALOGUE_PREFIX, YIELD_GAP_S, catalogue_messages
from processors.live.server.core import parse_catalogue

RATE = 24000
WEATHER = {"type": "function", "name": "get_weather", "description": "Get the current weather for a city.",
           "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "City"}},
                          "required": ["location"]}}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def counter(prefix: str = "evt"):
    n = 0

    def new_id(kind: str) -> str:
        nonlocal n
        n += 1
        return f"{kind}_{n}"

    return new_id


def make(clock: Clock | None = None, **params) -> LiveProtocol:
    return LiveProtocol(LiveParams(url="local", **params), new_id=counter(), now=clock or Clock())


def sent(core: LiveProtocol) -> list[dict]:
    events = core.events_to_send()
    for e in events:
        validate_client_event(json.loads(json.dumps(e)))
    return events


def feed(core: LiveProtocol, event: dict) -> None:
    validate_server_event(event)
    core.receive_message(json.dumps(event))


def started(core: LiveProtocol, sid: str = "sess_1") -> None:
    core.connection_made()
    feed(core, {"type": "session.started", "event_id": "e0", "session": {
        "id": sid, "expires_at": 0, "model": "gpt-live-1", "status": "active"}})


def audio_delta(ms: int, value: int = 1000) -> dict:
    return {"type": "session.output_audio.delta",
            "delta": base64.b64encode(np.full(RATE * ms // 1000, value, "<i2").tobytes()).decode()}


def text_delta(kind: str, text: str, n: int = 0) -> dict:
    return {"type": f"session.{kind}_transcript.delta", "event_id": f"t{n}", "delta": text, "start_ms": 0,
            "end_ms": 0}


def delegation(did: str, target: str = "client") -> dict:
    d = {"id": did, "target": target, "type": "delegation"}
    return {"type": "session.delegation.created", "event_id": f"d_{did}", "delegation": d, "offset_ms": 10}


def test_session_start_carries_the_startup_config():
    """session.start holds model, format, voice, instructions, delegation and input items, and is the first event."""
    core = make(instructions="Be brief.", voice="cedar", audio_format="pcm16", sample_rate=16000,
                input=[{"role": "developer", "text": "Caller is a member."}, {"role": "assistant", "text": "Hi!"}])
    core.connection_made()
    [start] = sent(core)
    assert start == {"type": "session.start", "event_id": "evt_1", "session": {
        "model": "gpt-live-1", "audio": {"format": {"type": "audio/pcm", "rate": 16000}, "output": {"voice": "cedar"}},
        "instructions": "Be brief.", "delegation": {"type": "client"},
        "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "Caller is a member."}]},
                  {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]}]}}
    assert core.phase is Phase.STARTING


@pytest.mark.parametrize("fmt,rate,wire", [("g711_ulaw", None, {"type": "audio/pcmu", "rate": 8000}),
                                           ("g711_alaw", 8000, {"type": "audio/pcma", "rate": 8000}),
                                           ("pcm16", None, {"type": "audio/pcm", "rate": 24000})])
def test_audio_formats_on_the_wire(fmt, rate, wire):
    """pcm16 at 24 kHz by default, G.711 mu-law and A-law at 8 kHz, as Live format objects."""
    core = make(audio_format=fmt, sample_rate=rate)
    core.connection_made()
    assert sent(core)[0]["session"]["audio"]["format"] == wire
    assert core.rate == wire["rate"]


def test_params_are_checked_at_load():
    """Impossible configs are refused with a message that says what to change."""
    with pytest.raises(ValidationError, match="8000 Hz"):
        LiveParams(audio_format="g711_ulaw", sample_rate=16000)
    with pytest.raises(ValidationError, match="16000 or 24000"):
        LiveParams(sample_rate=48000)
    with pytest.raises(ValidationError, match="model"):
        LiveParams(delegation={"type": "responses"})
    with pytest.raises(ValidationError, match="extra"):
        LiveParams(voice_name="x")


def test_yaml_errors_name_the_line(tmp_path):
    """A bad live.openai param in YAML is a file:line error before anything runs."""
    from pipeline.loader import load

    path = tmp_path / "p.yaml"
    path.write_text("voxpipe: 1\nname: t\nprocessors:\n  src: {type: capture.tone, params: {sample_rate: 24000}}\n"
                    "  model:\n    type: live.openai\n    params: {url: local, audio_format: g711_ulaw, sample_rate: 16000}\n"
                    "links:\n  - src -> model\n")
    with pytest.raises(VoxpipeError) as info:
        load(path)
    assert "p.yaml:7" in str(info.value) and "8000" in str(info.value)


def test_audio_before_the_start_is_kept_and_replayed():
    """User audio sent before session.started waits, then goes out in append_ms pieces, in order."""
    core = make()
    core.connection_made()
    sent(core)
    frames = [np.full(480, i, np.int16) for i in range(5)]  # 5 x 20 ms
    for f in frames:
        core.append_audio(f)
    assert sent(core) == []
    feed(core, {"type": "session.started", "event_id": "e0", "session": {
        "id": "s", "expires_at": 0, "model": "gpt-live-1", "status": "active"}})
    appends = [e for e in sent(core) if e["type"] == "session.input_audio.append"]
    got = np.concatenate([np.frombuffer(base64.b64decode(e["audio"]), "<i2") for e in appends])
    assert np.array_equal(got[:960 * 2], np.concatenate(frames)[:1920])
    assert core.stats["replayed_audio_ms"] == 80
    core.append_audio(np.zeros(960, np.int16))
    assert [e["type"] for e in sent(core)] == ["session.input_audio.append"]


def test_output_audio_and_transcripts_become_frames():
    """Audio deltas become AudioFrames of one segment; transcripts become text and transcription frames."""
    core = make()
    started(core)
    feed(core, text_delta("input", "hello"))
    feed(core, text_delta("output", "Hi there."))
    feed(core, audio_delta(100))
    feed(core, audio_delta(100))
    frames = core.frames_out()
    audio = [f for f in frames if isinstance(f, AudioFrame)]
    assert [f.item_id for f in audio] == ["live_1", "live_1"] and [f.pts for f in audio] == [0, 2400]
    assert [f.text for f in frames if isinstance(f, TranscriptionFrame)] == ["hello"]
    assert [f.text for f in frames if isinstance(f, TextFrame)] == ["Hi there."]
    assert any(isinstance(f, MetricsFrame) and f.name == "realtime.turn" for f in frames)


def test_barge_in_tells_the_model_what_was_heard():
    """The model goes quiet while the user speaks: playback is interrupted and the model learns the heard text."""
    clock = Clock()
    core = make(clock)
    started(core)
    sent(core)
    feed(core, text_delta("output", "Once upon a time, "))
    feed(core, audio_delta(500))
    feed(core, text_delta("output", "there lived a clockmaker."))
    feed(core, audio_delta(500))
    core.frames_out()
    seg = core._segment
    core.on_playback_progress("live_1", 250)
    assert seg.heard(RATE) == "Once upon"  # half the clause's audio: half its words
    core.on_playback_progress("live_1", 500)  # heard the first clause only
    core.user_started_speaking()
    clock.t += 0.1
    core.tick()
    assert core.frames_out() == []  # the model may still go on: full duplex
    clock.t += YIELD_GAP_S
    core.tick()
    frames = core.frames_out()
    assert isinstance(frames[0], InterruptionFrame) and frames[0].turn == 2  # segment live_1 had turn 1
    [thinking] = sent(core)
    assert thinking["type"] == "session.thinking.append" and thinking["delegation_id"] is None
    assert "'Once upon a time,'" in thinking["content"] and "clockmaker" not in thinking["content"]
    assert core.stats["barge_ins"] == 1


def test_a_finished_reply_is_not_a_barge_in():
    """All audio played: a later user turn ends the segment without an interruption."""
    clock = Clock()
    core = make(clock)
    started(core)
    feed(core, audio_delta(200))
    core.on_playback_progress("live_1", 200, done=True)
    core.frames_out()
    clock.t += 1
    feed(core, text_delta("input", "thanks"))
    assert not [f for f in core.frames_out() if isinstance(f, InterruptionFrame)]


def test_client_delegation_goes_to_the_router_and_back_as_commentary():
    """A delegation becomes a tool call for the tool the user's words ask for; the result is commentary."""
    core = make()
    core.add_tools([WEATHER])
    started(core)
    _, catalogue = sent(core)
    assert catalogue["type"] == "session.instructions.append" and catalogue["content"].startswith(CATALOGUE_PREFIX)
    assert parse_catalogue(catalogue["content"])[0]["name"] == "get_weather"
    feed(core, text_delta("input", "what is the weather in paris"))
    feed(core, delegation("dlg_1"))
    [call] = [f for f in core.frames_out() if isinstance(f, ToolCallFrame)]
    assert (call.call_id, call.name, call.arguments) == ("dlg_1", "get_weather", {"location": "paris"})
    core.tool_result("dlg_1", '{"temp_c": 18}')
    [answer] = sent(core)
    assert answer == {"type": "session.commentary.append", "event_id": answer["event_id"], "delegation_id": "dlg_1",
                      "content": 'Result of get_weather({"location":"paris"}): {"temp_c": 18}'}
    core.tool_result("dlg_1", "{}")  # a second answer is dropped
    assert sent(core) == [] and core.stats["late_results"] == 1


def test_delegation_timeout_and_failure_are_reported():
    """A task that times out, fails or fits no tool is reported to the model, never left hanging."""
    core = make()
    core.add_tools([WEATHER])
    started(core)
    sent(core)
    feed(core, text_delta("input", "weather in london"))
    feed(core, delegation("dlg_1"))
    core.task_timed_out("dlg_1")
    [timeout] = sent(core)
    assert timeout["delegation_id"] == "dlg_1" and "failed" in timeout["content"] and "15 seconds" in timeout["content"]
    assert core.pending_tasks == {}
    feed(core, text_delta("input", "weather in rome"))
    feed(core, delegation("dlg_2"))
    core.tool_result("dlg_2", '{"error": "no data"}', is_error=True)
    assert "failed: " in sent(core)[0]["content"]
    feed(core, text_delta("input", "sing a song"))
    feed(core, delegation("dlg_3"))
    [none] = sent(core)
    assert none["delegation_id"] == "dlg_3" and "No tool" in none["content"]


def test_a_handler_takes_every_task_as_text():
    """delegation.handler: every task goes to one tool as {task: what the user said}."""
    core = make(delegation={"type": "client", "handler": "ask_backend"})
    started(core)
    feed(core, text_delta("input", "book a table"))
    feed(core, text_delta("input", "for two"))
    feed(core, delegation("dlg_9"))
    [call] = [f for f in core.frames_out() if isinstance(f, ToolCallFrame)]
    assert call.name == "ask_backend" and call.arguments == {"task": "book a table for two"}


def test_responses_delegation_function_calls():
    """A backend function call in response.event goes to the router; the output returns as item + response.create."""
    core = make(delegation={"type": "responses", "model": "gpt-5.4-mini", "instructions": "Use the tools."})
    core.add_tools([WEATHER])
    core.connection_made()
    [start] = sent(core)
    assert start["session"]["delegation"]["responses"]["tools"][0]["name"] == "get_weather"
    feed(core, {"type": "session.started", "event_id": "e0", "session": {
        "id": "s", "expires_at": 0, "model": "gpt-live-1", "status": "active"}})
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather",
            "arguments": '{"location":"Paris"}', "status": "completed"}
    feed(core, {"type": "response.event", "event_id": "r1", "delegation_id": "dlg_1",
                "event": {"type": "response.output_item.done", "output_index": 0, "item": item, "sequence_number": 3}})
    [call] = [f for f in core.frames_out() if isinstance(f, ToolCallFrame)]
    assert (call.call_id, call.arguments) == ("call_1", {"location": "Paris"})
    core.tool_result("call_1", '{"temp_c": 18}')
    assert [(e["type"], e.get("item")) for e in sent(core)] == [
        ("response.item.create", {"type": "function_call_output", "call_id": "call_1", "output": '{"temp_c": 18}'}),
        ("response.create", None)]


def test_tools_announced_late_update_the_session():
    """Tools that arrive after the start: a catalogue append (client) or a session.update (responses)."""
    core = make(delegation={"type": "responses", "model": "m"})
    started(core)
    sent(core)
    core.add_tools([WEATHER])
    [update] = sent(core)
    assert update["type"] == "session.update"
    assert update["session"]["delegation"]["responses"]["tools"][0]["name"] == "get_weather"


def test_bad_server_events_are_counted_and_skipped():
    """Not JSON, no type, unknown type, missing fields: logged, counted, skipped; the session goes on."""
    core = make()
    started(core)
    core.receive_message("not json")
    core.receive_message("[1]")
    core.receive_message(json.dumps({"type": "session.brand_new"}))
    core.receive_message(json.dumps({"type": "session.output_audio.delta"}))
    core.receive_message(json.dumps({"type": "session.output_audio.delta", "delta": "!!"}))
    core.receive_message(json.dumps({"type": "session.delegation.created", "delegation": {}, "offset_ms": 0}))
    assert core.stats["malformed_events"] == 5 and core.stats["unknown_events"] == 1
    assert core.phase is Phase.ACTIVE
    feed(core, audio_delta(20))
    assert [f for f in core.frames_out() if isinstance(f, AudioFrame)]


def test_an_error_before_the_start_is_fatal():
    """An error instead of session.started: the session did not start (fatal); after it, errors are frames."""
    core = make()
    core.connection_made()
    feed(core, {"type": "error", "event_id": "e", "error": {"type": "invalid_request_error", "code": "invalid_value",
                                                            "message": "bad voice", "param": "session.audio.output.voice"}})
    assert core.fatal is not None and core.fatal.code == "invalid_value" and "session.audio.output.voice" in core.fatal.message
    core2 = make()
    started(core2)
    feed(core2, {"type": "error", "event_id": "e", "error": {"type": "invalid_request_error", "code": "x", "message": "m"}})
    [err] = core2.frames_out()
    assert isinstance(err, ErrorFrame) and not err.fatal and core2.fatal is None


def test_restore_after_a_lost_connection():
    """After a loss the session starts again with its history as input; kept audio is replayed after the start."""
    core = make()
    core.add_tools([WEATHER])
    started(core)
    sent(core)
    feed(core, text_delta("input", "hello"))
    feed(core, text_delta("output", "Hi, how can I help?"))
    feed(core, audio_delta(100))
    core.on_playback_progress("live_1", 100, done=True)
    feed(core, text_delta("input", "what is the weather"))
    core.connection_lost("code 1006")
    assert core.phase is Phase.DISCONNECTED
    core.append_audio(np.full(960, 7, np.int16))
    core.connection_made()
    [start] = sent(core)
    assert [(m["role"], m["content"][0]["text"]) for m in start["session"]["input"]] == [
        ("user", "hello"), ("assistant", "Hi, how can I help?"), ("user", "what is the weather")]
    feed(core, {"type": "session.started", "event_id": "e1", "session": {
        "id": "s2", "expires_at": 0, "model": "gpt-live-1", "status": "active"}})
    kinds = [e["type"] for e in sent(core)]
    assert kinds == ["session.instructions.append", "session.input_audio.append"]
    assert core.sessions_started == 2


def test_local_misuse_raises():
    """A local command in the wrong phase names the trigger and the phase."""
    core = make()
    with pytest.raises(LiveProtocolError, match="connection_lost.*disconnected") as info:
        core._go("connection_lost")
    assert info.value is not None


def test_catalogue_splits_long_tool_lists():
    """The tool catalogue is cut into appends of at most ~500 tokens, each parseable on its own."""
    tools = [{**WEATHER, "name": f"tool_{i}", "description": "x" * 300} for i in range(12)]
    texts = catalogue_messages(tools)
    assert len(texts) > 1 and all(len(t) < 2100 for t in texts)
    assert [t["name"] for text in texts for t in parse_catalogue(text)] == [f"tool_{i}" for i in range(12)]
