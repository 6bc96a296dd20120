"""What one Live connection of the local server takes and gives besides events: client event shapes, jobs.

:data:`CLIENT_EVENTS` is the shape of each member of the SDK's ``ClientEvent`` union (its
fields, their types, the required ones), which the session core checks every client event
against; the job classes are the work the core hands its shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CLIENT_EVENTS", "ContinueBackend", "Heard", "SpeakResult", "StopSpeaking"]


# --- jobs for the shell -------------------------------------------------------------------------


@dataclass(frozen=True)
class Heard:
    """Recognise this utterance (int16 at ``rate``), then call :meth:`LiveServerSession.heard`."""

    samples: np.ndarray
    rate: int
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class StopSpeaking:
    """The user kept talking: stop synthesising speech ``speech_id``."""

    speech_id: int


@dataclass(frozen=True)
class SpeakResult:
    """A client delegation was answered (``session.commentary.append``): say ``content``."""

    delegation_id: str
    content: str


@dataclass(frozen=True)
class ContinueBackend:
    """``response.create`` after function outputs: the backend response of ``delegation_id`` goes on."""

    delegation_id: str
    outputs: dict[str, str] = field(default_factory=dict)  # call id -> output


class _Bad(Exception):
    """A client event that breaks the protocol: becomes an ``error`` event."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


# --- client event shapes (the SDK's ClientEvent union) ------------------------------------------

_NONE = type(None)
_CONTEXT = {"content": (str, True), "delegation_id": ((str, _NONE), True)}
#: event type -> {field: (types, required)}; every event may also carry ``type`` and ``event_id``.
CLIENT_EVENTS: dict[str, dict[str, tuple[Any, bool]]] = {
    "session.start": {"session": (dict, True)},
    "session.update": {"session": (dict, True)},
    "session.input_audio.append": {"audio": (str, True)},
    "session.input_audio.mute": {},
    "session.input_audio.unmute": {},
    "session.instructions.append": _CONTEXT,
    "session.thinking.append": _CONTEXT,
    "session.commentary.append": _CONTEXT,
    "response.item.create": {"item": (dict, True)},
    "response.create": {},
    "session.close": {},
    # in the SDK's union, not served by the local model: refused with a clear error
    "session.output_audio.fixture.play": None,  # type: ignore[dict-item]
    "decision.create": None,  # type: ignore[dict-item]
    "decision.item.create": None,  # type: ignore[dict-item]
    "decision.item.delete": None,  # type: ignore[dict-item]
}
