"""Node: the runner's side of a processor (its queue, links, task, turn filter and state).

A :class:`~pipeline.processor.Processor` is the user's object: params, ``process``,
``push``. A :class:`Node` is the runner's: one per processor per run, it owns everything a
subclass must never be able to break by naming an attribute. The processor reaches its node
through one name-mangled attribute (``_Processor__node``); nothing else of the plumbing
lives in the processor's namespace.

Theory of operation
-------------------
* A **queued** node (the default) has a :class:`~pipeline.queue.FrameQueue` and one task
  that calls ``process`` for one frame at a time: ``process`` is never entered
  concurrently. Data and control frames join the back of the queue (a full queue blocks
  the pusher or drops the oldest data frame, by policy). A **system** frame joins the
  *front* of the queue (behind earlier system frames): it is never dropped and never
  blocks the pusher, and the processor's task runs it next, once the current ``process``
  call has returned.
* An :class:`InterruptionFrame` of a newer turn raises the node's turn and purges queued
  data frames of older turns at once, on arrival, in the pusher's task (plumbing only: no
  user code runs there). From then on data frames of older turns are dropped as they
  arrive or leave the queue (turn 0 belongs to no turn and always passes).
* An **inline** node has no task of its own once started: ``push`` calls its ``process``
  directly in the pusher's task, system frames included. Inline processors must not await
  anything but ``push``.
* Frames pushed to a node that has not started yet wait in its queue (system frames at the
  front); its task feeds them to ``process`` right after ``start()`` returns.
* The end of stream (:class:`EndFrame`) is fan-in aware: a node stops (calls ``stop()``)
  once every input has ended, then passes the end on. Frames pushed to a stopped node are
  dropped on arrival (a sink that drains its playback after the end still reports progress
  upstream: those reports used to pile up in an ended inline node's queue).
* Every exception raised by user code (``start``, ``process``, ``stop``, ``produce``, a
  spawned task) is caught here and reported once: an :class:`ErrorFrame` for the runner and
  one short log paragraph (the full traceback at DEBUG).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
import traceback
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import anyio

from .frames import Direction, EndFrame, ErrorFrame, Frame, FrameKind, InterruptionFrame
from .queue import FrameQueue

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from .clock import MediaClock
    from .metrics import LatencyHistogram
    from .processor import Processor
    from .session import SessionContext

__all__ = ["Node"]

log = logging.getLogger("voxpipe.node")

_DOWN = Direction.DOWNSTREAM
_SYSTEM = FrameKind.SYSTEM
_DATA = FrameKind.DATA

_TAKES_LINK: dict[Any, bool] = {}  # keyed by the process function itself, so a patched class is seen anew
_FRAMEWORK_DIR = os.path.dirname(os.path.abspath(__file__))
_LIBRARY_DIRS = (os.path.dirname(os.__file__), os.path.dirname(os.path.dirname(anyio.__file__)))


def takes_link(cls: type) -> bool:
    """Whether ``cls.process`` takes a third named positional parameter (the link); cached.

    ``*args`` does not count: a wrapper that forwards its arguments gets the usual two.
    """
    fn = cls.process
    try:
        return _TAKES_LINK[fn]
    except (KeyError, TypeError):
        pass
    positional = 0
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        for p in sig.parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                positional += 1
    result = positional >= 4  # self, frame, direction, link
    try:
        _TAKES_LINK[fn] = result
    except TypeError:
        pass
    return result


class Node:
    """One processor in one run: queue, links, task, turn filter, state, errors and stats.

    Built by the :class:`~pipeline.runner.Runner` from a graph's node spec; ``id`` is the
    node id, ``type`` the registered type name. ``down`` / ``up`` are the neighbour nodes.
    """

    __slots__ = (
        "id", "type", "processor", "process", "takes_link", "queue", "inline", "direct", "down", "up",
        "routes_down", "routes_up", "turn", "started", "stopped", "ended", "ends_seen", "cancelled", "running", "busy", "stats",
        "task_group", "on_error", "clock", "context",
    )

    def __init__(self, node_id: str, processor: Processor, *, type: str = "", queue_size: int | None = None,
                 drop_oldest: bool | None = None, inline: bool | None = None,
                 clock: MediaClock | None = None, context: SessionContext | None = None,
                 stats: LatencyHistogram | None = None,
                 on_error: Callable[[ErrorFrame], Awaitable[None]] | None = None) -> None:
        cls = type_ = processor.__class__
        self.id = node_id
        self.type = type or f"{type_.__module__}:{type_.__qualname__}"
        self.processor = processor
        self.process = processor.process
        self.takes_link = takes_link(cls)
        self.queue = FrameQueue(cls.queue_size if queue_size is None else queue_size,
                                drop_oldest=cls.drop_oldest if drop_oldest is None else drop_oldest)
        self.inline = cls.inline if inline is None else inline
        self.direct = False  # inline, started and its early queue drained: push calls process directly
        self.down: list[Node] = []
        self.up: list[Node] = []
        # what push does per neighbour, one [target, process, queue, link] per link; see route()
        self.routes_down: tuple[list, ...] = ()
        self.routes_up: tuple[list, ...] = ()
        self.turn = 0
        self.started = False
        self.stopped = False
        self.ended = anyio.Event()
        self.ends_seen = 0
        self.cancelled = False
        self.running = False
        self.busy: Frame | None = None
        self.stats = stats
        self.task_group: TaskGroup | None = None
        self.on_error = on_error
        self.clock = clock
        self.context = context

    # --- routes: push's per-neighbour plan, rebuilt when a neighbour's state changes ---------

    def route(self, target: Node) -> list:
        """How ``push`` hands a data frame from this node to ``target``: ``[target, process, queue, link]``.

        ``process`` set: an inline target that calls it directly (the link already bound);
        ``queue`` set: a queued target whose queue takes the frame (``link`` is the sender's
        id when the target takes links); neither: ``target.receive``, the general path.
        """
        if target.stopped:  # receive drops what a stopped node would never process
            return [target, None, None, None]
        if not target.direct:
            return [target, None, target.queue, self.id if target.takes_link else None]
        if target.stats is not None:
            return [target, None, None, None]
        process = target.process
        if target.takes_link:
            def process(frame: Frame, direction: Direction, _process: Any = process, _link: str = self.id) -> Any:
                return _process(frame, direction, _link)
        return [target, process, None, None]

    def link_routes(self) -> None:
        """Rebuild this node's routes (after its links or a neighbour's state changed).

        The old routes are turned to the general path in place: a push that is iterating
        over them (it awaited a full queue meanwhile) then asks ``receive``, which reads
        the targets' state as it is now.
        """
        for old in self.routes_down + self.routes_up:
            old[1] = old[2] = None
        route = self.route
        self.routes_down = tuple(route(t) for t in self.down)
        self.routes_up = tuple(route(t) for t in self.up)

    def changed(self) -> None:
        """This node's ``direct`` or ``stopped`` changed: rebuild the routes of its neighbours."""
        for n in self.up:
            n.link_routes()
        for n in self.down:
            n.link_routes()

    def set_direct(self, direct: bool) -> None:
        if self.direct is not direct:
            self.direct = direct
            self.changed()

    # --- frames in ---------------------------------------------------------------------------

    async def receive(self, frame: Frame, direction: Direction, sender: Node | None) -> None:
        """Take a frame pushed by ``sender`` (None: injected by the runner).

        A node that has stopped takes only the end of stream: anything else would wait in a
        queue no task reads any more (an inline node's, once it ended) or be skipped unread.
        """
        if self.stopped and type(frame) is not EndFrame:
            return
        kind = frame.kind
        if kind is _SYSTEM:
            if type(frame) is InterruptionFrame and frame.turn > self.turn:
                self.turn = frame.turn
                self.queue.purge_stale(frame.turn)
            if self.direct:
                await self.call(frame, direction, sender)
            else:
                self.queue.put_front(frame, direction, sender.id if sender is not None else None)
            return
        if kind is _DATA and 0 < frame.turn < self.turn:
            self.queue.stale += 1
            return
        if self.direct:
            if type(frame) is EndFrame:
                await self.handle_end(frame)
            else:
                await self.call(frame, direction, sender)
            return
        link = sender.id if sender is not None else None
        queue = self.queue
        if not queue.put_nowait(frame, direction, link):
            await queue.put(frame, direction, link)

    async def call(self, frame: Frame, direction: Direction, sender: Node | None) -> None:
        """Run ``process`` for one frame, timing it when stats are on; report what it raises."""
        if self.stopped:
            return
        try:
            if self.stats is None:
                if self.takes_link:
                    await self.process(frame, direction, sender.id if sender is not None else None)
                else:
                    await self.process(frame, direction)
            else:
                t0 = time.perf_counter()
                if self.takes_link:
                    await self.process(frame, direction, sender.id if sender is not None else None)
                else:
                    await self.process(frame, direction)
                self.stats.add(time.perf_counter() - t0)
        except Exception as exc:  # a processor's bug must not kill its task silently
            await self.report(exc, f"while processing {type(frame).__name__}")

    async def send(self, frame: Frame, direction: Direction) -> None:
        """Hand ``frame`` to every neighbour in ``direction`` (what ``Processor.push`` does)."""
        for target in self.down if direction is _DOWN else self.up:
            await target.receive(frame, direction, self)

    # --- the task ----------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus = anyio.TASK_STATUS_IGNORED) -> None:
        """The node's task: call ``start``, then feed ``process`` from the queue."""
        try:
            await self.processor.start()
        except Exception as exc:
            await self.report(exc, "in start()")
            self.stopped = True
            self.changed()
            task_status.started()
            return
        self.started = True
        task_status.started()
        queue = self.queue
        if self.inline:  # feed what waited for start(), then let push call process directly
            while True:
                item = queue.get_nowait()
                if item is None:
                    self.set_direct(True)
                    return
                await self._one(*item)
        process = self.process
        slow = self.stats is not None or self.takes_link
        # FrameQueue.get_nowait and .wait written out (this loop runs once per hop): the
        # queue's deques are never replaced, so they can be held here
        front, items, putters = queue._front, queue._items, queue._putters
        create_future = asyncio.get_running_loop().create_future
        while True:
            if front:
                frame, direction, link = front.popleft()
            elif items:
                frame, direction, link = items.popleft()
                if putters:
                    queue.wake_putter()
            else:
                queue._getter = getter = create_future()
                await getter  # completed by the next put
                continue
            if 0 < frame.turn < self.turn and frame.kind is _DATA:
                queue.stale += 1
                continue
            if slow or self.stopped or type(frame) is EndFrame:
                await self._one(frame, direction, link)
                continue
            # the hot path: call() inlined, one coroutine level less per hop
            self.busy = frame
            try:
                await process(frame, direction)
            except Exception as exc:
                await self.report(exc, f"while processing {type(frame).__name__}")
            self.busy = None

    async def _one(self, frame: Frame, direction: Direction, link: str | None) -> None:
        if frame.kind is _DATA and 0 < frame.turn < self.turn:
            self.queue.stale += 1
            return
        if type(frame) is EndFrame:
            await self.handle_end(frame)
            return
        self.busy = frame
        if self.stopped:
            pass
        elif self.stats is None and not self.takes_link:
            try:
                await self.process(frame, direction)
            except Exception as exc:
                await self.report(exc, f"while processing {type(frame).__name__}")
        else:
            sender = _LinkId(link) if link is not None else None
            await self.call(frame, direction, sender)  # type: ignore[arg-type]
        self.busy = None

    async def handle_end(self, frame: EndFrame) -> None:
        """Fan-in aware end of stream: stop once every input has ended, then pass it on."""
        self.ends_seen += 1
        if self.ends_seen < len(self.up):
            return
        await self.finish()
        await self.send(frame, _DOWN)
        self.set_direct(False)
        self.ended.set()

    async def finish(self) -> None:
        """Call ``stop()`` once (reporting what it raises)."""
        if self.stopped:
            return
        try:
            await self.processor.stop()
        except Exception as exc:
            await self.report(exc, "in stop()")
        self.stopped = True
        self.changed()

    async def produce(self) -> None:
        """Run a source's ``produce()`` (unless its start failed), reporting what it raises."""
        try:
            if not self.stopped:
                await self.processor.produce()
        except Exception as exc:
            await self.report(exc, "in produce()")

    def spawn(self, fn: Callable[..., Awaitable[Any]], args: tuple) -> None:
        """Run ``fn(*args)`` in the graph's task group, reporting what it raises."""
        if self.task_group is None:
            raise RuntimeError(f"{self.id}: spawn() needs a running graph (call it from start() or later)")
        self.task_group.start_soon(self._guarded, fn, args)

    async def _guarded(self, fn: Callable[..., Awaitable[Any]], args: tuple) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            await self.report(exc, f"in task {getattr(fn, '__name__', fn)!r}")

    # --- errors and statistics -----------------------------------------------------------------

    async def report(self, exc: BaseException, where: str) -> None:
        """Log one short paragraph about ``exc`` and hand an ErrorFrame to the runner."""
        message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        at = raised_at(exc)
        log.error("processor %r (%s) failed %s: %s%s", self.id, self.type, where, message,
                  f"\n  raised at {at}" if at else "")
        log.debug("traceback of the failure of %r %s", self.id, where, exc_info=exc)
        if self.on_error is not None:
            await self.on_error(ErrorFrame(message, processor=self.id, fatal=True, exception=exc))

    def statistics(self) -> dict[str, Any]:
        """Queue size, high-water mark, dropped and stale counts, and latency figures when stats are on."""
        q = self.queue.statistics()
        out: dict[str, Any] = {"queued": q.size, "max_size": q.max_size, "dropped": q.dropped, "stale": q.stale,
                               "high_water": q.high_water}
        if self.stats is not None:
            out.update(self.stats.summary())
        return out

    def __repr__(self) -> str:
        return f"<Node {self.id!r} {self.type}>"


class _LinkId:
    """Stands in for a sender node when only its id is known (a frame that was queued)."""

    __slots__ = ("id",)

    def __init__(self, node_id: str) -> None:
        self.id = node_id


def raised_at(exc: BaseException) -> str | None:
    """``file:line in function`` of the innermost traceback entry in user code.

    User code is anything outside the framework's plumbing, the standard library and anyio;
    when the whole traceback is library code, the innermost entry is named.
    """
    entries = traceback.extract_tb(exc.__traceback__)
    if not entries:
        return None
    chosen = entries[-1]
    for entry in reversed(entries):
        path = os.path.abspath(entry.filename)
        if os.path.dirname(path) == _FRAMEWORK_DIR and os.path.basename(path) in ("node.py", "processor.py"):
            continue
        if path.startswith(_LIBRARY_DIRS) or "site-packages" in path:
            continue
        chosen = entry
        break
    path = chosen.filename
    try:
        rel = os.path.relpath(path)
        path = path if rel.startswith("..") else rel
    except ValueError:
        pass
    return f"{path}:{chosen.lineno} in {chosen.name}"
