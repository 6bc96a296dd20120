"""The client core wired to the local server core, no sockets: every event that crosses, both dialects.

:class:`Pair` is h11's ``ConnectionPair`` for the Realtime API (STYLE §8): the client's
sans-I/O core (:class:`RealtimeProtocol`) and the server's (:class:`ServerConversation`)
with a loop that moves each one's ``events_to_send()`` into the other's receive method
until both are quiet. The test plays the server's shell (it answers the core's commands
with eSpeak NG speech, as tests/test_realtime_server_core.py does) and the client's graph
(playback progress, tool results). Every server event is validated against the official
SDK's union for the dialect and checked for the cross-event invariants.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.frames import (
    AudioFrame,
    InterruptionFrame,
    ResponseEndFrame,
    ResponseStartFrame,
    TextFrame,
    ToolCallFrame,
    UserStartedSpeakingFrame,
)
from processors.realtime.client import RealtimeProtocol, RealtimeParams
from processors.realtime.server.conformance import InvariantChecker
from processors.realtime.server.conversation import Generate, ServerConversation, Transcribe
from processors.realtime.server.session import Dialect
from test_realtime_server_core import VALIDATORS, WEATHER_TOOL, silence, spoken, utterance

DIALECTS = pytest.mark.parametrize("dialect", ["ga", "beta"])


class Pair:
    """A client core and a server core joined by a loop instead of a socket."""

    def __init__(self, dialect: str, **params) -> None:
        self.dialect = Dialect.GA if dialect == "ga" else Dialect.BETA
        server_ids = itertools.count(1)
        client_ids = itertools.count(1)
        ticks = itertools.count()
        self.server = ServerConversation(dialect=self.dialect, new_id=lambda p: f"{p}_{next(server_ids)}",
                                         now=lambda: 1_700_000_000)
        self.client = RealtimeProtocol(RealtimeParams(dialect=dialect, **params),
                                       new_id=lambda: f"evt_{next(client_ids)}", now=lambda: next(ticks) / 100)
        self.checker = InvariantChecker(self.dialect)
        self.crossed: list[tuple[str, dict]] = []  # ("c>s" | "s>c", event), in order
        self.commands: list = []
        self.frames: list = []
        self.client.connection_made()
        self.pump()

    def pump(self) -> list[tuple[str, dict]]:
        """Move events both ways until neither core has any; return what crossed."""
        start = len(self.crossed)
        while True:
            to_client = self.server.events_to_send()
            to_server = self.client.events_to_send()
            if not to_client and not to_server:
                break
            for event in to_client:
                VALIDATORS[self.dialect](event)
                self.checker.check(event)
                self.crossed.append(("s>c", event))
                self.client.receive_event(event)
            for event in to_server:
                self.crossed.append(("c>s", event))
                self.server.receive_event(event)
            self.commands += self.server.commands()
            self.frames += self.client.frames_out()
        self.commands += self.server.commands()
        self.frames += self.client.frames_out()
        return self.crossed[start:]

    def take(self, kind: type) -> list:
        found = [c for c in self.commands if isinstance(c, kind)]
        self.commands = [c for c in self.commands if not isinstance(c, kind)]
        return found

    def take_frames(self) -> list:
        out, self.frames = self.frames, []
        return out

    def ga(self, ga_name: str, beta_name: str | None) -> list[str]:
        """The name of one server event in this pair's dialect ([] when beta does not send it)."""
        if self.dialect is Dialect.GA:
            return [ga_name]
        return [] if beta_name is None else [beta_name]


def kinds(crossed: list[tuple[str, dict]]) -> list[str]:
    return [f"{way} {event['type']}" for way, event in crossed]


def item_added(p: Pair) -> list[str]:
    """What announces a new item: GA added + done, beta one created."""
    return p.ga("conversation.item.added", "conversation.item.created") + p.ga("conversation.item.done", None)


def audio_ladder(p: Pair, deltas: int) -> list[str]:
    """The server events of one audio message that completes, with ``deltas`` audio deltas."""
    return (["response.output_item.added"] + item_added(p)[:1] + ["response.content_part.added"]
            + p.ga("response.output_audio_transcript.delta", "response.audio_transcript.delta")
            + p.ga("response.output_audio.delta", "response.audio.delta") * deltas
            + p.ga("response.output_audio.done", "response.audio.done")
            + p.ga("response.output_audio_transcript.done", "response.audio_transcript.done")
            + ["response.content_part.done", "response.output_item.done"] + item_added(p)[1:]
            + ["rate_limits.updated", "response.done"])


@DIALECTS
def test_session_handshake(dialect):
    """session.created, the client's session.update in its dialect, and the server's session.updated."""
    p = Pair(dialect)
    assert kinds(p.crossed) == ["s>c session.created", "c>s session.update", "s>c session.updated"]
    update = p.crossed[1][1]["session"]
    if dialect == "ga":
        assert update["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert update["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    else:
        assert update["input_audio_format"] == update["output_audio_format"] == "pcm16"
    assert p.server.session.input_format == p.server.session.output_format == "pcm16"
    assert p.client.online and p.client.stats == {}


@DIALECTS
def test_text_turn(dialect):
    """User text, the response ladder, and the server's speech arriving sample for sample."""
    p = Pair(dialect)
    p.take_frames()
    p.client.send_user_text("hello there")
    crossed = p.pump()
    assert kinds(crossed) == (["c>s conversation.item.create", "c>s response.create"]
                              + [f"s>c {t}" for t in item_added(p)] + ["s>c response.created"])
    assert crossed[0][1] == {"type": "conversation.item.create", "event_id": "evt_2", "item": {
        "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello there"}]}}
    (gen,) = p.take(Generate)
    assert gen.context.user_text == "hello there" and gen.response_id == crossed[-1][1]["response"]["id"]
    speech = spoken("Hi there, how can I help?")[: 24 * 900]  # 900 ms: five deltas of at most 200 ms
    assert p.server.begin_message(gen.response_id) is not None
    assert p.server.add_audio(gen.response_id, speech, "Hi there, how can I help?")
    p.server.finish_response(gen.response_id)
    crossed = p.pump()
    assert kinds(crossed) == [f"s>c {t}" for t in audio_ladder(p, 5)]
    frames = p.take_frames()
    assert [type(f) for f in frames[:2]] == [ResponseStartFrame, TextFrame]
    audio = [f for f in frames if isinstance(f, AudioFrame)]
    np.testing.assert_array_equal(np.concatenate([f.samples for f in audio]), speech)
    assert {f.turn for f in audio} == {1} and all(f.sample_rate == 24000 for f in audio)
    (end,) = [f for f in frames if isinstance(f, ResponseEndFrame)]
    assert end.status == "completed" and end.response_id == gen.response_id
    assert frames[1].text == "Hi there, how can I help?"
    assert p.client.stats == {}


@DIALECTS
def test_audio_append_and_commit(dialect):
    """Turn detection off: batched appends, a commit the server accepts, and the same samples committed."""
    p = Pair(dialect, turn_detection="none", append_ms=100)
    assert p.server.session.turn_detection is None
    x = utterance("what is the weather in paris", lead_ms=300, tail_ms=300)[: 24 * 1550]
    p.client.append_audio(x[: 24 * 99])
    assert p.client.commit_and_respond() is False  # 99 ms: the client does not send what the server refuses
    assert kinds(p.pump()) == ["c>s input_audio_buffer.append"]  # the partial batch went out, no commit
    assert p.server.buffer.buffered_ms == 99.0
    p.client.append_audio(x[24 * 99:])
    assert p.client.commit_and_respond() is True
    crossed = p.pump()
    assert kinds(crossed) == (["c>s input_audio_buffer.append"] * 15 + ["c>s input_audio_buffer.commit",
                                                                       "c>s response.create",
                                                                       "s>c input_audio_buffer.committed"]
                              + [f"s>c {t}" for t in item_added(p)] + ["s>c response.created"])
    (tr,) = p.take(Transcribe)
    assert tr.item_id == crossed[17][1]["item_id"] and tr.sample_rate == 24000
    np.testing.assert_array_equal(tr.samples, x)  # every sample the client had, nothing more
    (gen,) = p.take(Generate)
    assert gen.context.user_item_id == tr.item_id
    p.server.transcription_done(tr.item_id, "what is the weather in paris", emit_events=False)
    assert kinds(p.pump()) == []


@DIALECTS
def test_tool_call_round_trip(dialect):
    """A function call reaches the graph as a ToolCallFrame; its result goes back, then one response."""
    p = Pair(dialect, tools=[WEATHER_TOOL], output_modalities=["text"])
    p.client.send_user_text("what is the weather in paris")
    p.pump()
    (gen,) = p.take(Generate)
    assert gen.context.tools[0]["name"] == "get_weather"
    call_id = p.server.add_function_call(gen.response_id, "get_weather", '{"location": "Paris"}')
    p.server.finish_response(gen.response_id)
    crossed = p.pump()
    assert kinds(crossed) == [f"s>c {t}" for t in ["response.output_item.added", *item_added(p)[:1],
                                                   "response.function_call_arguments.delta",
                                                   "response.function_call_arguments.delta",
                                                   "response.function_call_arguments.delta",
                                                   "response.function_call_arguments.done",
                                                   "response.output_item.done", *item_added(p)[1:],
                                                   "rate_limits.updated", "response.done"]]
    (call,) = [f for f in p.take_frames() if isinstance(f, ToolCallFrame)]
    assert (call.call_id, call.name, call.arguments) == (call_id, "get_weather", {"location": "Paris"})
    p.client.tool_result(call_id, '{"temp_c": 21}')
    crossed = p.pump()
    assert kinds(crossed) == (["c>s conversation.item.create", "c>s response.create"]
                              + [f"s>c {t}" for t in item_added(p)] + ["s>c response.created"])
    assert crossed[0][1]["item"] == {"type": "function_call_output", "call_id": call_id, "output": '{"temp_c": 21}'}
    (gen2,) = p.take(Generate)
    assert gen2.context.tool_output == '{"temp_c": 21}'
    assert gen2.context.tool_call == {"name": "get_weather", "arguments": '{"location": "Paris"}',
                                      "call_id": call_id}


@DIALECTS
def test_barge_in_truncates_to_played_audio(dialect):
    """Server VAD cancels the response itself; the client truncates the item at what playback played."""
    p = Pair(dialect)
    p.client.send_user_text("tell me a story")
    p.pump()
    (gen,) = p.take(Generate)
    story = spoken("Once upon a time there was a small voice pipeline")[: 24 * 1000]
    item_id = p.server.begin_message(gen.response_id)
    p.server.add_audio(gen.response_id, story, "Once upon a time")
    p.pump()
    p.take_frames()
    p.client.on_playback_progress(item_id, 380)
    assert kinds(p.pump()) == []
    p.client.append_audio(utterance("hello", lead_ms=300, tail_ms=0))
    crossed = p.pump()
    server_side = [k for k in kinds(crossed) if k != "c>s input_audio_buffer.append"]
    assert server_side == [f"s>c {t}" for t in [
        "input_audio_buffer.speech_started", *p.ga("response.output_audio.done", "response.audio.done"),
        *p.ga("response.output_audio_transcript.done", "response.audio_transcript.done"),
        "response.content_part.done", "response.output_item.done", *item_added(p)[1:],
        "rate_limits.updated", "response.done"]]  # no response.cancel: the server cancels on its own VAD
    assert crossed[-1][1]["response"]["status"] == "cancelled"
    assert crossed[-1][1]["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    frames = p.take_frames()
    assert [type(f) for f in frames[:2]] == [UserStartedSpeakingFrame, InterruptionFrame] and frames[1].turn == 2
    p.client.on_playback_progress(item_id, 420, done=True)  # playback's final report of the dropped item
    crossed = p.pump()
    assert [e for _, e in crossed] == [
        {"type": "conversation.item.truncate", "event_id": crossed[0][1]["event_id"], "item_id": item_id,
         "content_index": 0, "audio_end_ms": 420},
        {"type": "conversation.item.truncated", "event_id": crossed[1][1]["event_id"], "item_id": item_id,
         "content_index": 0, "audio_end_ms": 420}]
    stored = p.server.conversation.get(item_id)
    assert stored.audio_ms(0) == 420 and stored.item["content"][0]["transcript"] == ""
    p.client.append_audio(silence(600))
    crossed = p.pump()
    assert [k for k in kinds(crossed) if k != "c>s input_audio_buffer.append"][:2] == [
        "s>c input_audio_buffer.speech_stopped", "s>c input_audio_buffer.committed"]
    assert p.client.stats.get("surprises", 0) == 0
