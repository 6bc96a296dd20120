"""Test harness: run processors or whole pipelines on given frames and collect the output.

For users testing their own processors as much as for our tests::

    from pipeline.testing import run_frames
    out = await run_frames(Gain({"db": -6}), [AudioFrame(samples, 24000)])
    assert out.downstream[0].samples.max() < samples.max()

Runs are as fast as possible (media time, no sleeping) and deterministic. Frames given
as ``(frame, Direction.UPSTREAM)`` are injected from the sink end, travelling upstream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import anyio

from .frames import AudioFrame, Direction, Frame
from .graph import Graph
from .processor import Processor
from .runner import RunResult, Runner
from .session import SessionContext

__all__ = ["Collected", "CollectSink", "FrameSource", "run_frames", "run_graph", "run_yaml", "sine"]


class FrameSource(Processor):
    """Pushes a fixed list of frames, then ends; records frames that come back upstream."""

    def __init__(self, frames: Iterable[Frame | tuple[Frame, Direction]], *, name: str = "source",
                 expect_upstream: int = 0) -> None:
        super().__init__(name=name)
        self.frames = list(frames)
        self.received: list[Frame] = []
        self.sink: CollectSink | None = None
        self.expect_upstream = expect_upstream
        self._enough = anyio.Event()

    def clone(self) -> FrameSource:
        """A fresh source of the same frames."""
        return type(self)(self.frames, name=self.name, expect_upstream=self.expect_upstream)

    async def produce(self) -> None:
        for item in self.frames:
            if isinstance(item, tuple):
                frame, direction = item
                if direction is Direction.UPSTREAM and self.sink is not None:
                    await self.sink.push(frame, Direction.UPSTREAM)
                    continue
                await self.push(frame, direction)
            else:
                await self.push(item)
            await anyio.lowlevel.checkpoint()
        # let frames in flight settle (upstream ones included) before the end follows
        await anyio.wait_all_tasks_blocked()
        if self.expect_upstream and len(self.received) < self.expect_upstream:
            await self._enough.wait()  # work in threads or timers: wait for what the test expects

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.received.append(frame)
        if self.expect_upstream and len(self.received) >= self.expect_upstream:
            self._enough.set()


class CollectSink(Processor):
    """Keeps every frame that reaches it (G.711 codes as they are: a test sees what was pushed)."""

    accepts_g711 = True

    def __init__(self, *, name: str = "sink") -> None:
        super().__init__(name=name)
        self.received: list[Frame] = []

    def clone(self) -> CollectSink:
        """A fresh, empty collector."""
        return type(self)(name=self.name)

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.received.append(frame)


@dataclass
class Collected:
    """What a test run produced: frames out of the far end, frames back at the source."""

    downstream: list[Frame]
    upstream: list[Frame]
    result: RunResult
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of_type(self, cls: type, direction: Direction = Direction.DOWNSTREAM) -> list:
        """The collected frames that are instances of ``cls``."""
        frames = self.downstream if direction is Direction.DOWNSTREAM else self.upstream
        return [f for f in frames if isinstance(f, cls)]

    def audio(self):
        """The downstream audio concatenated into one array (empty when there is none)."""
        import numpy as np

        chunks = [f.samples for f in self.downstream if isinstance(f, AudioFrame)]
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


async def run_frames(
    processors: Processor | Sequence[Processor],
    frames: Iterable[Frame | tuple[Frame, Direction]],
    *,
    realtime: bool = False,
    stats: bool = False,
    timeout_s: float = 30.0,
    expect_upstream: int = 0,
    context: SessionContext | None = None,
) -> Collected:
    """Chain ``processors`` between a source of ``frames`` and a collector; run to the end.

    The end of stream follows the last frame once everything in flight has settled; with
    ``expect_upstream`` it waits until that many frames came back upstream (for work done
    in threads or after a delay, such as tool calls).
    """
    procs = [processors] if isinstance(processors, Processor) else list(processors)
    source, sink = FrameSource(frames, expect_upstream=expect_upstream), CollectSink()
    source.sink = sink
    graph = Graph.chain(source, *procs, sink, name="test")
    graph.check()
    runner = Runner(graph, realtime=realtime, stats=stats, context=context)
    with anyio.fail_after(timeout_s):
        result = await runner.run()
    return Collected(sink.received, source.received, result, result.stats)


async def run_graph(graph: Graph, *, realtime: bool = False, stats: bool = False, timeout_s: float = 60.0,
                    context: SessionContext | None = None) -> RunResult:
    """Run a checked graph as fast as possible (by default) and return its result."""
    with anyio.fail_after(timeout_s):
        return await Runner(graph, realtime=realtime, stats=stats, context=context).run()


async def run_yaml(
    source: str | os.PathLike,
    *,
    overrides: list[str] | None = None,
    env: dict[str, str] | None = None,
    realtime: bool = False,
    stats: bool = False,
    timeout_s: float = 60.0,
) -> RunResult:
    """Load a pipeline from a path (or YAML text containing a newline) and run it."""
    from .loader import load, load_text

    if isinstance(source, str) and "\n" in source:
        graph = load_text(source, overrides=overrides, env=env, base_dir=Path.cwd())
    else:
        graph = load(source, overrides=overrides, env=env)
    return await run_graph(graph, realtime=realtime, stats=stats, timeout_s=timeout_s)


def sine(freq: float = 440.0, *, ms: float = 20.0, rate: int = 24000, db: float = -6.0, dtype: str = "int16", pts: int = 0):
    """A sine tone as an AudioFrame: test material with a known frequency and level."""
    import numpy as np

    n = int(round(rate * ms / 1000))
    t = (np.arange(n) + pts) / rate
    x = (10 ** (db / 20)) * np.sin(2 * np.pi * freq * t)
    samples = (x * 32767).astype(np.int16) if dtype == "int16" else x.astype(np.float32)
    return AudioFrame(samples, rate, pts=pts)
