"""PlaybackLedger: what the caller has heard, from the marks the provider echoed back.

Theory of operation
-------------------
We send assistant audio to the provider as fast as the model makes it; the provider
buffers it and plays it to the caller at real time. After each chunk we send a ``mark``
(Plivo: ``checkpoint``); the provider echoes it when its playback reaches that point. So
an echoed mark *proves* that the caller heard everything up to the end of its chunk, and
nothing else does: bytes sent prove nothing.

On a barge-in we send ``clear`` and must say where the caller stopped hearing. The marks
prove a lower bound (the end of the last echoed chunk) and the audio sent an upper bound.
Between the two, the provider plays at real time on a timeline we estimate: its *origin*
is the moment the first sample would have played had playback never paused. Each echo
says "chunk j ended no later than now", so ``now - end_j`` bounds the origin from above,
and the least delayed of the last :data:`RECENT_ECHOES` echoes is the best estimate (a
minimum filter, as NTP does with round trips, over a window so that it follows a player
that slips); a chunk sent after its slot on that timeline means the provider ran dry, and
no origin earlier than its sending can hold. At a clear, the heard position is ``now - origin``,
clamped between the proof and the audio sent. On 127.0.0.1 this is exact to a few
milliseconds; on a real network it is off by the one-way delays. An echo later than the
timeline by more than :data:`LATE_S` means the provider stalled: the timeline restarts
there. Marks echoed after a ``clear`` are ignored: Twilio echoes every pending mark when
it flushes, which is not playback.

Positions are per assistant item (the model's ``item_id``), in samples of that item, as
the realtime client's truncation needs them. Sans-I/O: the caller passes ``now``.

Marks are named by a sequence number (``"1"``, ``"2"``, ...) and the unechoed chunks are
a contiguous run of them, so an echo finds its chunk by subtraction, not by a scan: the
cost of an echo does not grow with the audio buffered at the provider.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["LATE_S", "RECENT_ECHOES", "Chunk", "PlaybackLedger"]

#: An echo this much later than the estimated timeline restarts it (the provider stalled).
LATE_S = 0.1
#: Echoes whose bounds are kept (half a second of 20 ms chunks): the timeline follows a drifting player.
RECENT_ECHOES = 25


@dataclass(slots=True)
class Chunk:
    """One chunk of assistant audio sent to the provider, followed by mark ``name``."""

    seq: int  # the mark's sequence number (its name is ``str(seq)``)
    item_id: str | None
    turn: int
    start: int  # first sample within its item
    samples: int
    sent_at: float
    at: int  # first sample on the call's timeline (all items in sending order)


class PlaybackLedger:
    """Chunks sent and marks echoed for one call; answers "how much of each item was heard".

    ``rate`` is the stream's sample rate. At most ``max_chunks`` unechoed chunks are kept
    (10 minutes of 20 ms chunks by default); beyond that the oldest count as heard.
    """

    __slots__ = ("rate", "max_chunks", "_pending", "_item_samples", "_heard", "_flushed", "_origin", "_floor",
                 "_recent", "_sent", "_proven", "_seq", "echoed", "unknown_marks", "flushed_marks")

    def __init__(self, rate: int = 8000, *, max_chunks: int = 30_000) -> None:
        self.rate = rate
        self.max_chunks = max_chunks
        self._pending: deque[Chunk] = deque()
        self._item_samples: dict[str | None, int] = {}
        self._heard: dict[str | None, int] = {}  # proven, per item, in samples
        self._flushed: set[int] = set()  # sequence numbers of the marks a clear dropped
        self._origin: float | None = None  # when sample 0 of the timeline played (estimated)
        self._floor: float | None = None  # the latest the origin can be, given when chunks were sent
        self._recent: deque[float] = deque(maxlen=RECENT_ECHOES)  # origin bounds from the latest echoes
        self._sent = 0  # samples sent on the timeline
        self._proven = 0  # samples of the timeline proven played
        self._seq = 0
        self.echoed = 0
        self.unknown_marks = 0
        self.flushed_marks = 0

    # --- sending ---------------------------------------------------------------------------------

    def sent(self, item_id: str | None, turn: int, samples: int, now: float) -> str:
        """Record a chunk of ``samples`` of ``item_id`` sent at ``now``; returns the name of its mark."""
        self._seq = seq = self._seq + 1
        start = self._item_samples.get(item_id, 0)
        self._item_samples[item_id] = start + samples
        floor = now - self._sent / self.rate  # this chunk cannot play before it is sent
        if self._origin is None or floor > self._origin:  # the provider had run dry: it plays from its arrival
            self._origin = floor
        self._floor = floor if self._floor is None else max(self._floor, floor)
        self._pending.append(Chunk(seq, item_id, turn, start, samples, now, self._sent))
        self._sent += samples
        if len(self._pending) > self.max_chunks:
            self._prove(self._pending.popleft())
        return str(seq)

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
        seq = int(name) if name.isdigit() and len(name) < 19 else -1
        if seq in self._flushed:
            self._flushed.discard(seq)
            self.flushed_marks += 1
            return []
        pending = self._pending
        index = seq - pending[0].seq if pending else -1  # pending holds a contiguous run of sequence numbers
        if not 0 <= index < len(pending):
            self.unknown_marks += 1
            return []
        advanced: dict[str | None, int] = {}
        for _ in range(index + 1):  # marks come back in order: everything before this one was played too
            chunk = pending.popleft()
            self._prove(chunk)
            advanced[chunk.item_id] = self._heard[chunk.item_id]
        self.echoed += 1
        estimate = now - self._proven / self.rate
        if self._origin is not None and estimate > self._origin + LATE_S:
            self._recent.clear()  # the provider stalled: the timeline restarts here
        self._recent.append(estimate)
        origin = min(self._recent)
        self._origin = origin if self._floor is None else max(origin, self._floor)
        return [(item, self._ms(n)) for item, n in advanced.items()]

    def _prove(self, chunk: Chunk) -> None:
        self._proven = max(self._proven, chunk.at + chunk.samples)
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
        marks prove plus the real-time play since (see the module doc).
        """
        heard = self._proven
        if self._origin is not None:
            heard = min(self._sent, max(heard, round((now - self._origin) * self.rate)))
        turns: dict[str | None, int] = {}
        for chunk in self._pending:
            turns.setdefault(chunk.item_id, chunk.turn)
            played = min(chunk.samples, max(0, heard - chunk.at))
            if played:
                self._heard[chunk.item_id] = max(self._heard.get(chunk.item_id, 0), chunk.start + played)
        out = [(item, turn, self.heard_ms(item)) for item, turn in turns.items()]
        self._flushed.update(c.seq for c in self._pending)
        if len(self._flushed) > self.max_chunks:
            self._flushed.clear()
        self._pending.clear()
        self._origin = self._floor = None
        self._recent.clear()
        self._proven = self._sent
        return out
