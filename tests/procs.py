"""Small processors used by the core tests (importable from YAML as `procs:Name`)."""

from __future__ import annotations

from dataclasses import replace

import anyio
import numpy as np
from pydantic import BaseModel, ConfigDict

from pipeline import AudioFormat, AudioFrame, Processor


class Counter(Processor):
    """Source: pushes `count` int16 frames of 480 samples at 24 kHz, pts counting up."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        count: int = 10
        rate: int = 24000

    async def produce(self):
        n = self.params.rate // 50
        for i in range(self.params.count):
            await self.clock.wait_until(i * 0.02)
            samples = np.full(n, i % 1000, dtype=np.int16)
            await self.push(AudioFrame(samples, self.params.rate, pts=i * n))

    def output_format(self, upstream):
        return AudioFormat(self.params.rate, 1, "int16")


class Gain(Processor):
    """Scale int16 audio by an integer factor."""

    class Params(BaseModel, extra="forbid"):
        factor: int = 2
        label: str = "gain"

    async def process(self, frame, direction):
        if isinstance(frame, AudioFrame):
            frame = replace(frame, samples=frame.samples * self.params.factor)
        await self.push(frame, direction)


class Wants16k(Processor):
    """Accepts only 16 kHz int16 mono."""

    input_format = AudioFormat(16000, 1, "int16")


class Collect(Processor):
    """Sink that records what it receives in a class-level list keyed by name."""

    seen: dict[str, list] = {}

    async def start(self):
        Collect.seen[self.name] = []

    async def process(self, frame, direction):
        Collect.seen[self.name].append(frame)


class Touch(Processor):
    """Passes frames on; writes ``path`` once the first frame has passed (the run is under way)."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str

    async def process(self, frame, direction):
        await self.push(frame, direction)
        if not hasattr(self, "_touched"):
            self._touched = True
            with open(self.params.path, "w") as f:
                f.write("running\n")


class Hang(Processor):
    """Never finishes processing a frame (to test shutdown deadlines)."""

    async def process(self, frame, direction):
        await anyio.sleep_forever()


class HangOnStop(Processor):
    """stop() never returns (to test shutdown deadlines)."""

    async def stop(self):
        await anyio.sleep_forever()


class Boom(Processor):
    """Raises on the third audio frame."""

    async def start(self):
        self.n = 0

    async def process(self, frame, direction):
        if isinstance(frame, AudioFrame):
            self.n += 1
            if self.n == 3:
                raise ValueError("third frame is bad")
        await self.push(frame, direction)


def not_a_processor():
    return None
