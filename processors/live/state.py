"""The phases of a Live client session and their one transition table.

Theory of operation
-------------------
A Live websocket carries one session. The client opens the socket (``connection_made``),
sends ``session.start`` and waits for ``session.started``; until then no other command may
be sent (the API refuses them), so user audio is kept for later. Once ``ACTIVE``,
listening and speaking are *not* phases: the Live model is full duplex, audio flows both
ways at any time, and who talks when is the model's decision. A loss of the socket
(``connection_lost``) returns to ``DISCONNECTED``, from where the shell reconnects and the
core starts the session again with its history. ``session.close`` is answered by
``session.closed``; ``close`` ends everything at once.

Local misuse (a trigger from our side with no row) raises; a surprise from the server
(``session.started`` twice, ``session.closed`` before the start) is logged, counted and
skipped by the core.
"""

from __future__ import annotations

import enum

__all__ = ["LOCAL_TRIGGERS", "Phase", "TRANSITIONS"]


class Phase(enum.Enum):
    """Where the client stands with the Live server."""

    DISCONNECTED = "disconnected"  # no socket (at first, and after a loss)
    STARTING = "starting"  # socket open, session.start sent, waiting for session.started
    ACTIVE = "active"  # the session runs: audio both ways, delegations
    CLOSING = "closing"  # session.close sent, waiting for session.closed
    CLOSED = "closed"  # closed for good


#: Every legal phase change: (phase, trigger) -> new phase.
TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (Phase.DISCONNECTED, "connection_made"): Phase.STARTING,
    (Phase.STARTING, "session.started"): Phase.ACTIVE,
    (Phase.ACTIVE, "session.close"): Phase.CLOSING,
    (Phase.STARTING, "session.close"): Phase.CLOSING,
    (Phase.CLOSING, "session.closed"): Phase.CLOSED,
    (Phase.ACTIVE, "session.closed"): Phase.CLOSED,
    **{(p, "connection_lost"): Phase.DISCONNECTED for p in (Phase.STARTING, Phase.ACTIVE)},
    (Phase.CLOSING, "connection_lost"): Phase.CLOSED,
    **{(p, "close"): Phase.CLOSED for p in Phase if p is not Phase.CLOSED},
}

#: Triggers that come from our side: a missing row for them is misuse, not a surprise.
LOCAL_TRIGGERS = frozenset({"connection_made", "connection_lost", "close", "session.close"})
