"""The sans-I/O Realtime client core: canonical sequences in, SDK-valid client events out."""

from __future__ import annotations

import base64
import json
import logging

import numpy as np
import pytest
from realtime_canonical import (
    BETA_VAD_TURN,
    GA_BARGE_IN,
    GA_FUNCTION_CALL,
    GA_VAD_TURN,
    client_events,
    counter,
    server_events,
    validate_client_event,
)

from pipeline.frames import (
    AudioFrame,
    ErrorFrame,
    InterruptionFrame,
    MetricsFrame,
    ResponseEndFrame,
    ResponseStartFrame,
    TextFrame,
    ToolCallFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from processors.realtime.client import Phase, RealtimeProtocol, RealtimeProtocolError
from processors.realtime.client.session import RealtimeParams

RATE = 24000
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


class Clock:
    """A settable clock for latency metrics."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def tone(ms: float, freq: float = 440.0, rate: int = RATE, start: int = 0) -> np.ndarray:
    n = int(rate * ms / 1000)
    t = (np.arange(n) + start) / rate
    return (0.4 * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def b64(samples: np.ndarray) -> str:
    return base64.b64encode(samples.astype("<i2").tobytes()).decode()


def audio_delta(item_id: str, samples: np.ndarray, response_id: str = "resp_2", n: int = 0, beta: bool = False) -> dict:
    return {"type": "response.audio.delta" if beta else "response.output_audio.delta", "event_id": f"event_d{n}",
            "response_id": response_id, "item_id": item_id, "output_index": 0, "content_index": 0, "delta": b64(samples)}


def connect(params: RealtimeParams | None = None, clock: Clock | None = None) -> RealtimeProtocol:
    """A core with a session: connection made, session.created fed, session.update drained."""
    p = RealtimeProtocol(params or RealtimeParams(), new_id=counter("evt"), now=clock or Clock())
    p.connection_made()
    p.receive_event({"type": "session.created", "event_id": "event_0", "session": {"type": "realtime"}})
    (update,) = drain(p)
    assert update["type"] == "session.update"
    return p


def drain(p: RealtimeProtocol) -> list[dict]:
    """The core's client events, each validated strictly against the SDK union of its dialect."""
    events = p.events_to_send()
    for ev in events:
        validate_client_event(ev, p.params.dialect)
    return events


def strip_ids(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in ev.items() if k != "event_id"} for ev in events]


def start_response(p: RealtimeProtocol, rid: str = "resp_2", item_id: str = "item_A1") -> None:
    p.receive_event({"type": "response.created", "event_id": "e_rc", "response": {"id": rid, "status": "in_progress"}})
    p.receive_event({"type": "response.output_item.added", "event_id": "e_oi", "response_id": rid, "output_index": 0,
                     "item": {"id": item_id, "type": "message", "role": "assistant", "status": "in_progress", "content": []}})


def done(p: RealtimeProtocol, rid: str = "resp_2", status: str = "completed", output: list | None = None) -> None:
    p.receive_event({"type": "response.done", "event_id": "e_done",
                     "response": {"id": rid, "status": status, "output": output or [], "usage": None}})


def speech_started(p: RealtimeProtocol, ms: int = 20100, item_id: str = "item_U3") -> None:
    p.receive_event({"type": "input_audio_buffer.speech_started", "event_id": "e_ss", "audio_start_ms": ms, "item_id": item_id})


# --- session.update ---------------------------------------------------------------------------

FULL_CONFIGS = [
    {},
    {"instructions": "Be brief.", "voice": "marin", "speed": 1.2, "input_transcription": "whisper-1",
     "noise_reduction": "near_field", "tools": [WEATHER_TOOL], "tool_choice": "required", "max_output_tokens": 800,
     "turn_detection": {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200, "silence_duration_ms": 400,
                        "create_response": True, "interrupt_response": False}},
    {"turn_detection": "none", "output_modalities": ["text"], "tool_choice": "get_weather", "tools": [WEATHER_TOOL],
     "max_output_tokens": "inf"},
    {"turn_detection": {"type": "semantic_vad", "eagerness": "high"}, "input_audio_format": "g711_ulaw",
     "output_audio_format": "g711_alaw", "input_transcription": {"model": "gpt-4o-transcribe", "language": "en"}},
]


@pytest.mark.parametrize("dialect", ["ga", "beta"])
@pytest.mark.parametrize("config", FULL_CONFIGS)
def test_session_update_is_valid_for_the_sdk(config, dialect):
    """Every session config the params can express is a valid session.update of its dialect."""
    p = RealtimeProtocol(RealtimeParams(dialect=dialect, **config), new_id=counter("evt"))
    p.connection_made()
    p.receive_event({"type": "session.created", "event_id": "event_0", "session": {"type": "realtime"}})
    (update,) = drain(p)
    session = update["session"]
    if dialect == "ga":
        assert session["type"] == "realtime"
        assert "modalities" not in session and "input_audio_format" not in session
    else:
        assert "type" not in session and "audio" not in session


def test_session_update_ga_shape():
    """The GA payload nests audio settings and turns VAD off with an explicit null."""
    p = connect(RealtimeParams(turn_detection="none", voice="cedar", input_audio_format="g711_ulaw",
                               instructions="Hi", tools=[WEATHER_TOOL]))
    p2 = RealtimeProtocol(p.params, new_id=counter("evt"))
    p2.connection_made()
    p2.receive_event({"type": "session.created", "event_id": "e", "session": {"type": "realtime"}})
    (update,) = drain(p2)
    assert update == {"type": "session.update", "event_id": "evt_1", "session": {
        "type": "realtime", "output_modalities": ["audio"], "instructions": "Hi",
        "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None},
                  "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "cedar"}},
        "tools": [WEATHER_TOOL], "tool_choice": "auto"}}


def test_session_update_beta_shape():
    """The beta payload is flat and says modalities [text, audio]."""
    p = RealtimeProtocol(RealtimeParams(dialect="beta", voice="sage", max_output_tokens=500), new_id=counter("evt"))
    p.connection_made()
    p.receive_event({"type": "session.created", "event_id": "e", "session": {}})
    (update,) = drain(p)
    assert update["session"] == {
        "modalities": ["text", "audio"], "voice": "sage", "input_audio_format": "pcm16", "output_audio_format": "pcm16",
        "tools": [], "tool_choice": "auto", "max_response_output_tokens": 500,
        "turn_detection": {"type": "server_vad", "create_response": True, "interrupt_response": True}}


def test_event_ids_come_from_the_injected_generator():
    """Each client event carries the next id of new_id."""
    p = connect(RealtimeParams(append_ms=20))
    p.append_audio(tone(40))
    assert [ev["event_id"] for ev in drain(p)] == ["evt_2", "evt_3"]


# --- user audio -------------------------------------------------------------------------------


def appended(events: list[dict], dtype="<i2") -> np.ndarray:
    chunks = [np.frombuffer(base64.b64decode(ev["audio"]), dtype=dtype) for ev in events
              if ev["type"] == "input_audio_buffer.append"]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)


@pytest.mark.parametrize("chunk", [17, 480, 509, 7200])
def test_appends_are_batched_and_lossless(chunk):
    """Audio in any chunking arrives as append_ms batches whose bytes equal the input."""
    p = connect(RealtimeParams(append_ms=60))
    x = tone(1000, freq=313.0)
    for i in range(0, len(x), chunk):
        p.append_audio(x[i : i + chunk])
    p.flush_audio()
    events = drain(p)
    sizes = [len(base64.b64decode(ev["audio"])) // 2 for ev in events]
    assert sizes[:-1] == [1440] * (len(sizes) - 1) and 0 < sizes[-1] <= 1440
    np.testing.assert_array_equal(appended(events), x)


def test_float_audio_is_converted_and_stereo_refused():
    """float32 is scaled to int16; audio with two channels raises with the fix."""
    p = connect(RealtimeParams(append_ms=10))
    p.append_audio(np.full(240, 0.5, dtype=np.float32))
    np.testing.assert_array_equal(appended(drain(p)), np.full(240, 16383, dtype=np.int16))
    with pytest.raises(ValueError, match="channels: 1"):
        p.append_audio(np.zeros((240, 2), dtype=np.int16))


def test_g711_audio_in_and_out():
    """mu-law in, A-law out: 8 kHz int16 in the graph, G.711 bytes on the wire."""
    from pipeline.dsp.g711 import alaw_encode, ulaw_decode

    p = connect(RealtimeParams(input_audio_format="g711_ulaw", output_audio_format="g711_alaw", append_ms=20))
    x = tone(40, rate=8000)
    p.append_audio(x)
    codes = appended(drain(p), dtype=np.uint8)
    assert codes.shape == (320,)
    err = np.abs(ulaw_decode(codes).astype(np.int32) - x)
    assert err.max() <= np.abs(x).max() // 16  # mu-law quantisation: a few percent of full scale
    start_response(p)
    y = tone(100, freq=1000.0, rate=8000)
    p.receive_event({**audio_delta("item_A1", y), "delta": base64.b64encode(alaw_encode(y).tobytes()).decode()})
    (audio,) = [f for f in p.frames_out() if isinstance(f, AudioFrame)]
    assert audio.sample_rate == 8000 and audio.samples.dtype == np.int16 and audio.num_samples == 800
    assert np.abs(audio.samples.astype(np.int32) - y).max() <= np.abs(y).max() // 16


def test_pcm16_delta_split_mid_sample():
    """An odd-length delta keeps its last byte for the next delta of the item."""
    p = connect()
    start_response(p)
    y = tone(10)
    raw = y.astype("<i2").tobytes()
    for n, part in enumerate((raw[:101], raw[101:])):
        p.receive_event({**audio_delta("item_A1", y, n=n), "delta": base64.b64encode(part).decode()})
    frames = [f for f in p.frames_out() if isinstance(f, AudioFrame)]
    np.testing.assert_array_equal(np.concatenate([f.samples for f in frames]), y)
    assert [f.pts for f in frames] == [0, 50]


# --- canonical sequences ----------------------------------------------------------------------


def vad_turn_frames(p: RealtimeProtocol, clock: Clock, seq) -> list:
    frames = []
    for ev in server_events(seq):
        if ev["type"] == "input_audio_buffer.speech_stopped":
            clock.t = 200.0
        elif ev["type"] in ("response.output_audio.delta", "response.audio.delta"):
            clock.t = 200.4
        elif ev["type"] == "response.done":
            clock.t = 201.5
        p.receive_event(ev)
        frames += p.frames_out()
    return frames


@pytest.mark.parametrize("dialect,seq", [("ga", GA_VAD_TURN), ("beta", BETA_VAD_TURN)])
def test_full_vad_turn(dialect, seq):
    """A server-VAD turn becomes speaking frames, a response of turn 1 with audio, text, usage and metrics."""
    clock = Clock()
    p = connect(RealtimeParams(dialect=dialect), clock)
    frames = vad_turn_frames(p, clock, seq)
    assert drain(p) == []  # with server VAD the client only listens
    kinds = [type(f).__name__ for f in frames]
    assert kinds[:3] == ["UserStartedSpeakingFrame", "UserStoppedSpeakingFrame", "ResponseStartFrame"]
    start, stop = frames[0], frames[1]
    assert (start.pts, start.sample_rate, stop.pts) == (1236 * 24, RATE, 3808 * 24)
    (audio,) = [f for f in frames if isinstance(f, AudioFrame)]
    assert (audio.item_id, audio.turn, audio.sample_rate, audio.pts) == ("item_A1", 1, RATE, 0)
    np.testing.assert_array_equal(audio.samples, np.zeros(2, dtype=np.int16))  # "AAAAAA==" is 4 zero bytes
    text = "".join(f.text for f in frames if isinstance(f, TextFrame))
    assert text == "Hi there!" and all(f.turn == 1 and f.role == "assistant" for f in frames if isinstance(f, TextFrame))
    (end,) = [f for f in frames if isinstance(f, ResponseEndFrame)]
    assert (end.response_id, end.status, end.turn, end.usage["total_tokens"]) == ("resp_2", "completed", 1, 253)
    (metrics,) = [f for f in frames if isinstance(f, MetricsFrame)]
    assert metrics.values["ttfb_ms"] == pytest.approx(400.0) and metrics.values["response_ms"] == pytest.approx(1500.0)
    assert metrics.values["output_tokens"] == 121
    if dialect == "ga":
        assert isinstance(frames[-1], TranscriptionFrame) and frames[-1].text == "Hello?" and frames[-1].role == "user"
    assert p.phase is Phase.IDLE and p.stats.get("unknown", 0) == 0 and p.stats.get("surprises", 0) == 0


def test_function_call_round_trip():
    """One tool call frame per call; its output and ONE response.create go out after response.done."""
    p = connect(RealtimeParams(tools=[WEATHER_TOOL]))
    seq = server_events(GA_FUNCTION_CALL)
    frames = []
    for ev in seq[:-3]:  # up to response.done of resp_3
        p.receive_event(ev)
        frames += p.frames_out()
        assert drain(p) == []
    (call,) = [f for f in frames if isinstance(f, ToolCallFrame)]
    assert (call.call_id, call.name, call.arguments, call.response_id, call.turn) == (
        "call_abc", "get_weather", {"city": "Paris"}, "resp_3", 1)
    p.tool_result("call_abc", '{"temp_c":21}')
    assert strip_ids(drain(p)) == client_events(GA_FUNCTION_CALL)[1:]
    for ev in seq[-3:]:
        p.receive_event(ev)
    (start,) = [f for f in p.frames_out() if isinstance(f, ResponseStartFrame)]
    assert (start.response_id, start.turn, p.phase) == ("resp_4", 2, Phase.RESPONDING)


def test_tools_in_session_update_match_the_canonical_update():
    """The tools part of our session.update equals the reference's function-call session.update."""
    p = RealtimeProtocol(RealtimeParams(tools=[WEATHER_TOOL]), new_id=counter("evt"))
    p.connection_made()
    p.receive_event({"type": "session.created", "event_id": "e", "session": {"type": "realtime"}})
    (update,) = drain(p)
    canonical = client_events(GA_FUNCTION_CALL)[0]["session"]
    assert {k: update["session"][k] for k in ("type", "tools", "tool_choice")} == canonical


def function_call_response(p: RealtimeProtocol, rid: str, calls: list[tuple[str, str, str]]) -> None:
    p.receive_event({"type": "response.created", "event_id": "e1", "response": {"id": rid}})
    for i, (call_id, name, args) in enumerate(calls):
        item = {"id": f"item_{call_id}", "type": "function_call", "name": name, "call_id": call_id, "arguments": ""}
        p.receive_event({"type": "response.output_item.added", "event_id": "e2", "response_id": rid,
                         "output_index": i, "item": item})
        p.receive_event({"type": "response.function_call_arguments.done", "event_id": "e3", "response_id": rid,
                         "item_id": item["id"], "output_index": i, "call_id": call_id, "arguments": args})


def test_result_before_response_done_waits_for_it():
    """A result that arrives before response.done is sent at once; response.create waits for the done."""
    p = connect()
    function_call_response(p, "resp_1", [("call_1", "get_weather", '{"city":"Oslo"}')])
    p.tool_result("call_1", '{"temp_c":3}')
    assert [e["type"] for e in drain(p)] == ["conversation.item.create"]
    done(p, "resp_1")
    assert [e["type"] for e in drain(p)] == ["response.create"]
    assert p.phase is Phase.REQUESTED


def test_parallel_calls_give_one_response_create():
    """Two calls of one response: two outputs, then a single response.create."""
    p = connect()
    function_call_response(p, "resp_1", [("call_1", "get_weather", '{"city":"Oslo"}'),
                                         ("call_2", "get_weather", '{"city":"Rome"}')])
    done(p, "resp_1")
    assert len([f for f in p.frames_out() if isinstance(f, ToolCallFrame)]) == 2
    p.tool_result("call_2", '"sunny"')
    assert [e["type"] for e in drain(p)] == ["conversation.item.create"]
    p.tool_result("call_1", '"rain"')
    assert [e["type"] for e in drain(p)] == ["conversation.item.create", "response.create"]
    p.tool_result("call_1", '"again"')  # a duplicate is dropped
    assert drain(p) == [] and p.stats["orphan_tool_results"] == 1


def test_invalid_arguments_are_answered_without_running_the_tool():
    """Arguments that are not a JSON object get an error output and no tool call frame."""
    p = connect()
    function_call_response(p, "resp_1", [("call_1", "get_weather", '{"city": Oslo')])
    assert not [f for f in p.frames_out() if isinstance(f, ToolCallFrame)]
    (create,) = drain(p)
    assert create["item"]["call_id"] == "call_1" and "not a valid JSON object" in json.loads(create["item"]["output"])["error"]
    done(p, "resp_1")
    assert [e["type"] for e in drain(p)] == ["response.create"]


def test_beta_call_name_comes_from_the_item():
    """Beta's arguments.done has no name: the name announced with the item is used."""
    p = connect(RealtimeParams(dialect="beta"))
    function_call_response(p, "resp_1", [("call_1", "get_weather", "{}")])
    (call,) = [f for f in p.frames_out() if isinstance(f, ToolCallFrame)]
    assert call.name == "get_weather" and call.arguments == {}


# --- barge-in ---------------------------------------------------------------------------------


def playing_response(p: RealtimeProtocol, ms: int = 3000, rid: str = "resp_2", item_id: str = "item_A1") -> np.ndarray:
    """A response whose item has received ``ms`` of audio, in 100 ms deltas."""
    start_response(p, rid, item_id)
    x = tone(ms)
    for n, i in enumerate(range(0, len(x), 2400)):
        p.receive_event(audio_delta(item_id, x[i : i + 2400], rid, n))
    p.frames_out()
    return x


def test_barge_in_truncates_to_played_audio():
    """Truncate uses playback's final report for the item, not audio received; the server cancels by itself."""
    p = connect()
    playing_response(p, 3000)
    p.on_playback_progress("item_A1", 1480)
    speech_started(p)
    frames = p.frames_out()
    assert [type(f) for f in frames] == [UserStartedSpeakingFrame, InterruptionFrame]
    assert frames[1].turn == 2
    assert drain(p) == [] and p.truncations_pending
    p.on_playback_progress("item_A1", 1500, done=True)  # playback dropped the rest at 1500 ms
    # the reference's barge-in, minus its belt-and-braces response.cancel (interrupt_response is on)
    assert strip_ids(drain(p)) == client_events(GA_BARGE_IN)[1:]
    assert not p.truncations_pending
    # the rest of the canonical barge-in: late audio is dropped, the benign error is silent
    p.receive_event(audio_delta("item_A1", tone(100), n=99))
    for ev in server_events(GA_BARGE_IN)[1:]:
        p.receive_event(ev)
    frames = p.frames_out()
    assert not [f for f in frames if isinstance(f, (AudioFrame, ErrorFrame))]
    (end,) = [f for f in frames if isinstance(f, ResponseEndFrame)]
    assert (end.status, end.turn) == ("cancelled", 1)
    assert [type(f) for f in frames if not isinstance(f, (ResponseEndFrame, MetricsFrame))] == [UserStoppedSpeakingFrame]
    assert p.stats["benign_errors"] == 1 and p.stats["stale_audio_deltas"] == 1 and drain(p) == []
    # the next response carries the interruption's turn, so it is not dropped as stale
    start_response(p, "resp_5", "item_A5")
    (start,) = p.frames_out()
    assert start.turn == 2


def test_truncate_is_clamped_to_received_audio():
    """Playback reporting more than was received truncates at the received length."""
    p = connect()
    playing_response(p, 2000)
    p.on_playback_progress("item_A1", 1900)
    speech_started(p)
    p.on_playback_progress("item_A1", 2085, done=True)
    (truncate,) = drain(p)
    assert truncate["audio_end_ms"] == 2000


def test_delete_when_nothing_was_played():
    """An item playback has not started is deleted, not truncated to 0 ms."""
    p = connect()
    playing_response(p, 800)
    p.on_playback_progress("item_A0", 0)  # playback reports, but has not reached this item
    speech_started(p)
    p.on_playback_progress("item_A1", 0, done=True)
    assert strip_ids(drain(p)) == [{"type": "conversation.item.delete", "item_id": "item_A1"}]


def test_truncate_command_clamps_and_deletes():
    """truncate(played_ms) on the latest item: clamped, and delete for 0."""
    p = connect()
    playing_response(p, 400, item_id="item_1")
    p.truncate(played_ms=120)
    assert drain(p) == [{"type": "conversation.item.truncate", "event_id": "evt_2",
                         "item_id": "item_1", "content_index": 0, "audio_end_ms": 120}]
    p.truncate(played_ms=-5, item_id="item_1")
    assert strip_ids(drain(p)) == [{"type": "conversation.item.delete", "item_id": "item_1"}]
    with pytest.raises(RealtimeProtocolError, match="item_9"):
        p.truncate(100, item_id="item_9")


def test_cancel_when_the_server_will_not():
    """With interrupt_response false the client cancels the running response itself."""
    p = connect(RealtimeParams(turn_detection={"type": "server_vad", "interrupt_response": False}))
    playing_response(p, 1000)
    p.on_playback_progress("item_A1", 600)
    speech_started(p)
    assert strip_ids(drain(p)) == [{"type": "response.cancel", "response_id": "resp_2"}]
    p.on_playback_progress("item_A1", 640, done=True)
    assert strip_ids(drain(p)) == [
        {"type": "conversation.item.truncate", "item_id": "item_A1", "content_index": 0, "audio_end_ms": 640}]


def test_server_turn_detection_is_mirrored_from_session_updated():
    """The server's effective interrupt_response decides who cancels."""
    p = connect()
    p.receive_event({"type": "session.updated", "event_id": "e", "session": {"type": "realtime", "audio": {
        "input": {"turn_detection": {"type": "server_vad", "interrupt_response": False}}}}})
    playing_response(p, 500)
    speech_started(p)
    assert [e["type"] for e in drain(p)] == ["response.cancel", "conversation.item.truncate"]


def test_local_vad_barge_in_and_turn():
    """Turn detection off: local speech start barges in, speech stop commits and asks for a response."""
    clock = Clock()
    p = connect(RealtimeParams(turn_detection="none", append_ms=100), clock)
    playing_response(p, 1200)
    p.on_playback_progress("item_A1", 700)
    assert p.user_started_speaking()
    assert [type(f) for f in p.frames_out()] == [InterruptionFrame]
    assert p.settle_truncations() == 1  # no final report came: the last one is used
    assert strip_ids(drain(p)) == [
        {"type": "response.cancel", "response_id": "resp_2"},
        {"type": "conversation.item.truncate", "item_id": "item_A1", "content_index": 0, "audio_end_ms": 700}]
    p.append_audio(tone(450))
    clock.t = 300.0
    assert p.user_stopped_speaking()
    events = drain(p)
    assert [e["type"] for e in events] == ["input_audio_buffer.append"] * 5 + ["input_audio_buffer.commit"]
    assert appended(events).shape == (450 * 24,)
    done(p, "resp_2", "cancelled")  # the cancelled response ends: now the queued response.create goes
    assert [e["type"] for e in drain(p)] == ["response.create"]
    p.frames_out()
    clock.t = 300.25
    start_response(p, "resp_3", "item_A3")
    p.receive_event(audio_delta("item_A3", tone(20), "resp_3"))
    clock.t = 301.0
    done(p, "resp_3")
    (metrics,) = [f for f in p.frames_out() if isinstance(f, MetricsFrame)]
    assert metrics.values["ttfb_ms"] == pytest.approx(250.0) and metrics.values["turn"] == 2


def test_short_commit_is_skipped():
    """Less than 100 ms since the last commit is not committed (the server would refuse)."""
    p = connect(RealtimeParams(turn_detection="none"))
    p.append_audio(tone(60))
    assert not p.user_stopped_speaking()
    assert [e["type"] for e in drain(p)] == ["input_audio_buffer.append"]
    assert p.stats["short_commits_skipped"] == 1


def test_server_vad_ignores_local_speaking_frames():
    """With server VAD the local VAD's frames do not commit or barge in."""
    p = connect()
    playing_response(p, 500)
    assert not p.user_started_speaking() and not p.user_stopped_speaking()
    assert drain(p) == [] and p.frames_out() == []


def test_no_progress_reports_means_everything_received_was_heard():
    """Without playback progress a barge-in truncates to what was received."""
    p = connect(RealtimeParams(turn_detection={"type": "server_vad", "interrupt_response": False}))
    playing_response(p, 900)
    speech_started(p)
    assert [e.get("audio_end_ms") for e in drain(p)] == [None, 900]


def test_barge_in_while_the_finished_response_still_plays():
    """After response.done, audio still playing is interrupted and truncated, without a cancel."""
    p = connect()
    playing_response(p, 2000)
    done(p)
    p.frames_out()
    p.on_playback_progress("item_A1", 800)
    speech_started(p)
    assert [type(f) for f in p.frames_out()] == [UserStartedSpeakingFrame, InterruptionFrame]
    p.on_playback_progress("item_A1", 800, done=True)
    assert strip_ids(drain(p)) == [
        {"type": "conversation.item.truncate", "item_id": "item_A1", "content_index": 0, "audio_end_ms": 800}]
    speech_started(p)  # the item is settled: a second speech start interrupts nothing
    assert [type(f) for f in p.frames_out()] == [UserStartedSpeakingFrame] and drain(p) == []


def test_fully_played_response_is_not_interrupted():
    """Speech after playback finished is a new turn, not a barge-in."""
    p = connect()
    playing_response(p, 1000)
    done(p)
    p.on_playback_progress("item_A1", 1000, done=True)
    p.frames_out()
    speech_started(p)
    assert [type(f) for f in p.frames_out()] == [UserStartedSpeakingFrame] and drain(p) == []


def test_text_responses_are_interrupted_without_truncation():
    """Text output cannot be truncated: barge-in cancels (where needed) and announces only."""
    p = connect(RealtimeParams(output_modalities=["text"], turn_detection="none"))
    p.receive_event({"type": "response.created", "event_id": "e", "response": {"id": "resp_1"}})
    p.receive_event({"type": "response.output_text.delta", "event_id": "e", "response_id": "resp_1",
                     "item_id": "item_T", "output_index": 0, "content_index": 0, "delta": "Hel"})
    assert [f.text for f in p.frames_out() if isinstance(f, TextFrame)] == ["Hel"]
    assert p.interrupt()
    assert [e["type"] for e in drain(p)] == ["response.cancel"]


def test_interruption_from_upstream_raises_the_next_turn():
    """An InterruptionFrame from elsewhere: the next response's turn is at least its turn."""
    p = connect()
    p.sync_turn(7)
    start_response(p)
    (start,) = p.frames_out()
    assert start.turn == 7


def test_interrupt_abandons_an_open_tool_batch():
    """Results of calls cut off by a barge-in go into the conversation without a new response."""
    p = connect(RealtimeParams(turn_detection={"type": "server_vad", "interrupt_response": False}))
    function_call_response(p, "resp_1", [("call_1", "get_weather", "{}")])
    speech_started(p)
    assert [e["type"] for e in drain(p)] == ["response.cancel"]
    done(p, "resp_1", "cancelled")
    p.tool_result("call_1", '{"error": "cancelled"}', is_error=True)
    assert [e["type"] for e in drain(p)] == ["conversation.item.create"]


def test_response_create_is_serialised():
    """A response asked for while one runs waits for its response.done."""
    p = connect()
    p.send_user_text("hello")
    assert [e["type"] for e in drain(p)] == ["conversation.item.create", "response.create"]
    p.send_user_text("and more")
    assert [e["type"] for e in drain(p)] == ["conversation.item.create"]
    p.receive_event({"type": "response.created", "event_id": "e", "response": {"id": "resp_1"}})
    assert drain(p) == []
    done(p, "resp_1")
    assert [e["type"] for e in drain(p)] == ["response.create"]


def test_text_typed_before_the_session_is_sent_when_it_starts():
    """A page may type before the model connects: the text waits, then goes with one response.create."""
    p = RealtimeProtocol(RealtimeParams(), new_id=counter("evt"), now=Clock())
    p.send_user_text("what is the weather in paris")
    assert p.busy == "user text waits for the connection"
    p.connection_made()
    assert drain(p) == []
    p.receive_event({"type": "session.created", "event_id": "event_0", "session": {"type": "realtime"}})
    events = drain(p)
    assert [e["type"] for e in events] == ["session.update", "conversation.item.create", "response.create"]
    assert events[1]["item"]["content"] == [{"type": "input_text", "text": "what is the weather in paris"}]
    p.connection_lost()  # bounded while offline: past 16 kept messages, the rest are dropped with a warning
    for i in range(20):
        p.send_user_text(f"message {i}")
    assert len(p._texts_pending) == 16


def test_refused_response_create_returns_to_idle():
    """conversation_already_has_active_response in REQUESTED goes back to IDLE (non-fatal)."""
    p = connect()
    p.request_response()
    drain(p)
    p.receive_event({"type": "error", "event_id": "e", "error": {
        "type": "invalid_request_error", "code": "conversation_already_has_active_response",
        "message": "Conversation already has an active response in progress: resp_9.", "param": None, "event_id": None}})
    (err,) = p.frames_out()
    assert p.phase is Phase.IDLE and not err.fatal and err.code == "conversation_already_has_active_response"


# --- robustness -------------------------------------------------------------------------------


def test_unknown_events_are_skipped(caplog):
    """Unknown event types are logged once, counted and skipped; the session goes on."""
    p = connect()
    with caplog.at_level(logging.WARNING, logger="voxpipe.realtime"):
        for _ in range(3):
            p.receive_event({"type": "response.hologram.delta", "event_id": "e", "delta": "x"})
    assert p.stats["unknown"] == 3
    assert sum("response.hologram.delta" in r.message for r in caplog.records) == 1
    p.receive_event({"type": "conversation.created", "event_id": "e", "conversation": {"id": "conv_1"}})
    assert p.stats["unknown"] == 3 and p.frames_out() == [] and drain(p) == []
    start_response(p)
    assert [type(f) for f in p.frames_out()] == [ResponseStartFrame]


@pytest.mark.parametrize("bad", [
    "not json {",
    "[1, 2]",
    '{"event_id": "e"}',
    '{"type": 5}',
    '{"type": "response.created", "event_id": "e"}',
    '{"type": "response.output_audio.delta", "event_id": "e", "response_id": "resp_2", "item_id": "item_A1"}',
    '{"type": "response.output_audio.delta", "event_id": "e", "response_id": "resp_2", "item_id": "item_A1", "delta": "@@@"}',
    '{"type": "input_audio_buffer.speech_started", "event_id": "e", "audio_start_ms": "soon", "item_id": "u"}',
    '{"type": "error", "event_id": "e", "error": "boom"}',
    '{"type": "response.function_call_arguments.done", "event_id": "e", "response_id": "resp_2", "call_id": 3}',
])
def test_malformed_events_are_skipped(bad):
    """A malformed message is counted and skipped; the state it arrives in is unchanged."""
    p = connect()
    playing_response(p, 200)
    p.receive_message(bad)
    assert p.stats["malformed"] == 1 and p.frames_out() == [] and drain(p) == []
    assert p.phase is Phase.RESPONDING
    p.receive_event(audio_delta("item_A1", tone(20), n=50))
    assert [type(f) for f in p.frames_out()] == [AudioFrame]


def test_surprises_are_counted_and_skipped():
    """Events illegal in the current phase (second session.created, a stray response.done) are skipped."""
    p = connect()
    p.receive_event({"type": "session.created", "event_id": "e", "session": {"type": "realtime"}})
    done(p, "resp_404")
    start_response(p)
    p.receive_event({"type": "response.created", "event_id": "e", "response": {"id": "resp_3"}})
    assert p.stats["surprises"] == 3 and drain(p) == []
    assert [type(f) for f in p.frames_out()] == [ResponseStartFrame] and p.phase is Phase.RESPONDING


ERRORS = [
    ("response_cancel_not_active", None, False, None),
    ("input_audio_buffer_commit_empty", None, False, ""),
    ("invalid_api_key", None, True, "OPENAI_API_KEY"),
    ("beta_api_shape_disabled", None, True, "dialect: ga"),
    ("invalid_value", "session.audio.input.turn_detection.threshold", True, "fix the params"),
    (None, None, False, ""),
]


@pytest.mark.parametrize("code,param,fatal,hint", ERRORS)
def test_error_events_are_classified(code, param, fatal, hint):
    """Errors become error frames by code: benign ones vanish, auth and session config ones are fatal."""
    p = RealtimeProtocol(RealtimeParams(), new_id=counter("evt"))
    p.connection_made()
    p.receive_event({"type": "session.created", "event_id": "e", "session": {"type": "realtime"}})
    p.receive_event({"type": "error", "event_id": "e", "error": {
        "type": "invalid_request_error", "code": code, "message": "Something went wrong.", "param": param, "event_id": None}})
    frames = p.frames_out()
    if hint is None:
        assert frames == [] and p.stats["benign_errors"] == 1
        return
    (err,) = frames
    assert isinstance(err, ErrorFrame) and err.fatal is fatal and err.code == code
    assert "Something went wrong." in err.message and hint in err.message
    assert (p.fatal is err) is fatal


def test_session_errors_after_configuration_are_not_fatal():
    """A rejected later update (e.g. voice after audio) is reported, not fatal."""
    p = connect()
    p.receive_event({"type": "session.updated", "event_id": "e", "session": {"type": "realtime"}})
    p.receive_event({"type": "error", "event_id": "e", "error": {
        "type": "invalid_request_error", "code": "cannot_update_voice", "param": "session.audio.output.voice",
        "message": "Cannot update a conversation's voice if assistant audio is present."}})
    (err,) = p.frames_out()
    assert not err.fatal and p.fatal is None


def test_failed_response_is_reported():
    """A response.done with status failed carries its error into an error frame."""
    p = connect()
    start_response(p)
    p.receive_event({"type": "response.done", "event_id": "e", "response": {
        "id": "resp_2", "status": "failed", "output": [], "usage": None,
        "status_details": {"type": "failed", "error": {"type": "server_error", "code": "server_error",
                                                        "message": "The server had an error."}}}})
    frames = p.frames_out()
    err = next(f for f in frames if isinstance(f, ErrorFrame))
    assert not err.fatal and "server_error" in err.message
    assert next(f for f in frames if isinstance(f, ResponseEndFrame)).status == "failed"


def test_user_transcription_frames():
    """Input transcription deltas are partial, completed is final; failures are reported."""
    p = connect()
    for ev in ({"type": "conversation.item.input_audio_transcription.delta", "event_id": "e", "item_id": "item_U1",
                "content_index": 0, "delta": "Hel"},
               {"type": "conversation.item.input_audio_transcription.completed", "event_id": "e", "item_id": "item_U1",
                "content_index": 0, "transcript": "Hello?", "usage": {"type": "duration", "seconds": 1.0}},
               {"type": "conversation.item.input_audio_transcription.failed", "event_id": "e", "item_id": "item_U2",
                "content_index": 0, "error": {"code": "audio_unintelligible", "message": "could not transcribe"}}):
        p.receive_event(ev)
    a, b, c = p.frames_out()
    assert (a.text, a.final, b.text, b.final, b.item_id) == ("Hel", False, "Hello?", True, "item_U1")
    assert isinstance(c, ErrorFrame) and not c.fatal and "could not transcribe" in c.message


# --- reconnection -----------------------------------------------------------------------------


def test_reconnect_in_the_middle_of_a_response():
    """A lost connection ends the response, keeps user audio, and restores the session on reconnect."""
    p = connect(RealtimeParams(append_ms=100))
    p.add_tools([WEATHER_TOOL])
    drain(p)
    function_call_response(p, "resp_0", [("call_1", "get_weather", "{}")])
    done(p, "resp_0")
    p.frames_out()
    p.tool_result("call_1", "{}")
    drain(p)
    p.receive_event({"type": "response.created", "event_id": "e", "response": {"id": "resp_2"}})
    p.receive_event(audio_delta("item_A1", tone(300), "resp_2"))
    p.append_audio(tone(50))  # half a batch, not yet sent
    p.frames_out()
    p.connection_lost("1006 abnormal closure")
    (end,) = p.frames_out()
    assert (end.response_id, end.status, p.phase) == ("resp_2", "failed", Phase.DISCONNECTED)
    kept = tone(700, freq=600.0)
    p.append_audio(kept)
    p.tool_result("call_1", "{}")  # a result for the old session goes nowhere
    assert p.events_to_send() == [] and p.busy == "user audio waits for the connection"
    p.connection_made()
    p.receive_event({"type": "session.created", "event_id": "e", "session": {"type": "realtime"}})
    events = drain(p)
    assert events[0]["type"] == "session.update" and events[0]["session"]["tools"] == [WEATHER_TOOL]
    np.testing.assert_array_equal(appended(events[1:]), np.concatenate([tone(50), kept])[:7 * 2400])
    p.flush_audio()
    np.testing.assert_array_equal(appended(drain(p)), np.concatenate([tone(50), kept])[7 * 2400:])
    start_response(p, "resp_9", "item_A9")
    (start,) = p.frames_out()
    assert start.turn == 3  # turns keep rising across sessions


def test_offline_buffer_is_bounded():
    """While disconnected only the newest reconnect.buffer_ms of user audio are kept."""
    p = RealtimeProtocol(RealtimeParams(reconnect={"buffer_ms": 100}, append_ms=10), new_id=counter("evt"))
    x = tone(250, freq=500.0)
    for i in range(0, len(x), 480):
        p.append_audio(x[i : i + 480])
    p.connection_made()
    p.receive_event({"type": "session.created", "event_id": "e", "session": {"type": "realtime"}})
    np.testing.assert_array_equal(appended(drain(p)[1:]), x[-2400:])
    assert p.stats["offline_dropped_samples"] == len(x) - 2400


def test_commit_while_disconnected_waits_for_the_session():
    """A local turn end while disconnected commits after the buffered audio in the next session."""
    p = RealtimeProtocol(RealtimeParams(turn_detection="none"), new_id=counter("evt"))
    p.append_audio(tone(300))
    assert p.user_stopped_speaking()
    p.connection_made()
    p.receive_event({"type": "session.created", "event_id": "e", "session": {"type": "realtime"}})
    assert [e["type"] for e in drain(p)][-3:] == ["input_audio_buffer.append", "input_audio_buffer.commit", "response.create"]


def test_add_tools_updates_a_live_session():
    """Tools announced by a router after the session started are sent with a tools-only update."""
    p = connect()
    p.add_tools([WEATHER_TOOL, {"type": "function", "function": {"name": "nested"}}])
    (update,) = drain(p)
    assert update["session"] == {"type": "realtime", "tools": [WEATHER_TOOL], "tool_choice": "auto"}


def test_local_misuse_raises():
    """Commands after close() and a second connection_made raise, naming the command and phase."""
    p = connect()
    with pytest.raises(RealtimeProtocolError, match="connection_made.*IDLE"):
        p.connection_made()
    p.close()
    with pytest.raises(RealtimeProtocolError, match=r"append_audio\(\) after close"):
        p.append_audio(tone(20))
    p.receive_event({"type": "session.created", "event_id": "e", "session": {}})  # ignored once closed
    assert p.phase is Phase.CLOSED


def test_end_of_input_closes_an_open_server_vad_turn():
    """At the end of input mid-speech, trailing silence lets the server VAD end the turn."""
    p = connect(RealtimeParams(turn_detection={"type": "server_vad", "silence_duration_ms": 200}, append_ms=100))
    speech_started(p, 0, "item_U1")
    p.frames_out()
    assert p.busy == "the user's turn is still open"
    p.end_of_input()
    pad = appended(drain(p))
    assert pad.shape == (500 * 24,) and not pad.any()


def test_barge_in_settles_every_unheard_item():
    """An item still queued behind the playing one is deleted, the playing one truncated."""
    p = connect()
    playing_response(p, 1000, "resp_1", "item_A1")
    done(p, "resp_1")
    playing_response(p, 600, "resp_2", "item_A2")
    p.on_playback_progress("item_A1", 400)
    speech_started(p)
    p.on_playback_progress("item_A1", 420, done=True)
    p.on_playback_progress("item_A2", 0, done=True)
    assert strip_ids(drain(p)) == [
        {"type": "conversation.item.truncate", "item_id": "item_A1", "content_index": 0, "audio_end_ms": 420},
        {"type": "conversation.item.delete", "item_id": "item_A2"}]


# --- params and retry policy ------------------------------------------------------------------


@pytest.mark.parametrize("params,message", [
    ({"url": "https://api.openai.com/v1/realtime"}, "wss://api.openai.com/v1/realtime"),
    ({"url": "api.openai.com"}, "must start with wss://"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "Realtime tools are flat"),
    ({"turn_detection": {"type": "semantic_vad", "threshold": 0.5}}, "threshold only apply to `type: server_vad`"),
    ({"turn_detection": {"type": "server_vad", "eagerness": "low"}}, "eagerness only applies"),
    ({"max_output_tokens": 9000}, "1..4096"),
    ({"dialect": "beta", "turn_detection": {"idle_timeout_ms": 5000}}, "GA only"),
    ({"voise": "alloy"}, "voise"),
])
def test_params_errors_say_what_to_change(params, message):
    """Invalid params fail validation with a message naming the fix."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("[", r"\[")):
        RealtimeParams(**params)


def test_api_key_is_resolved_and_never_shown(monkeypatch):
    """The key comes from params or OPENAI_API_KEY and never appears in a repr or an error."""
    from processors.realtime.client.session import resolve_api_key

    p = RealtimeParams(api_key="sk-secret-123")
    assert resolve_api_key(p) == "sk-secret-123"
    assert "sk-secret-123" not in repr(p) and "sk-secret-123" not in p.model_dump_json()
    assert resolve_api_key(RealtimeParams(), env={"OPENAI_API_KEY": "sk-env"}) == "sk-env"
    with pytest.raises(ValueError, match="OPENAI_API_KEY") as info:
        resolve_api_key(RealtimeParams(), env={})
    assert "sk-" not in str(info.value)
    assert resolve_api_key(RealtimeParams(), local=True, env={}) == "sk-local"


def test_connect_url_adds_the_model():
    """The model goes in the query unless the URL already names a model or a call."""
    from processors.realtime.client.session import connect_url

    assert connect_url("wss://api.openai.com/v1/realtime", "gpt-realtime") == \
        "wss://api.openai.com/v1/realtime?model=gpt-realtime"
    assert connect_url("ws://127.0.0.1:9/v1/realtime?model=x", "gpt-realtime") == "ws://127.0.0.1:9/v1/realtime?model=x"


def test_backoff_delays_are_exponential_jittered_and_reproducible():
    """Delays grow by the factor within +-jitter, cap at max, stop after max_attempts; a seed repeats them."""
    from processors.realtime.client.backoff import Backoff

    b = Backoff(initial_delay_s=0.5, factor=2.0, max_delay_s=6.0, jitter=0.25, max_attempts=6, seed=7)
    delays = [b.next_delay() for _ in range(7)]
    assert delays[-1] is None
    for n, d in enumerate(delays[:-1]):
        base = min(6.0, 0.5 * 2**n)
        assert 0.75 * base <= d <= min(6.0, 1.25 * base)
    again = Backoff(initial_delay_s=0.5, factor=2.0, max_delay_s=6.0, jitter=0.25, max_attempts=6, seed=7)
    assert [again.next_delay() for _ in range(6)] == delays[:-1]
    assert len(set(delays[:3])) == 3
    b.reset()
    assert b.next_delay() is not None


def test_retry_classification():
    """Network failures, going-away closes, 429 and 5xx are retried; auth and protocol errors are not."""
    from types import SimpleNamespace

    from processors.realtime.client.backoff import (
        retry_after_close,
        retry_after_handshake,
        retry_after_status,
    )

    assert all(retry_after_close(c) for c in (None, 1000, 1001, 1006, 1011, 1012, 1013))
    assert not any(retry_after_close(c) for c in (1002, 1003, 1007, 1008, 1009, 1010))
    assert retry_after_status(429) and retry_after_status(503)
    assert not any(retry_after_status(s) for s in (400, 401, 403, 404))
    assert retry_after_handshake(ConnectionRefusedError()) and retry_after_handshake(TimeoutError())
    assert not retry_after_handshake(SimpleNamespace(response=SimpleNamespace(status_code=401)))
    assert not retry_after_handshake(ValueError("bad uri"))


def test_commands_without_a_session_send_nothing():
    """While disconnected, commands that only make sense in a session are dropped, not queued for the next one."""
    p = connect()
    playing_response(p, 300)
    p.connection_lost("gone")
    p.frames_out()
    p.truncate(100, item_id="item_A1")
    p.send_user_text("hi")
    p.request_response()
    assert p.events_to_send() == [] and p.stats["dropped_offline_events"] == 1


@pytest.mark.parametrize("dialect", ["ga", "beta"])
def test_every_client_event_kind_is_valid_in_its_dialect(dialect):
    """Drive the core through everything it can send; each event validates against the SDK union."""
    p = connect(RealtimeParams(dialect=dialect, turn_detection="none", append_ms=50))
    p.add_tools([WEATHER_TOOL])
    p.append_audio(tone(200))
    p.user_stopped_speaking()  # appends, commit, response.create
    p.user_started_speaking()  # REQUESTED: response.cancel without an id
    p.receive_event({"type": "error", "event_id": "e", "error": {"type": "invalid_request_error",
                     "code": "conversation_already_has_active_response", "message": "busy"}})
    p.send_user_text("hello")  # conversation.item.create (message) + response.create
    function_call_response(p, "resp_1", [("call_1", "get_weather", '{"city": "Oslo"}')])
    p.receive_event(audio_delta("item_A1", tone(300), "resp_1", beta=dialect == "beta"))
    p.tool_result("call_1", '{"temp_c": 3}')  # conversation.item.create (function_call_output)
    p.interrupt()  # response.cancel with an id, then a cut: no progress seen -> truncate at received
    p.truncate(0, "item_A1")  # conversation.item.delete
    events = drain(p)
    kinds = {e["type"] for e in events}
    assert kinds == {"session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "response.create",
                     "response.cancel", "conversation.item.create", "conversation.item.truncate",
                     "conversation.item.delete"}
    cancels = [e for e in events if e["type"] == "response.cancel"]
    assert [("response_id" in e) for e in cancels] == [False, True]


def test_barge_in_before_our_response_started_cancels_it_unheard():
    """A barge-in while our response.create is on its way cancels it; what it still sends is dropped."""
    p = connect()
    p.send_user_text("tell me a story")
    drain(p)
    speech_started(p)
    assert strip_ids(drain(p)) == [{"type": "response.cancel"}]
    assert [type(f) for f in p.frames_out()] == [UserStartedSpeakingFrame, InterruptionFrame]
    start_response(p, "resp_1", "item_A1")
    p.receive_event(audio_delta("item_A1", tone(100), "resp_1"))
    p.receive_event({"type": "response.output_audio_transcript.delta", "event_id": "e", "response_id": "resp_1",
                     "item_id": "item_A1", "output_index": 0, "content_index": 0, "delta": "Once"})
    done(p, "resp_1", "cancelled")
    frames = p.frames_out()
    assert not [f for f in frames if isinstance(f, (AudioFrame, TextFrame))]
    assert [f.status for f in frames if isinstance(f, ResponseEndFrame)] == ["cancelled"]
    start_response(p, "resp_2", "item_A2")  # the answer to the barge-in plays normally
    p.receive_event(audio_delta("item_A2", tone(100), "resp_2"))
    assert [type(f) for f in p.frames_out()] == [ResponseStartFrame, AudioFrame]


def test_calls_of_an_interrupted_response_are_answered_not_run():
    """A call completed after its response was interrupted gets an error output and no follow-up response."""
    p = connect(RealtimeParams(turn_detection={"type": "server_vad", "interrupt_response": False}))
    p.receive_event({"type": "response.created", "event_id": "e", "response": {"id": "resp_1"}})
    speech_started(p)
    drain(p)
    item = {"id": "item_F", "type": "function_call", "name": "get_weather",
                                    "call_id": "call_9", "arguments": "{}"}
    p.receive_event({"type": "response.output_item.done", "event_id": "e", "response_id": "resp_1",
                     "output_index": 0, "item": item})
    done(p, "resp_1", "cancelled")
    assert not [f for f in p.frames_out() if isinstance(f, ToolCallFrame)]
    (answer,) = drain(p)
    assert answer["item"]["call_id"] == "call_9" and "interrupted" in answer["item"]["output"]
