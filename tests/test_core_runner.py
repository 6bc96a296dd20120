"""Processor plumbing and the runner: ordering, fan-out/in, upstream, turns, drops, stops."""

import asyncio

import anyio
import numpy as np
import pytest

from pipeline import (AudioFrame, Direction, Graph, InterruptionFrame, Processor,
                      Runner, TextFrame, ToolsAvailableFrame)
from pipeline.testing import CollectSink, FrameSource, run_frames
from procs import Boom, Counter, Gain, Hang, HangOnStop

pytestmark = pytest.mark.anyio


def audio(i, turn=0):
    return AudioFrame(np.full(480, i, np.int16), 24000, pts=480 * i, turn=turn)


async def test_frames_arrive_in_order_through_a_chain():
    """1000 frames pass five hops in order and unchanged in count."""
    out = await run_frames([Processor() for _ in range(5)], [audio(i) for i in range(1000)])
    assert [f.pts for f in out.downstream] == [480 * i for i in range(1000)]
    assert out.result.ok and out.result.ended == "end"


async def test_fan_out_and_fan_in():
    """Every frame reaches both branches; the joining node ends once, after both inputs."""
    g = Graph(name="diamond")
    src = g.add("src", FrameSource([audio(i) for i in range(50)]))
    g.add("a", Gain({"factor": 2}))
    g.add("b", Gain({"factor": 3}))
    join = g.add("join", CollectSink())
    g.link("src", "a", "join")
    g.link("src", "b", "join")
    g.check()
    result = await Runner(g, realtime=False).run()
    assert result.ok
    values = sorted(int(f.samples[0]) for f in join.received)
    assert values == sorted([2 * i for i in range(50)] + [3 * i for i in range(50)])
    assert src.received == []


async def test_upstream_frames_retrace_links():
    """A frame pushed upstream at the sink end comes back to the source through every hop."""
    up = TextFrame("progress", role="system")
    out = await run_frames([Gain(), Gain()], [audio(1), (up, Direction.UPSTREAM)])
    assert out.upstream == [up]
    assert len(out.downstream) == 1


class Idle(Processor):
    """A source that pushes nothing until the runner ends it."""

    async def produce(self):
        await anyio.sleep_forever()


class Gate(Processor):
    """Holds frames until released, so a test can queue frames behind it."""

    async def start(self):
        self.release = anyio.Event()
        self.entered = anyio.Event()

    async def process(self, frame, direction):
        if isinstance(frame, AudioFrame) and not self.release.is_set():
            self.entered.set()
            await self.release.wait()
        await self.push(frame, direction)


async def test_interruption_drops_queued_frames_of_older_turns():
    """Queued data of older turns is purged on arrival; turn-0 (live) audio and control frames stay."""
    src, gate, sink = Idle(), Gate(), CollectSink()
    g = Graph.chain(src, gate, sink)
    g.check()
    runner = Runner(g, realtime=False)

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        await anyio.wait_all_tasks_blocked()
        await src.push(audio(0, turn=1))  # held inside the gate
        await gate.entered.wait()
        for i in range(1, 6):
            await src.push(audio(i, turn=1))
        await src.push(audio(100, turn=0))
        await src.push(TextFrame("kept"))
        await src.push(InterruptionFrame(turn=2))
        assert gate.statistics()["stale"] == 5  # purged at once, while process() still waits
        assert gate.turn == 2
        gate.release.set()
        await src.push(audio(7, turn=1))  # late frame of the old turn
        await src.push(audio(8, turn=2))
        runner.end()
    kinds = [(type(f).__name__, getattr(f, "turn", None)) for f in sink.received]
    samples = [int(f.samples[0]) for f in sink.received if isinstance(f, AudioFrame)]
    # the frame that was inside the gate when the interruption arrived is dropped as it is pushed
    assert samples == [100, 8]
    assert kinds[0] == ("InterruptionFrame", 2) and ("TextFrame", 0) in kinds
    assert gate.statistics()["stale"] == 7


class Recording(Processor):
    """Records when process() enters and leaves; audio frame 0 waits for a release."""

    async def start(self):
        self.release = anyio.Event()
        self.entered = anyio.Event()
        self.events = []

    async def process(self, frame, direction):
        name = type(frame).__name__
        self.events.append(("enter", name))
        if isinstance(frame, AudioFrame) and frame.pts == 0:
            self.entered.set()
            await self.release.wait()
        self.events.append(("leave", name))
        await self.push(frame, direction)


async def test_a_system_frame_waits_for_process_and_jumps_the_queue():
    """A system frame's process() starts after the running one returns, before queued data."""
    src, rec, sink = Idle(), Recording(), CollectSink()
    g = Graph.chain(src, rec, sink)
    runner = Runner(g, realtime=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        await anyio.wait_all_tasks_blocked()
        await src.push(audio(0))
        await rec.entered.wait()
        await src.push(audio(1))
        await src.push(audio(2))
        await src.push(ToolsAvailableFrame([]))  # a system frame
        await anyio.wait_all_tasks_blocked()
        assert rec.events == [("enter", "AudioFrame")]  # not entered concurrently
        rec.release.set()
        await anyio.wait_all_tasks_blocked()
        runner.end()
    assert rec.events == [("enter", "AudioFrame"), ("leave", "AudioFrame"),
                          ("enter", "ToolsAvailableFrame"), ("leave", "ToolsAvailableFrame"),
                          ("enter", "AudioFrame"), ("leave", "AudioFrame"),
                          ("enter", "AudioFrame"), ("leave", "AudioFrame")]
    assert sorted(type(f).__name__ for f in sink.received) == ["AudioFrame"] * 3 + ["ToolsAvailableFrame"]


class SmallGate(Gate):
    """A gate with a four-frame drop-oldest queue."""

    queue_size = 4
    drop_oldest = True


async def test_drop_oldest_counts_what_it_drops():
    """A full drop-oldest queue discards the oldest data frames and counts them."""
    src, gate, sink = Idle(), SmallGate(), CollectSink()
    g = Graph.chain(src, gate, sink)
    g.check()
    runner = Runner(g, realtime=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(runner.run)
        await anyio.wait_all_tasks_blocked()
        await src.push(audio(0))
        await gate.entered.wait()
        for i in range(1, 11):
            await src.push(audio(i))
        assert gate.statistics()["dropped"] == 6
        gate.release.set()
        runner.end()
    assert [int(f.samples[0]) for f in sink.received] == [0, 7, 8, 9, 10]


async def test_a_failing_processor_stops_the_graph_and_is_named():
    """An exception becomes an error frame naming the processor; the run is not ok."""
    out = await run_frames([Boom()], [audio(i) for i in range(10)])
    assert not out.result.ok and out.result.ended == "error"
    [err] = out.result.errors
    assert err.processor == "Boom" and "third frame is bad" in err.message


async def test_on_error_continue_keeps_running():
    """With on_error: continue the failed frame is lost and the rest passes."""
    g = Graph.chain(FrameSource([audio(i) for i in range(10)]), Boom(), CollectSink())
    g.on_error = "continue"
    g.check()
    sink = g.nodes["sink"].processor
    result = await Runner(g, realtime=False).run()
    assert result.ok and len(result.errors) == 1
    assert len(sink.received) == 9


async def test_cancel_stops_a_hung_processor_within_the_deadline_and_names_it():
    """A processor stuck in process() and one stuck in stop() do not stop the cancel."""
    g = Graph.chain(FrameSource([audio(1)]), Hang(), HangOnStop(), CollectSink())
    g.check()
    runner = Runner(g, realtime=False, stop_timeout_s=0.2)
    async with anyio.create_task_group() as tg:
        async def go():
            tg.result = await runner.run()
        tg.start_soon(go)
        await anyio.wait_all_tasks_blocked()
        runner.cancel()
    assert tg.result.ended == "cancel"
    assert "Hang" in tg.result.hung


async def test_no_task_outlives_the_graph():
    """After run() returns, no task the runner created is left."""
    before = set(asyncio.all_tasks())
    g = Graph.chain(FrameSource([audio(i) for i in range(20)]), Gain(), CollectSink())
    g.check()
    await Runner(g, realtime=False).run()
    g2 = Graph.chain(FrameSource([audio(1)]), Hang(), CollectSink())
    g2.check()
    r2 = Runner(g2, realtime=False, stop_timeout_s=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(r2.run)
        await anyio.wait_all_tasks_blocked()
        r2.cancel()
    assert set(asyncio.all_tasks()) - before == set()


class Announcer(Processor):
    """Pushes a system frame upstream from start(), before its upstream neighbour started."""

    async def start(self):
        await self.push(ToolsAvailableFrame(tools=[{"name": "x"}]), Direction.UPSTREAM)


class StartRecorder(Processor):
    """Records the order of start() and the first frames it receives."""

    async def start(self):
        self.events = ["start"]

    async def process(self, frame, direction):
        self.events.append(type(frame).__name__)
        await self.push(frame, direction)


async def test_start_runs_everywhere_before_the_first_frame():
    """System frames pushed from start() wait until the receiver has started."""
    rec = StartRecorder()
    out = await run_frames([rec, Announcer()], [audio(1)])
    assert rec.events[:3] == ["start", "ToolsAvailableFrame", "AudioFrame"]
    assert out.result.ok


async def test_end_frame_is_never_seen_by_process():
    """process() handles data; the end of stream is the runner's job."""
    rec = StartRecorder()
    await run_frames([rec], [audio(1), audio(2)])
    assert "EndFrame" not in rec.events


async def test_source_counter_runs_with_stats():
    """With stats on, every processor reports frames and latency percentiles."""
    g = Graph.chain(Counter({"count": 30}), Gain(), CollectSink())
    g.check()
    result = await Runner(g, realtime=False, stats=True).run()
    assert result.stats["Gain"]["frames"] == 30
    assert result.stats["Gain"]["p99_us"] >= result.stats["Gain"]["p50_us"] > 0


class FailingStartSource(Processor):
    """A source whose start() raises."""

    async def start(self):
        raise OSError("device busy")

    async def produce(self):
        await self.push(audio(1))


class FailingProduce(Processor):
    """A source whose produce() raises after one frame."""

    async def produce(self):
        await self.push(audio(1))
        raise OSError("file went away")


@pytest.mark.parametrize("source_cls", [FailingStartSource, FailingProduce])
async def test_a_failing_source_still_ends_the_graph_with_on_error_continue(source_cls):
    """With on_error: continue, a source that fails in start() or produce() still ends the run."""
    sink = CollectSink()
    g = Graph.chain(source_cls(), Gain(), sink)
    g.on_error = "continue"
    g.check()
    with anyio.fail_after(5):
        result = await Runner(g, realtime=False).run()
    assert result.ended == "end" and len(result.errors) == 1
    assert len(sink.received) == (1 if source_cls is FailingProduce else 0)
