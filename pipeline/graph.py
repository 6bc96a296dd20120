"""Graph: processors joined by links, checked before anything runs.

Downstream links must form a DAG (fan-out: a frame goes to each output; fan-in: a node
takes several inputs). Upstream frames retrace the same links backwards. ``check()``
rejects cycles, unlinked nodes and audio format mismatches; with ``auto_resample`` a
mismatch is repaired by inserting an ``audio.resample`` node, which ``to_mermaid()``
shows like any other.

A checked graph is a template: :meth:`Graph.copy` makes a new graph of fresh processors
(``Processor.clone()``) with the same links, node settings and formats, without parsing or
checking again, which is how each session (a call, a browser tab, a server connection)
gets its own; :meth:`Graph.replace` and :meth:`Graph.insert` edit a copy and re-check it.
The runtime side of each node (queue, links, task) is built by the runner from the
:class:`NodeSpec` (see :mod:`pipeline.node`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .errors import PipelineError, Problem
from .frames import CODED, AudioFormat
from .processor import Processor

__all__ = ["Graph", "NodeSpec"]


@dataclass
class NodeSpec:
    """A processor in a graph, its per-node settings and the YAML facts used in messages.

    ``queue_size`` / ``drop_oldest`` / ``inline`` override the processor class's defaults
    for this node (None: the class's); the runner builds the node's queue from them.
    """

    id: str
    processor: Processor
    type: str = ""
    line: int | None = None
    inserted: bool = False  # added by auto_resample
    queue_size: int | None = None
    drop_oldest: bool | None = None
    inline: bool | None = None


@dataclass
class _Link:
    src: str
    dst: str
    line: int | None = None


@dataclass
class Graph:
    """A named set of nodes and downstream links; build it in Python or load it from YAML."""

    name: str = "pipeline"
    file: str | None = None
    auto_resample: bool = False
    on_error: str = "stop"
    nodes: dict[str, NodeSpec] = field(default_factory=dict)
    links: list[_Link] = field(default_factory=list)
    formats: dict[str, AudioFormat | None] = field(default_factory=dict)
    checked: bool = field(default=False, compare=False)

    def add(self, node_id: str, processor: Processor, *, type: str = "", line: int | None = None,
            queue_size: int | None = None, drop_oldest: bool | None = None, inline: bool | None = None) -> Processor:
        """Add ``processor`` under ``node_id`` (with optional per-node queue settings) and return it."""
        if node_id in self.nodes:
            raise PipelineError(Problem(f"duplicate node id {node_id!r}", self.file, line, "give each processor its own id"))
        if queue_size is not None and queue_size < 1:
            raise PipelineError(Problem(f"processor {node_id!r}: queue_size must be at least 1, got {queue_size}", self.file, line))
        processor.name = node_id
        self.nodes[node_id] = NodeSpec(node_id, processor, type or type_name(processor), line,
                                       queue_size=queue_size, drop_oldest=drop_oldest, inline=inline)
        self.checked = False
        return processor

    def link(self, *ids: str, line: int | None = None) -> None:
        """Link ``a -> b -> c`` downstream."""
        for a, b in zip(ids, ids[1:]):
            self.links.append(_Link(a, b, line))
        self.checked = False

    @classmethod
    def chain(cls, *processors: Processor, name: str = "chain") -> Graph:
        """A straight line of processors, ids taken from their names (made unique)."""
        g = cls(name=name)
        ids = []
        for p in processors:
            base = p.name or type(p).__name__
            node_id, n = base, 1
            while node_id in g.nodes:
                n += 1
                node_id = f"{base}{n}"
            g.add(node_id, p)
            ids.append(node_id)
        if len(ids) > 1:
            g.link(*ids)
        return g

    # --- sessions: copies of a checked template --------------------------------------------

    def copy(self) -> Graph:
        """A new graph of fresh processors (``clone()``), same links, node settings and formats.

        Cheap: no YAML, no registry, no re-check when this graph was checked. Run one copy
        per session; a processor instance runs in one graph at a time.
        """
        nodes = {}
        for n, spec in self.nodes.items():
            proc = spec.processor.clone()
            proc.name = n
            nodes[n] = replace(spec, processor=proc)
        return Graph(name=self.name, file=self.file, auto_resample=self.auto_resample, on_error=self.on_error,
                     nodes=nodes, links=[replace(l) for l in self.links], formats=dict(self.formats),
                     checked=self.checked)

    def replace(self, node_id: str, processor: Processor, *, type: str | None = None) -> Graph:
        """Put ``processor`` in place of node ``node_id`` (same links and settings); re-check.

        Edits this graph (use it on a copy) and returns it, so calls chain.
        """
        if node_id not in self.nodes:
            from .loader import suggest

            raise PipelineError(Problem(f"replace: no node {node_id!r}", self.file, None, suggest(node_id, self.nodes)))
        old = self.nodes[node_id]
        processor.name = node_id
        self.nodes[node_id] = replace(old, processor=processor, type=type or type_name(processor))
        self.checked = False
        self.check()
        return self

    def insert(self, node_id: str, processor: Processor, *, between: tuple[str, str], type: str | None = None,
               queue_size: int | None = None, drop_oldest: bool | None = None, inline: bool | None = None) -> Graph:
        """Put ``processor`` as node ``node_id`` on the link ``between[0] -> between[1]``; re-check.

        Edits this graph (use it on a copy) and returns it. Raises PipelineError when there
        is no such link.
        """
        a, b = between
        links = [l for l in self.links if l.src == a and l.dst == b]
        if not links:
            raise PipelineError(Problem(f"insert {node_id!r}: no link {a} -> {b}", self.file, None,
                                        f"links are: {', '.join(f'{l.src} -> {l.dst}' for l in self.links)}"))
        line = links[0].line
        self.add(node_id, processor, type=type or "", line=line, queue_size=queue_size, drop_oldest=drop_oldest,
                 inline=inline)
        at = self.links.index(links[0])
        self.links[at:at + 1] = [_Link(a, node_id, line), _Link(node_id, b, line)]
        self.check()
        return self

    # --- queries --------------------------------------------------------------------------

    def inputs(self, node_id: str) -> list[str]:
        return [l.src for l in self.links if l.dst == node_id]

    def outputs(self, node_id: str) -> list[str]:
        return [l.dst for l in self.links if l.src == node_id]

    def sources(self) -> list[str]:
        return [n for n in self.nodes if not self.inputs(n)]

    def topological(self) -> list[str]:
        """Node ids, sources first; raises PipelineError on a downstream cycle."""
        indeg = {n: 0 for n in self.nodes}
        for l in self.links:
            indeg[l.dst] += 1
        order = [n for n, d in indeg.items() if d == 0]
        i = 0
        while i < len(order):
            for out in self.outputs(order[i]):
                indeg[out] -= 1
                if indeg[out] == 0:
                    order.append(out)
            i += 1
        if len(order) < len(self.nodes):
            stuck = [n for n in self.nodes if n not in order]
            line = next((l.line for l in self.links if l.src in stuck and l.dst in stuck), None)
            raise PipelineError(
                Problem(
                    f"links form a downstream cycle through {', '.join(stuck)}",
                    self.file,
                    line,
                    "downstream links must not loop; frames already travel back along links upstream",
                )
            )
        return order

    # --- checking and wiring --------------------------------------------------------------

    def check(self) -> None:
        """Validate links and audio formats. Raises PipelineError."""
        problems: list[Problem] = []
        for l in self.links:
            for end in (l.src, l.dst):
                if end not in self.nodes:
                    from .loader import suggest

                    problems.append(Problem(f"link {l.src} -> {l.dst}: unknown node {end!r}", self.file, l.line, suggest(end, self.nodes)))
            if l.src == l.dst:
                problems.append(Problem(f"link {l.src} -> {l.dst} links a node to itself", self.file, l.line))
        if problems:
            raise PipelineError(problems)
        if len(self.nodes) > 1:
            for n, node in self.nodes.items():
                if not self.inputs(n) and not self.outputs(n):
                    problems.append(Problem(f"processor {n!r} is never linked", self.file, node.line, f"add it to `links`, e.g. `- ... -> {n}`, or remove it"))
        if problems:
            raise PipelineError(problems)
        self._check_formats()
        self.checked = True

    def _check_formats(self) -> None:
        problems: list[Problem] = []
        formats: dict[str, AudioFormat | None] = {}
        for n in self.topological():
            node = self.nodes[n]
            upstream: AudioFormat | None = None
            for l in [l for l in self.links if l.dst == n]:
                produced = formats.get(l.src)
                wanted = node.processor.input_format
                step = self._codec_step(l, node.processor, produced, wanted)
                if step is True:
                    return self._check_formats()
                if step is not None:
                    problems.append(step)
                    continue
                if produced is not None and wanted is not None and not wanted.accepts(produced):
                    if self.auto_resample:
                        self._insert_resample(l, wanted.merge(produced))
                        return self._check_formats()
                    fix = _resample_yaml(wanted)
                    problems.append(
                        Problem(
                            f"link {l.src} -> {n}: {produced} into {wanted}",
                            self.file,
                            l.line,
                            f"put `{fix}` between them, or set `auto_resample: true`",
                        )
                    )
                if upstream is None and produced is not None:
                    upstream = produced
            formats[n] = node.processor.output_format(upstream)
        if problems:
            raise PipelineError(problems)
        self.formats = formats

    def _codec_step(self, link: _Link, proc: Processor, produced: AudioFormat | None,
                    wanted: AudioFormat | None) -> Problem | bool | None:
        """Put a G.711 decoder or encoder on ``link`` where its ends disagree on codes.

        G.711 codes (``dtype`` ulaw/alaw) reach only a processor that takes them
        (``accepts_g711``); any other gets ``audio.g711`` decoding to int16 in front, always:
        the decode is exact and is what a G.711 source used to do itself. A processor that
        asks for codes gets an encoder with ``auto_resample`` (a Problem otherwise).
        Returns True when it inserted a node, a Problem, or None when nothing is needed.
        """
        if produced is None:
            return None
        have, want = produced.dtype, wanted.dtype if wanted is not None else None
        if have in CODED and want != have and not (proc.accepts_g711 and want is None):
            self._insert_codec(link, "int16")
            return True
        if want in CODED and have is not None and have != want:
            if self.auto_resample:
                self._insert_codec(link, want)
                return True
            return Problem(f"link {link.src} -> {link.dst}: {produced} into {wanted}", self.file, link.line,
                           f"put `{{type: audio.g711, params: {{to: {want}}}}}` between them, "
                           "or set `auto_resample: true`")
        return None

    def _insert_codec(self, link: _Link, to: str) -> None:
        from processors.audio.g711 import G711Processor

        node_id = f"g711_{link.src}_{link.dst}"
        self.add(node_id, G711Processor({"to": to}), type="audio.g711", line=link.line)
        self.nodes[node_id].inserted = True
        self.links.remove(link)
        self.links.append(_Link(link.src, node_id, link.line))
        self.links.append(_Link(node_id, link.dst, link.line))

    def _insert_resample(self, link: _Link, fmt: AudioFormat) -> None:
        from processors.audio import ResampleProcessor

        node_id = f"resample_{link.src}_{link.dst}"
        params = {"rate": fmt.rate}
        if fmt.channels:
            params["channels"] = fmt.channels
        if fmt.dtype:
            params["dtype"] = fmt.dtype
        self.add(node_id, ResampleProcessor(params), type="audio.resample", line=link.line)
        self.nodes[node_id].inserted = True
        self.links.remove(link)
        self.links.append(_Link(link.src, node_id, link.line))
        self.links.append(_Link(node_id, link.dst, link.line))

    # --- rendering ------------------------------------------------------------------------

    def to_mermaid(self) -> str:
        """The graph as a Mermaid flowchart (inserted nodes drawn dashed)."""
        out = ["flowchart LR"]
        for n, node in self.nodes.items():
            fmt = self.formats.get(n)
            label = f"{n}<br/><small>{node.type}{'<br/>' + str(fmt) if fmt else ''}</small>"
            shape = f'{n}(["{label}"])' if node.inserted else f'{n}["{label}"]'
            out.append(f"    {shape}")
        for l in self.links:
            out.append(f"    {l.src} --> {l.dst}")
        for n, node in self.nodes.items():
            if node.inserted:
                out.append(f"    style {n} stroke-dasharray: 5 5")
        return "\n".join(out) + "\n"

    def to_dot(self) -> str:
        """The graph in Graphviz DOT (inserted nodes dashed)."""
        out = [f'digraph "{self.name}" {{', "    rankdir=LR;", "    node [shape=box];"]
        for n, node in self.nodes.items():
            fmt = self.formats.get(n)
            label = f"{n}\\n{node.type}" + (f"\\n{fmt}" if fmt else "")
            style = ", style=dashed" if node.inserted else ""
            out.append(f'    "{n}" [label="{label}"{style}];')
        for l in self.links:
            out.append(f'    "{l.src}" -> "{l.dst}";')
        out.append("}")
        return "\n".join(out) + "\n"


def type_name(processor: Processor) -> str:
    """The registered name of a processor's class, or its import path."""
    from .registry import name_of

    return name_of(type(processor))


def _resample_yaml(fmt: AudioFormat) -> str:
    params = [f"rate: {fmt.rate}"] if fmt.rate else []
    if fmt.channels:
        params.append(f"channels: {fmt.channels}")
    if fmt.dtype:
        params.append(f"dtype: {fmt.dtype}")
    return "{type: audio.resample, params: {" + ", ".join(params) + "}}"
