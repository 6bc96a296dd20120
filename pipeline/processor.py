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

Which input
-----------
A processor with several inputs can tell which link a frame came from: if its ``process``
takes a third positional parameter, it is called as ``process(frame, direction, link)``,
where ``link`` is the id of the neighbour node that pushed the frame (the upstream
neighbour for downstream frames, the downstream neighbour for upstream frames; None for a
frame the runner injected). The signature is inspected once per class, not per frame.
``inputs`` (ids of the nodes that feed this one downstream) and ``outputs`` are readable
from ``start()`` on.

When ``process`` runs
---------------------
The runner wraps each processor in a :class:`~pipeline.node.Node` that owns its queue,
links, task, turn filter and statistics (see that module for the theory of operation):

* a queued processor (the default) runs ``process`` in its own task, one frame at a time;
  it is never entered concurrently. A system frame jumps to the front of the queue and is
  processed next, after the current ``process`` call returns;
* an inline processor (``inline = True``) runs ``process`` in the pusher's task, system
  frames included; it must not await anything but ``push``;
* frames pushed before ``start()`` has returned wait in the queue.

A processor that receives an :class:`InterruptionFrame` of a newer turn has its turn raised
and its queued data frames of older turns purged at once; data frames of older turns still
in flight are dropped (frames of turn 0 belong to no turn and always pass). ``turn`` reads
the current one.

A processor with no inputs is a source: override :meth:`produce`; when it returns, the
runner ends the stream there. An exception in any of these methods (or in a task started
with :meth:`spawn`) becomes an :class:`ErrorFrame` and one log paragraph naming the node;
the graph's policy (``on_error``) decides whether the run stops.

A processor instance is in at most one running graph at a time; :meth:`clone` makes a fresh
one with the same params (what ``Graph.copy()`` uses per session).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar

from pydantic import BaseModel, ConfigDict

from .frames import AudioFormat, Direction, EndFrame, Frame, FrameKind

if TYPE_CHECKING:
    from .clock import MediaClock
    from .node import Node
    from .session import SessionContext

__all__ = ["Processor"]

_DOWN = Direction.DOWNSTREAM
_SYSTEM = FrameKind.SYSTEM
_DATA = FrameKind.DATA


class _NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Processor:
    """A graph's unit of work: receives frames in ``process`` and sends them on with ``push``.

    Class attributes tune the plumbing (a YAML node may override them): ``queue_size`` and
    ``drop_oldest`` set the input queue's bound and policy, ``inline`` runs ``process`` in
    its pusher's task (for tiny work that never awaits anything but ``push``).
    ``input_format`` / ``output_format`` declare audio caps. If ``process`` takes a third
    positional parameter it receives the id of the link (neighbour node) the frame came
    from. Everything else the runner keeps in the processor's node, out of reach of
    subclasses.
    """

    Params: ClassVar[type[BaseModel]] = _NoParams
    queue_size: ClassVar[int] = 256
    drop_oldest: ClassVar[bool] = False
    inline: ClassVar[bool] = False
    #: Audio this processor accepts on its input (None: any audio, or no audio at all).
    input_format: ClassVar[AudioFormat | None] = None
    #: True when ``process`` takes G.711-coded audio frames (``AudioFrame.codec`` set) itself
    #: or passes them on untouched; the graph check puts a decoder in front of every other.
    accepts_g711: ClassVar[bool] = False
    __node: Node | None = None  # the runner's side; one mangled name no subclass can shadow

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        if params is None:
            params = self.Params()
        elif isinstance(params, dict):
            params = self.Params(**params)
        self.params = params
        self.name = name or type(self).__name__
        self.log = logging.getLogger(f"voxpipe.{self.name}")
        self.__node: Node | None = None

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

    def clone(self) -> Processor:
        """A fresh processor with a deep copy of these params (one per session).

        A subclass whose constructor takes more than ``(params, name=)`` overrides this.
        """
        return type(self)(self.params.model_copy(deep=True), name=self.name)

    # --- what subclasses call -------------------------------------------------------------

    async def push(self, frame: Frame, direction: Direction = _DOWN) -> None:
        """Send ``frame`` to every neighbour in ``direction`` (downstream by default).

        Outside a graph (a processor driven by hand, as a DSP benchmark does) it goes nowhere.
        """
        node = self.__node
        if node is None:
            return
        if frame.kind is not _DATA:  # system and control frames: the general path, per target
            for target in node.down if direction is _DOWN else node.up:
                await target.receive(frame, direction, node)
            return
        # The hot path: a data frame, one precomputed route per target (Node.route), so
        # that no per-frame test asks what kind of target it is.
        turn = frame.turn
        if 0 < turn < node.turn:  # made before an interruption this node has seen
            node.queue.stale += 1
            return
        for target, process, queue, link in node.routes_down if direction is _DOWN else node.routes_up:
            if 0 < turn < target.turn:  # stale for the target (turn 0 always passes)
                target.queue.stale += 1
            elif process is not None:  # inline: process here, in this task
                try:
                    await process(frame, direction)
                except Exception as exc:
                    await target.report(exc, f"while processing {type(frame).__name__}")
            elif queue is not None:  # queued: await only when the queue is full
                if not queue.put_nowait(frame, direction, link):
                    await queue.put(frame, direction, link)
            else:
                await target.receive(frame, direction, node)

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``fn(*args)`` as a task owned by the graph; it is cancelled when the graph stops."""
        node = self.__node
        if node is None or node.task_group is None:
            raise RuntimeError(f"{self.name}: spawn() needs a running graph (call it from start() or later)")
        node.spawn(fn, args)

    @property
    def cancelled(self) -> bool:
        """True when the graph is being cancelled: ``stop()`` should release, not drain."""
        node = self.__node
        return node is not None and node.cancelled

    @property
    def turn(self) -> int:
        """The current turn: raised by each InterruptionFrame of a newer turn (0 before any)."""
        node = self.__node
        return node.turn if node is not None else 0

    @property
    def clock(self) -> MediaClock | None:
        """The run's media clock (None outside a run)."""
        node = self.__node
        return node.clock if node is not None else None

    @property
    def context(self) -> SessionContext:
        """The session this run belongs to (an empty default context outside a session)."""
        node = self.__node
        if node is None or node.context is None:
            from .session import EMPTY_CONTEXT

            return EMPTY_CONTEXT
        return node.context

    @property
    def inputs(self) -> list[str]:
        """Ids of the nodes whose downstream frames come in here; valid from ``start()`` on."""
        return [n.id for n in self.__linked().up]

    @property
    def outputs(self) -> list[str]:
        """Ids of the nodes this one pushes downstream frames to; valid from ``start()`` on."""
        return [n.id for n in self.__linked().down]

    def statistics(self) -> dict[str, Any]:
        """Queue size, high-water mark, dropped and stale counts, and latency figures when stats are on."""
        node = self.__node
        if node is None:
            return {"queued": 0, "max_size": self.queue_size, "dropped": 0, "stale": 0, "high_water": 0}
        return node.statistics()

    def __linked(self) -> Node:
        node = self.__node
        if node is None:
            raise RuntimeError(f"{self.name}: inputs and outputs are known from start() on, in a running graph")
        return node

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def attach(processor: Processor, node: Node | None) -> Node | None:
    """Point ``processor`` at its runtime node (the runner's side); returns the previous one."""
    old = processor._Processor__node  # type: ignore[attr-defined]
    processor._Processor__node = node  # type: ignore[attr-defined]
    return old


def node_of(processor: Processor) -> Node | None:
    """The runtime node of ``processor`` (None when it was never run)."""
    return processor._Processor__node  # type: ignore[attr-defined]
