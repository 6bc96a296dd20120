"""Processor: the one class a voxpipe user subclasses.

The contract a processor author learns::

    class Gain(Processor):
        '''Scale float32 audio by a fixed gain.'''
        class Params(BaseModel, extra="forbid"):
            db: float = 0.0
        async def start(self):
            self.gain = np.float32(10 ** (self.params.db / 20))
        async def process(self, frame, direction):
            if isinstance(frame, AudioFrame):
                frame = replace(frame, samples=frame.samples * self.gain)
            await self.push(frame, direction)

``process`` receives every frame except the lifecycle ones (the end of stream is the
runner's business) and pushes on what it does not consume; it never calls ``super()``.
``start`` runs before the first frame arrives; ``stop`` runs once at the end: on a graceful
end it may still push final frames (a resampler's tail), on a cancel its pushes go nowhere.

Theory of operation
-------------------
Each processor owns a :class:`~pipeline.queue.FrameQueue` and one task that feeds
``process`` from it. ``push`` hands a frame to every neighbour in the given direction:

* a SYSTEM frame is handled at once, in the pusher's task, skipping the queue;
* an inline processor (``inline = True``) runs ``process`` in the pusher's task too;
* anything else is queued. A full queue blocks the pusher or drops the oldest data frame,
  by the processor's policy.

A processor that receives an :class:`InterruptionFrame` raises its turn, purges queued data
frames of older turns and, from then on, drops data frames of older turns that were still
in flight (frames of turn 0 belong to no turn and always pass).

A processor with no inputs is a source: override :meth:`produce`; when it returns, the
runner ends the stream there.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar

import anyio
from pydantic import BaseModel, ConfigDict

from .frames import AudioFormat, Direction, EndFrame, ErrorFrame, Frame, FrameKind, InterruptionFrame
from .queue import FrameQueue

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .clock import MediaClock
    from .metrics import LatencyHistogram

__all__ = ["Processor"]

_DOWN = Direction.DOWNSTREAM
_UP = Direction.UPSTREAM
_SYSTEM = FrameKind.SYSTEM
_DATA = FrameKind.DATA


class _NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Processor:
    """A node of a graph: receives frames in ``process`` and sends them on with ``push``.

    Class attributes tune the plumbing: ``queue_size`` and ``drop_oldest`` set the input
    queue's bound and policy, ``inline`` runs the processor in its caller's task (for tiny
    work that never awaits I/O). ``input_format`` / ``output_format`` declare audio caps.
    """

    Params: ClassVar[type[BaseModel]] = _NoParams
    queue_size: ClassVar[int] = 256
    drop_oldest: ClassVar[bool] = False
    inline: ClassVar[bool] = False
    #: Audio this processor accepts on its input (None: any audio, or no audio at all).
    input_format: ClassVar[AudioFormat | None] = None

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params(**params)
        self.params = params
        self.name = name or type(self).__name__
        self.log = logging.getLogger(f"voxpipe.{self.name}")
        self.turn = 0
        self.clock: MediaClock | None = None
        self._down: list[Processor] = []
        self._up: list[Processor] = []
        self._queue = FrameQueue(self.queue_size, drop_oldest=self.drop_oldest)
        self._ends_seen = 0
        self._ended = anyio.Event()
        self._started = False
        self._early: list[tuple[Frame, Direction]] = []
        self._stopped = False
        self._cancelled = False
        self._busy: Frame | None = None
        self._stats: LatencyHistogram | None = None
        self._task_group: TaskGroup | None = None
        self._on_error: Callable[[ErrorFrame], Awaitable[None]] | None = None

    # --- what subclasses override ---------------------------------------------------------

    async def start(self) -> None:
        """Prepare to take frames (open files, devices, connections). Runs before any frame."""

    async def stop(self) -> None:
        """Release what ``start`` took; on a graceful end, push what is still held first."""

    async def process(self, frame: Frame, direction: Direction) -> None:
        """Handle one frame; push on what you do not consume. The default passes all on."""
        await self.push(frame, direction)

    async def produce(self) -> None:
        """For sources (no inputs): push frames until done; returning ends the stream."""

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat | None:
        """The audio format this processor emits, given what its input carries."""
        return upstream

    # --- what subclasses call -------------------------------------------------------------

    async def push(self, frame: Frame, direction: Direction = _DOWN) -> None:
        """Send ``frame`` to every neighbour in ``direction`` (downstream by default)."""
        targets = self._down if direction is _DOWN else self._up
        for target in targets:
            await target._receive(frame, direction)

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` as a task owned by the graph; it is cancelled when the graph stops."""
        if self._task_group is None:
            raise RuntimeError(f"{self.name}: spawn() needs a running graph (call it from start() or later)")
        self._task_group.start_soon(self._guarded, fn, args)

    @property
    def cancelled(self) -> bool:
        """True when the graph is being cancelled: ``stop()`` should release, not drain."""
        return self._cancelled

    def statistics(self) -> dict[str, Any]:
        """Queue size, dropped and stale counts, and latency figures when stats are on."""
        q = self._queue.statistics()
        out: dict[str, Any] = {"queued": q.size, "max_size": q.max_size, "dropped": q.dropped, "stale": q.stale}
        if self._stats is not None:
            out.update(self._stats.summary())
        return out

    # --- plumbing (the runner's side) -----------------------------------------------------

    async def _receive(self, frame: Frame, direction: Direction) -> None:
        kind = frame.kind
        if kind is _SYSTEM:
            await self._handle_system(frame, direction)
        elif self.inline and self._started:
            if kind is _DATA and 0 < frame.turn < self.turn:
                self._queue.stale += 1
            elif type(frame) is EndFrame:
                await self._handle_end(frame)
            else:
                await self._call_process(frame, direction)
        elif not self._queue.put_nowait(frame, direction):
            await self._queue.put(frame, direction)

    async def _handle_system(self, frame: Frame, direction: Direction) -> None:
        if not self._started:  # pushed by a neighbour that started first: hold it
            self._early.append((frame, direction))
            return
        if type(frame) is InterruptionFrame and frame.turn > self.turn:
            self.turn = frame.turn
            self._queue.purge_stale(frame.turn)
        await self._call_process(frame, direction)

    async def _call_process(self, frame: Frame, direction: Direction) -> None:
        if self._stopped:
            return
        try:
            if self._stats is None:
                await self.process(frame, direction)
            else:
                t0 = time.perf_counter()
                await self.process(frame, direction)
                self._stats.add(time.perf_counter() - t0)
        except Exception as exc:  # a processor's bug must not kill its task silently
            await self._report(exc, f"while processing {type(frame).__name__}")

    async def _report(self, exc: BaseException, what: str) -> None:
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self.log.error("processor %r failed %s: %s", self.name, what, message, exc_info=exc)
        if self._on_error is not None:
            await self._on_error(ErrorFrame(message, processor=self.name, fatal=True, exception=exc))

    async def _guarded(self, fn: Callable[..., Awaitable[Any]], args: tuple) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            await self._report(exc, f"in task {getattr(fn, '__name__', fn)!r}")

    async def _run(self, *, task_status: anyio.abc.TaskStatus = anyio.TASK_STATUS_IGNORED) -> None:
        """The processor's task: call ``start``, then feed ``process`` from the queue."""
        try:
            await self.start()
        except Exception as exc:
            await self._report(exc, "in start()")
            self._stopped = True
            task_status.started()
            return
        self._started = True
        for early, direction in self._early:
            await self._handle_system(early, direction)
        self._early.clear()
        task_status.started()
        queue = self._queue
        while True:
            item = queue.get_nowait()
            if item is None:
                item = await queue.get()
            frame, direction = item
            kind = frame.kind
            if kind is _DATA and 0 < frame.turn < self.turn:
                queue.stale += 1
                continue
            if type(frame) is EndFrame:
                await self._handle_end(frame)
                continue
            if self._stats is not None or self._stopped:
                self._busy = frame
                await self._call_process(frame, direction)
                self._busy = None
                continue
            # the hot path: _call_process inlined, one coroutine level less per hop
            self._busy = frame
            try:
                await self.process(frame, direction)
            except Exception as exc:
                await self._report(exc, f"while processing {type(frame).__name__}")
            self._busy = None

    async def _handle_end(self, frame: EndFrame) -> None:
        """Fan-in aware end of stream: stop once every input has ended, then pass it on."""
        self._ends_seen += 1
        if self._ends_seen < len(self._up):
            return
        await self._finish()
        await self.push(frame, _DOWN)
        self._ended.set()

    async def _finish(self) -> None:
        if self._stopped:
            return
        try:
            await self.stop()
        except Exception as exc:
            await self._report(exc, "in stop()")
        self._stopped = True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
