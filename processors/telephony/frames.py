"""Frames a phone call adds to a graph: the caller's key presses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pipeline.frames import Frame, FrameKind

__all__ = ["DtmfFrame"]


@dataclass(slots=True)
class DtmfFrame(Frame):
    """The caller pressed ``digit`` (``0``-``9``, ``*``, ``#``, ``A``-``D``) on the keypad.

    A control frame: in order with the caller's audio and never dropped by a barge-in (a
    key press is an instruction, not media).
    """

    kind: ClassVar[FrameKind] = FrameKind.CONTROL
    digit: str
    duration_ms: int | None = None
