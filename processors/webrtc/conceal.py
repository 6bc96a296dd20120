"""Gap concealment for received audio: a lost packet becomes a short, fading repeat (sans-I/O).

aiortc decodes Opus packets as they leave its jitter buffer and does not conceal loss: a
lost packet is simply missing, and the next frame's RTP timestamp jumps. The graph wants
media time without holes (a VAD, a recogniser and a model count samples), so
:class:`GapConcealer` turns frames stamped in RTP time into a continuous stream: a gap is
filled with the last good frame repeated, faded out over ``fade_ms`` (short losses sound
like a held vowel rather than a click; long ones fade to silence), late or duplicate
frames are dropped. It counts what it did, for the logs and the loss tests.

Why hand-written: libopus has its own concealment (decode with no packet), but neither
aiortc nor PyAV exposes it. This is the classic repeat-and-fade of G.711 Appendix I in
its simplest form.
"""

from __future__ import annotations

import numpy as np

__all__ = ["GapConcealer"]


class GapConcealer:
    """Make frames stamped in RTP time into a continuous stream; ``process`` returns the frames to push.

    ``rate`` is the RTP clock rate (48 kHz for Opus). ``max_gap_ms``: a jump longer than this
    (the peer paused sending, or restarted its clock) is not filled, the stream restarts at
    the new time and it is counted as a ``resync``.
    """

    def __init__(self, rate: int = 48000, *, fade_ms: float = 60.0, max_gap_ms: float = 1000.0) -> None:
        self.rate = rate
        self.fade = max(1, int(rate * fade_ms / 1000))
        self.max_gap = int(rate * max_gap_ms / 1000)
        self.reset()

    def reset(self) -> None:
        """Start a new stream (the next frame sets the time)."""
        self.next_pts: int | None = None
        self._last: np.ndarray | None = None
        self.frames = 0
        self.gaps = 0
        self.concealed_samples = 0
        self.dropped = 0
        self.resyncs = 0

    def process(self, samples: np.ndarray, pts: int) -> list[tuple[np.ndarray, int]]:
        """``(samples, pts)`` pairs to push for one received frame (int16 mono, ``pts`` in samples)."""
        n = samples.shape[0]
        if self.next_pts is None:
            self.next_pts = pts
        gap = pts - self.next_pts
        out: list[tuple[np.ndarray, int]] = []
        if gap < 0:  # late, duplicate or overlapping: the time it covers was filled already
            self.dropped += 1
            return out
        if gap > self.max_gap:
            self.resyncs += 1
            self.next_pts = pts
        elif gap > 0:
            self.gaps += 1
            out.append((self._fill(gap), self.next_pts))
            self.concealed_samples += gap
            self.next_pts += gap
        out.append((samples, self.next_pts))
        self.next_pts += n
        self.frames += 1
        self._last = samples
        return out

    def _fill(self, n: int) -> np.ndarray:
        last = self._last
        if last is None or last.shape[0] == 0:
            return np.zeros(n, np.int16)
        reps = -(-n // last.shape[0])
        x = np.tile(last.astype(np.float32), reps)[:n]
        ramp = np.clip(1.0 - np.arange(n, dtype=np.float32) / self.fade, 0.0, 1.0)
        return (x * ramp).astype(np.int16)

    def statistics(self) -> dict[str, float]:
        """Frames received, gaps filled, ms concealed, frames dropped as late, resyncs."""
        return {"frames": self.frames, "gaps": self.gaps,
                "concealed_ms": round(1000 * self.concealed_samples / self.rate, 1),
                "late_dropped": self.dropped, "resyncs": self.resyncs}
