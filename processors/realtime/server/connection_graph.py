"""The per-connection graph of the local realtime server, loaded once and built per connection.

:class:`ConnectionGraphTemplate` loads and checks ``pipelines/realtime_server.yaml`` (or
another file of the same shape) when the server starts, so a broken file fails then, with
the loader's ``file:line`` messages. Each connection then gets a fresh :class:`Graph` from
the checked spec: the same processor classes with copies of the validated params, the same
links, bound to that connection's :class:`~.graph_io.ConnectionContext`. This skips the
YAML parse and the registry look-ups per connection: ``load_text`` of the shipped file takes
about 34 ms, :meth:`ConnectionGraphTemplate.build` about 0.1 ms (reference machine).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError, Problem
from pipeline.graph import Graph
from pipeline.loader import load
from pipelines import shipped

from .graph_io import ConnectionContext, ProtocolInput, ProtocolOutput, bind_connection

__all__ = ["CONNECTION_PIPELINE", "ConnectionGraphTemplate"]

#: The graph each connection runs, shipped with voxpipe.
CONNECTION_PIPELINE = shipped("realtime_server.yaml")


@dataclass(frozen=True)
class _NodeSpec:
    id: str
    cls: type
    params: Any
    type: str
    line: int | None
    queue_size: int
    drop_oldest: bool


class ConnectionGraphTemplate:
    """A checked connection pipeline: :meth:`build` makes one connection's graph from it.

    Raises :class:`~pipeline.errors.PipelineError` when the file is broken or lacks a
    ``realtime_server.input`` source or a ``realtime_server.output`` sink.
    """

    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else CONNECTION_PIPELINE
        graph = load(self.path)
        self.name, self.on_error = graph.name, graph.on_error
        kinds = {type(node.processor) for node in graph.nodes.values()}
        for needed, name in ((ProtocolInput, "realtime_server.input"), (ProtocolOutput, "realtime_server.output")):
            if needed not in kinds:
                raise PipelineError(Problem(f"the realtime server's connection graph has no {name!r} node",
                                            str(self.path), None, f"add `{{type: {name}}}` and link it"))
        self._nodes = [_NodeSpec(n, type(node.processor), node.processor.params, node.type, node.line,
                                 node.processor._queue.max_size, node.processor._queue.drop_oldest)
                       for n, node in graph.nodes.items()]
        self._links = [(link.src, link.dst, link.line) for link in graph.links]
        self.types = {spec.id: spec.type for spec in self._nodes}

    def build(self, context: ConnectionContext) -> Graph:
        """A new graph for one connection, checked, its processors bound to ``context``."""
        graph = Graph(name=self.name, file=str(self.path), on_error=self.on_error)
        for spec in self._nodes:
            proc = spec.cls(spec.params.model_copy(deep=True), name=spec.id)
            proc._queue.max_size = spec.queue_size
            proc._queue.drop_oldest = spec.drop_oldest
            graph.add(spec.id, proc, type=spec.type, line=spec.line)
        for src, dst, line in self._links:
            graph.link(src, dst, line=line)
        graph.check()
        bind_connection(graph, context)
        return graph
