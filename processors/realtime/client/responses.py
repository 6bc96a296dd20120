"""Response: one response of the model as the client sees it (its turn, its timings, its metrics).

Latency per turn (DESIGN: wall clock only to measure latency): from the user's speech
stop (the server VAD's ``speech_stopped``, or a local VAD's frame) to the response's first
audio (``ttfb_ms``, the model's time to first byte) and to its ``response.done``
(``response_ms``); ``first_audio_ms`` counts from ``response.created``. Token usage comes
from ``response.done``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.frames import MetricsFrame

__all__ = ["Response"]


@dataclass
class Response:
    """One response of the model: id, turn number, and when things happened (``now()`` seconds)."""

    id: str
    turn: int
    created_at: float
    speech_stopped_at: float | None = None
    first_audio_at: float | None = None
    interrupted: bool = False

    def metrics(self, done_at: float, status: str, usage: dict[str, Any] | None, processor: str) -> MetricsFrame:
        """The ``realtime.turn`` metrics frame of this response, ended at ``done_at``."""
        values: dict[str, Any] = {"response_id": self.id, "status": status, "turn": self.turn}
        if self.speech_stopped_at is not None:
            if self.first_audio_at is not None:
                values["ttfb_ms"] = round(1000 * (self.first_audio_at - self.speech_stopped_at), 1)
            values["response_ms"] = round(1000 * (done_at - self.speech_stopped_at), 1)
        if self.first_audio_at is not None:
            values["first_audio_ms"] = round(1000 * (self.first_audio_at - self.created_at), 1)
        for k in ("input_tokens", "output_tokens", "total_tokens"):
            if usage and isinstance(usage.get(k), int):
                values[k] = usage[k]
        return MetricsFrame("realtime.turn", values, processor=processor)
