"""Loader: YAML pipeline file -> checked :class:`~pipeline.graph.Graph`.

The file format (``voxpipe: 1``)::

    voxpipe: 1
    name: voice-agent
    auto_resample: false        # insert audio.resample where link formats differ
    on_error: stop              # or: continue
    processors:
      mic: {type: capture.wav, params: {path: "${INPUT:-speech.wav}"}}
      vad: {type: vad.energy}
    links:
      - mic -> vad

Everything is validated before anything runs, and every problem is reported as
``file:line: what is wrong`` with a fix where one is known. The YAML is composed into
nodes first so that each value keeps its line.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import PipelineError, Problem, RegistryError, VoxpipeError
from .graph import Graph

__all__ = ["load", "load_text", "parse_override", "suggest"]

TOP_LEVEL = {"voxpipe", "name", "description", "processors", "links", "auto_resample", "on_error"}
NODE_KEYS = {"type", "params", "queue_size", "drop_oldest", "inline"}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def suggest(word: str, choices) -> str | None:
    """'did you mean ...?' for the closest of ``choices``, or None."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def load(path: str | os.PathLike, *, overrides: list[str] | None = None, env: dict[str, str] | None = None) -> Graph:
    """Load and check the pipeline at ``path``; raises PipelineError listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        from pipelines import available

        raise PipelineError(Problem(f"no such pipeline file: {p}",
                                    hint=f"check the path; voxpipe ships {', '.join(available())} (name one alone)")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(Problem(f"cannot read pipeline file {p}: {exc}")) from None
    return load_text(text, file=str(path), overrides=overrides, env=env, base_dir=p.parent)


def load_text(
    text: str,
    *,
    file: str = "<pipeline>",
    overrides: list[str] | None = None,
    env: dict[str, str] | None = None,
    base_dir: Path | None = None,
) -> Graph:
    """Load and check a pipeline from YAML text (``file`` names it in messages)."""
    return _Loader(file, os.environ if env is None else env, base_dir).load(text, overrides or [])


def parse_override(item: str) -> tuple[str, list[str], Any]:
    """Split ``id.param[.sub]=value`` into node id, key path and a YAML-typed value."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise PipelineError(Problem(f"--set {item!r}: expected `node.param=value`", hint="e.g. --set model.voice=nova"))
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts[0], parts[1:], value


class _Loader:
    def __init__(self, file: str, env, base_dir: Path | None) -> None:
        self.file = file
        self.env = env
        self.base_dir = base_dir
        self.problems: list[Problem] = []

    def problem(self, message: str, line: int | None, hint: str | None = None) -> None:
        self.problems.append(Problem(message, self.file, line, hint))

    def fail_if_any(self) -> None:
        if self.problems:
            raise PipelineError(self.problems)

    # --- YAML with lines --------------------------------------------------------------------

    def compose(self, text: str) -> yaml.Node | None:
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            what = exc.problem or str(exc)
            raise PipelineError(Problem(f"not valid YAML: {what}", self.file, line, "check indentation, colons and quotes")) from None
        except yaml.YAMLError as exc:
            raise PipelineError(Problem(f"not valid YAML: {exc}", self.file)) from None

    def value(self, node: yaml.Node) -> Any:
        """Plain Python value of a node, with ${VAR} interpolation in strings."""
        if isinstance(node, yaml.MappingNode):
            return {self.value(k): self.value(v) for k, v in node.value}
        if isinstance(node, yaml.SequenceNode):
            return [self.value(v) for v in node.value]
        if node.tag == "tag:yaml.org,2002:str" and "${" in node.value:
            return self.interpolate(node.value, node.start_mark.line + 1)
        return _construct_scalar(node)

    def interpolate(self, text: str, line: int) -> Any:
        def sub(m: re.Match) -> str:
            name, default = m.group(1), m.group(2)
            if name in self.env:
                return self.env[name]
            if default is not None:
                return default
            self.problem(f"environment variable {name} is not set", line, f"set it, or give a default: ${{{name}:-value}}")
            return ""

        whole = _ENV.fullmatch(text)
        result = _ENV.sub(sub, text)
        if whole:  # a value that is only ${VAR} takes the YAML type of what it expands to
            try:
                return yaml.safe_load(result) if result.strip() else result
            except yaml.YAMLError:
                return result
        return result

    # --- the document -----------------------------------------------------------------------

    def load(self, text: str, overrides: list[str]) -> Graph:
        root = self.compose(text)
        if root is None:
            raise PipelineError(Problem("the file is empty", self.file, 1, "start with `voxpipe: 1`, then `processors:` and `links:`"))
        if not isinstance(root, yaml.MappingNode):
            raise PipelineError(Problem("a pipeline file must be a mapping of keys (voxpipe, name, processors, links)", self.file, root.start_mark.line + 1))
        top = {}
        for k, v in root.value:
            key = _construct_scalar(k)
            if key not in TOP_LEVEL:
                self.problem(f"unknown top-level key {key!r}", k.start_mark.line + 1,
                             suggest(key, TOP_LEVEL) or f"allowed keys: {', '.join(sorted(TOP_LEVEL))}")
                continue
            top[key] = (k, v)
        version = self.value(top["voxpipe"][1]) if "voxpipe" in top else None
        if "voxpipe" not in top:
            self.problem("missing `voxpipe: 1` (the format version)", 1, "add `voxpipe: 1` as the first line")
        elif version != 1:
            self.problem(f"unsupported format version voxpipe: {version!r}", top["voxpipe"][0].start_mark.line + 1, "this voxpipe reads `voxpipe: 1`")
        name = str(self.value(top["name"][1])) if "name" in top else Path(self.file).stem
        graph = Graph(name=name, file=self.file)
        if "auto_resample" in top:
            graph.auto_resample = bool(self.value(top["auto_resample"][1]))
        if "on_error" in top:
            policy = self.value(top["on_error"][1])
            if policy not in ("stop", "continue"):
                self.problem(f"on_error must be 'stop' or 'continue', not {policy!r}", top["on_error"][1].start_mark.line + 1)
            else:
                graph.on_error = policy
        if "processors" not in top:
            self.problem("missing `processors:`", 1, "add a mapping of node id -> {type, params}")
            self.fail_if_any()
        specs = self.read_processors(top["processors"][1])
        self.apply_overrides(specs, overrides)
        self.build_nodes(graph, specs)
        self.fail_if_any()  # links to nodes that failed to build would only add noise
        if "links" in top:
            self.read_links(graph, top["links"][1])
        elif len(graph.nodes) > 1:
            self.problem("missing `links:`", 1, "add e.g. `links: [\"a -> b\"]`")
        self.fail_if_any()
        graph.check()
        return graph

    def read_processors(self, node: yaml.Node) -> dict[str, dict]:
        specs: dict[str, dict] = {}
        if not isinstance(node, yaml.MappingNode):
            self.problem("`processors` must be a mapping of node id -> {type, params}", node.start_mark.line + 1)
            return specs
        for k, v in node.value:
            node_id = str(_construct_scalar(k))
            line = k.start_mark.line + 1
            if node_id in specs:
                self.problem(f"duplicate node id {node_id!r} (first defined on line {specs[node_id]['line']})", line, "give each processor its own id")
                continue
            if not _ID.match(node_id):
                self.problem(f"node id {node_id!r} must be letters, digits, '_' or '-'", line)
                continue
            if not isinstance(v, yaml.MappingNode):
                self.problem(f"processor {node_id!r} must be a mapping with `type` (and optional `params`)", line,
                             f"e.g. `{node_id}: {{type: audio.gain, params: {{db: -6}}}}`")
                continue
            spec: dict[str, Any] = {"line": line, "param_lines": {}}
            for kk, vv in v.value:
                key = _construct_scalar(kk)
                if key not in NODE_KEYS:
                    self.problem(f"processor {node_id!r}: unknown key {key!r}", kk.start_mark.line + 1,
                                 suggest(key, NODE_KEYS) or "a processor takes `type`, `params`, `queue_size`, `drop_oldest`, `inline`")
                    continue
                spec[key] = self.value(vv)
                spec[key + "_line"] = kk.start_mark.line + 1
                if key == "params" and isinstance(vv, yaml.MappingNode):
                    _param_lines(vv, (), spec["param_lines"])
            if "type" not in spec:
                self.problem(f"processor {node_id!r} has no `type`", line, "run `voxpipe processors` to list types")
                continue
            if "params" in spec and spec["params"] is None:
                spec["params"] = {}
            if "params" in spec and not isinstance(spec["params"], dict):
                self.problem(f"processor {node_id!r}: `params` must be a mapping", spec["params_line"])
                continue
            specs[node_id] = spec
        return specs

    def apply_overrides(self, specs: dict[str, dict], overrides: list[str]) -> None:
        for item in overrides:
            try:
                node_id, path, value = parse_override(item)
            except PipelineError as exc:
                self.problems.extend(exc.problems)
                continue
            if node_id not in specs:
                self.problems.append(Problem(f"--set {item!r}: no processor {node_id!r}", None, None, suggest(node_id, specs)))
                continue
            target = specs[node_id].setdefault("params", {})
            for key in path[:-1]:
                target = target.setdefault(key, {})
                if not isinstance(target, dict):
                    self.problems.append(Problem(f"--set {item!r}: {key!r} is not a mapping"))
                    break
            else:
                target[path[-1]] = value

    def build_nodes(self, graph: Graph, specs: dict[str, dict]) -> None:
        from .registry import resolve_type

        for node_id, spec in specs.items():
            type_line = spec.get("type_line", spec["line"])
            try:
                cls = resolve_type(str(spec["type"]))
            except RegistryError as exc:
                self.problem(f"processor {node_id!r}: {exc.message}", type_line, exc.hint)
                continue
            params_model: type[BaseModel] = cls.Params
            raw = dict(spec.get("params") or {})
            if self.base_dir is not None and hasattr(cls, "resolve_paths"):
                raw = cls.resolve_paths(raw, self.base_dir)
            try:
                params = params_model(**raw)
            except ValidationError as exc:
                for err in exc.errors():
                    self.problems.append(self.param_problem(node_id, spec, params_model, err))
                continue
            except TypeError as exc:
                self.problem(f"processor {node_id!r}: bad params: {exc}", spec.get("params_line", spec["line"]))
                continue
            try:
                proc = cls(params, name=node_id)
            except VoxpipeError as exc:
                self.problem(f"processor {node_id!r}: {exc}", spec.get("params_line", spec["line"]))
                continue
            except (ValueError, OSError, ImportError) as exc:
                self.problem(f"processor {node_id!r} ({spec['type']}): {type(exc).__name__}: {exc}", spec.get("params_line", spec["line"]))
                continue
            queue_size = spec.get("queue_size")
            if queue_size is not None and (not isinstance(queue_size, int) or isinstance(queue_size, bool) or queue_size < 1):
                self.problem(f"processor {node_id!r}: queue_size must be a whole number of at least 1, not {queue_size!r}",
                             spec.get("queue_size_line", spec["line"]))
                continue
            graph.add(node_id, proc, type=str(spec["type"]), line=spec["line"], queue_size=queue_size,
                      drop_oldest=bool(spec["drop_oldest"]) if "drop_oldest" in spec else None,
                      inline=bool(spec["inline"]) if "inline" in spec else None)

    def param_problem(self, node_id: str, spec: dict, model: type[BaseModel], err: dict) -> Problem:
        loc = tuple(str(x) for x in err.get("loc", ()))
        lines = spec["param_lines"]
        line = lines.get(loc) or (lines.get(loc[:1]) if loc else None) or spec.get("params_line") or spec["line"]
        name = ".".join(loc) or "params"
        kind = err.get("type", "")
        if kind == "extra_forbidden":
            fields = list(model.model_fields)
            return Problem(f"processor {node_id!r}: unknown param {name!r}", self.file, line,
                           suggest(loc[-1], fields) or (f"known params: {', '.join(fields)}" if fields else "this processor takes no params"))
        if kind == "missing":
            return Problem(f"processor {node_id!r}: missing required param {name!r}", self.file, spec.get("params_line", spec["line"]),
                           f"add `{name}: ...` under params")
        got = err.get("input")
        return Problem(f"processor {node_id!r}: param {name!r}: {err.get('msg')} (got {got!r})", self.file, line,
                       _expected(model, loc))

    def read_links(self, graph: Graph, node: yaml.Node) -> None:
        if not isinstance(node, yaml.SequenceNode):
            self.problem("`links` must be a list of chains like \"a -> b -> c\"", node.start_mark.line + 1)
            return
        for item in node.value:
            line = item.start_mark.line + 1
            text = self.value(item)
            if not isinstance(text, str) or "->" not in text:
                self.problem(f"link {text!r} is not a chain like \"a -> b -> c\"", line)
                continue
            ids = [p.strip() for p in text.split("->")]
            bad = [i for i in ids if i not in graph.nodes]
            if "" in ids:
                self.problem(f"link {text!r} has an empty end", line, "write chains like \"a -> b -> c\"")
                continue
            for i in bad:
                self.problem(f"link {text!r}: unknown node {i!r}", line, suggest(i, graph.nodes) or f"nodes are: {', '.join(graph.nodes)}")
            if not bad:
                graph.link(*ids, line=line)


def _construct_scalar(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        loader = yaml.SafeLoader("")
        return loader.construct_object(node, deep=True)
    if isinstance(node, yaml.MappingNode):
        return {_construct_scalar(k): _construct_scalar(v) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return [_construct_scalar(v) for v in node.value]
    return None


def _param_lines(node: yaml.MappingNode, prefix: tuple, out: dict) -> None:
    for k, v in node.value:
        key = prefix + (str(_construct_scalar(k)),)
        out[key] = k.start_mark.line + 1
        if isinstance(v, yaml.MappingNode):
            _param_lines(v, key, out)


def _expected(model: type[BaseModel], loc: tuple) -> str | None:
    field = model.model_fields.get(loc[0]) if loc else None
    if field is None:
        return None
    ann = field.annotation
    name = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
    default = "" if field.is_required() or field.default_factory is not None else f" (default {field.default!r})"
    return f"expected {name}{default}"
