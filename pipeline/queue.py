"""FrameQueue: the bounded single-consumer input queue of a processor.

A deque plus at most one waiting getter, written for the hot path: ``put_nowait`` and
``get_nowait`` never touch the scheduler, and the consumer awaits only when the queue is
empty (the same trick that brings anyio memory streams level with ``asyncio.Queue``).

Policy when full: ``block`` makes the producer wait (back-pressure, for files and batch
work); ``drop_oldest`` discards the oldest *data* frame and counts it (for live audio,
where late audio is worse than lost audio). Control frames are never dropped, and upstream
frames never block: they are few, and blocking them could deadlock two processors that
push at each other.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from .frames import Direction, Frame, FrameKind

__all__ = ["FrameQueue", "QueueStatistics"]


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    """A snapshot of a queue: how full it is and how many frames it discarded."""

    size: int
    max_size: int
    dropped: int
    stale: int


class FrameQueue:
    """Bounded queue of ``(frame, direction)`` pairs with one consumer."""

    __slots__ = ("_items", "max_size", "drop_oldest", "dropped", "stale", "_getter", "_putters")

    def __init__(self, max_size: int = 256, *, drop_oldest: bool = False) -> None:
        if max_size < 1:
            raise ValueError(f"queue max_size must be at least 1, got {max_size}")
        self._items: deque[tuple[Frame, Direction]] = deque()
        self.max_size = max_size
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.stale = 0
        self._getter: asyncio.Future | None = None
        self._putters: deque[asyncio.Future] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def statistics(self) -> QueueStatistics:
        return QueueStatistics(len(self._items), self.max_size, self.dropped, self.stale)

    def _wake_getter(self) -> None:
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    def put_nowait(self, frame: Frame, direction: Direction) -> bool:
        """Enqueue without waiting; False when the queue is full and the policy is block."""
        items = self._items
        if len(items) >= self.max_size and direction is Direction.DOWNSTREAM:
            if not self.drop_oldest or not self._drop_one():
                return False
        items.append((frame, direction))
        if self._getter is not None:
            self._wake_getter()
        return True

    async def put(self, frame: Frame, direction: Direction) -> None:
        """Enqueue, waiting for room when the queue is full and the policy is block."""
        while not self.put_nowait(frame, direction):
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._putters:
                    self._putters.remove(waiter)

    def _drop_one(self) -> bool:
        for i, (frame, _) in enumerate(self._items):
            if frame.kind is FrameKind.DATA:
                del self._items[i]
                self.dropped += 1
                return True
        return False

    def get_nowait(self) -> tuple[Frame, Direction] | None:
        """The next pair, or None when empty."""
        if not self._items:
            return None
        item = self._items.popleft()
        if self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        return item

    async def get(self) -> tuple[Frame, Direction]:
        """The next pair, waiting while the queue is empty."""
        while not self._items:
            self._getter = asyncio.get_running_loop().create_future()
            await self._getter
        return self.get_nowait()  # type: ignore[return-value]

    def purge_stale(self, turn: int) -> int:
        """Remove queued data frames of turns older than ``turn``; return how many."""
        keep = [
            item
            for item in self._items
            if not (item[0].kind is FrameKind.DATA and 0 < item[0].turn < turn)
        ]
        removed = len(self._items) - len(keep)
        if removed:
            self._items = deque(keep)
            self.stale += removed
            while self._putters and len(self._items) < self.max_size:
                waiter = self._putters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
        return removed
