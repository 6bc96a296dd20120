"""The local realtime server's sans-I/O core, with dicts and real audio (reference §2-§9).

Every event the core emits is validated strictly against the official SDK's server-event
union of the connection's dialect and checked for the cross-event invariants.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json

import numpy as np
import pytest

from pipeline.dsp.g711 import ulaw_decode, ulaw_encode
from pipeline.dsp.resample import resample
from processors.realtime.server.conformance import InvariantChecker, strict_validator
from processors.realtime.server.conversation import Generate, ServerConversation, StopGeneration, Transcribe
from processors.realtime.server.items import Conversation, StoredItem
from processors.realtime.server.session import Dialect

GA, BETA = Dialect.GA, Dialect.BETA
VALIDATORS = {GA: strict_validator(GA), BETA: strict_validator(BETA)}
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                               "required": ["location"]}}


@functools.lru_cache(maxsize=None)
def spoken(text: str, rate: int = 24000) -> np.ndarray:
    """eSpeak NG speech of ``text`` as int16 at ``rate`` (cached: deterministic)."""
    from processors.speech.espeak import synthesize

    x, native = synthesize(text)
    return resample(x, native, rate)


def silence(ms: int, rate: int = 24000, seed: int = 0) -> np.ndarray:
    """Quiet seeded noise (about -60 dBFS), not digital zero."""
    return np.random.default_rng(seed).normal(0, 30, rate * ms // 1000).astype(np.int16)


def utterance(text: str, lead_ms: int = 600, tail_ms: int = 700, rate: int = 24000) -> np.ndarray:
    return np.concatenate([silence(lead_ms, rate, 1), spoken(text, rate), silence(tail_ms, rate, 2)])


class Harness:
    """A core with counter ids whose every event is validated and invariant-checked."""

    def __init__(self, dialect: Dialect = GA, **kwargs) -> None:
        counter = itertools.count(1)
        self.core = ServerConversation(dialect=dialect, new_id=lambda p: f"{p}_{next(counter)}",
                                       now=lambda: 1_700_000_000, **kwargs)
        self.dialect = dialect
        self.checker = InvariantChecker(dialect)
        self.log: list[dict] = []
        self.commands: list = []
        (self.created,) = self.events()  # session.created, always first

    def events(self) -> list[dict]:
        out = self.core.events_to_send()
        for event in out:
            VALIDATORS[self.dialect](event)
            self.checker.check(event)
            assert len(json.dumps(event)) < 1 << 20
        self.log += out
        self.commands += self.core.commands()
        return out

    def types(self) -> list[str]:
        return [e["type"] for e in self.events()]

    def send(self, event: dict) -> list[dict]:
        self.core.receive_event(event)
        return self.events()

    def error(self, event: dict | str) -> dict:
        """Send a bad event; return the single error it produced."""
        if isinstance(event, dict):
            self.core.receive_event(event)
        else:
            self.core.receive_text(event)
        out = self.events()
        assert [e["type"] for e in out] == ["error"], out
        return out[0]["error"]

    def append(self, samples: np.ndarray, chunk_ms: int = 100, rate: int = 24000, encode=None) -> list[dict]:
        data = encode(samples) if encode else samples.astype("<i2").tobytes()
        step = (rate * chunk_ms // 1000) * (1 if encode else 2)
        for i in range(0, len(data), step):
            self.core.receive_event({"type": "input_audio_buffer.append",
                                     "audio": base64.b64encode(data[i:i + step]).decode()})
        return self.events()

    def take(self, kind: type) -> list:
        found = [c for c in self.commands if isinstance(c, kind)]
        self.commands = [c for c in self.commands if not isinstance(c, kind)]
        return found

    def text_item(self, text: str, **extra) -> dict:
        return self.send({"type": "conversation.item.create", **extra,
                          "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})

    def respond_audio(self, rid: str, text: str = "Hi there!", ms: int = 300) -> None:
        core = self.core
        assert core.begin_message(rid) is not None
        tone = (np.sin(np.arange(24 * ms) * 0.05) * 3000).astype(np.int16)
        half = len(tone) // 2
        core.add_audio(rid, tone[:half], text[:3])
        core.add_audio(rid, tone[half:], text[3:])


def session_update(h: Harness, session: dict) -> list[dict]:
    return h.send({"type": "session.update", "session": session})


# --- session --------------------------------------------------------------------------------


def test_session_created_first_with_full_ga_defaults():
    """session.created comes first and carries the whole GA config of the real server."""
    h = Harness()
    created = h.created
    s = created["session"]
    assert created["type"] == "session.created"
    assert s["type"] == "realtime" and s["object"] == "realtime.session" and s["id"].startswith("sess_")
    assert s["expires_at"] == 1_700_000_000 + 3600 and isinstance(s["expires_at"], int)
    assert s["output_modalities"] == ["audio"] and s["tool_choice"] == "auto" and s["tools"] == []
    assert s["max_output_tokens"] == "inf" and s["truncation"] == "auto" and s["prompt"] is None
    assert s["audio"]["input"] == {
        "format": {"type": "audio/pcm", "rate": 24000}, "transcription": None, "noise_reduction": None,
        "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300,
                           "silence_duration_ms": 200, "idle_timeout_ms": None, "create_response": True,
                           "interrupt_response": True}}
    assert s["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0}


def test_beta_session_created_has_the_beta_shape():
    """A beta connection's session uses modalities, pcm16 strings and temperature."""
    h = Harness(BETA)
    s = h.created["session"]
    assert s["modalities"] == ["text", "audio"] and s["voice"] == "alloy" and s["temperature"] == 0.8
    assert s["input_audio_format"] == s["output_audio_format"] == "pcm16"
    assert s["turn_detection"]["type"] == "server_vad" and "audio" not in s and "type" not in s
    with pytest.raises(Exception):
        VALIDATORS[GA]({"type": "response.audio.delta", "event_id": "e", "response_id": "r", "item_id": "i",
                        "output_index": 0, "content_index": 0, "delta": ""})


def test_session_update_changes_only_the_fields_present():
    """A tools-only update keeps turn detection; nulls clear; a same-type VAD patch merges."""
    h = Harness()
    (updated,) = session_update(h, {"type": "realtime", "tools": [WEATHER_TOOL], "model": "gpt-realtime-2",
                                    "some_future_field": {"x": 1}, "instructions": None})
    s = updated["session"]
    assert updated["type"] == "session.updated" and s["tools"][0]["name"] == "get_weather"
    assert s["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 200
    assert s["instructions"].startswith("You are the voxpipe") and s["model"] == "gpt-realtime-2"
    s = session_update(h, {"type": "realtime", "audio": {"input": {"turn_detection": {"silence_duration_ms": 500}}}})[0]["session"]
    turn = s["audio"]["input"]["turn_detection"]
    assert turn["silence_duration_ms"] == 500 and turn["threshold"] == 0.5 and turn["create_response"] is True
    assert s["tools"][0]["name"] == "get_weather"
    s = session_update(h, {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}})[0]["session"]
    assert s["audio"]["input"]["turn_detection"] == {"type": "semantic_vad", "eagerness": "auto",
                                                      "create_response": True, "interrupt_response": True}
    s = session_update(h, {"type": "realtime", "audio": {"input": {"turn_detection": None, "transcription":
                                                                   {"model": "gpt-4o-transcribe"}}}})[0]["session"]
    assert s["audio"]["input"]["turn_detection"] is None
    assert s["audio"]["input"]["transcription"]["model"] == "gpt-4o-transcribe"
    s = session_update(h, {"type": "realtime", "output_modalities": ["text"], "tool_choice": "required",
                           "audio": {"output": {"format": {"type": "audio/pcmu"}, "voice": "marin"}}})[0]["session"]
    assert s["output_modalities"] == ["text"] and s["tool_choice"] == "required"
    assert s["audio"]["output"]["format"] == {"type": "audio/pcmu"} and s["audio"]["output"]["voice"] == "marin"


def test_session_update_errors_reject_the_whole_update():
    """missing type, beta fields on GA, bad values: an error and nothing changes."""
    h = Harness()
    err = h.error({"type": "session.update", "session": {"instructions": "x"}})
    assert err == {"type": "invalid_request_error", "code": "missing_required_parameter",
                   "message": "Missing required parameter: 'session.type'.", "param": "session.type", "event_id": None}
    err = h.error({"type": "session.update", "session": {"type": "realtime", "instructions": "x", "voice": "ash"}})
    assert err["code"] == "unknown_parameter" and err["param"] == "session.voice"
    err = h.error({"type": "session.update", "event_id": "evt_client_1", "session": {
        "type": "realtime", "instructions": "changed", "audio": {"input": {"turn_detection": {"threshold": 1.5}}}}})
    assert err["code"] == "invalid_value" and err["param"] == "session.audio.input.turn_detection.threshold"
    assert err["event_id"] == "evt_client_1"
    err = h.error({"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text", "audio"]}})
    assert err["code"] == "invalid_value" and err["param"] == "session.output_modalities"
    err = h.error({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 16000}}}}})
    assert err["param"] == "session.audio.input.format.rate"
    err = h.error({"type": "session.update", "session": "realtime"})
    assert err["code"] == "invalid_type"
    assert h.error({"type": "session.update"})["code"] == "missing_required_parameter"
    assert h.core.session.config["instructions"].startswith("You are the voxpipe")
    assert h.core.session.turn_detection["threshold"] == 0.5


def test_voice_cannot_change_after_assistant_audio():
    """cannot_update_voice rejects the whole update once audio was produced; same voice is fine."""
    h = Harness()
    session_update(h, {"type": "realtime", "audio": {"output": {"voice": "echo"}}})
    h.text_item("hello")
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    assert gen.voice == "echo"
    h.respond_audio(gen.response_id)
    h.core.finish_response(gen.response_id)
    h.events()
    err = h.error({"type": "session.update", "session": {"type": "realtime", "instructions": "new",
                                                          "audio": {"output": {"voice": "ash"}}}})
    assert err["code"] == "cannot_update_voice"
    assert err["message"] == "Cannot update a conversation's voice if assistant audio is present."
    assert h.core.session.config["instructions"] != "new" and h.core.session.voice == "echo"
    (ok,) = session_update(h, {"type": "realtime", "instructions": "new", "audio": {"output": {"voice": "echo"}}})
    assert ok["session"]["instructions"] == "new"


def test_beta_session_update_maps_onto_the_same_state():
    """Beta field names update the session; GA-only fields are unknown parameters in beta."""
    h = Harness(BETA)
    (updated,) = session_update(h, {"modalities": ["text"], "voice": "sage", "input_audio_format": "g711_ulaw",
                                    "turn_detection": None, "temperature": 1.0, "tools": [WEATHER_TOOL],
                                    "input_audio_transcription": {"model": "whisper-1"}, "type": "realtime"})
    s = updated["session"]
    assert s["modalities"] == ["text"] and s["voice"] == "sage" and s["input_audio_format"] == "g711_ulaw"
    assert s["turn_detection"] is None and s["temperature"] == 1.0 and s["tools"][0]["name"] == "get_weather"
    assert s["input_audio_transcription"] == {"model": "whisper-1", "language": None, "prompt": ""}
    assert h.core.buffer.rate == 8000
    err = h.error({"type": "session.update", "session": {"output_modalities": ["audio"]}})
    assert err["code"] == "unknown_parameter" and err["param"] == "session.output_modalities"
    assert h.error({"type": "session.update", "session": {"temperature": 3}})["param"] == "session.temperature"


# --- conversation items -----------------------------------------------------------------------


def test_linked_list_insert_root_after_and_delete_repair():
    """Items keep previous_item_id links: append, 'root', after an id; delete joins neighbours."""
    conv = Conversation("conv_1")
    item = lambda i: StoredItem({"id": i, "type": "message", "role": "user", "content": []})
    assert conv.insert(item("a")) is None
    assert conv.insert(item("b")) == "a"
    assert conv.insert(item("r"), "root") is None
    assert conv.insert(item("m"), "a") == "a"
    assert conv.ids() == ["r", "a", "m", "b"]
    assert conv.previous_of("b") == "m"
    conv.delete("m")
    assert conv.ids() == ["r", "a", "b"] and conv.previous_of("b") == "a"
    conv.delete("r")
    assert conv.head == "a" and conv.previous_of("a") is None
    conv.delete("b")
    assert conv.tail == "a" and conv.ids() == ["a"]
    assert conv.insert(item("c")) == "a"


def test_item_create_reports_previous_item_id_and_keeps_client_ids():
    """conversation.item.added/done carry previous_item_id; client ids are kept."""
    h = Harness()
    first = h.text_item("one")
    assert [e["type"] for e in first] == ["conversation.item.added", "conversation.item.done"]
    assert first[0]["previous_item_id"] is None and first[0]["item"] == first[1]["item"]
    a = first[0]["item"]["id"]
    out = h.send({"type": "conversation.item.create", "item": {"id": "my_item", "type": "message", "role": "system",
                                                               "content": [{"type": "input_text", "text": "be brief"}]}})
    assert out[0]["item"]["id"] == "my_item" and out[0]["previous_item_id"] == a
    out = h.send({"type": "conversation.item.create", "previous_item_id": "root", "item": {
        "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "earlier"}]}})
    assert out[0]["previous_item_id"] is None and out[0]["item"]["content"][0]["type"] == "output_text"
    head = out[0]["item"]["id"]
    out = h.send({"type": "conversation.item.create", "previous_item_id": a, "item": {
        "type": "function_call", "name": "get_weather", "arguments": "{}", "call_id": "call_x"}})
    call_item = out[0]["item"]["id"]
    assert out[0]["previous_item_id"] == a and out[0]["item"]["call_id"] == "call_x"
    assert h.core.conversation.ids() == [head, a, call_item, "my_item"]
    (deleted,) = h.send({"type": "conversation.item.delete", "item_id": call_item})
    assert deleted == {"type": "conversation.item.deleted", "event_id": deleted["event_id"], "item_id": call_item}
    assert h.core.conversation.previous_of("my_item") == a
    (got,) = h.send({"type": "conversation.item.retrieve", "item_id": "my_item"})
    assert got["type"] == "conversation.item.retrieved" and got["item"]["content"][0]["text"] == "be brief"
    err = h.error({"type": "conversation.item.create", "item": {"id": "my_item", "type": "message", "role": "user",
                                                                 "content": []}})
    assert err["code"] == "invalid_value" and err["param"] == "item.id"


def test_item_errors_have_codes_and_params():
    """Unknown ids, missing fields, assistant audio: each refused with its code, nothing added."""
    h = Harness()
    err = h.error({"type": "conversation.item.create", "previous_item_id": "nope", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "x"}]}})
    assert err["code"] == "item_not_found" and err["param"] == "previous_item_id"
    assert len(h.core.conversation) == 0
    assert h.error({"type": "conversation.item.create"})["param"] == "item"
    assert h.error({"type": "conversation.item.create", "item": {"type": "message", "content": []}})["param"] == "item.role"
    assert h.error({"type": "conversation.item.create", "item": {"type": "function_call_output",
                                                                  "output": "{}"}})["param"] == "item.call_id"
    err = h.error({"type": "conversation.item.create", "item": {"type": "message", "role": "assistant",
                                                                 "content": [{"type": "output_audio", "audio": "AAAA"}]}})
    assert err["code"] == "invalid_value" and "Assistant audio messages cannot be created" in err["message"]
    assert h.error({"type": "conversation.item.create", "item": {"type": "mcp_call"}})["param"] == "item.type"
    for etype in ("conversation.item.delete", "conversation.item.retrieve"):
        assert h.error({"type": etype, "item_id": "item_zz"})["code"] == "item_not_found"
        assert h.error({"type": etype})["code"] == "missing_required_parameter"
    assert h.error({"type": "conversation.item.delete", "item_id": 5})["code"] == "invalid_type"
    assert len(h.core.conversation) == 0


# --- input audio and server VAD (reference §4.1) ----------------------------------------------

GA_VAD_TURN = ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
               "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done",
               "response.created"]
GA_AUDIO_LADDER = ["response.output_item.added", "conversation.item.added", "response.content_part.added",
                   "response.output_audio_transcript.delta", "response.output_audio.delta",
                   "response.output_audio_transcript.delta", "response.output_audio.delta",
                   "response.output_audio.done", "response.output_audio_transcript.done",
                   "response.content_part.done", "response.output_item.done", "conversation.item.done",
                   "rate_limits.updated", "response.done"]


def test_vad_turn_sequence_and_timeline():
    """Speech gives started/stopped/committed/user item/response.created with real positions."""
    h = Harness()
    session_update(h, {"type": "realtime", "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}})
    speech = spoken("what is the weather in paris")
    out = h.append(utterance("what is the weather in paris"))
    assert [e["type"] for e in out] == GA_VAD_TURN
    started, stopped, committed, added, done, created = out
    speech_ms = 1000 * len(speech) / 24000
    assert abs(started["audio_start_ms"] - (600 - 300)) <= 30  # onset minus prefix padding
    assert abs(stopped["audio_end_ms"] - (600 + speech_ms + 200)) <= 40  # end plus silence duration
    assert started["item_id"] == stopped["item_id"] == committed["item_id"] == added["item"]["id"]
    assert committed["previous_item_id"] is None and added["item"]["content"] == [{"type": "input_audio",
                                                                                    "transcript": None}]
    (tr,) = h.take(Transcribe)
    assert tr.item_id == committed["item_id"] and tr.emit_events and tr.sample_rate == 24000
    assert len(tr.samples) == 24 * (stopped["audio_end_ms"] - started["audio_start_ms"])
    (gen,) = h.take(Generate)
    assert gen.context.user_item_id == tr.item_id and gen.context.user_text is None  # wait for recognition
    h.core.transcription_done(tr.item_id, "what is the weather in paris")
    out = h.events()
    assert [e["type"] for e in out] == ["conversation.item.input_audio_transcription.delta"] * 6 + [
        "conversation.item.input_audio_transcription.completed"]
    assert "".join(e["delta"] for e in out[:-1]) == out[-1]["transcript"] == "what is the weather in paris"
    assert out[-1]["usage"]["type"] == "tokens" and out[-1]["content_index"] == 0
    h.respond_audio(gen.response_id)
    h.core.finish_response(gen.response_id)
    ladder = h.events()
    assert [e["type"] for e in ladder] == GA_AUDIO_LADDER
    assert ladder[1]["previous_item_id"] == tr.item_id
    done = ladder[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["content"] == [{"type": "output_audio",
                                                                                "transcript": "Hi there!"}]
    assert done["usage"]["output_token_details"]["audio_tokens"] > 0
    (got,) = h.send({"type": "conversation.item.retrieve", "item_id": tr.item_id})
    audio = base64.b64decode(got["item"]["content"][0]["audio"])
    assert len(audio) == 2 * len(tr.samples) and got["item"]["content"][0]["transcript"] == "what is the weather in paris"


def test_vad_turns_do_not_depend_on_append_sizes():
    """10 ms and 170 ms appends find the same turn edges; an idle buffer keeps only its padding."""
    edges = []
    for chunk_ms in (10, 170):
        h = Harness()
        out = h.append(utterance("hello", lead_ms=2000), chunk_ms=chunk_ms)
        edges.append([(e.get("audio_start_ms"), e.get("audio_end_ms")) for e in out[:2]])
    assert edges[0] == edges[1]
    h = Harness()
    h.append(silence(5000))
    assert h.core.buffer.samples <= h.core._turns.keep_samples + 480
    assert h.core.buffer.end == 5000 * 24


def test_vad_params_are_honoured():
    """create_response false: no response; interrupt_response false: no cancel; null: no VAD."""
    h = Harness()
    session_update(h, {"type": "realtime", "audio": {"input": {"turn_detection": {"create_response": False,
                                                                                    "silence_duration_ms": 500}}}})
    out = h.append(utterance("hello", tail_ms=400))
    assert "input_audio_buffer.speech_stopped" not in [e["type"] for e in out]  # 400 ms < 500 ms silence
    out = h.append(silence(300))
    assert [e["type"] for e in out] == GA_VAD_TURN[1:-1] and not h.take(Generate)
    h.text_item("hello")
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    h.respond_audio(gen.response_id)
    session_update(h, {"type": "realtime", "audio": {"input": {"turn_detection": {"interrupt_response": False}}}})
    out = h.append(utterance("hello"))
    assert [e["type"] for e in out][:3] == GA_VAD_TURN[:3] and h.core.active_response_id == gen.response_id
    assert not h.take(StopGeneration)
    h.core.finish_response(gen.response_id)
    h.events()
    session_update(h, {"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    assert h.append(utterance("hello")) == []
    (committed, added, done) = h.send({"type": "input_audio_buffer.commit"})
    assert committed["type"] == "input_audio_buffer.committed" and not h.take(Generate)
    assert added["item"]["id"] == committed["item_id"]
    assert h.core.buffer.samples == 0


def test_commit_and_clear_accounting():
    """commit needs 100 ms (the real message); clear empties; odd byte splits are joined."""
    h = Harness()
    session_update(h, {"type": "realtime", "audio": {"input": {"turn_detection": None}}})
    err = h.error({"type": "input_audio_buffer.commit"})
    assert err["code"] == "input_audio_buffer_commit_empty"
    assert err["message"] == ("Error committing input audio buffer: buffer too small. Expected at least 100ms of "
                              "audio, but buffer only has 0.00ms of audio.")
    data = silence(50).astype("<i2").tobytes()
    for piece in (data[:333], data[333:]):  # an odd split: the half sample waits for its pair
        h.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(piece).decode()})
    assert "50.00ms" in h.error({"type": "input_audio_buffer.commit"})["message"]
    h.append(silence(60))
    assert [e["type"] for e in h.send({"type": "input_audio_buffer.clear"})] == ["input_audio_buffer.cleared"]
    assert h.error({"type": "input_audio_buffer.commit"})["code"] == "input_audio_buffer_commit_empty"
    h.append(silence(110))
    assert h.send({"type": "input_audio_buffer.commit"})[0]["type"] == "input_audio_buffer.committed"
    (tr,) = h.take(Transcribe)
    assert len(tr.samples) == 110 * 24 and not tr.emit_events


def test_g711_session_in_and_out():
    """pcmu input is decoded for VAD at 8 kHz; pcmu output deltas are 8 bytes a millisecond."""
    h = Harness()
    session_update(h, {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}},
                                                     "output": {"format": {"type": "audio/pcmu"}}}})
    encode = lambda x: ulaw_encode(x).tobytes()
    out = h.append(utterance("hello", rate=8000), rate=8000, encode=encode)
    assert [e["type"] for e in out] == GA_VAD_TURN
    (tr,) = h.take(Transcribe)
    assert tr.sample_rate == 8000
    (gen,) = h.take(Generate)
    assert gen.output_format == "g711_ulaw" and out[-1]["response"]["audio"]["output"]["format"] == {"type": "audio/pcmu"}
    h.core.begin_message(gen.response_id)
    h.core.add_audio(gen.response_id, spoken("hi", 8000), "hi")
    h.core.finish_response(gen.response_id)
    deltas = [base64.b64decode(e["delta"]) for e in h.events() if e["type"] == "response.output_audio.delta"]
    audio = ulaw_decode(b"".join(deltas))
    assert len(audio) == len(spoken("hi", 8000)) and max(len(d) for d in deltas) <= 200 * 8
    assert np.abs(audio.astype(int) - spoken("hi", 8000)).max() < 1100  # G.711 quantisation only


# --- responses ----------------------------------------------------------------------------------


def test_function_call_round_trip():
    """§4.2: a function call item, its output item, then a response with the tool context."""
    h = Harness()
    session_update(h, {"type": "realtime", "tools": [WEATHER_TOOL]})
    user = h.text_item("what is the weather in paris")[0]["item"]["id"]
    created = h.send({"type": "response.create", "response": {"metadata": {"turn": "1"}}})
    assert created[0]["response"]["metadata"] == {"turn": "1"}
    (gen,) = h.take(Generate)
    assert gen.context.user_text == "what is the weather in paris" and gen.context.tools[0]["name"] == "get_weather"
    call_id = h.core.add_function_call(gen.response_id, "get_weather", '{"location": "Paris"}')
    h.core.finish_response(gen.response_id)
    out = h.events()
    assert [e["type"] for e in out] == [
        "response.output_item.added", "conversation.item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "conversation.item.done",
        "rate_limits.updated", "response.done"]
    assert out[1]["previous_item_id"] == user and out[0]["item"]["call_id"] == call_id
    assert out[5]["name"] == "get_weather" and out[5]["arguments"] == '{"location": "Paris"}'
    assert out[-1]["response"]["output"][0]["arguments"] == '{"location": "Paris"}'
    assert out[-1]["response"]["metadata"] == {"turn": "1"}
    fc_item = out[0]["item"]["id"]
    added = h.send({"type": "conversation.item.create", "item": {"type": "function_call_output", "call_id": call_id,
                                                                  "output": '{"temp_c": 21}'}})
    assert added[0]["previous_item_id"] == fc_item and added[0]["item"]["type"] == "function_call_output"
    h.send({"type": "response.create"})
    (gen2,) = h.take(Generate)
    assert gen2.context.tool_call == {"name": "get_weather", "arguments": '{"location": "Paris"}', "call_id": call_id}
    assert gen2.context.tool_output == '{"temp_c": 21}'


def test_barge_in_cancels_with_turn_detected_and_truncate():
    """§4.3: speech during a response closes it out as incomplete, reason turn_detected."""
    h = Harness()
    h.text_item("tell me a story")
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    rid = gen.response_id
    h.respond_audio(rid, "Once upon a time", ms=1000)
    assistant = h.core.conversation.tail
    h.events()
    out = h.append(utterance("hello", tail_ms=0))
    assert [e["type"] for e in out] == [
        "input_audio_buffer.speech_started", "response.output_audio.done", "response.output_audio_transcript.done",
        "response.content_part.done", "response.output_item.done", "conversation.item.done",
        "rate_limits.updated", "response.done"]
    assert out[2]["transcript"] == "Once upon a time" and out[4]["item"]["status"] == "incomplete"
    assert out[-1]["response"]["status"] == "cancelled"
    assert out[-1]["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert [c.response_id for c in h.take(StopGeneration)] == [rid]
    assert h.core.add_audio(rid, np.zeros(480, np.int16), "more") is False and h.events() == []
    assert h.error({"type": "response.cancel"})["code"] == "response_cancel_not_active"
    (truncated,) = h.send({"type": "conversation.item.truncate", "item_id": assistant, "content_index": 0,
                           "audio_end_ms": 400})
    assert truncated == {"type": "conversation.item.truncated", "event_id": truncated["event_id"],
                         "item_id": assistant, "content_index": 0, "audio_end_ms": 400}
    stored = h.core.conversation.get(assistant)
    assert stored.audio_ms(0) == 400 and stored.item["content"][0]["transcript"] == ""
    out = h.append(silence(400))
    assert [e["type"] for e in out][:3] == ["input_audio_buffer.speech_stopped", "input_audio_buffer.committed",
                                            "conversation.item.added"]
    assert out[1]["previous_item_id"] == assistant


def test_truncate_errors():
    """Past the end: the real message, then truncated at the real end; wrong items refused."""
    h = Harness()
    user = h.text_item("hi")[0]["item"]["id"]
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    h.respond_audio(gen.response_id, ms=500)
    h.core.finish_response(gen.response_id)
    h.events()
    assistant = h.core.conversation.tail
    h.core.receive_event({"type": "conversation.item.truncate", "item_id": assistant, "content_index": 0,
                          "audio_end_ms": 900})
    err, truncated = h.events()
    assert err["error"]["message"] == "Audio content of 500ms is already shorter than 900ms"
    assert truncated["type"] == "conversation.item.truncated" and truncated["audio_end_ms"] == 500
    err = h.error({"type": "conversation.item.truncate", "item_id": user, "content_index": 0, "audio_end_ms": 0})
    assert err["message"] == "Only model output audio messages can be truncated"
    assert h.error({"type": "conversation.item.truncate", "item_id": "nope", "content_index": 0,
                    "audio_end_ms": 0})["code"] == "item_not_found"
    assert h.error({"type": "conversation.item.truncate", "item_id": assistant,
                    "content_index": 0})["param"] == "audio_end_ms"
    assert h.error({"type": "conversation.item.truncate", "item_id": assistant, "content_index": 0,
                    "audio_end_ms": "1"})["code"] == "invalid_type"


def test_one_response_at_a_time_cancel_and_failure():
    """A second response.create is refused; cancel and failure each end with one response.done."""
    h = Harness()
    h.text_item("hi")
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    err = h.error({"type": "response.create"})
    assert err["code"] == "conversation_already_has_active_response"
    assert err["message"] == (f"Conversation already has an active response in progress: {gen.response_id}. "
                              "Wait until the response is finished before creating a new one.")
    h.core.begin_message(gen.response_id)
    out = h.send({"type": "response.cancel", "response_id": gen.response_id})
    assert out[-1]["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert [e["type"] for e in out].count("response.done") == 1
    h.core.finish_response(gen.response_id)  # a worker that lost the race: nothing happens
    assert h.events() == []
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    h.core.finish_response(gen.response_id, error="synthesis failed")
    (done,) = [e for e in h.events() if e["type"] == "response.done"]
    assert done["response"]["status"] == "failed"
    assert done["response"]["status_details"]["error"]["message"] == "synthesis failed"
    h.checker.finish()


def test_out_of_band_text_response_and_token_limit():
    """conversation none: no conversation events, runs beside the default; text deltas; limits."""
    h = Harness()
    h.text_item("hi")
    h.send({"type": "response.create"})
    (default,) = h.take(Generate)
    out = h.send({"type": "response.create", "response": {"conversation": "none", "output_modalities": ["text"],
                                                           "metadata": {"k": "v"}}})
    assert out[0]["response"]["conversation_id"] is None
    (oob,) = h.take(Generate)
    assert oob.modalities == ["text"]
    h.core.begin_message(oob.response_id)
    h.core.add_text(oob.response_id, "Hello")
    h.core.add_text(oob.response_id, " world")
    h.core.finish_response(oob.response_id)
    out = h.events()
    assert "conversation.item.added" not in [e["type"] for e in out]
    assert [e["text"] for e in out if e["type"] == "response.output_text.done"] == ["Hello world"]
    assert out[-1]["response"]["output"][0]["content"] == [{"type": "output_text", "text": "Hello world"}]
    h.core.finish_response(default.response_id)
    h.events()
    h.send({"type": "response.create", "response": {"max_output_tokens": 2}})
    (gen,) = h.take(Generate)
    h.core.begin_message(gen.response_id)
    assert h.core.add_audio(gen.response_id, np.zeros(2400, np.int16), "a long sentence here") is False
    done = h.events()[-1]["response"]
    assert done["status"] == "incomplete" and done["status_details"]["reason"] == "max_output_tokens"


def test_beta_dialect_ladder():
    """Beta names: conversation.item.created once, response.audio.*, no name on arguments.done."""
    h = Harness(BETA)
    session_update(h, {"tools": [WEATHER_TOOL]})
    out = h.append(utterance("hello"))
    assert [e["type"] for e in out] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                                        "input_audio_buffer.committed", "conversation.item.created",
                                        "response.created"]
    assert out[3]["item"]["object"] == "realtime.item"
    (gen,) = h.take(Generate)
    h.respond_audio(gen.response_id)
    h.core.finish_response(gen.response_id)
    types = [e["type"] for e in h.events()]
    assert types == ["response.output_item.added", "conversation.item.created", "response.content_part.added",
                     "response.audio_transcript.delta", "response.audio.delta", "response.audio_transcript.delta",
                     "response.audio.delta", "response.audio.done", "response.audio_transcript.done",
                     "response.content_part.done", "response.output_item.done", "rate_limits.updated",
                     "response.done"]
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    h.core.add_function_call(gen.response_id, "get_weather", '{"location": "Paris"}')
    h.core.finish_response(gen.response_id)
    done = [e for e in h.events() if e["type"] == "response.function_call_arguments.done"][0]
    assert "name" not in done
    err = h.error({"type": "conversation.item.create", "item": {"type": "function_call_output",
                                                                 "call_id": "call_unknown", "output": "{}"}})
    assert err["param"] == "item.call_id"


def test_every_bad_input_gets_an_error_and_the_session_lives_on():
    """Invalid JSON, wrong shapes, unknown types, binary: one error each, then a normal turn."""
    h = Harness()
    assert h.error("{not json")["code"] == "invalid_event"
    assert h.error("[1, 2]")["code"] == "invalid_event"
    assert h.error('{"event_id": "e1"}') == {"type": "invalid_request_error", "code": "invalid_event",
                                               "message": "The 'type' field is missing.", "param": "type",
                                               "event_id": "e1"}
    err = h.error({"type": "response.audio.delta"})
    assert err["code"] == "invalid_event" and err["message"].startswith("Invalid value: 'response.audio.delta'.")
    assert h.error({"type": "transcription_session.update", "session": {}})["code"] == "invalid_event"
    assert h.error({"type": 7})["code"] == "invalid_event"
    h.core.receive_text(b"\x00\x01")
    assert h.events()[0]["error"]["code"] == "invalid_event"
    assert h.error({"type": "input_audio_buffer.append"})["code"] == "missing_required_parameter"
    assert h.error({"type": "input_audio_buffer.append", "audio": "***"})["code"] == "invalid_value"
    assert h.error({"type": "input_audio_buffer.append", "audio": 5})["code"] == "invalid_type"
    assert h.error({"type": "response.create", "response": {"output_modalities": ["text", "audio"]}})["code"] == "invalid_value"
    assert h.error({"type": "response.create", "response": {"conversation": "other"}})["code"] == "invalid_value"
    assert h.error({"type": "response.create", "response": {"input": [{"type": "item_reference",
                                                                        "id": "missing"}]}})["code"] == "item_not_found"
    assert h.error({"type": "response.cancel", "response_id": "resp_nope"})["code"] == "response_cancel_not_active"
    assert h.error({"type": "output_audio_buffer.clear"})["code"] == "invalid_event"
    h.text_item("hello", event_id=None)
    h.send({"type": "response.create", "event_id": None, "response": None})
    (gen,) = h.take(Generate)
    assert gen.context.user_text == "hello"
    h.core.finish_response(gen.response_id)
    assert h.events()[-1]["response"]["status"] == "completed"
    h.checker.finish()


def test_response_input_sets_a_fresh_context():
    """response.input with inline items and item references decides what the responder reads."""
    h = Harness()
    first = h.text_item("hello")[0]["item"]["id"]
    h.text_item("goodbye")
    h.send({"type": "response.create", "response": {"conversation": "none", "input": [
        {"type": "item_reference", "id": first}]}})
    (gen,) = h.take(Generate)
    assert gen.context.user_text == "hello"
    h.core.finish_response(gen.response_id)
    h.send({"type": "response.create", "response": {"conversation": "none", "input": [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "tell me a story"}]}]}})
    (gen,) = h.take(Generate)
    assert gen.context.user_text == "tell me a story"


def test_transcription_session():
    """?intent=transcription: VAD and transcription events, no responses."""
    h = Harness(kind="transcription")
    s = h.created["session"]
    assert s["type"] == "transcription" and s["audio"]["input"]["transcription"]["model"] == "whisper-1"
    out = h.append(utterance("hello"))
    assert [e["type"] for e in out] == GA_VAD_TURN[:-1]
    (tr,) = h.take(Transcribe)
    h.core.transcription_done(tr.item_id, "hello")
    completed = h.events()[-1]
    assert completed["transcript"] == "hello" and completed["usage"]["type"] == "duration"
    assert h.error({"type": "response.create"})["code"] == "invalid_value"


def test_idle_timeout_in_media_time():
    """idle_timeout_ms after a response and its playback: timeout_triggered, commit, response."""
    h = Harness()
    session_update(h, {"type": "realtime", "audio": {"input": {"turn_detection": {"idle_timeout_ms": 1000}},
                                                     "output": {"speed": 1.25}}})
    h.append(silence(200))
    h.text_item("hi")
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    assert gen.speed == 1.25
    h.respond_audio(gen.response_id, ms=300)
    h.core.finish_response(gen.response_id)
    h.events()
    assert h.append(silence(1200)) == []  # 300 ms playback + 1000 ms idle not yet over
    out = h.append(silence(200))
    assert [e["type"] for e in out] == ["input_audio_buffer.timeout_triggered", "input_audio_buffer.committed",
                                        "conversation.item.added", "conversation.item.done", "response.created"]
    assert out[0]["audio_start_ms"] == 200 + 300 and out[0]["audio_end_ms"] == 200 + 300 + 1000
    assert out[0]["item_id"] == out[1]["item_id"]
    (gen,) = h.take(Generate)
    h.core.finish_response(gen.response_id)
    h.events()
    h.append(silence(500))
    out = h.append(utterance("hello", lead_ms=300, tail_ms=1500))  # speech before the deadline disarms it
    assert "input_audio_buffer.timeout_triggered" not in [e["type"] for e in out]
    assert [e["type"] for e in out][:2] == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"]


def test_client_audio_item_is_recognised_for_the_responder():
    """A user input_audio item without transcript is recognised (no events) before replying."""
    h = Harness()
    speech = utterance("hello", lead_ms=100, tail_ms=100)
    out = h.send({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_audio", "audio": base64.b64encode(speech.astype("<i2").tobytes()).decode()}]}})
    item_id = out[0]["item"]["id"]
    assert "audio" not in out[0]["item"]["content"][0]  # audio stays out of the events
    (tr,) = h.take(Transcribe)
    assert tr.item_id == item_id and not tr.emit_events and np.array_equal(tr.samples, speech)
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    assert gen.context.user_item_id == item_id and gen.context.user_text is None
    h.core.transcription_done(tr.item_id, "hello", emit_events=tr.emit_events)
    assert h.events() == [] and h.core.conversation.get(item_id).heard_text == "hello"


def test_conformance_checker_catches_broken_streams():
    """The invariant checker fails on reused ids, wrong done text and a second response.done."""
    from processors.realtime.server.conformance import ConformanceError

    h = Harness()
    h.text_item("hi")
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    h.respond_audio(gen.response_id)
    h.core.finish_response(gen.response_id)
    h.events()
    good = h.log
    for broken in (
        lambda evs: evs + [dict(evs[-1])],  # response.done again, same event_id
        lambda evs: evs + [dict(evs[-1], event_id="event_new")],  # a second response.done
        lambda evs: [dict(e, transcript="Hi") if e["type"] == "response.output_audio_transcript.done" else e
                     for e in evs],
        lambda evs: evs[1:],  # session.created missing
        lambda evs: [dict(e, output_index=1) if e["type"] == "response.output_audio.delta" else e for e in evs],
    ):
        checker = InvariantChecker(GA)
        with pytest.raises(ConformanceError):
            for event in broken(list(good)):
                checker.check(event)
    checker = InvariantChecker(GA)
    for event in good:
        checker.check(event)
    checker.finish()


def test_public_names():
    """Every module of the package lists its public names, and they exist; heavy libraries stay unloaded."""
    import importlib
    import subprocess
    import sys

    for module in ("commands", "conformance", "conversation", "engine", "errors", "input_buffer", "items",
                   "responses", "server", "session", "turns", ""):
        mod = importlib.import_module("processors.realtime.server" + (f".{module}" if module else ""))
        assert mod.__all__ and all(hasattr(mod, name) for name in mod.__all__), module
    code = ("import sys, processors.realtime.server; "
            "print(sorted({'openai', 'pocketsphinx', 'espeakng_loader'} & set(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


# --- dispatch table and phases -----------------------------------------------------------------


def test_every_client_event_has_a_handler_in_the_table():
    """The dispatch table holds exactly the dialect's client events; an unknown type is refused."""
    from processors.realtime.server.conversation import CLIENT_EVENTS

    for dialect in (GA, BETA):
        h = Harness(dialect)
        assert list(h.core._handlers) == list(CLIENT_EVENTS[dialect])
    err = Harness(GA).error({"type": "transcription_session.update", "session": {}})
    assert err["code"] == "invalid_event" and err["param"] == "type"
    assert err["message"].startswith("Invalid value: 'transcription_session.update'. Supported values are: "
                                     "'session.update', 'input_audio_buffer.append'")


def test_phase_follows_the_default_response_and_logs_each_change(caplog):
    """IDLE -> RESPONDING on response.create, back to IDLE on cancel and on done; each change logged."""
    import logging

    from processors.realtime.server.state import Phase

    caplog.set_level(logging.DEBUG, logger="voxpipe.realtime_server")
    h = Harness()
    assert h.core.phase is Phase.IDLE
    h.text_item("hello")
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    assert h.core.phase is Phase.RESPONDING and h.core.active_response_id == gen.response_id
    h.send({"type": "response.cancel"})
    assert h.core.phase is Phase.IDLE and h.core.active_response_id is None
    h.send({"type": "response.create"})
    (gen,) = h.take(Generate)
    h.respond_audio(gen.response_id)
    h.core.finish_response(gen.response_id)
    h.events()
    assert h.core.phase is Phase.IDLE
    changes = [r.getMessage() for r in caplog.records if r.getMessage().startswith("phase ")]
    assert changes == ["phase IDLE -> RESPONDING on response.create (client)",
                       "phase RESPONDING -> IDLE on response.cancel (client_cancelled)",
                       "phase IDLE -> RESPONDING on response.create (client)",
                       "phase RESPONDING -> IDLE on response.done"]


def test_illegal_transitions_are_refused_naming_event_and_phase():
    """No row in the table: the API's code where it has one, else an error naming event and phase."""
    from processors.realtime.server.errors import ClientEventError
    from processors.realtime.server.state import Phase

    h = Harness()
    with pytest.raises(ClientEventError, match=r"^'response.done' cannot be applied while the session is IDLE\.$"):
        h.core._set_phase("response.done", None)
    assert h.core.phase is Phase.IDLE
    assert h.error({"type": "response.cancel"})["code"] == "response_cancel_not_active"
    h.send({"type": "response.create"})
    err = h.error({"type": "response.create"})
    assert err["code"] == "conversation_already_has_active_response" and h.core.phase is Phase.RESPONDING
    t = Harness(kind="transcription")
    assert t.core.phase is Phase.TRANSCRIPTION
    err = t.error({"type": "response.create"})
    assert err["code"] == "invalid_value" and err["message"].startswith("A transcription session does not create")
