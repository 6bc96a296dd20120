"""Fairness between the connections of one server: recognition workers taken in turns.

The server's recognisers are a pool of ``workers`` threads shared by every connection
(:mod:`.engine`); a recognition holds one for as long as it runs. :class:`SegmentedRecognition`
is each connection's view of the shared resources: it cuts long audio at quiet points
(:func:`quiet_cuts`) and recognises the pieces one after another, each queueing for a worker
anew, so one client's long commit delays another client's turn by one piece at most.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["MAX_PIECE_S", "SegmentedRecognition", "quiet_cuts"]

log = logging.getLogger("voxpipe.realtime_server")

#: Longest piece of audio one recognition holds a shared worker for.
MAX_PIECE_S = 20.0
_SEARCH_S = 4.0  # a cut is looked for in the last seconds of each piece
_FRAME_S = 0.02


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

    async def recognize(self, samples: np.ndarray, rate: int, *options: Any) -> str:
        """The words in ``samples`` (int16 at ``rate``), piece by piece past :data:`MAX_PIECE_S`.

        ``options`` (the session's grammar and tools) go to every piece's recognition.
        """
        cuts = quiet_cuts(samples, rate)
        if not cuts:
            return await self._resources.recognize(samples, rate, *options)
        bounds = [0, *cuts, samples.shape[0]]
        words = []
        for a, b in zip(bounds, bounds[1:]):
            text = await self._resources.recognize(samples[a:b], rate, *options)
            if text:
                words.append(text)
        log.debug("recognised %.1f s in %d pieces", samples.shape[0] / rate, len(bounds) - 1)
        return " ".join(words)
