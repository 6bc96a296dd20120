"""Tool definitions: the ``@tool`` decorator and JSON Schemas built from type hints.

A tool is a plain or async Python function. Its JSON Schema, in the flat Realtime shape
``{"type": "function", "name", "description", "parameters"}``, is built by pydantic from
the function's signature:

* each parameter becomes a property; a parameter without a default is ``required``;
* types come from the hints: ``Literal[...]`` gives an ``enum``, ``X | None`` (``Optional``)
  allows ``null``, pydantic models, dataclasses and ``TypedDict`` nest;
* the tool's description is the docstring before its first section; each parameter's
  description comes from its ``Args:`` entry (Google style; NumPy ``Parameters``, Sphinx
  ``:param x:`` and Epydoc ``@param x:`` work too, parsed by docstring_parser) unless
  ``Annotated[T, Field(description=...)]`` sets one.

The same pydantic model that produced the schema validates the model's arguments before
the function is called, so what the model is told and what is checked cannot drift apart.
An explicit ``parameters`` schema (decorator argument, or ``schemas`` in the router's YAML
params) replaces what the model is told; arguments are still validated against the
signature, since that is what the function accepts.

A parameter annotated with :class:`~pipeline.session.SessionContext` (or
``SessionContext | None``) is not the model's: it is left out of the schema and of the
validation, and the router passes the session's context there (its ``id``, and for a phone
call ``metadata`` with ``call_id``, ``stream_id``, ``from``, ``to``, ``custom_parameters``).
This is the role LiveKit Agents' ``RunContext`` and Pipecat's function-call ``params`` play::

    async def transfer(department: str, ctx: SessionContext) -> dict:
        # "Transfer the caller to a department." (its docstring)
        return {"caller": ctx.metadata.get("from"), "to": department}

Schemas are kept small for the model: pydantic's ``title`` keys are dropped and ``$ref``s
to nested models are inlined (recursive models keep their ``$defs``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable
from typing import Any

import docstring_parser
from docstring_parser import epydoc, google, numpydoc, rest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic.fields import FieldInfo

from pipeline.errors import VoxpipeError
from pipeline.session import SessionContext

__all__ = [
    "Docstring",
    "ToolArgumentsError",
    "ToolDefinitionError",
    "ToolError",
    "ToolOptions",
    "ToolSpec",
    "build_tool_spec",
    "compact_schema",
    "parse_docstring",
    "tool",
    "tool_options",
]

#: Names the Realtime API accepts for functions.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_OPTIONS_ATTR = "__voxpipe_tool__"


class ToolDefinitionError(VoxpipeError, ValueError):
    """A function cannot be made into a tool; the message says which one and how to fix it."""


class ToolError(Exception):
    """Raise it from a tool to tell the model (and so the user) why the call failed.

    Its message is the tool's answer, ``{"error": message}``: word it for a person
    ("no weather data for 'Atlantis'; known cities: ..."). Any other exception is a bug
    in the tool: the model is told only that the tool hit an internal error, and the
    developer's log gets the exception and the line that raised it.
    """


class ToolArgumentsError(ValueError):
    """The model's arguments do not match a tool's signature; ``str()`` is meant for the model."""


@dataclasses.dataclass(frozen=True, slots=True)
class ToolOptions:
    """What ``@tool(...)`` sets on a function; ``None`` means "use the router's default"."""

    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    timeout_s: float | None = None
    cancel_on_interruption: bool = False


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    timeout_s: float | None = None,
    cancel_on_interruption: bool = False,
) -> Any:
    """Mark a function as a tool for a ``tools.router`` that lists its module in ``modules``.

    Use bare (``@tool``) or with options (``@tool(timeout_s=2, cancel_on_interruption=True)``).
    ``name`` and ``description`` default to the function's name and docstring; ``parameters``
    replaces the generated JSON Schema; ``timeout_s`` overrides the router's ``timeout_s``;
    ``cancel_on_interruption`` cancels a running call when the user barges in (use it for
    lookups whose answer is moot once the user talks again, not for actions with effects).
    The function is returned unchanged, so it can still be called and tested directly.
    """
    if timeout_s is not None and not timeout_s > 0:
        raise ToolDefinitionError(f"@tool(timeout_s={timeout_s!r}): the timeout must be a positive number of seconds")
    options = ToolOptions(name, description, parameters, timeout_s, cancel_on_interruption)

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(f):
            raise ToolDefinitionError(f"@tool decorates functions, not {type(f).__name__} objects")
        setattr(f, _OPTIONS_ATTR, options)
        return f

    return mark(fn) if fn is not None else mark


def tool_options(fn: Any) -> ToolOptions | None:
    """The options ``@tool`` set on ``fn``, or None when it is not decorated."""
    options = getattr(fn, _OPTIONS_ATTR, None)
    return options if isinstance(options, ToolOptions) else None


@dataclasses.dataclass(frozen=True, slots=True)
class ToolSpec:
    """A callable tool: its schema for the model, its argument model, and how to run it."""

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    arguments: type[BaseModel]
    is_async: bool
    timeout_s: float | None = None
    cancel_on_interruption: bool = False
    positional: tuple[str, ...] = ()
    #: The parameter that receives the session's SessionContext (never in ``parameters``).
    context: str | None = None

    def to_realtime(self) -> dict[str, Any]:
        """The flat Realtime tool: ``{"type": "function", "name", "description", "parameters"}``."""
        return {"type": "function", "name": self.name, "description": self.description, "parameters": self.parameters}

    def bind(self, arguments: Any, context: SessionContext | None = None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Validate the model's ``arguments`` and return ``(args, kwargs)`` for the function.

        ``context`` goes to the function's context parameter, if it declares one.

        Raises :class:`ToolArgumentsError` whose message lists each bad argument, what was
        expected and what was given, worded for the model to correct its call.
        """
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(
                f"arguments of {self.name} must be a JSON object, got {type(arguments).__name__}"
            )
        try:
            model = self.arguments.model_validate(arguments)
        except ValidationError as exc:
            raise ToolArgumentsError(f"invalid arguments for {self.name}: {_explain(exc)}") from None
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        # Only what the model passed, so the function's own defaults (and factories) apply.
        for field_name in model.model_fields_set:
            alias = type(model).model_fields[field_name].alias or field_name
            kwargs[alias] = getattr(model, field_name)
        for alias in self.positional:
            if alias in kwargs:
                args.append(kwargs.pop(alias))
            else:
                break
        if self.context is not None:
            kwargs[self.context] = context
        return tuple(args), kwargs


def build_tool_spec(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    parameters: dict[str, Any] | None = None,
    timeout_s: float | None = None,
    cancel_on_interruption: bool | None = None,
    where: str = "",
) -> ToolSpec:
    """Make a :class:`ToolSpec` from ``fn``; explicit arguments beat ``@tool`` options and hints.

    ``where`` names the source of the definition in error messages (a YAML param path such
    as ``functions.get_weather``). Raises :class:`ToolDefinitionError` naming the function,
    the parameter and the fix when a signature cannot be turned into a schema.
    """
    options = tool_options(fn) or ToolOptions()
    qualname = getattr(fn, "__qualname__", None) or repr(fn)
    label = f"{where}: tool {qualname}" if where else f"tool {qualname}"
    tool_name = name or options.name or getattr(fn, "__name__", None)
    if not tool_name or not _NAME_RE.match(tool_name):
        raise ToolDefinitionError(
            f"{label}: name {tool_name!r} is not a valid function name for the model; "
            "use 1-64 letters, digits, '_' or '-'"
        )
    doc = parse_docstring(inspect.getdoc(fn) or "")
    arguments, positional, context = _arguments_model(fn, tool_name, doc.params, label)
    schema = parameters if parameters is not None else options.parameters
    if schema is None:
        schema = compact_schema(arguments.model_json_schema(by_alias=True))
    elif not isinstance(schema, dict) or schema.get("type") != "object":
        raise ToolDefinitionError(
            f"{label}: the explicit parameters schema must be a JSON Schema object, "
            "like {type: object, properties: {...}, required: [...]}"
        )
    timeout = timeout_s if timeout_s is not None else options.timeout_s
    cancel = cancel_on_interruption if cancel_on_interruption is not None else options.cancel_on_interruption
    return ToolSpec(
        name=tool_name,
        description=description if description is not None else (options.description or doc.description),
        parameters=schema,
        fn=fn,
        arguments=arguments,
        is_async=_is_async(fn),
        timeout_s=timeout,
        cancel_on_interruption=cancel,
        positional=positional,
        context=context,
    )


# --- signature -> pydantic model --------------------------------------------------------------


def _is_context(hint: Any) -> bool:
    """True for ``SessionContext`` (or a subclass), ``SessionContext | None`` and ``Annotated`` of them."""
    if typing.get_origin(hint) is typing.Annotated:
        hint = typing.get_args(hint)[0]
    if isinstance(hint, type):
        return issubclass(hint, SessionContext)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return len(args) == 1 and len(typing.get_args(hint)) == 2 and _is_context(args[0])


def _arguments_model(
    fn: Callable[..., Any], tool_name: str, docs: dict[str, str], label: str
) -> tuple[type[BaseModel], tuple[str, ...], str | None]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ToolDefinitionError(f"{label}: cannot read its signature ({exc}); wrap it in a def") from None
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # NameError for a forward reference, mostly
        raise ToolDefinitionError(
            f"{label}: cannot resolve its type hints ({type(exc).__name__}: {exc}); "
            "define the types it names at module level"
        ) from None
    fields: dict[str, Any] = {}
    positional: list[str] = []
    context: str | None = None
    for i, param in enumerate(signature.parameters.values()):
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"{label}: *{param.name} / **{param.name} cannot be described to the model; "
                "list each argument explicitly"
            )
        hint = hints.get(param.name, Any)
        if _is_context(hint):
            if context is not None or param.kind is param.POSITIONAL_ONLY:
                raise ToolDefinitionError(
                    f"{label}: {param.name!r} cannot receive the session context: declare one SessionContext "
                    "parameter, and not positional-only (before a '/')"
                )
            context = param.name
            continue
        if param.kind is param.POSITIONAL_ONLY:
            positional.append(param.name)
        try:
            TypeAdapter(hint).json_schema()
        except Exception:  # pydantic's message is about model_config, not about tools
            raise ToolDefinitionError(
                f"{label}: argument {param.name!r} has type {_type_name(hint)}, which has no JSON Schema; "
                "use str, int, float, bool, Literal, lists, dicts, pydantic models, dataclasses or TypedDicts"
            ) from None
        info: dict[str, Any] = {"alias": param.name}
        if param.name in docs and not _has_description(hint):
            info["description"] = docs[param.name]
        default = ... if param.default is param.empty else param.default
        # Internal field names avoid clashes with BaseModel attributes and "_private" names.
        fields[f"arg{i}"] = (hint, Field(default, **info))
    model_name = "".join(part.capitalize() for part in re.split(r"[_-]", tool_name) if part) + "Arguments"
    try:
        model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
        model.model_json_schema(by_alias=True)
    except Exception as exc:  # a default that does not fit its type, for instance
        raise ToolDefinitionError(f"{label}: cannot build its argument model: {exc}") from None
    return model, tuple(positional), context


def _type_name(hint: Any) -> str:
    return getattr(hint, "__qualname__", None) or repr(hint)


def _has_description(hint: Any) -> bool:
    if typing.get_origin(hint) is typing.Annotated:
        return any(isinstance(m, FieldInfo) and m.description for m in hint.__metadata__)
    return False


def _is_async(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "missing":
            parts.append(f"{loc} is required")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{loc} is not an argument of this tool")
        else:
            given = repr(err["input"])
            parts.append(f"{loc}: {err['msg']} (got {given[:60] + '...' if len(given) > 60 else given})")
    return "; ".join(parts)


# --- schema compaction ------------------------------------------------------------------------

# Keys whose values are maps of name -> schema, and keys whose values are data, not schemas.
_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties", "dependentSchemas"})
_DATA_KEYS = frozenset({"default", "enum", "const", "examples"})


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop ``title`` keys and inline ``$ref``s into ``$defs`` unless a model is recursive."""
    defs = schema.get("$defs", {})
    stripped = _strip_titles(schema)
    if defs and not _is_recursive(defs):
        stripped_defs = stripped.pop("$defs")
        stripped = _inline(stripped, stripped_defs)
    stripped.setdefault("properties", {})
    return stripped


def _strip_titles(node: Any) -> Any:
    if isinstance(node, list):
        return [_strip_titles(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {k: _strip_titles(v) for k, v in value.items()}
        elif key in _DATA_KEYS:
            out[key] = value
        else:
            out[key] = _strip_titles(value)
    return out


def _refs(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["$ref"].rsplit("/", 1)[-1]} if isinstance(node.get("$ref"), str) else set()
    for key, value in node.items():
        if key not in _DATA_KEYS:
            found |= _refs(value)
    return found


def _is_recursive(defs: dict[str, Any]) -> bool:
    graph = {name: _refs(body) for name, body in defs.items()}
    visiting: set[str] = set()
    done: set[str] = set()

    def cyclic(name: str) -> bool:
        if name in done:
            return False
        if name in visiting:
            return True
        visiting.add(name)
        if any(cyclic(child) for child in graph.get(name, ())):
            return True
        visiting.discard(name)
        done.add(name)
        return False

    return any(cyclic(name) for name in graph)


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = _inline(defs[ref.rsplit("/", 1)[-1]], defs)
        siblings = {k: _inline(v, defs) for k, v in node.items() if k != "$ref"}
        return {**target, **siblings}  # a property's own description beats the model's
    return {k: (v if k in _DATA_KEYS else _inline(v, defs)) for k, v in node.items()}


# --- docstrings -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Docstring:
    """A docstring split into the tool description and per-parameter descriptions."""

    description: str
    params: dict[str, str]


# Google sections docstring_parser leaves out (their text would be dropped): more arguments.
_GOOGLE = google.GoogleParser(sections=[
    *google.DEFAULT_SECTIONS,
    *(google.Section(title, "param", google.SectionType.MULTIPLE)
      for title in ("Keyword Args", "Keyword Arguments", "Other Parameters", "Other Args")),
])
_STYLES = (rest.parse, _GOOGLE.parse, numpydoc.parse, epydoc.parse)  # docstring_parser's AUTO order
_PARAM_KEYS = frozenset({"param", "parameter", "arg", "argument", "key", "keyword", "other_param"})


def parse_docstring(doc: str) -> Docstring:
    """Split a cleaned docstring (``inspect.getdoc``) into description and parameter docs.

    The parsing is docstring_parser's: each style's parser runs and the one that finds the
    most sections wins, as its ``parse(style=AUTO)`` does (with ``Keyword Args`` and ``Other
    Parameters`` added to Google's sections). Styles: Google (``Args:``), NumPy (``Parameters``
    underlined), Sphinx/reST (``:param name:``) and Epydoc (``@param name:``). The description
    is the text before the first section; within each paragraph the wrapped lines are joined,
    and paragraphs stay separated by a blank line; so are parameter descriptions. A docstring
    that no style parses is all description.
    """
    parsed = []
    for parse in _STYLES:
        try:
            parsed.append(parse(doc))
        except docstring_parser.ParseError:
            pass
    if not parsed:
        return Docstring(_reflow(doc), {})
    best = max(parsed, key=lambda d: len(d.meta))  # the first of equals, like sorted(reverse=True)[0]
    params = {p.arg_name.lstrip("*"): _reflow(p.description or "") for p in best.params if p.args[0] in _PARAM_KEYS}
    return Docstring(_reflow(best.description or ""), params)


def _reflow(text: str) -> str:
    """Join the lines of each paragraph with spaces; keep one blank line between paragraphs."""
    paragraphs = re.split(r"\n[ \t]*\n", text.strip())
    return "\n\n".join(" ".join(ln.strip() for ln in p.splitlines() if ln.strip()) for p in paragraphs if p.strip())
