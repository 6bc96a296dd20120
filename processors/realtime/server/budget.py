"""Fairness between the connections of one server: event-loop time and recognition workers.

Every connection's client messages are handled on the one event loop (the core's JSON
parse, base64 decode and server VAD run there), and websockets hands a reader its buffered
messages without yielding. A client that sends at full speed (a flood of appends, 60-second
appends for a six-minute commit) would take the loop from everyone else: another client's
turn, which needs dozens of loop turns to travel its graph, then waits behind each flooder
message.

:class:`LoopBudget` is a token bucket per connection, pure (the caller passes the clock):
credit accrues at ``share`` seconds of loop time per second of wall time, up to ``burst``;
each message's handling time is charged; when the credit is negative, :meth:`charge` says
how long to wait before reading on. The shell sets ``share`` to one connection's fair part
(1 / open connections) before each charge, so a lone client runs at full speed and a flooder
among others gets its part and no more.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["LoopBudget", "SegmentedRecognition", "quiet_cuts"]

log = logging.getLogger("voxpipe.realtime_server")

#: Longest piece of audio one recognition holds a shared worker for.
MAX_PIECE_S = 20.0
_SEARCH_S = 4.0  # a cut is looked for in the last seconds of each piece
_FRAME_S = 0.02


class LoopBudget:
    """One connection's credit of event-loop time (see the module docstring)."""

    def __init__(self, *, burst_s: float = 0.05, now: float = 0.0) -> None:
        self.burst_s = burst_s
        self.credit = burst_s
        self.share = 1.0
        self._last = now
        self.waited_s = 0.0  # total time this connection was held back (statistics)

    def charge(self, spent_s: float, now: float) -> float:
        """Charge ``spent_s`` of loop time at time ``now``; the seconds to wait before reading on (0: none)."""
        self.credit = min(self.burst_s, self.credit + (now - self._last) * self.share) - spent_s
        self._last = now
        if self.credit >= 0:
            return 0.0
        if self.share >= 1.0:  # alone: no one to yield to
            self.credit = 0.0
            return 0.0
        wait = -self.credit / self.share
        self.waited_s += wait
        return wait

    def waited(self, wait_s: float, now: float) -> None:
        """The wait is over: the credit it earned is counted from ``now`` on."""
        self.credit = 0.0
        self._last = now


def quiet_cuts(samples: np.ndarray, rate: int, max_piece_s: float = MAX_PIECE_S) -> list[int]:
    """Sample positions that cut ``samples`` into pieces of at most ``max_piece_s``.

    Each cut is at the quietest 20 ms frame of the piece's last few seconds, so a word is
    seldom split. Empty for audio no longer than one piece.
    """
    piece, frame = int(max_piece_s * rate), max(1, int(_FRAME_S * rate))
    search = min(int(_SEARCH_S * rate), piece // 2)
    cuts, start, n = [], 0, samples.shape[0]
    while n - start > piece:
        lo = start + piece - search
        window = samples[lo:start + piece].astype(np.float32)
        frames = window[: window.shape[0] // frame * frame].reshape(-1, frame)
        quietest = int(np.argmin(np.einsum("ij,ij->i", frames, frames))) if frames.size else 0
        start = lo + quietest * frame + frame // 2
        cuts.append(start)
    return cuts


class SegmentedRecognition:
    """One connection's view of the shared speech resources: long audio is recognised in pieces.

    The server's recognisers are a pool of ``workers`` threads shared by every connection;
    a recognition holds one for as long as it runs. A six-minute commit would hold a worker
    for seconds and, with a single worker, every other connection's turn would wait for it.
    Cut into pieces of at most :data:`MAX_PIECE_S`, each piece queues for a worker anew
    (the pool's limiter is first come, first served), so another connection's turn waits
    for one piece at most. Each connection's graph recognises one segment at a time, so a
    flooding client holds at most one worker. Everything else is the shared resources'.
    """

    def __init__(self, resources: Any) -> None:
        self._resources = resources

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resources, name)

    async def recognize(self, samples: np.ndarray, rate: int) -> str:
        """The words in ``samples`` (int16 at ``rate``), piece by piece past :data:`MAX_PIECE_S`."""
        cuts = quiet_cuts(samples, rate)
        if not cuts:
            return await self._resources.recognize(samples, rate)
        bounds = [0, *cuts, samples.shape[0]]
        words = []
        for a, b in zip(bounds, bounds[1:]):
            text = await self._resources.recognize(samples[a:b], rate)
            if text:
                words.append(text)
        log.debug("recognised %.1f s in %d pieces", samples.shape[0] / rate, len(bounds) - 1)
        return " ".join(words)
