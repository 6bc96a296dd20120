"""A processor for phone tests: records what a call shows a graph; key 1: a tone, 5: tools.router, 9: hang up."""

from __future__ import annotations

import anyio
import numpy as np

from pipeline.frames import AudioFrame, Direction, PlaybackProgressFrame, ToolCallFrame, ToolResultFrame
from pipeline.processor import Processor
from processors.telephony import CALL, DtmfFrame, current_call
from processors.telephony.tools import call_details, end_call


class CallProbe(Processor):
    """Key 1: 400 ms of tone to the caller (item ``probe_1``). Key 9: the ``end_call`` tool, from a thread's view too."""

    record: dict = {}

    async def start(self) -> None:
        CallProbe.record = rec = {"metadata": dict(self.context.metadata), "digits": [], "progress": [],
                                  "audio_in": 0, "thread_sees_call": None, "details": None, "routed": None}
        rec["same_call"] = current_call() is self.context.attachments[CALL]

    async def process(self, frame, direction) -> None:
        rec = CallProbe.record
        if isinstance(frame, DtmfFrame):
            rec["digits"].append(frame.digit)
            if frame.digit == "1":
                t = np.arange(3200) / 8000
                tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
                await self.push(AudioFrame(tone, 8000, item_id="probe_1", turn=0))
            elif frame.digit == "5":  # through tools.router, as the model would: the tool gets the context
                await self.push(ToolCallFrame("probe_5", "call_details", {}, turn=0))
            elif frame.digit == "9":
                rec["thread_sees_call"] = await anyio.to_thread.run_sync(current_call) is current_call()
                rec["details"] = await call_details()
                await end_call("the caller pressed 9")
            return
        if isinstance(frame, ToolResultFrame) and frame.call_id == "probe_5":
            rec["routed"] = frame
            return
        if isinstance(frame, PlaybackProgressFrame):
            rec["progress"].append((frame.item_id, frame.played_ms, frame.done))
        elif isinstance(frame, AudioFrame) and direction is Direction.DOWNSTREAM:
            rec["audio_in"] += frame.num_samples
            return  # the caller's voice stops here
        await self.push(frame, direction)
