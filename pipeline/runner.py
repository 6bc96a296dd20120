"""Runner: runs a checked graph in one task group, and always stops it within a deadline.

Theory of operation
-------------------
0. The runner builds one :class:`~pipeline.node.Node` per node spec of the graph (queue,
   links, state) and points each processor at it; ``processor.context`` is the run's
   :class:`~pipeline.session.SessionContext`. A processor already running in another graph
   is refused (copy the graph per session instead).
1. Every node's task is started with ``tg.start`` sinks first, so ``start()`` has
   run everywhere before a source pushes its first frame. Frames a processor pushes
   from ``start()`` wait in the queues of neighbours that have not started yet.
2. Sources run ``produce()``; when it returns (or :meth:`Runner.end` is called) an
   :class:`EndFrame` follows the data. Each processor drains in order, calls ``stop()``
   once every input has ended and passes the end on. When every processor has ended the
   run is over: a graceful end has no deadline, the data decides how long it takes.
3. A fatal error (policy ``on_error: stop``) or :meth:`Runner.cancel` stops the graph at
   once: ``stop()`` hooks get ``stop_timeout_s`` in all, then the task group is cancelled.
   Whatever was still busy is named in the log and in the result.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import anyio

from .clock import MediaClock
from .frames import EndFrame, ErrorFrame
from .graph import Graph
from .metrics import LatencyHistogram
from .node import Node
from .processor import attach, node_of
from .session import SessionContext

__all__ = ["RunResult", "Runner", "run", "stop_signal"]

log = logging.getLogger("voxpipe.runner")


@dataclass
class RunResult:
    """How a run ended: ``ok`` unless a fatal error stopped it; stats per processor."""

    ok: bool
    ended: str  # "end" (drained), "cancel" (asked), "error" (fatal error)
    errors: list[ErrorFrame] = field(default_factory=list)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    hung: list[str] = field(default_factory=list)


class Runner:
    """Runs one graph: ``await Runner(graph, context=...).run()``; ``end()`` drains, ``cancel()`` stops.

    ``context`` is the session the run belongs to (``processor.context``); without one the
    run gets a fresh empty :class:`~pipeline.session.SessionContext`.
    """

    def __init__(
        self,
        graph: Graph,
        *,
        realtime: bool = True,
        stats: bool = False,
        stop_timeout_s: float = 2.0,
        on_error: str | None = None,
        context: SessionContext | None = None,
    ) -> None:
        self.graph = graph
        self.context = context if context is not None else SessionContext()
        self.clock = MediaClock(realtime=realtime)
        self.stats = stats
        self.stop_timeout_s = stop_timeout_s
        self.on_error = on_error or graph.on_error
        self.errors: list[ErrorFrame] = []
        self._reason: str | None = None
        self._stop_now = anyio.Event()
        self._source_scopes: list[anyio.CancelScope] = []
        self._order = graph.topological()
        self.processors = [graph.nodes[n].processor for n in self._order]
        self.nodes: list[Node] = []

    async def _on_error(self, frame: ErrorFrame) -> None:
        self.errors.append(frame)
        if frame.fatal and self.on_error == "stop" and self._reason is None:
            log.error("stopping pipeline %r: %s failed", self.graph.name, frame.processor)
            self._reason = "error"
            self._stop_now.set()

    def end(self) -> None:
        """Graceful end: stop the sources; what is in flight drains, then the graph stops."""
        for scope in self._source_scopes:
            scope.cancel()

    def cancel(self) -> None:
        """Stop now: ``stop()`` hooks get the deadline, then every task is cancelled."""
        if self._reason is None:
            self._reason = "cancel"
        self._stop_now.set()

    def _build_nodes(self) -> list[Node]:
        graph = self.graph
        if not graph.checked:
            graph.check()
        for p in self.processors:
            old = node_of(p)
            if old is not None and old.running:
                raise RuntimeError(f"processor {p.name!r} ({type(p).__name__}) is already running in another graph; "
                                   "a processor instance runs in one graph at a time: run a graph.copy() per session")
        nodes: dict[str, Node] = {}
        for n in self._order:
            spec = graph.nodes[n]
            nodes[n] = Node(n, spec.processor, type=spec.type, queue_size=spec.queue_size,
                            drop_oldest=spec.drop_oldest, inline=spec.inline, clock=self.clock, context=self.context,
                            stats=LatencyHistogram() if self.stats else None, on_error=self._on_error)
        for link in graph.links:
            a, b = nodes[link.src], nodes[link.dst]
            a.down.append(b)
            b.up.append(a)
        for node in nodes.values():
            node.link_routes()
            node.running = True
            attach(node.processor, node)
        return [nodes[n] for n in self._order]

    async def run(self) -> RunResult:
        """Run the graph until it has drained, failed or been cancelled."""
        self.nodes = nodes = self._build_nodes()
        hung: list[str] = []
        try:
            async with anyio.create_task_group() as tg:
                for node in nodes:
                    node.task_group = tg
                for node in reversed(nodes):
                    await tg.start(node.run)
                self.clock.start()
                by_id = {node.id: node for node in nodes}
                for n in self.graph.sources():
                    scope = anyio.CancelScope()
                    self._source_scopes.append(scope)
                    tg.start_soon(self._run_source, by_id[n], scope)
                tg.start_soon(self._watch_end)
                await self._stop_now.wait()
                if self._reason != "end":
                    hung = await self._stop_all()
                tg.cancel_scope.cancel()
        finally:
            for node in nodes:
                node.running = False
                node.task_group = None
        return RunResult(
            ok=self._reason != "error",
            ended=self._reason or "end",
            errors=list(self.errors),
            stats={node.id: _statistics(node) for node in nodes},
            hung=hung,
        )

    async def _run_source(self, source: Node, scope: anyio.CancelScope) -> None:
        with scope:
            await source.produce()
        if not source.ended.is_set():  # the end follows even a failure (policy `continue`)
            await source.handle_end(EndFrame())

    async def _watch_end(self) -> None:
        for node in self.nodes:
            await node.ended.wait()
        if self._reason is None:
            self._reason = "end"
        self._stop_now.set()

    async def _stop_all(self) -> list[str]:
        """Call every pending ``stop()`` within the deadline; return who was still busy."""
        for scope in self._source_scopes:
            scope.cancel()
        pending = [node for node in self.nodes if not node.stopped]
        with anyio.move_on_after(self.stop_timeout_s) as scope:
            for node in pending:
                node.cancelled = True
                node.set_direct(False)
                node.down, node.up = [], []  # pushes from stop() on a cancel go nowhere
                node.link_routes()
                await node.finish()
        busy = [node.id for node in self.nodes if node.busy is not None or not node.stopped]
        if scope.cancelled_caught:
            log.warning("stop passed %.1fs; cancelling %s", self.stop_timeout_s, ", ".join(busy) or "nothing")
        elif busy:
            log.info("cancelling %s while busy", ", ".join(busy))
        return busy


def _statistics(node: Node) -> dict[str, Any]:
    try:
        return node.processor.statistics()
    except Exception as exc:  # a subclass's statistics() must not lose the run's result
        log.error("processor %r (%s): statistics() failed: %s: %s", node.id, node.type, type(exc).__name__, exc)
        return node.statistics()


async def run(graph: Graph, *, realtime: bool = True, stats: bool = False, handle_signals: bool = False,
              stop_timeout_s: float = 2.0, context: SessionContext | None = None) -> RunResult:
    """Run ``graph`` to the end. With ``handle_signals``, Ctrl-C ends it gracefully, twice cancels."""
    runner = Runner(graph, realtime=realtime, stats=stats, stop_timeout_s=stop_timeout_s, context=context)
    if not handle_signals:
        return await runner.run()
    result: RunResult | None = None
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                presses = 0
                async for _ in signals:
                    presses += 1
                    if presses == 1:
                        log.warning("interrupted: ending the pipeline (press Ctrl-C again to cancel)")
                        runner.end()
                    else:
                        runner.cancel()

        tg.start_soon(watch_signals)
        result = await runner.run()
        tg.cancel_scope.cancel()
    return result


async def stop_signal() -> signal.Signals:
    """Wait for SIGINT or SIGTERM and return which: how a server stops cleanly, not by a traceback.

    ``voxpipe realtime-server`` and ``voxpipe serve`` await it in place of sleeping forever,
    then leave their ``async with``, which closes every connection (1001) within its
    deadline; the process exits 0 either way, as a supervisor (systemd, Kubernetes) expects.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.warning("%s: closing every connection, then exiting", signal.Signals(signum).name)
            return signal.Signals(signum)
    raise RuntimeError("the signal receiver ended")  # pragma: no cover - it never does
