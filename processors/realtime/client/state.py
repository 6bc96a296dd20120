"""The phases of a Realtime client connection and their one transition table.

Theory of operation
-------------------
One :class:`Phase` per connection state; every legal change is a row of
:data:`TRANSITIONS`, applied by one setter in :class:`~.protocol.RealtimeProtocol` that logs
it. Triggers are server event types (GA names), our own ``response.create``, and the
connection's events::

    DISCONNECTED --connection_made--> CONNECTING --session.created--> IDLE
    IDLE --response.create (ours)--> REQUESTED --response.created--> RESPONDING
    IDLE --response.created (server VAD)--> RESPONDING --response.done--> IDLE
    REQUESTED --response.refused (an active response exists)--> IDLE
    any open phase --connection_lost--> DISCONNECTED;  any phase --close--> CLOSED

A server trigger with no row for the current phase is a *surprise* (a second
``session.created``, a ``response.created`` while one runs): logged, counted and skipped,
as h11 treats a remote protocol error. A local trigger with no row is a programming error
and raises. Only one response runs at a time (reference §7.7), so ``response.create`` asked
for outside IDLE waits for the running response's ``response.done``.
"""

from __future__ import annotations

import enum

__all__ = ["LOCAL_TRIGGERS", "ONLINE", "OPEN", "TRANSITIONS", "Phase"]


class Phase(enum.Enum):
    """Where the client stands with the server."""

    DISCONNECTED = "disconnected"  # no socket (at first, and after a loss)
    CONNECTING = "connecting"  # socket open, waiting for session.created
    IDLE = "idle"  # session ready, no response running
    REQUESTED = "requested"  # our response.create is on its way
    RESPONDING = "responding"  # a response runs, until its response.done
    CLOSED = "closed"  # closed for good


#: Phases with an open socket.
OPEN = (Phase.CONNECTING, Phase.IDLE, Phase.REQUESTED, Phase.RESPONDING)
#: Phases with a session: client events can be sent.
ONLINE = (Phase.IDLE, Phase.REQUESTED, Phase.RESPONDING)

#: Every legal phase change: (phase, trigger) -> new phase.
TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (Phase.DISCONNECTED, "connection_made"): Phase.CONNECTING,
    (Phase.CONNECTING, "session.created"): Phase.IDLE,
    (Phase.IDLE, "response.create"): Phase.REQUESTED,
    (Phase.IDLE, "response.created"): Phase.RESPONDING,
    (Phase.REQUESTED, "response.created"): Phase.RESPONDING,
    (Phase.REQUESTED, "response.refused"): Phase.IDLE,
    (Phase.RESPONDING, "response.done"): Phase.IDLE,
    **{(p, "connection_lost"): Phase.DISCONNECTED for p in OPEN},
    **{(p, "close"): Phase.CLOSED for p in Phase if p is not Phase.CLOSED},
}

#: Triggers that come from our side: a missing row for them is misuse, not a surprise.
LOCAL_TRIGGERS = frozenset({"connection_made", "connection_lost", "close", "response.create"})
