"""MediaClock: paces sources by media time, in real time or as fast as possible.

Media time comes from sample counts; the clock only decides whether a source waits for
the wall clock to catch up. Tests and batch runs use ``realtime=False`` and never sleep.
"""

from __future__ import annotations

import time

import anyio

__all__ = ["MediaClock"]


class MediaClock:
    """Maps media time (seconds since the start of the run) to the monotonic clock."""

    def __init__(self, *, realtime: bool = True, now=time.monotonic) -> None:
        self.realtime = realtime
        self._now = now
        self._t0: float | None = None

    def start(self) -> None:
        """Fix media time 0 at the current instant (the runner calls it once)."""
        self._t0 = self._now()

    def elapsed(self) -> float:
        """Seconds of wall time since media time 0."""
        if self._t0 is None:
            self.start()
        return self._now() - self._t0  # type: ignore[operator]

    async def wait_until(self, media_s: float) -> None:
        """Return when media time ``media_s`` is due: at once when not real time."""
        if not self.realtime:
            await anyio.lowlevel.checkpoint()
            return
        delay = media_s - self.elapsed()
        if delay > 0:
            await anyio.sleep(delay)
        else:
            await anyio.lowlevel.checkpoint()
