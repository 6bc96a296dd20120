"""tools.router: Python functions as tools of the realtime model.

Theory of operation
-------------------
The router sits downstream of the model (``model -> tools -> speaker``). At start it
pushes a :class:`ToolsAvailableFrame` upstream, so the model adds the tools to its session.
The model sends a :class:`ToolCallFrame` downstream for each function call; the router
consumes it and answers with a :class:`ToolResultFrame` upstream, tagged with the call id.
Every other frame passes through untouched (the same object, no copy).

Each call runs in its own task owned by the graph, so the calls of one response run
concurrently and their results go upstream in order of completion. A call never raises
into the graph: an unknown tool, invalid arguments, a timeout, an exception, a result that
is not JSON or a cancellation all become a result with ``is_error=True`` and the output
``{"error": "<what went wrong, worded for the model>"}``. A tool that raises
:class:`ToolError` answers with its message; any other exception is a bug, so the model
hears only that the tool hit an internal error while the developer gets one log line
naming the exception and the line of the tool that raised it (the traceback at DEBUG). Async tools run on the event loop; plain functions
run in a worker thread so they never hold up audio. A thread cannot be killed: a plain
function that times out or is cancelled keeps running until it returns, and what it
returns then is ignored (make such functions idempotent, or async).

On an :class:`InterruptionFrame` the calls of older turns whose tool is marked
``cancel_on_interruption`` are cancelled and answer that they were; other calls finish and
their result is still delivered (a tool result is a control frame, never dropped).

The pure parts (building the tool table from params, turning outcomes into result
frames, counting per-tool metrics) are plain objects; :class:`ToolRouter` is the async
shell around them.
"""

from __future__ import annotations

import difflib
import enum
import functools
import importlib
import inspect
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError, PydanticSerializationError, to_json

from pipeline.frames import (
    Direction,
    Frame,
    InterruptionFrame,
    ToolCallFrame,
    ToolResultFrame,
    ToolsAvailableFrame,
)
from pipeline.metrics import LatencyHistogram
from pipeline.processor import Processor

from .schema import (
    ToolArgumentsError,
    ToolDefinitionError,
    ToolError,
    ToolSpec,
    build_tool_spec,
    tool,
    tool_options,
)

__all__ = [
    "CallOutcome",
    "ToolDefinitionError",
    "ToolError",
    "ToolOverride",
    "ToolRegistry",
    "ToolRouter",
    "ToolRouterParams",
    "ToolStats",
    "error_output",
    "result_output",
    "tool",
]

_UP = Direction.UPSTREAM


# --- params -----------------------------------------------------------------------------------


class ToolOverride(BaseModel):
    """Per-tool settings in YAML; they beat the function's ``@tool`` options and docstring."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    timeout_s: float | None = Field(None, gt=0)
    cancel_on_interruption: bool | None = None


def _import_function(path: str) -> Any:
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{path!r} is not an import path; write it as 'package.module:function'")
    module = _import_module(module_name)
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            names = [n for n in vars(module) if not n.startswith("_")]
            hint = difflib.get_close_matches(part, names, n=1)
            raise ValueError(
                f"module {module_name!r} has no {attr!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            ) from None
    if not callable(target):
        raise ValueError(f"{path!r} is a {type(target).__name__}, not a function")
    return target


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing and not (name == missing or name.startswith(missing + ".")):
            # the module exists but imports something that does not: say which, and where
            raise ValueError(f"importing module {name!r} failed: {_exception_line(exc)}; "
                             f"install {missing.partition('.')[0]!r} or fix that import") from None
        raise ValueError(
            f"cannot import module {name!r} ({exc}); check the spelling, and that its package is installed "
            "or sits next to the pipeline file"
        ) from None
    except Exception as exc:  # the module itself is broken: one line naming where, not its traceback
        raise ValueError(f"importing module {name!r} failed: {_exception_line(exc)}") from None


def _exception_line(exc: BaseException) -> str:
    """``Type: message (file.py:line)``: the exception and the last line of user code it came from."""
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({exc.filename}:{exc.lineno})"
        text = exc.msg
    else:
        text = str(exc)
        tb = exc.__traceback__
        last = None
        while tb is not None:
            name = tb.tb_frame.f_code.co_filename
            if not _is_library(name):
                last = (name, tb.tb_lineno)
            tb = tb.tb_next
        if last:
            where = f" ({last[0]}:{last[1]})"
    return f"{type(exc).__name__}" + (f": {text}" if text else "") + where


def _is_library(filename: str) -> bool:
    """Frames of the import machinery, anyio, asyncio, threads and voxpipe itself are not the user's."""
    f = filename.replace("\\", "/")
    return (f.startswith("<frozen") or "/anyio/" in f or "/asyncio/" in f or "/concurrent/" in f
            or f.endswith("/threading.py") or "/processors/tools/" in f or "/pipeline/" in f)


def _check_import_path(path: str) -> str:
    try:
        _import_function(path)
    except ValueError as exc:
        raise PydanticCustomError("tool_import", "{reason}", {"reason": str(exc)}) from None
    return path


def _check_module(name: str) -> str:
    try:
        _import_module(name)
    except ValueError as exc:
        raise PydanticCustomError("tool_import", "{reason}", {"reason": str(exc)}) from None
    return name


#: "package.module:function", imported when the params are validated so that a typo is
#: reported at its YAML line before anything runs.
ImportPath = Annotated[str, AfterValidator(_check_import_path)]
ModuleName = Annotated[str, AfterValidator(_check_module)]


class ToolRouterParams(BaseModel):
    """Params of ``tools.router``: where the tools come from and how long they may run."""

    model_config = ConfigDict(extra="forbid")

    functions: dict[str, ImportPath] = Field(
        default_factory=dict,
        description="Tool name -> import path 'package.module:function' of a plain or async function.",
    )
    modules: list[ModuleName] = Field(
        default_factory=list,
        description="Modules whose @tool-decorated functions become tools.",
    )
    schemas: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Tool name -> JSON Schema of its parameters, replacing the one built from type hints.",
    )
    overrides: dict[str, ToolOverride] = Field(
        default_factory=dict,
        description="Tool name -> description, timeout_s or cancel_on_interruption for that tool.",
    )
    timeout_s: float = Field(10.0, gt=0, description="Seconds a call may run unless its tool sets its own.")


# --- the tool table (pure) --------------------------------------------------------------------


class ToolRegistry:
    """The router's tools by name, built from params or given directly.

    Build it with :meth:`from_params`; a configuration it cannot honour raises
    :class:`ToolDefinitionError` naming the param to change.
    """

    def __init__(self, specs: Iterable[ToolSpec]) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ToolDefinitionError(
                    f"two tools are named {spec.name!r} ({_describe(self._specs[spec.name].fn)} and "
                    f"{_describe(spec.fn)}); rename one with @tool(name=...) or a key in params.functions"
                )
            self._specs[spec.name] = spec

    @classmethod
    def from_params(cls, params: ToolRouterParams) -> ToolRegistry:
        """Resolve ``functions`` and ``modules`` and apply ``schemas`` and ``overrides``."""
        found: list[tuple[str, Any, str]] = []  # (name, function, where)
        seen: set[int] = set()
        for name, path in params.functions.items():
            fn = _import_function(path)
            seen.add(id(fn))
            found.append((name, fn, f"functions.{name}"))
        for module_name in params.modules:
            module = _import_module(module_name)
            for fn in list(vars(module).values()):
                options = tool_options(fn)
                if options is None or id(fn) in seen:
                    continue
                seen.add(id(fn))
                found.append((options.name or fn.__name__, fn, f"modules ({module_name})"))
        if not found:
            raise ToolDefinitionError(
                "tools.router has no tools: list functions in params.functions "
                "({name: 'package.module:function'}) or modules with @tool functions in params.modules"
            )
        names = [name for name, _, _ in found]
        for param in ("schemas", "overrides"):
            for key in getattr(params, param):
                if key not in names:
                    hint = difflib.get_close_matches(key, names, n=1)
                    raise ToolDefinitionError(
                        f"params.{param}.{key}: no tool is named {key!r}"
                        + (f" (did you mean {hint[0]!r}?)" if hint else f"; the tools are {', '.join(names)}")
                    )
        specs = []
        for name, fn, where in found:
            override = params.overrides.get(name, ToolOverride())
            specs.append(
                build_tool_spec(
                    fn,
                    name=name,
                    description=override.description,
                    parameters=params.schemas.get(name),
                    timeout_s=override.timeout_s,
                    cancel_on_interruption=override.cancel_on_interruption,
                    where=f"params.{where}",
                )
            )
        return cls(specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, name: str) -> ToolSpec | None:
        """The tool called ``name``, or None."""
        return self._specs.get(name)

    def names(self) -> list[str]:
        """Tool names in registration order."""
        return list(self._specs)

    def specs(self) -> list[ToolSpec]:
        """The tools in registration order."""
        return list(self._specs.values())

    def announce(self) -> list[dict[str, Any]]:
        """The tool list for the model's session, in the flat Realtime shape."""
        return [spec.to_realtime() for spec in self._specs.values()]

    def unknown_tool_message(self, name: str) -> str:
        """What to tell the model when it calls a tool that does not exist."""
        hint = difflib.get_close_matches(name, self.names(), n=1)
        return f"unknown tool {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else "") + (
            f" Available tools: {', '.join(self.names())}."
        )


def _describe(fn: Any) -> str:
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


# --- results and metrics (pure) ---------------------------------------------------------------


def error_output(message: str) -> str:
    """The JSON output of an error result: ``{"error": message}``."""
    return json.dumps({"error": message}, ensure_ascii=False)


def result_output(value: Any) -> str:
    """``value`` as JSON text: dicts, lists, primitives, dataclasses, pydantic models, enums,
    dates. Strings are JSON-encoded too, so every output parses as JSON.

    Raises ``ValueError`` with the type that could not be serialised.
    """
    try:
        return to_json(value, inf_nan_mode="null").decode()
    except (PydanticSerializationError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None


class CallOutcome(enum.Enum):
    """How a tool call ended; each outcome is counted per tool."""

    OK = "ok"
    INVALID = "invalid"  # arguments did not match the signature
    TIMEOUT = "timeout"
    ERROR = "error"  # the tool raised
    UNSERIALISABLE = "unserialisable"  # the result is not JSON
    CANCELLED = "cancelled"  # by an interruption


class ToolStats:
    """Per-tool call counts, failures by outcome and latency (for ``voxpipe run --stats``)."""

    __slots__ = ("counts", "latency")

    def __init__(self) -> None:
        self.counts = {outcome: 0 for outcome in CallOutcome}
        self.latency = LatencyHistogram()

    def add(self, outcome: CallOutcome, seconds: float) -> None:
        self.counts[outcome] += 1
        if outcome is not CallOutcome.INVALID:  # a rejected call never ran
            self.latency.add(seconds)

    def summary(self) -> dict[str, Any]:
        """Calls, failures, each failure kind, and latency mean / p50 / p99 / max in ms."""
        calls = sum(self.counts.values())
        lat = self.latency
        out: dict[str, Any] = {"calls": calls, "failures": calls - self.counts[CallOutcome.OK]}
        out.update({o.value: n for o, n in self.counts.items() if o is not CallOutcome.OK})
        out.update(
            mean_ms=round((lat.total / lat.n * 1e3) if lat.n else 0.0, 3),
            p50_ms=round(lat.quantile(0.5) / 1e3, 3),
            p99_ms=round(lat.quantile(0.99) / 1e3, 3),
            max_ms=round(lat.max * 1e3, 3),
        )
        return out


# --- the processor ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """One call in flight; ``scope`` is cancelled by an interruption."""

    frame: ToolCallFrame
    spec: ToolSpec
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    scope: anyio.CancelScope
    interrupted: bool = False


class ToolRouter(Processor):
    """Runs the model's tool calls on Python functions and sends the results back upstream.

    Put it downstream of a realtime model. Tools come from ``functions`` (name -> import
    path) and ``modules`` (``@tool`` functions); ``schemas`` and ``overrides`` adjust them;
    ``timeout_s`` bounds each call unless the tool sets its own.
    """

    Params = ToolRouterParams
    inline = True  # passing frames on is all it does in the caller's task; calls run in tasks
    accepts_g711 = True  # audio passes through untouched

    def __init__(self, params: ToolRouterParams | dict[str, Any] | None = None, *, name: str | None = None,
                 registry: ToolRegistry | None = None) -> None:
        super().__init__(params, name=name)
        self.registry = registry if registry is not None else ToolRegistry.from_params(self.params)
        self._calls: dict[str, _Call] = {}
        self._running = 0
        self._idle = anyio.Event()
        self._idle.set()
        self._tool_stats: dict[str, ToolStats] = {n: ToolStats() for n in self.registry.names()}
        self._unknown_calls = 0

    def clone(self) -> ToolRouter:
        """A fresh router sharing this one's registry (built from the same params; read-only once built)."""
        return type(self)(self.params.model_copy(deep=True), name=self.name, registry=self.registry)

    async def start(self) -> None:
        # Frames pushed in start() wait in the queues of neighbours that have not started yet.
        await self.push(ToolsAvailableFrame(tools=self.registry.announce()), _UP)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, ToolCallFrame) and direction is Direction.DOWNSTREAM:
            self._dispatch(frame)
            return
        if type(frame) is InterruptionFrame:
            self._interrupt(frame.turn)
        await self.push(frame, direction)

    async def stop(self) -> None:
        """Let running calls finish (each is bounded by its timeout) so their results go out."""
        deadline = max([self.params.timeout_s] + [s.timeout_s or 0.0 for s in self.registry.specs()]) + 1.0
        with anyio.move_on_after(deadline) as scope:
            while self._running:
                await self._idle.wait()
        if scope.cancelled_caught:
            busy = ", ".join(f"{c.spec.name} ({c.frame.call_id})" for c in self._calls.values())
            self.log.warning("%s: tool calls still running %.1fs after the end of stream: %s", self.name, deadline, busy)

    def statistics(self) -> dict[str, Any]:
        """The base queue and timing figures, plus ``tools``: per-tool calls, failures, latency."""
        out = super().statistics()
        out["tools"] = {name: stats.summary() for name, stats in self._tool_stats.items()}
        out["unknown_tool_calls"] = self._unknown_calls
        return out

    # --- calls --------------------------------------------------------------------------------

    def _dispatch(self, frame: ToolCallFrame) -> None:
        """Validate the call now; run it (or answer its error) in a task of its own."""
        spec = self.registry.get(frame.name)
        if spec is None:
            self._unknown_calls += 1
            self.log.warning("%s: the model called unknown tool %r (call %s)", self.name, frame.name, frame.call_id)
            self._spawn_answer(frame, error_output(self.registry.unknown_tool_message(frame.name)))
            return
        if frame.call_id in self._calls:
            self._spawn_answer(frame, error_output(f"call id {frame.call_id!r} is already running; use a new call id"))
            return
        try:
            args, kwargs = spec.bind(_parse_arguments(frame.arguments), self.context)
        except ToolArgumentsError as exc:
            self._tool_stats[spec.name].add(CallOutcome.INVALID, 0.0)
            self.log.warning("%s: call %s: %s", self.name, frame.call_id, exc)
            self._spawn_answer(frame, error_output(str(exc)))
            return
        call = _Call(frame, spec, args, kwargs, anyio.CancelScope())
        self._calls[frame.call_id] = call
        self._begin()
        self.spawn(self._run_call, call)

    def _spawn_answer(self, frame: ToolCallFrame, output: str) -> None:
        # Pushed from a task of its own: the upstream neighbour may be the very task that
        # handed us the call, and its queue may be full.
        self._begin()
        self.spawn(self._answer, frame, output, True)

    def _interrupt(self, turn: int) -> None:
        for call in self._calls.values():
            if call.spec.cancel_on_interruption and call.frame.turn < turn and not call.interrupted:
                call.interrupted = True
                call.scope.cancel()

    def _begin(self) -> None:
        if self._running == 0:
            self._idle = anyio.Event()
        self._running += 1

    def _end(self) -> None:
        self._running -= 1
        if self._running == 0:
            self._idle.set()

    async def _answer(self, frame: ToolCallFrame, output: str, is_error: bool) -> None:
        try:
            await self.push(ToolResultFrame(frame.call_id, frame.name, output, is_error, turn=frame.turn), _UP)
        finally:
            self._end()

    async def _run_call(self, call: _Call) -> None:
        try:
            outcome, output = await self._outcome(call)
        except BaseException:  # the graph is being cancelled: nobody is left to answer
            self._end()
            raise
        await self._answer(call.frame, output, outcome is not CallOutcome.OK)

    async def _outcome(self, call: _Call) -> tuple[CallOutcome, str]:
        """Run one call to its end and say how it went: the outcome and the output text."""
        spec, frame = call.spec, call.frame
        timeout = spec.timeout_s if spec.timeout_s is not None else self.params.timeout_s
        value: Any = _UNSET
        t0 = time.perf_counter()
        try:
            with call.scope:
                with anyio.move_on_after(timeout) as timer:
                    value = await self._invoke(spec, call.args, call.kwargs)
        except Exception as exc:
            outcome, output = CallOutcome.ERROR, self._failed(spec, frame, exc)
        else:
            if value is _UNSET and call.scope.cancelled_caught:
                outcome = CallOutcome.CANCELLED
                output = error_output(
                    f"{spec.name} was cancelled because the user interrupted; call it again if it is still needed"
                )
                self.log.info("%s: call %s of %s cancelled by an interruption", self.name, frame.call_id, spec.name)
            elif value is _UNSET and timer.cancelled_caught:
                outcome = CallOutcome.TIMEOUT
                output = error_output(f"{spec.name} did not finish within {timeout:g} s")
                self.log.warning("%s: tool %s timed out after %g s (call %s)", self.name, spec.name, timeout, frame.call_id)
            else:
                try:
                    outcome, output = CallOutcome.OK, result_output(value)
                except ValueError as exc:
                    outcome = CallOutcome.UNSERIALISABLE
                    output = error_output(f"{spec.name} returned a result that cannot be sent as JSON")
                    self.log.error(
                        "%s: tool %s returned a %s that cannot be serialised to JSON (%s); return a dict, "
                        "list, dataclass, pydantic model or primitive",
                        self.name, spec.name, type(value).__name__, exc,
                    )
        finally:
            del self._calls[frame.call_id]
        self._tool_stats[spec.name].add(outcome, time.perf_counter() - t0)
        return outcome, output

    def _failed(self, spec: ToolSpec, frame: ToolCallFrame, exc: Exception) -> str:
        if isinstance(exc, ToolError):  # raised on purpose: its message is the answer
            self.log.info("%s: tool %s answered an error (call %s): %s", self.name, spec.name, frame.call_id, exc)
            text = str(exc) or f"{spec.name} failed"
            return error_output(text if len(text) <= 300 else text[:297] + "...")
        # a bug in the tool: one paragraph for the developer, no exception text for the user
        self.log.error("%s: tool %s raised %s (call %s); the model was told it hit an internal error",
                       self.name, spec.name, _exception_line(exc), frame.call_id)
        self.log.debug("%s: traceback of tool %s", self.name, spec.name, exc_info=exc)
        return error_output(f"{spec.name} hit an internal error")

    @staticmethod
    async def _invoke(spec: ToolSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if spec.is_async:
            value = await spec.fn(*args, **kwargs)
        else:
            value = await anyio.to_thread.run_sync(functools.partial(spec.fn, *args, **kwargs), abandon_on_cancel=True)
        if inspect.isawaitable(value):  # a plain function that hands back a coroutine
            value = await value
        return value


_UNSET = object()


def _parse_arguments(arguments: Any) -> Any:
    """Arguments normally arrive parsed; accept the raw JSON text too."""
    if isinstance(arguments, str):
        try:
            return json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as exc:
            raise ToolArgumentsError(f"arguments are not valid JSON ({exc}); send a JSON object") from None
    return arguments
