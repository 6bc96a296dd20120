"""Runner: runs a checked graph in one task group, and always stops it within a deadline.

Theory of operation
-------------------
1. Every processor's task is started with ``tg.start`` sinks first, so ``start()`` has
   run everywhere before a source pushes its first frame. System frames a processor
   pushes from ``start()`` are held by neighbours that have not started yet.
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

__all__ = ["RunResult", "Runner", "run"]

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
    """Runs one graph: ``await Runner(graph).run()``; ``end()`` drains, ``cancel()`` stops."""

    def __init__(
        self,
        graph: Graph,
        *,
        realtime: bool = True,
        stats: bool = False,
        stop_timeout_s: float = 2.0,
        on_error: str | None = None,
    ) -> None:
        self.graph = graph
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

    async def run(self) -> RunResult:
        """Run the graph until it has drained, failed or been cancelled."""
        for p in self.processors:
            p.clock = self.clock
            p._on_error = self._on_error
            p._stats = LatencyHistogram() if self.stats else None
        hung: list[str] = []
        async with anyio.create_task_group() as tg:
            for p in self.processors:
                p._task_group = tg
            for p in reversed(self.processors):
                await tg.start(p._run)
            self.clock.start()
            sources = [self.graph.nodes[n].processor for n in self.graph.sources()]
            for s in sources:
                scope = anyio.CancelScope()
                self._source_scopes.append(scope)
                tg.start_soon(self._run_source, s, scope)
            tg.start_soon(self._watch_end)
            await self._stop_now.wait()
            if self._reason != "end":
                hung = await self._stop_all()
            tg.cancel_scope.cancel()
        result = RunResult(
            ok=self._reason != "error",
            ended=self._reason or "end",
            errors=list(self.errors),
            stats={p.name: p.statistics() for p in self.processors},
            hung=hung,
        )
        return result

    async def _run_source(self, source, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                if not source._stopped:  # a source whose start() failed produces nothing
                    await source.produce()
            except Exception as exc:
                await source._report(exc, "in produce()")
        if not source._ended.is_set():  # the end follows even a failure (policy `continue`)
            await source._handle_end(EndFrame())

    async def _watch_end(self) -> None:
        for p in self.processors:
            await p._ended.wait()
        if self._reason is None:
            self._reason = "end"
        self._stop_now.set()

    async def _stop_all(self) -> list[str]:
        """Call every pending ``stop()`` within the deadline; return who was still busy."""
        for scope in self._source_scopes:
            scope.cancel()
        pending = [p for p in self.processors if not p._stopped]
        with anyio.move_on_after(self.stop_timeout_s) as scope:
            for p in pending:
                p._cancelled = True
                p._down, p._up = [], []  # pushes from stop() on a cancel go nowhere
                await p._finish()
        busy = [p.name for p in self.processors if p._busy is not None or not p._stopped]
        if scope.cancelled_caught:
            log.warning("stop passed %.1fs; cancelling %s", self.stop_timeout_s, ", ".join(busy) or "nothing")
        elif busy:
            log.info("cancelling %s while busy", ", ".join(busy))
        return busy


async def run(graph: Graph, *, realtime: bool = True, stats: bool = False, handle_signals: bool = False,
              stop_timeout_s: float = 2.0) -> RunResult:
    """Run ``graph`` to the end. With ``handle_signals``, Ctrl-C ends it gracefully, twice cancels."""
    runner = Runner(graph, realtime=realtime, stats=stats, stop_timeout_s=stop_timeout_s)
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
