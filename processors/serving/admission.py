"""Admission: whether a worker takes a new session, and how it drains (sans-I/O, one state table).

Theory of operation
-------------------
A worker is in one :class:`Phase`::

    SERVING --drain--> DRAINING --deadline | force | idle--> STOPPING
    SERVING --force--> STOPPING

``SERVING`` admits a session unless it is at ``max_sessions`` or the process's CPU load
(a share of one core, averaged over the sampler's last second) is over ``max_cpu``.
``DRAINING`` admits none, keeps the live sessions, and ends once they have all ended
(``idle``) or the drain deadline passes (``deadline``), or on a second SIGTERM
(``force``). ``STOPPING``: the shell closes what is left, each within the runner's stop
deadline, and exits 0. Readiness (``/readyz``) is the same decision as admission, so a
balancer stops routing here before a page is ever refused.

Nothing here reads a clock or a socket: the shell passes ``now`` and the figures in.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

__all__ = ["Admission", "Phase", "Refusal", "TRANSITIONS"]

log = logging.getLogger("voxpipe.serving")


class Phase(enum.Enum):
    """Where a worker stands."""

    SERVING = "serving"
    DRAINING = "draining"
    STOPPING = "stopping"


TRANSITIONS: dict[tuple[Phase, str], Phase] = {
    (Phase.SERVING, "drain"): Phase.DRAINING,
    (Phase.SERVING, "force"): Phase.STOPPING,
    (Phase.DRAINING, "idle"): Phase.STOPPING,
    (Phase.DRAINING, "deadline"): Phase.STOPPING,
    (Phase.DRAINING, "force"): Phase.STOPPING,
}


@dataclass(frozen=True)
class Refusal:
    """Why a session is refused: ``reason`` is a metric label, ``message`` what the page shows."""

    reason: str  # "capacity", "cpu", "draining"
    message: str


class Admission:
    """Decides admission and readiness from the session count, the CPU load and the phase.

    ``max_sessions`` (None: no limit) and ``max_cpu`` (share of one core, e.g. 0.9; None:
    no limit) bound a SERVING worker; ``drain_timeout_s`` is how long DRAINING waits for
    live sessions before the rest are closed.
    """

    def __init__(self, *, max_sessions: int | None = None, max_cpu: float | None = None,
                 drain_timeout_s: float = 3600.0) -> None:
        if max_sessions is not None and max_sessions < 1:
            raise ValueError(f"max_sessions must be at least 1, not {max_sessions}")
        if max_cpu is not None and not 0 < max_cpu:
            raise ValueError(f"max_cpu must be a share of one core above 0 (0.9 = 90%), not {max_cpu}")
        if drain_timeout_s < 0:
            raise ValueError(f"drain_timeout_s must be >= 0, not {drain_timeout_s}")
        self.max_sessions = max_sessions
        self.max_cpu = max_cpu
        self.drain_timeout_s = drain_timeout_s
        self.phase = Phase.SERVING
        self.drain_deadline: float | None = None
        self.cpu = 0.0

    def _to(self, event: str) -> bool:
        new = TRANSITIONS.get((self.phase, event))
        if new is None:
            return False
        log.info("worker %s -> %s (%s)", self.phase.value, new.value, event)
        self.phase = new
        return True

    def refusal(self, active: int) -> Refusal | None:
        """None when a new session may start now, else why not."""
        if self.phase is not Phase.SERVING:
            return Refusal("draining", "the server is draining for a restart; reconnect to reach another server")
        if self.max_sessions is not None and active >= self.max_sessions:
            return Refusal("capacity", f"the server is at capacity ({self.max_sessions} sessions); try again in a "
                                       "moment")
        if self.max_cpu is not None and self.cpu > self.max_cpu:
            return Refusal("cpu", f"the server is overloaded (CPU {100 * self.cpu:.0f}% of a core, limit "
                                  f"{100 * self.max_cpu:.0f}%); try again in a moment")
        return None

    def drain(self, now: float) -> bool:
        """Start draining (SIGTERM, POST /drain); False when already draining or stopping."""
        if not self._to("drain"):
            return False
        self.drain_deadline = now + self.drain_timeout_s
        return True

    def force(self) -> bool:
        """Stop now (a second SIGTERM); False when already stopping."""
        return self._to("force")

    def tick(self, now: float, active: int) -> Phase:
        """Advance DRAINING on ``idle`` or ``deadline``; returns the phase."""
        if self.phase is Phase.DRAINING:
            if active == 0:
                self._to("idle")
            elif self.drain_deadline is not None and now >= self.drain_deadline:
                self._to("deadline")
        return self.phase
