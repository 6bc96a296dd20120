"""What the Live client keeps about the model's speech and about delegated work.

A :class:`Segment` is the model's speech between two user turns (the Live API has no
response ids): what the client received, what playback reported as played, and the
transcript pieces with their positions in the audio, from which :meth:`Segment.heard` says
what the user heard. A :class:`Task` is a delegated task or backend function call waiting
for the tool router.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Segment", "Task"]


@dataclass
class Segment:
    """The model's speech between two user turns, as the client received and played it."""

    id: str
    turn: int
    received: int = 0  # samples
    played_ms: int = 0
    pieces: list[tuple[float, str]] = field(default_factory=list)  # (audio position in ms, text)
    last_audio_at: float = 0.0
    first_audio_at: float | None = None

    def text(self) -> str:
        return "".join(t for _, t in self.pieces)

    def heard(self, rate: int) -> str:
        """The transcript up to what playback played: whole clauses, and the words of the clause
        being played in proportion to how much of its audio was (the wire has no word times)."""
        out = []
        end_ms = 1000.0 * self.received / rate
        for i, (at, text) in enumerate(self.pieces):
            if at >= self.played_ms:
                break
            until = self.pieces[i + 1][0] if i + 1 < len(self.pieces) else end_ms
            if self.played_ms >= until:
                out.append(text)
                continue
            words = text.split()
            keep = int(len(words) * (self.played_ms - at) / max(1.0, until - at))
            out.append((" " if text[:1].isspace() else "") + " ".join(words[:keep]))
            break
        return "".join(out)


@dataclass
class Task:
    """A delegated task or backend function call waiting for the router's answer."""

    kind: str  # "client" | "responses"
    name: str
    arguments: dict[str, Any]
