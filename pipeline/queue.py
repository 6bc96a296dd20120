"""FrameQueue: the bounded single-consumer input queue of a processor.

Two deques (system frames in front, the rest behind; never replaced, as the node's run loop
holds them) plus at most one waiting getter, written for the hot path: ``put_nowait`` and
``get_nowait`` never touch the scheduler, and the consumer awaits only when the queue is
empty (the same trick that brings anyio memory streams level with ``asyncio.Queue``).

Policy when full: ``block`` makes the producer wait (back-pressure, for files and batch
work); ``drop_oldest`` discards the oldest *data* frame and counts it (for live audio,
where late audio is worse than lost audio). Control frames are never dropped, and upstream
frames never block: they are few, and blocking them could deadlock two processors that
push at each other.

``high_water`` is exact: the most data and control frames that ever waited at once (the
bounded part; system frames jump the line and are not counted). It costs one length
check per put, measured with ``benchmarks/hops.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from .frames import Direction, Frame, FrameKind

_DOWN = Direction.DOWNSTREAM

__all__ = ["FrameQueue", "QueueStatistics"]


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    """A snapshot of a queue: how full it is and how many frames it discarded."""

    size: int
    max_size: int
    dropped: int
    stale: int
    high_water: int = 0


class FrameQueue:
    """Bounded queue of ``(frame, direction, link)`` triples with one consumer.

    ``link`` is the id of the neighbour that pushed the frame (None when not known).
    System frames go through :meth:`put_front`: ahead of everything else (in their own
    order), never dropped, never blocking.
    """

    __slots__ = ("_items", "_front", "max_size", "drop_oldest", "dropped", "stale", "high_water", "_getter",
                 "_putters")

    def __init__(self, max_size: int = 256, *, drop_oldest: bool = False) -> None:
        if max_size < 1:
            raise ValueError(f"queue max_size must be at least 1, got {max_size}")
        self._items: deque[tuple[Frame, Direction, str | None]] = deque()
        self._front: deque[tuple[Frame, Direction, str | None]] = deque()
        self.max_size = max_size
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.stale = 0
        self.high_water = 0
        self._getter: asyncio.Future | None = None
        self._putters: deque[asyncio.Future] = deque()

    def __len__(self) -> int:
        return len(self._items) + len(self._front)

    def statistics(self) -> QueueStatistics:
        return QueueStatistics(len(self), self.max_size, self.dropped, self.stale, self.high_water)

    def put_nowait(self, frame: Frame, direction: Direction, link: str | None = None) -> bool:
        """Enqueue without waiting; False when the queue is full and the policy is block."""
        items = self._items
        n = len(items)
        if n >= self.max_size and direction is _DOWN:
            if not self.drop_oldest or not self._drop_one():
                return False
            n -= 1
        items.append((frame, direction, link))
        if n >= self.high_water:  # n frames waited before this one
            self.high_water = n + 1
        getter = self._getter
        if getter is not None:  # the wake-up written out: this runs once per hop
            self._getter = None
            if not getter.done():
                getter.set_result(None)
        return True

    def put_front(self, frame: Frame, direction: Direction, link: str | None = None) -> None:
        """Enqueue ahead of the data and control frames (after earlier ones put here)."""
        self._front.append((frame, direction, link))
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    async def put(self, frame: Frame, direction: Direction, link: str | None = None) -> None:
        """Enqueue, waiting for room when the queue is full and the policy is block."""
        while not self.put_nowait(frame, direction, link):
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._putters:
                    self._putters.remove(waiter)

    def _drop_one(self) -> bool:
        for i, item in enumerate(self._items):
            if item[0].kind is FrameKind.DATA:
                del self._items[i]
                self.dropped += 1
                return True
        return False

    def get_nowait(self) -> tuple[Frame, Direction, str | None] | None:
        """The next triple, or None when empty."""
        if self._front:
            return self._front.popleft()
        items = self._items
        if not items:
            return None
        item = items.popleft()
        if self._putters:
            self.wake_putter()
        return item

    def wake_putter(self) -> None:
        """Let the first producer waiting for room try again (a frame just left)."""
        waiter = self._putters.popleft()
        if not waiter.done():
            waiter.set_result(None)

    async def get(self) -> tuple[Frame, Direction, str | None]:
        """The next triple, waiting while the queue is empty."""
        while not self._items and not self._front:
            await self.wait()
        return self.get_nowait()  # type: ignore[return-value]

    def wait(self) -> asyncio.Future:
        """A future the next put completes (for the consumer to await when ``get_nowait`` found nothing).

        Awaiting it directly instead of ``get()`` saves the consumer one coroutine per frame.
        """
        self._getter = getter = asyncio.get_running_loop().create_future()
        return getter

    def purge_stale(self, turn: int) -> int:
        """Remove queued data frames of turns older than ``turn``; return how many."""
        keep = [
            item
            for item in self._items
            if not (item[0].kind is FrameKind.DATA and 0 < item[0].turn < turn)
        ]
        removed = len(self._items) - len(keep)
        if removed:
            self._items.clear()  # in place: the consumer's loop holds this deque
            self._items.extend(keep)
            self.stale += removed
            while self._putters and len(self._items) < self.max_size:
                waiter = self._putters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        return removed
