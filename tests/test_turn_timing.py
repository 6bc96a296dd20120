"""The turn timing core: a turn split into the VAD's wait, the model's time and voxpipe's share;
barge-ins timed to silence at the sink; the queues' exact high-water marks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.frames import AudioFrame, Direction, EndFrame, InterruptionFrame
from pipeline.queue import FrameQueue
from pipelines.turn_timing import SpeechEvent, TurnNotes, split_barge_ins, split_turns

DOWN, UP = Direction.DOWNSTREAM, Direction.UPSTREAM


def notes_of_one_turn() -> TurnNotes:
    n = TurnNotes()
    # speech ends at 2.000 s; the VAD decides on the frame ending 2.500 s; the model has it at 2.502 s
    n.events.append(SpeechEvent(False, 2.0, decided_s=2.5, at_model_s=2.502))
    n.responses[1] = 2.6  # the response starts
    n.metrics[1] = {"turn": 1, "ttfb_ms": 300.0, "first_audio_ms": 200.0}  # first delta at 2.802 s
    n.left_model[1] = 2.8025
    n.sink_audio(1, 0.02, 2.805)
    return n


def test_a_turn_is_split_into_vad_wait_model_and_framework():
    [r] = split_turns(notes_of_one_turn())
    assert r["vad"] == "graph"
    assert r["total_ms"] == pytest.approx(805.0)
    assert r["vad_wait_ms"] == pytest.approx(500.0)
    assert r["framework_in_ms"] == pytest.approx(2.0)
    assert r["model_ms"] == 300.0
    assert r["framework_out_ms"] == pytest.approx(3.0)
    assert r["framework_ms"] == pytest.approx(5.0)
    assert r["total_ms"] == pytest.approx(r["vad_wait_ms"] + r["framework_in_ms"] + r["model_ms"] + r["framework_out_ms"])
    assert r["model_to_sink_ms"] == pytest.approx(2.5)


def test_a_reply_after_a_tool_counts_from_its_creation_and_never_before_its_frame_left():
    n = TurnNotes()
    n.responses[3] = 10.0
    n.metrics[3] = {"turn": 3, "first_audio_ms": 4.0}  # the client's stamp: 10.004 s
    n.left_model[3] = 10.003  # the frame left earlier than the stamp moved onto this clock says
    n.sink_audio(3, 0.02, 10.005)
    [r] = split_turns(n)
    assert "speech_end_s" not in r and "vad_wait_ms" not in r
    assert r["model_ms"] == 4.0
    assert r["framework_out_ms"] == pytest.approx(2.0)  # from when the frame left, the bound
    assert r["framework_ms"] == r["framework_out_ms"] and r["created_to_sink_ms"] == pytest.approx(5.0)


def test_a_server_vad_turn_leaves_only_the_way_out_to_voxpipe():
    n = TurnNotes()
    n.events.append(SpeechEvent(False, 1.0, out_of_model_s=1.6))  # the server's speech_stopped came out of the model
    n.responses[1] = 1.65
    n.metrics[1] = {"turn": 1, "ttfb_ms": 200.0}
    n.sink_audio(1, 0.02, 1.801)
    [r] = split_turns(n)
    assert r["vad"] == "model" and "framework_in_ms" not in r
    assert r["framework_ms"] == pytest.approx(1.0) and r["total_ms"] == pytest.approx(801.0)
    assert r["model_ms"] == pytest.approx(800.0)  # the server's VAD wait (0.6 s) and its 200 ms to the first delta


def test_a_reply_that_never_reached_the_sink_or_has_no_figure_is_left_out():
    n = notes_of_one_turn()
    n.responses[2] = 3.0  # a tool call: no audio
    n.metrics[2] = {"turn": 2, "response_ms": 50.0}
    assert [r["turn"] for r in split_turns(n)] == [1]
    n.at_sink.clear()
    assert split_turns(n) == []


def test_each_stop_answers_one_response():
    n = notes_of_one_turn()
    n.events.append(SpeechEvent(False, 5.0, decided_s=5.5, at_model_s=5.501))
    n.responses[2] = 5.6
    n.metrics[2] = {"turn": 2, "ttfb_ms": 100.0}
    n.sink_audio(2, 0.02, 5.603)
    first, second = split_turns(n)
    assert first["speech_end_s"] == 2.0 and second["speech_end_s"] == 5.0
    assert second["framework_ms"] == pytest.approx(1.0 + 2.0)


def test_a_barge_in_counts_only_when_the_sink_was_playing():
    n = TurnNotes()
    n.sink_audio(1, 2.0, 1.0)  # two seconds of reply queued at the sink from 1.0 s on
    n.events.append(SpeechEvent(True, 1.5, decided_s=1.62, at_model_s=1.621))
    n.sink_interrupted(2, 1.623)
    n.events.append(SpeechEvent(True, 4.0, decided_s=4.1, at_model_s=4.101))
    n.sink_interrupted(3, 4.102)  # nothing was playing: the reply had played out at 3.0 s
    [b] = split_barge_ins(n)
    assert b["turn"] == 2 and b["total_ms"] == pytest.approx(123.0)
    assert b["vad_detection_ms"] == pytest.approx(120.0) and b["framework_ms"] == pytest.approx(3.0)
    assert not math.isnan(b["onset_s"])


def audio(i: int) -> AudioFrame:
    return AudioFrame(np.zeros(480, np.int16), 24000, pts=480 * i)


def test_the_queue_high_water_mark_is_exact():
    q = FrameQueue(8)
    for i in range(5):
        assert q.put_nowait(audio(i), DOWN)
    q.get_nowait(), q.get_nowait()
    q.put_nowait(audio(5), DOWN)
    assert len(q) == 4 and q.high_water == 5
    q.put_front(InterruptionFrame(turn=2), DOWN)  # system frames jump the line and are not counted
    assert q.statistics().high_water == 5


def test_the_high_water_mark_stops_at_the_bound_when_dropping_and_counts_upstream_past_it():
    q = FrameQueue(3, drop_oldest=True)
    for i in range(10):
        q.put_nowait(audio(i), DOWN)
    assert q.high_water == 3 and q.dropped == 7
    blocking = FrameQueue(2)
    assert blocking.put_nowait(audio(0), DOWN) and blocking.put_nowait(audio(1), DOWN)
    assert not blocking.put_nowait(audio(2), DOWN) and blocking.high_water == 2
    assert blocking.put_nowait(EndFrame(), UP)  # upstream never blocks: the mark says so
    assert blocking.high_water == 3


@pytest.mark.anyio
async def test_frames_pushed_to_a_stopped_node_are_dropped_not_queued():
    """A sink that drains after the end reports progress upstream; an ended inline node must not hoard it."""
    from pipeline.frames import PlaybackProgressFrame
    from pipeline.graph import Graph
    from pipeline.processor import Processor, node_of
    from pipeline.runner import Runner

    class Source(Processor):
        async def produce(self):
            for i in range(3):
                await self.push(audio(i))

    class Passthrough(Processor):
        inline = True

    class DrainingSink(Processor):
        async def process(self, frame, direction):
            pass

        async def stop(self):  # the playout drains: 50 progress reports after the end passed `mid`
            for ms in range(50):
                await self.push(PlaybackProgressFrame("item_1", 20 * ms), UP)

    graph = Graph("t")
    graph.add("src", Source())
    mid = graph.add("mid", Passthrough())
    graph.add("sink", DrainingSink())
    graph.link("src", "mid", "sink")
    result = await Runner(graph, realtime=False, stats=True).run()
    assert result.ok and result.ended == "end"
    assert len(node_of(mid).queue) == 0 and result.stats["mid"]["high_water"] == 0
