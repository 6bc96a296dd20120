"""The phases of a local server session and their one transition table.

Theory of operation
-------------------
The default conversation has at most one response writing to it (reference §2,
``response.create``; §7.7). Where a session stands on that is one :class:`Phase`; every
legal change is a row of :data:`TRANSITIONS`, applied by one setter in
:class:`~.conversation.ServerConversation` that logs it. Triggers are the client event or
server event that causes the change (the server VAD's turn and the idle timeout create a
response as ``response.create`` does; a barge-in, a truncate or a delete cancels one as
``response.cancel`` does)::

    IDLE --response.create--> RESPONDING --response.done--> IDLE
                              RESPONDING --response.cancel--> IDLE
    TRANSCRIPTION (a ?intent=transcription session): no rows; it never responds

A trigger with no row for the current phase is refused: the client gets one ``error``
event, with the real API's code where there is one (a second ``response.create`` while
one runs: ``conversation_already_has_active_response``; ``response.cancel`` with nothing
running: ``response_cancel_not_active``; a response in a transcription session:
``invalid_value``) and otherwise an ``invalid_request_error`` naming the event and the
phase (``ServerConversation._next_phase``). Out-of-band responses (``conversation: "none"``) run beside the default one and
do not change the phase.
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "Phase"]


class Phase(enum.Enum):
    """Where a session stands with the default conversation's response."""

    TRANSCRIPTION = "transcription"  # a transcription session: audio in, transcripts out, no responses
    IDLE = "idle"  # no response writes to the default conversation
    RESPONDING = "responding"  # one response writes to it, until its response.done


#: Every legal phase change: (phase, trigger) -> new phase.
TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (Phase.IDLE, "response.create"): Phase.RESPONDING,
    (Phase.RESPONDING, "response.done"): Phase.IDLE,
    (Phase.RESPONDING, "response.cancel"): Phase.IDLE,
}
