"""ConsolePrinter: prints the conversation as it happens (for demos and debugging)."""

from __future__ import annotations

import sys
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from pipeline.frames import (
    AudioFrame,
    Direction,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    MetricsFrame,
    PlaybackProgressFrame,
    ResponseEndFrame,
    TextFrame,
    ToolCallFrame,
    ToolResultFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipeline.processor import Processor

__all__ = ["ConsolePrinter"]


class ConsolePrinter(Processor):
    """Print user and assistant words, tool calls and results, errors; pass every frame on.

    Put it on a fan-out branch (``model -> console``) or inline in a chain: it never
    changes or holds a frame. Partial transcripts are skipped unless ``partial`` is set.
    """

    inline: ClassVar[bool] = True

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        partial: bool = Field(False, description="also print partial transcripts")
        speaking: bool = Field(False, description="also print VAD start/stop events")
        metrics: bool = Field(False, description="also print every MetricsFrame")

    def __init__(self, params=None, *, name=None, stream=None) -> None:
        super().__init__(params, name=name)
        self.stream = stream or sys.stdout
        self._assistant: dict[str, list[str]] = {}
        self._interrupted = False
        #: every MetricsFrame seen, as (name, values): the demo's latency table reads it
        self.metrics: list[tuple[str, dict]] = []

    def clone(self) -> ConsolePrinter:
        """A fresh printer with the same params, writing to the same stream."""
        return type(self)(self.params.model_copy(deep=True), name=self.name, stream=self.stream)

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if type(frame) is AudioFrame:  # the hot path: audio is never printed
            await self.push(frame, direction)
            return
        p = self.params
        if isinstance(frame, TranscriptionFrame) and (frame.final or p.partial):
            self._say(f"  user      : {frame.text}" if frame.role == "user" else f"  {frame.role:<10}: {frame.text}")
        elif isinstance(frame, TextFrame) and frame.role == "assistant":
            key = frame.item_id or ""
            self._assistant.setdefault(key, []).append(frame.text)
        elif isinstance(frame, ResponseEndFrame):
            for key, parts in list(self._assistant.items()):
                text = "".join(parts).strip()
                if text:
                    self._say(f"  assistant : {text}" + ("" if frame.status == "completed" else f"  [{frame.status}]"))
            self._assistant.clear()
        elif isinstance(frame, ToolCallFrame):
            self._say(f"  tool call : {frame.name}({frame.arguments})")
        elif isinstance(frame, ToolResultFrame):
            self._say(f"  tool {'error' if frame.is_error else 'result'}: {frame.name} -> {frame.output}")
        elif isinstance(frame, InterruptionFrame):
            self._say("  (the user barged in: playback flushed)")
            self._interrupted = True
        elif isinstance(frame, PlaybackProgressFrame) and frame.done and self._interrupted:
            self._interrupted = False
            self._say(f"  (the user heard {frame.played_ms / 1000:.1f} s of the interrupted reply)")
        elif isinstance(frame, ErrorFrame):
            self._say(f"  error     : {frame.processor}: {frame.message}")
        elif p.speaking and isinstance(frame, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame)):
            what = "started" if isinstance(frame, UserStartedSpeakingFrame) else "stopped"
            at = frame.pts / frame.sample_rate if frame.sample_rate else 0.0
            self._say(f"  (user {what} speaking at {at:.2f} s)")
        elif isinstance(frame, MetricsFrame):
            self.metrics.append((frame.name, dict(frame.values)))
            if p.metrics:
                self._say(f"  metrics   : {frame.name} {frame.values}")
        await self.push(frame, direction)
