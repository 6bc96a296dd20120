"""The per-connection graph of the local realtime server, loaded once and copied per connection.

:class:`ConnectionGraphTemplate` loads and checks ``pipelines/realtime_server.yaml`` (or
another file of the same shape) when the server starts, so a broken file fails then, with
the loader's ``file:line`` messages. Each connection then runs ``template.build()``, a
:meth:`~pipeline.graph.Graph.copy` of the checked graph (fresh processors, same links and
node settings, no YAML parse, no re-check), with :meth:`ConnectionGraphTemplate.session`
as its :class:`~pipeline.session.SessionContext`: the connection's
:class:`~.graph_io.ConnectionContext` rides in ``attachments["connection"]``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError, Problem
from pipeline.graph import Graph
from pipeline.loader import load
from pipeline.session import SessionContext
from pipelines import shipped

from .graph_io import CONNECTION, ConnectionContext, ProtocolInput, ProtocolOutput

__all__ = ["CONNECTION_PIPELINE", "ConnectionGraphTemplate"]

#: The graph each connection runs, shipped with voxpipe.
CONNECTION_PIPELINE = shipped("realtime_server.yaml")


class ConnectionGraphTemplate:
    """A checked connection pipeline: :meth:`build` copies it for one connection.

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
        self.graph = graph
        self.types = {n: node.type for n, node in graph.nodes.items()}

    def build(self) -> Graph:
        """A new graph for one connection: a copy of the checked template."""
        return self.graph.copy()

    @staticmethod
    def session(connection: ConnectionContext, **metadata: Any) -> SessionContext:
        """The session context of one connection (``metadata``: remote address and such)."""
        return SessionContext(metadata=metadata, attachments={CONNECTION: connection})
