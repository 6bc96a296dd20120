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

import contextlib
import difflib
import importlib
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import PipelineError, Problem, RegistryError, VoxpipeError
from .graph import Graph
from .logs import SECRET_NAME, add_secret

__all__ = ["load", "load_text", "parse_override", "suggest"]

TOP_LEVEL = {"voxpipe", "name", "description", "processors", "links", "auto_resample", "on_error"}
NODE_KEYS = {"type", "params", "queue_size", "drop_oldest", "inline"}
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
#: Limits no real pipeline meets: nesting depth, and values once aliases are expanded.
MAX_DEPTH = 64
MAX_EXPANDED = 100_000


class _TooDeep(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit: its composer recurses once per level."""

    _depth = 0

    def compose_node(self, parent, index):  # type: ignore[override]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _expanded_size(root: yaml.Node) -> tuple[int, yaml.Node | None]:
    """How many values ``root`` holds with its aliases expanded, and a node that contains itself.

    Iterative, memoised per node: an alias is the same node object as its anchor, so a
    billion laughs costs one visit per distinct node here, not a billion.
    """
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = [] if isinstance(node, yaml.ScalarNode) else (
            [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else node.value)
        if done:
            on_path.discard(key)
            size[key] = min(1 + sum(size[id(c)] for c in children), MAX_EXPANDED + 1)
            continue
        if key in size:
            continue
        if key in on_path:
            return 0, node
        on_path.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                return 0, child
            if id(child) not in size:
                stack.append((child, False))
    return size[id(root)], None
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
    with _importable(p.parent):
        return load_text(text, file=str(path), overrides=overrides, env=env, base_dir=p.parent)


@contextlib.contextmanager
def _importable(folder: Path):
    """The pipeline's folder first on ``sys.path`` while it loads.

    A user's package next to the YAML (``mypkg/gain.py`` beside ``my.yaml``) is then
    importable as ``type: mypkg.gain:Gain`` or a tool module without setting PYTHONPATH,
    from any working directory. Modules imported while loading stay imported; the path
    entry is removed afterwards so that the folder does not shadow other imports later.
    """
    entry = str(folder.resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
        importlib.invalidate_caches()
    try:
        yield
    finally:
        if added:
            try:
                sys.path.remove(entry)
            except ValueError:
                pass


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
        self.unset_env = 0  # ${VAR}s without a value: their node is not built (no knock-on error)

    def problem(self, message: str, line: int | None, hint: str | None = None) -> None:
        self.problems.append(Problem(message, self.file, line, hint))

    def fail_if_any(self) -> None:
        if self.problems:
            raise PipelineError(self.problems)

    # --- YAML with lines --------------------------------------------------------------------

    def compose(self, text: str) -> yaml.Node | None:
        loader = _BoundedLoader(text)
        try:
            root = loader.get_single_node()
        except _TooDeep as exc:
            raise PipelineError(Problem(f"values are nested more than {MAX_DEPTH} levels deep", self.file, exc.line,
                                        "flatten the structure; no pipeline needs this depth")) from None
        except RecursionError:
            raise PipelineError(Problem("values are nested too deeply to read", self.file, None,
                                        "flatten the structure")) from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else None
            what = exc.problem or str(exc)
            raise PipelineError(Problem(f"not valid YAML: {what}", self.file, line, "check indentation, colons and quotes")) from None
        except yaml.YAMLError as exc:
            raise PipelineError(Problem(f"not valid YAML: {exc}", self.file)) from None
        finally:
            loader.dispose()
        if root is not None:
            size, loop = _expanded_size(root)
            if loop is not None:
                raise PipelineError(Problem("an alias refers to a value that contains it (a loop)", self.file,
                                            loop.start_mark.line + 1, "give the value in full instead of `*alias`"))
            if size > MAX_EXPANDED:
                raise PipelineError(Problem(f"the file expands to more than {MAX_EXPANDED:,} values once its "
                                            "aliases are expanded", self.file, None,
                                            "use fewer nested `*alias` references"))
        return root

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
                if SECRET_NAME.search(name):
                    add_secret(self.env[name])
                return self.env[name]
            if default is not None:
                return default
            self.problem(f"environment variable {name} is not set", line, f"set it, or give a default: ${{{name}:-value}}")
            self.unset_env += 1
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
            spec: dict[str, Any] = {"line": line, "param_lines": {}, "overridden": {}}
            unset_before = self.unset_env
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
            spec["unset_env"] = self.unset_env > unset_before
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
                specs[node_id]["overridden"][tuple(path)] = item

    def build_nodes(self, graph: Graph, specs: dict[str, dict]) -> None:
        from .registry import resolve_type

        for node_id, spec in specs.items():
            if spec.get("unset_env"):  # already reported; building it would only add a knock-on error
                continue
            type_line = spec.get("type_line", spec["line"])
            try:
                cls = resolve_type(str(spec["type"]))
            except RegistryError as exc:
                self.problem(f"processor {node_id!r}: {exc.message}", type_line, exc.hint)
                continue
            params_model: type[BaseModel] = cls.Params
            raw = dict(spec.get("params") or {})
            for key, value in raw.items():  # a secret param's value is never echoed in a message
                if SECRET_NAME.search(str(key)):
                    add_secret(value)
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
        name = ".".join(loc) or "params"
        kind = err.get("type", "")
        override = next((item for path, item in spec["overridden"].items() if loc[:len(path)] == path), None)
        if override is not None:  # the mistake is on the command line, not in the file
            file, line, what = None, None, f"--set {override}: processor {node_id!r}"
        else:
            lines = spec["param_lines"]
            file = self.file
            line = lines.get(loc) or (lines.get(loc[:1]) if loc else None) or spec.get("params_line") or spec["line"]
            what = f"processor {node_id!r}"
        if kind == "extra_forbidden":
            fields = list(model.model_fields)
            return Problem(f"{what}: unknown param {name!r}", file, line,
                           suggest(loc[-1], fields) or (f"known params: {', '.join(fields)}" if fields else "this processor takes no params"))
        if kind == "missing":
            return Problem(f"{what}: missing required param {name!r}", file, spec.get("params_line", spec["line"]) if file else None,
                           f"add `{name}: ...` under params")
        got = err.get("input")
        msg = str(err.get("msg", ""))
        if kind in ("value_error", "assertion_error") or kind not in _PYDANTIC_TYPES:
            # a validator's own sentence already says what to do: no pydantic prefix, no echo
            for prefix in ("Value error, ", "Assertion failed, "):
                if msg.startswith(prefix):
                    msg = msg[len(prefix):]
            if kind in _PYDANTIC_CONSTRAINTS:
                return Problem(f"{what}: param {name!r} {_constraint(msg)}, not {_shown(got)}", file, line, _expected(model, loc))
            return Problem(f"{what}: param {name!r}: {msg}", file, line)
        return Problem(f"{what}: param {name!r} must be {_PYDANTIC_TYPES[kind]}, not {_kind_of(got)} {_shown(got)}",
                       file, line, _default(model, loc))

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


#: pydantic's type errors -> what the value must be, in words
_PYDANTIC_TYPES = {
    "dict_type": "a mapping (`{key: value, ...}`)", "model_type": "a mapping (`{key: value, ...}`)",
    "model_attributes_type": "a mapping (`{key: value, ...}`)",
    "list_type": "a list (`[a, b]`)", "tuple_type": "a list (`[a, b]`)", "set_type": "a list (`[a, b]`)",
    "string_type": "text", "int_type": "a whole number", "int_parsing": "a whole number",
    "int_from_float": "a whole number", "float_type": "a number", "float_parsing": "a number",
    "bool_type": "true or false", "bool_parsing": "true or false", "literal_error": "one of the allowed values",
    "enum": "one of the allowed values", "none_required": "null", "url_parsing": "a URL", "url_scheme": "a URL",
}
#: pydantic's constraint errors: their message is already a sentence about the value
_PYDANTIC_CONSTRAINTS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short",
                         "too_long", "string_too_short", "string_too_long", "multiple_of", "string_pattern_mismatch"}


def _constraint(msg: str) -> str:
    """pydantic's "Input should be greater than 0" -> "must be greater than 0"."""
    for prefix in ("Input should be ", "Input should have ", "String should have ", "String should match "):
        if msg.startswith(prefix):
            return "must " + ("be " if "be" in prefix else "have " if "have" in prefix else "match ") + msg[len(prefix):]
    return msg[:1].lower() + msg[1:]


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "the text", bool: "the boolean", int: "the number",
            float: "the number"}.get(type(value), f"a {type(value).__name__}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_words(ann: Any) -> str:
    """A param's annotation as a user reads it: `dict[str, X]` -> "a mapping", `Literal` -> the choices."""
    import typing

    origin = typing.get_origin(ann)
    args = typing.get_args(ann)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is typing.Annotated:
        return _type_words(args[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        parts = [_type_words(a) for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(parts))
        return text + (" (or null)" if type(None) in args else "")
    if origin in (dict, typing.Dict) or ann is dict:
        return "a mapping"
    if origin in (list, tuple, set, frozenset) or ann in (list, tuple, set):
        return "a list"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "a mapping"
    return {str: "text", int: "a whole number", float: "a number", bool: "true or false"}.get(ann, getattr(ann, "__name__", None) or str(ann).replace("typing.", ""))


def _default(model: type[BaseModel], loc: tuple) -> str | None:
    field = model.model_fields.get(loc[0]) if len(loc) == 1 else None
    if field is None or field.is_required() or field.default_factory is not None:
        return None
    return f"leave it out for the default, {field.default!r}"


def _expected(model: type[BaseModel], loc: tuple) -> str | None:
    field = model.model_fields.get(loc[0]) if loc else None
    if field is None:
        return None
    if len(loc) > 1:  # inside a mapping or list: the top-level type would mislead
        return None
    default = "" if field.is_required() or field.default_factory is not None else f" (default {field.default!r})"
    return f"expected {_type_words(field.annotation)}{default}"
