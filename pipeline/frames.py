"""Frames: the messages that flow through a voxpipe graph.

Theory of operation
-------------------
Every frame is a small slotted dataclass of one of three kinds:

* ``SYSTEM`` frames travel out of band: they skip processor queues, are never dropped and
  are handled as soon as they are pushed (interruption, error, metrics, speaking events,
  playback progress, tool announcements).
* ``CONTROL`` frames travel in order with data and are never dropped (end of stream,
  response start/end).
* ``DATA`` frames travel in order and are dropped when an interruption raises the turn past
  theirs (audio, text, transcription, tool call, tool result).

Every frame carries a ``turn``. An :class:`InterruptionFrame` announces a new turn; a
processor that sees it drops queued data frames of older turns, and later data frames of
older turns that were still in flight. Turn 0 means "belongs to no response turn" (live
capture audio, for instance): such frames are never stale. A producer of turn-scoped
output (a model) numbers its responses from 1. This is how barge-in flushes the graph
without cancelling tasks.

Audio frames hold a numpy array (int16 or float32, shape ``(n,)`` for mono or
``(n, channels)``), the sample rate and the media timestamp ``pts`` in samples. A frame
whose ``codec`` is set (``"ulaw"``, ``"alaw"``) holds G.711 codes instead (uint8, one per
sample): phone audio carried untouched from a media stream to a G.711 model and back; the
graph check puts a decoder in front of every processor that has not said it takes them
(``Processor.accepts_g711``). Frames are
treated as immutable once pushed: make a new one with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "CODED",
    "AudioFormat",
    "AudioFrame",
    "Direction",
    "EndFrame",
    "ErrorFrame",
    "Frame",
    "FrameKind",
    "InterruptionFrame",
    "MetricsFrame",
    "PlaybackProgressFrame",
    "ResponseEndFrame",
    "ResponseStartFrame",
    "TextFrame",
    "ToolCallFrame",
    "ToolResultFrame",
    "ToolsAvailableFrame",
    "TranscriptionFrame",
    "UserStartedSpeakingFrame",
    "UserStoppedSpeakingFrame",
]


class Direction(enum.IntEnum):
    """Which way a frame travels along the links of a graph."""

    DOWNSTREAM = 0  # source -> sink
    UPSTREAM = 1  # sink -> source


class FrameKind(enum.IntEnum):
    """How the framework treats a frame: out of band, in order, or droppable."""

    SYSTEM = 0
    CONTROL = 1
    DATA = 2


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """The caps of an audio link: sample rate, channels and sample type.

    ``None`` in a field means "any": a processor that accepts ``AudioFormat(rate=24000)``
    takes 24 kHz audio of any channel count and sample type.
    """

    rate: int | None = None
    channels: int | None = None
    dtype: str | None = None  # "int16" or "float32"; "ulaw" / "alaw" for G.711 codes (see CODED)

    def accepts(self, other: AudioFormat) -> bool:
        """True when audio of format ``other`` satisfies these caps."""
        return (
            (self.rate is None or other.rate is None or self.rate == other.rate)
            and (self.channels is None or other.channels is None or self.channels == other.channels)
            and (self.dtype is None or other.dtype is None or self.dtype == other.dtype)
        )

    def merge(self, other: AudioFormat | None) -> AudioFormat:
        """These caps with the unset fields filled in from ``other``."""
        if other is None:
            return self
        return AudioFormat(
            self.rate if self.rate is not None else other.rate,
            self.channels if self.channels is not None else other.channels,
            self.dtype if self.dtype is not None else other.dtype,
        )

    def __str__(self) -> str:
        rate = f"{self.rate} Hz" if self.rate else "any rate"
        ch = {None: "any channels", 1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} ch")
        return f"{rate} {self.dtype or 'any type'} {ch}"


#: Sample types that are G.711 codes (uint8 arrays) rather than linear PCM.
CODED: frozenset[str] = frozenset({"ulaw", "alaw"})


@dataclass(slots=True)
class Frame:
    """Base of every frame. Subclasses set ``kind``; ``turn`` is stamped by the sender."""

    kind: ClassVar[FrameKind] = FrameKind.DATA
    turn: int = field(default=0, kw_only=True)


# --- system frames (out of band, never dropped) -------------------------------------------


@dataclass(slots=True)
class InterruptionFrame(Frame):
    """The user barged in: flush queued data of older turns; ``turn`` is the new turn."""

    kind: ClassVar[FrameKind] = FrameKind.SYSTEM


@dataclass(slots=True)
class ErrorFrame(Frame):
    """Something failed in ``processor``; ``fatal`` asks the runner to stop the graph."""

    kind: ClassVar[FrameKind] = FrameKind.SYSTEM
    message: str
    processor: str = ""
    fatal: bool = False
    code: str | None = None
    exception: BaseException | None = None


@dataclass(slots=True)
class MetricsFrame(Frame):
    """Measurements a processor wants to report (latency, usage, counters)."""

    kind: ClassVar[FrameKind] = FrameKind.SYSTEM
    name: str
    values: dict[str, Any] = field(default_factory=dict)
    processor: str = ""


@dataclass(slots=True)
class UserStartedSpeakingFrame(Frame):
    """A VAD found speech starting at media time ``pts`` (samples at ``sample_rate``)."""

    kind: ClassVar[FrameKind] = FrameKind.SYSTEM
    pts: int = 0
    sample_rate: int = 0


@dataclass(slots=True)
class UserStoppedSpeakingFrame(Frame):
    """A VAD found speech ending at media time ``pts`` (samples at ``sample_rate``)."""

    kind: ClassVar[FrameKind] = FrameKind.SYSTEM
    pts: int = 0
    sample_rate: int = 0


@dataclass(slots=True)
class PlaybackProgressFrame(Frame):
    """Upstream from playback: ``played_ms`` of assistant item ``item_id`` were heard."""

    kind: ClassVar[FrameKind] = FrameKind.SYSTEM
    item_id: str
    played_ms: int
    done: bool = False


@dataclass(slots=True)
class ToolsAvailableFrame(Frame):
    """Upstream from a tool router at start: the JSON-schema tool list for the model."""

    kind: ClassVar[FrameKind] = FrameKind.SYSTEM
    tools: list[dict[str, Any]] = field(default_factory=list)


# --- control frames (in order, never dropped) ---------------------------------------------


@dataclass(slots=True)
class EndFrame(Frame):
    """End of stream: each processor drains what it holds, then the graph stops."""

    kind: ClassVar[FrameKind] = FrameKind.CONTROL


@dataclass(slots=True)
class ResponseStartFrame(Frame):
    """The model started response ``response_id``."""

    kind: ClassVar[FrameKind] = FrameKind.CONTROL
    response_id: str = ""


@dataclass(slots=True)
class ResponseEndFrame(Frame):
    """Response ``response_id`` ended with ``status``; ``usage`` is the model's token usage."""

    kind: ClassVar[FrameKind] = FrameKind.CONTROL
    response_id: str = ""
    status: str = "completed"
    usage: dict[str, Any] | None = None


# --- data frames (in order, dropped by interruptions) -------------------------------------


@dataclass(slots=True)
class AudioFrame(Frame):
    """A chunk of audio: ``samples`` at ``sample_rate``, starting at media time ``pts``.

    ``item_id`` tags assistant audio with the conversation item it belongs to, so that
    playback can report how much of each item was heard. ``codec`` (``"ulaw"``,
    ``"alaw"``) says ``samples`` are G.711 codes (uint8), not PCM.
    """

    samples: np.ndarray
    sample_rate: int
    pts: int = 0
    item_id: str | None = None
    codec: str | None = None

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else self.samples.shape[1]

    @property
    def num_samples(self) -> int:
        return self.samples.shape[0]

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self.samples.shape[0] / self.sample_rate

    @property
    def format(self) -> AudioFormat:
        return AudioFormat(self.sample_rate, self.channels, self.codec or self.samples.dtype.name)


@dataclass(slots=True)
class TextFrame(Frame):
    """Text said by ``role`` (assistant replies, or text typed by the user)."""

    text: str
    role: str = "assistant"
    item_id: str | None = None


@dataclass(slots=True)
class TranscriptionFrame(Frame):
    """Recognised speech of ``role``; ``final`` is False for partial results."""

    text: str
    role: str = "user"
    final: bool = True
    item_id: str | None = None


@dataclass(slots=True)
class ToolCallFrame(Frame):
    """The model asks for tool ``name`` with parsed ``arguments``; answer with a result."""

    call_id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    response_id: str | None = None


@dataclass(slots=True)
class ToolResultFrame(Frame):
    """The answer to tool call ``call_id``: a JSON string in ``output``.

    A control frame: a result is delivered even after an interruption (the model decides
    what to do with it); a call cancelled by an interruption answers with ``is_error``.
    """

    kind: ClassVar[FrameKind] = FrameKind.CONTROL
    call_id: str
    name: str
    output: str
    is_error: bool = False
