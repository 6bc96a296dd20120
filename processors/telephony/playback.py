"""PlaybackLedger: what the caller has heard, from the marks the provider echoed back.

Theory of operation
-------------------
We send assistant audio to the provider as fast as the model makes it; the provider
buffers it and plays it to the caller at real time. After each chunk we send a ``mark``
(Plivo: ``checkpoint``); the provider echoes it when its playback reaches that point. So
an echoed mark *proves* that the caller heard everything up to the end of its chunk, and
nothing else does: bytes sent prove nothing.

On a barge-in we send ``clear`` and must say where the caller stopped hearing. The marks
prove a lower bound (the end of the last echoed chunk); the next unechoed mark bounds it
from above, by one chunk. Between the two, playback ran at real time from the later of
the last echo and the next chunk's sending, so :meth:`PlaybackLedger.clear` credits the
time since then, clamped to the audio the provider actually had. With 20 ms chunks the
estimate cannot be off by more than a chunk, and on a real network it is off by the
one-way delays only. Marks echoed after a ``clear`` are ignored: Twilio echoes every
pending mark when it flushes, which is not playback.

Positions are per assistant item (the model's ``item_id``), in samples of that item, as
the realtime client's truncation needs them. Sans-I/O: the caller passes ``now``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["Chunk", "PlaybackLedger"]


@dataclass(slots=True)
class Chunk:
    """One chunk of assistant audio sent to the provider, followed by mark ``name``."""

    name: str
    item_id: str | None
    turn: int
    start: int  # first sample within its item
    samples: int
    sent_at: float


class PlaybackLedger:
    """Chunks sent and marks echoed for one call; answers "how much of each item was heard".

    ``rate`` is the stream's sample rate. At most ``max_chunks`` unechoed chunks are kept
    (10 minutes of 20 ms chunks by default); beyond that the oldest count as heard.
    """

    def __init__(self, rate: int = 8000, *, max_chunks: int = 30_000) -> None:
        self.rate = rate
        self.max_chunks = max_chunks
        self._pending: deque[Chunk] = deque()
        self._item_samples: dict[str | None, int] = {}
        self._heard: dict[str | None, int] = {}  # proven, per item, in samples
        self._flushed: set[str] = set()
        self._last_echo_at: float | None = None
        self._seq = 0
        self.echoed = 0
        self.unknown_marks = 0
        self.flushed_marks = 0

    # --- sending ---------------------------------------------------------------------------------

    def sent(self, item_id: str | None, turn: int, samples: int, now: float) -> str:
        """Record a chunk of ``samples`` of ``item_id`` sent at ``now``; returns the name of its mark."""
        self._seq += 1
        name = str(self._seq)
        start = self._item_samples.get(item_id, 0)
        self._item_samples[item_id] = start + samples
        self._pending.append(Chunk(name, item_id, turn, start, samples, now))
        while len(self._pending) > self.max_chunks:
            self._prove(self._pending.popleft())
        return name

    @property
    def pending(self) -> int:
        """Chunks sent whose marks have not come back."""
        return len(self._pending)

    def pending_ms(self) -> float:
        """Audio sent but not proven played, in milliseconds."""
        return 1000.0 * sum(c.samples for c in self._pending) / self.rate

    # --- echoes ----------------------------------------------------------------------------------

    def echo(self, name: str, now: float) -> list[tuple[str | None, int]]:
        """The provider echoed mark ``name`` at ``now``: returns ``(item_id, heard_ms)`` of the items it advanced."""
        if name in self._flushed:
            self._flushed.discard(name)
            self.flushed_marks += 1
            return []
        if not any(c.name == name for c in self._pending):
            self.unknown_marks += 1
            return []
        advanced: dict[str | None, int] = {}
        while self._pending:  # marks come back in order: everything before this one was played too
            chunk = self._pending.popleft()
            self._prove(chunk)
            advanced[chunk.item_id] = self._heard[chunk.item_id]
            if chunk.name == name:
                break
        self.echoed += 1
        self._last_echo_at = now
        return [(item, self._ms(n)) for item, n in advanced.items()]

    def _prove(self, chunk: Chunk) -> None:
        self._heard[chunk.item_id] = max(self._heard.get(chunk.item_id, 0), chunk.start + chunk.samples)

    def heard_ms(self, item_id: str | None) -> int:
        """Milliseconds of ``item_id`` the marks prove heard."""
        return self._ms(self._heard.get(item_id, 0))

    def _ms(self, samples: int) -> int:
        return samples * 1000 // self.rate

    # --- barge-in --------------------------------------------------------------------------------

    def clear(self, now: float) -> list[tuple[str | None, int, int]]:
        """We sent ``clear`` at ``now``: the heard position of every item still playing, and forget them.

        Returns ``(item_id, turn, heard_ms)`` for each item with unproven audio: what the
        marks prove plus the real-time play since the last proof (see the module doc).
        """
        turns: dict[str | None, int] = {}
        t = self._last_echo_at
        for chunk in self._pending:
            turns.setdefault(chunk.item_id, chunk.turn)
            begin = chunk.sent_at if t is None else max(t, chunk.sent_at)
            played = 0 if now <= begin else min(chunk.samples, int((now - begin) * self.rate))
            if played:
                self._heard[chunk.item_id] = max(self._heard.get(chunk.item_id, 0), chunk.start + played)
            if played < chunk.samples:
                t = None  # playback stopped inside this chunk: nothing after it was heard
                break
            t = begin + chunk.samples / self.rate
        # every item with unproven audio gets its final position (0 for items not reached)
        out = []
        for chunk in self._pending:
            if chunk.item_id not in turns:
                turns[chunk.item_id] = chunk.turn
        for item, turn in turns.items():
            out.append((item, turn, self.heard_ms(item)))
        self._flushed.update(c.name for c in self._pending)
        if len(self._flushed) > self.max_chunks:
            self._flushed.clear()
        self._pending.clear()
        self._last_echo_at = None
        return out
