"""Retry policy of the realtime connection: what is worth retrying, and how long to wait.

Pure functions and a small object, no I/O (as ``websockets``' own ``backoff()``): the
websocket shell asks :func:`retry_after_close` / :func:`retry_after_handshake` whether a
failure is transient, and takes its delays from :class:`Backoff`.

Transient: the network (refused, reset, timed out), the server going away or restarting
(close codes 1001, 1006, 1011-1014), rate limiting (HTTP 429) and server errors (HTTP 5xx).
Permanent: authentication (HTTP 401/403), a wrong URL or model (HTTP 400/404), protocol
violations (close codes 1002, 1003, 1007-1010) and policy closes (1008), where retrying
would only repeat the failure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["RETRYABLE_CLOSE_CODES", "Backoff", "retry_after_close", "retry_after_handshake", "retry_after_status"]

#: Close codes after which a new connection may succeed (RFC 6455 §7.4.1 and IANA registry).
RETRYABLE_CLOSE_CODES = frozenset({1000, 1001, 1005, 1006, 1011, 1012, 1013, 1014})


def retry_after_close(code: int | None) -> bool:
    """True when a session closed by the peer with ``code`` is worth re-opening.

    1000 is included: the server ends sessions normally when they expire, and a voice agent
    should carry on in a fresh session. ``None`` (no close frame: the TCP connection died)
    is transient too.
    """
    return code is None or code in RETRYABLE_CLOSE_CODES


def retry_after_status(status: int) -> bool:
    """True when an HTTP status refusing the websocket handshake is transient (429, 5xx)."""
    return status == 429 or 500 <= status <= 599


def retry_after_handshake(error: BaseException) -> bool:
    """True when a failure to open the connection is transient (network, 429, 5xx)."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(status, int):
        return retry_after_status(status)
    return isinstance(error, (OSError, TimeoutError, EOFError))


@dataclass
class Backoff:
    """Exponential delays with multiplicative jitter from a seeded RNG.

    Delay ``n`` (from 0) is ``min(max_delay_s, initial_delay_s * factor**n)`` scaled by a
    uniform factor in ``[1 - jitter, 1 + jitter]`` (and capped at ``max_delay_s``), so that
    many clients dropped at once do not reconnect in lock-step. ``next_delay()`` returns
    ``None`` once ``max_attempts`` delays have been handed out; ``reset()`` after a
    connection that worked.
    """

    initial_delay_s: float = 0.5
    max_delay_s: float = 15.0
    factor: float = 2.0
    jitter: float = 0.25
    max_attempts: int = 8
    seed: int | None = None
    attempts: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def next_delay(self) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` when attempts are used up."""
        if self.attempts >= self.max_attempts:
            return None
        base = min(self.max_delay_s, self.initial_delay_s * self.factor ** self.attempts)
        self.attempts += 1
        scale = 1.0 + self.jitter * (2.0 * self._rng.random() - 1.0)
        return min(self.max_delay_s, base * scale)

    def reset(self) -> None:
        """Start counting attempts again (a connection succeeded)."""
        self.attempts = 0
