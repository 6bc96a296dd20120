"""tools.router: schemas from hints, validation, running calls, interruptions, metrics."""

import dataclasses
import inspect
import json
import sys
import threading
import types
from typing import Annotated, Literal, Optional

import anyio
import numpy as np
import pytest
from pydantic import BaseModel, Field, ValidationError

from pipeline.frames import (
    AudioFrame,
    Direction,
    Frame,
    InterruptionFrame,
    TextFrame,
    ToolCallFrame,
    ToolResultFrame,
    ToolsAvailableFrame,
)
from pipeline.graph import Graph
from pipeline.processor import Processor
from pipeline.testing import CollectSink, run_frames, run_graph
from processors.tools.examples import get_weather
from processors.tools.schema import (
    Docstring,
    ToolArgumentsError,
    ToolDefinitionError,
    build_tool_spec,
    parse_docstring,
    tool,
)
from processors.tools.router import ToolRegistry, ToolRouter, ToolRouterParams, result_output

# --- schemas ----------------------------------------------------------------------------------


class Address(BaseModel):
    """A postal address."""

    street: str
    city: str = Field(description="City name")


class Booking(BaseModel):
    name: str
    address: Address


class TreeNode(BaseModel):
    value: int
    children: list["TreeNode"] = []


@dataclasses.dataclass
class Reading:
    sensor: str
    value: float


WEATHER_SCHEMA = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "location": {"type": "string", "description": 'City name, for example "Paris" or "New York".'},
            "unit": {
                "type": "string",
                "enum": ["celsius", "fahrenheit"],
                "default": "celsius",
                "description": "Temperature unit the answer should use.",
            },
        },
        "required": ["location"],
    },
}


def test_sample_weather_schema_is_the_flat_realtime_shape():
    """get_weather's schema is exactly the flat Realtime tool, enum and descriptions included."""
    assert build_tool_spec(get_weather).to_realtime() == WEATHER_SCHEMA


def test_optional_literal_and_annotated_arguments():
    """Optional allows null and is not required; Literal is an enum; Annotated descriptions win."""

    def book(
        name: str,
        when: Optional[str] = None,
        seats: Annotated[int, Field(ge=1, description="How many seats.")] = 2,
        zone: Literal["inside", "terrace"] | None = None,
        note: str | None = ...,  # type: ignore[assignment]
    ):
        """Book a table.

        Args:
            name: Who books.
            when (str, optional): ISO time,
                in the restaurant's time zone.
            seats: overridden by Annotated.
        """

    params = build_tool_spec(book).parameters
    props = params["properties"]
    assert params["required"] == ["name", "note"]
    assert props["when"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "default": None,
        "description": "ISO time, in the restaurant's time zone.",
    }
    assert props["seats"] == {"type": "integer", "minimum": 1, "default": 2, "description": "How many seats."}
    assert props["zone"]["anyOf"][0] == {"type": "string", "enum": ["inside", "terrace"]}
    assert props["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert "title" not in json.dumps(params)


def test_nested_models_are_inlined_and_recursive_ones_keep_defs():
    """Nested pydantic models are inlined into the schema; a recursive model keeps $defs."""

    def reserve(booking: Booking, tree: Optional[int] = None):
        """Reserve."""

    props = build_tool_spec(reserve).parameters["properties"]
    assert props["booking"]["properties"]["address"] == {
        "type": "object",
        "description": "A postal address.",
        "properties": {"street": {"type": "string"}, "city": {"type": "string", "description": "City name"}},
        "required": ["street", "city"],
    }
    assert "$defs" not in build_tool_spec(reserve).parameters

    def walk(root: TreeNode):
        """Walk a tree."""

    params = build_tool_spec(walk).parameters
    assert params["properties"]["root"] == {"$ref": "#/$defs/TreeNode"}
    assert params["$defs"]["TreeNode"]["properties"]["children"]["items"] == {"$ref": "#/$defs/TreeNode"}


def test_argument_names_that_clash_with_pydantic_still_work():
    """Arguments named like BaseModel attributes or with a leading underscore keep their names."""

    def odd(json: str, _private: int = 0, model_config: bool = False):
        """Odd names."""
        return json, _private, model_config

    spec = build_tool_spec(odd)
    assert list(spec.parameters["properties"]) == ["json", "_private", "model_config"]
    args, kwargs = spec.bind({"json": "x", "_private": 3})
    assert spec.fn(*args, **kwargs) == ("x", 3, False)


@pytest.mark.parametrize(
    "doc",
    [
        "Find a city.\n\nArgs:\n    city: The city\n        to find.\n    limit (int): Max results.\n\nReturns:\n    x",
        "Find a city.\n\nParameters\n----------\ncity : str\n    The city\n    to find.\nlimit : int\n    Max results.\n\n"
        "Returns\n-------\nx",
        "Find a city.\n\n:param city: The city\n    to find.\n:param int limit: Max results.\n:returns: x",
        "Find a city.\n\n@param city: The city\n    to find.\n@param limit: Max results.\n@type limit: int\n@return: x",
        "Find a city.\n\nArgs:\n    city: The city\n        to find.\n\nKeyword Args:\n    limit: Max results.\n\nRaises:\n"
        "    ValueError: never",
    ],
    ids=["google", "numpy", "sphinx", "epydoc", "google-keyword-args"],
)
def test_docstring_styles(doc):
    """Google, NumPy, Sphinx and Epydoc docstrings give the same description and argument docs."""
    parsed = parse_docstring(doc)
    assert parsed.description == "Find a city."
    assert parsed.params == {"city": "The city to find.", "limit": "Max results."}


def test_docstring_description_keeps_paragraphs():
    """The description joins wrapped lines and keeps paragraph breaks, up to the first section."""
    parsed = parse_docstring("Line one\ncontinues.\n\nSecond paragraph.\n\nArgs:\n    a: x")
    assert parsed.description == "Line one continues.\n\nSecond paragraph."


def test_docstring_without_sections_is_all_description():
    """A docstring with no sections, or one no style can parse, is all description and no params."""
    assert parse_docstring("Ping the\nserver.") == Docstring("Ping the server.", {})
    assert parse_docstring("Odd.\n\n:param: missing name") == Docstring("Odd.\n\n:param: missing name", {})
    assert parse_docstring("") == Docstring("", {})


def test_decorator_options_and_explicit_schema():
    """@tool options name, describe and re-schema a tool; explicit build arguments beat them."""
    schema = {"type": "object", "properties": {"q": {"type": "string", "maxLength": 20}}, "required": ["q"]}

    @tool(name="search_docs", description="Search the docs.", parameters=schema, timeout_s=2, cancel_on_interruption=True)
    async def search(q: str) -> list:
        """Ignored."""
        return [q]

    spec = build_tool_spec(search)
    assert (spec.name, spec.description, spec.parameters) == ("search_docs", "Search the docs.", schema)
    assert (spec.timeout_s, spec.cancel_on_interruption, spec.is_async) == (2, True, True)
    assert build_tool_spec(search, name="s2", timeout_s=5).timeout_s == 5
    # the signature still validates, whatever the explicit schema says
    with pytest.raises(ToolArgumentsError, match="q is required"):
        spec.bind({})


def test_bind_reports_every_bad_argument_for_the_model():
    """Validation errors name each argument, what was expected and what was given."""
    spec = build_tool_spec(get_weather)
    with pytest.raises(ToolArgumentsError) as err:
        spec.bind({"unit": "kelvin", "city": "Paris"})
    assert str(err.value) == (
        "invalid arguments for get_weather: location is required; "
        "unit: Input should be 'celsius' or 'fahrenheit' (got 'kelvin'); city is not an argument of this tool"
    )
    assert spec.bind({"location": "Paris"}) == ((), {"location": "Paris"})


def test_bind_keeps_positional_only_arguments_positional():
    """Positional-only parameters are passed by position."""

    def pos(a: int, /, b: int = 1):
        """Add."""
        return a + b

    spec = build_tool_spec(pos)
    args, kwargs = spec.bind({"a": "2", "b": 3})
    assert (args, kwargs) == ((2,), {"b": 3})


def test_definition_errors_say_what_to_change():
    """Signatures that cannot be described raise errors naming the argument and the fix."""

    def star(*items: int):
        """Star."""

    class Opaque:
        pass

    def opaque(x: Opaque):
        """Opaque."""

    with pytest.raises(ToolDefinitionError, match=r"\*items .* list each argument explicitly"):
        build_tool_spec(star)
    with pytest.raises(ToolDefinitionError, match=r"argument 'x' has type .*Opaque, which has no JSON Schema; use str"):
        build_tool_spec(opaque)
    with pytest.raises(ToolDefinitionError, match="not a valid function name"):
        build_tool_spec(get_weather, name="get weather")
    with pytest.raises(ToolDefinitionError, match="JSON Schema object"):
        build_tool_spec(get_weather, parameters={"type": "string"})


def test_results_serialise_common_python_values():
    """Dicts, dataclasses, pydantic models and strings become JSON; unknown types raise."""
    assert json.loads(result_output({"a": [1, 2.5, None]})) == {"a": [1, 2.5, None]}
    assert json.loads(result_output(Reading("t1", 21.5))) == {"sensor": "t1", "value": 21.5}
    assert json.loads(result_output(Address(street="Main", city="Oslo"))) == {"street": "Main", "city": "Oslo"}
    assert result_output("sunny") == '"sunny"'
    assert result_output(float("nan")) == "null"
    with pytest.raises(ValueError, match="Unable to serialize unknown type"):
        result_output(object())


# --- the tool table from params -----------------------------------------------------------------


@pytest.fixture
def toolmod(monkeypatch):
    """A throwaway module ``vp_test_tools`` that tests fill with tool functions."""
    mod = types.ModuleType("vp_test_tools")
    monkeypatch.setitem(sys.modules, "vp_test_tools", mod)
    return mod


def make_router(mod, *fns, **params) -> ToolRouter:
    """A router over ``fns`` (added to ``mod``) registered by import path."""
    for fn in fns:
        setattr(mod, fn.__name__, fn)
    functions = {fn.__name__: f"{mod.__name__}:{fn.__name__}" for fn in fns}
    return ToolRouter({"functions": functions, **params})


def test_modules_collect_decorated_functions(toolmod):
    """`modules` picks up @tool functions (each once) and leaves undecorated ones out."""

    @tool
    def ping() -> str:
        """Ping."""
        return "pong"

    def helper():
        pass

    toolmod.ping, toolmod.helper, toolmod.alias = ping, helper, ping
    toolmod.get_weather = get_weather  # re-exported from another module
    reg = ToolRegistry.from_params(ToolRouterParams(modules=["vp_test_tools", "processors.tools.examples"]))
    assert reg.names() == ["ping", "get_weather"]


def test_overrides_and_schemas_params_apply(toolmod):
    """`overrides` and `schemas` in YAML params beat the docstring and the hints."""
    schema = {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}
    params = ToolRouterParams(
        functions={"weather": "processors.tools.examples:get_weather"},
        schemas={"weather": schema},
        overrides={"weather": {"description": "Weather now.", "timeout_s": 3, "cancel_on_interruption": True}},
    )
    spec = ToolRegistry.from_params(params).get("weather")
    assert spec.to_realtime() == {"type": "function", "name": "weather", "description": "Weather now.", "parameters": schema}
    assert (spec.timeout_s, spec.cancel_on_interruption) == (3, True)


def test_param_errors_point_at_the_param():
    """Bad import paths, unknown tool names in schemas/overrides and duplicates are reported clearly."""
    with pytest.raises(ValidationError, match="write it as 'package.module:function'"):
        ToolRouterParams(functions={"w": "processors.tools.examples.get_weather"})
    with pytest.raises(ValidationError, match="has no 'get_wether' \\(did you mean 'get_weather'\\?\\)"):
        ToolRouterParams(functions={"w": "processors.tools.examples:get_wether"})
    with pytest.raises(ValidationError, match="cannot import module 'no_such_mod'"):
        ToolRouterParams(modules=["no_such_mod"])
    with pytest.raises(ToolDefinitionError, match="params.schemas.get_wether: .*did you mean 'get_weather'"):
        ToolRouter({"modules": ["processors.tools.examples"], "schemas": {"get_wether": {"type": "object"}}})
    with pytest.raises(ToolDefinitionError, match="two tools are named 'get_weather'"):
        ToolRouter({"modules": ["processors.tools.examples"], "functions": {"get_weather": "processors.tools.router:error_output"}})
    with pytest.raises(ToolDefinitionError, match="no tools: list functions in params.functions"):
        ToolRouter({})


# --- the router in a graph ----------------------------------------------------------------------


class CallSource(Processor):
    """Pushes frames (calling, and awaiting if need be, any callables in the list), then ends once
    ``expect`` tool results have come back upstream; records everything that comes back."""

    def __init__(self, items, expect: int) -> None:
        super().__init__(name="source")
        self.items = list(items)
        self.expect = expect
        self.received: list[Frame] = []
        self._done = anyio.Event()

    async def produce(self) -> None:
        for item in self.items:
            if isinstance(item, Frame):
                await self.push(item)
            elif inspect.isawaitable(outcome := item()):
                await outcome
        if self.expect:
            await self._done.wait()

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.received.append(frame)
        if sum(isinstance(f, ToolResultFrame) for f in self.received) >= self.expect:
            self._done.set()


async def run_calls(router: ToolRouter, items, expect: int):
    """Run source -> router -> sink until ``expect`` results are back; return (upstream, downstream)."""
    source, sink = CallSource(items, expect), CollectSink()
    graph = Graph.chain(source, router, sink, name="tools-test")
    graph.check()
    result = await run_graph(graph, timeout_s=10)
    assert result.ok, result.errors
    return source.received, sink.received


def results(frames) -> dict[str, ToolResultFrame]:
    return {f.call_id: f for f in frames if isinstance(f, ToolResultFrame)}


def call(call_id: str, name: str, turn: int = 1, **arguments) -> ToolCallFrame:
    return ToolCallFrame(call_id, name, arguments, turn=turn)


@pytest.mark.anyio
async def test_announces_tools_upstream_and_passes_frames_untouched():
    """At start the tool list goes upstream; audio and text pass through as the same objects."""
    audio = AudioFrame(np.arange(480, dtype=np.int16), 24000, pts=0)
    text = TextFrame("hello")
    progress_up = TextFrame("from the sink")
    router = ToolRouter({"modules": ["processors.tools.examples"]})
    out = await run_frames(router, [audio, text, (progress_up, Direction.UPSTREAM)])
    assert out.downstream[0] is audio and out.downstream[1] is text
    announced = out.of_type(ToolsAvailableFrame, Direction.UPSTREAM)
    assert [a.tools for a in announced] == [[WEATHER_SCHEMA]]
    assert out.upstream[-1] is progress_up


@pytest.mark.anyio
async def test_sync_tool_runs_in_a_worker_thread_and_answers_upstream(toolmod):
    """A plain function runs off the event loop thread; its JSON result goes upstream with its call id."""
    loop_thread = threading.get_ident()
    threads = []

    def weather_probe(location: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
        """Probe."""
        threads.append(threading.get_ident())
        return get_weather(location, unit)

    router = make_router(toolmod, weather_probe)
    up, down = await run_calls(router, [call("c1", "weather_probe", location="Paris", unit="fahrenheit")], expect=1)
    res = results(up)["c1"]
    assert (res.name, res.is_error, res.turn) == ("weather_probe", False, 1)
    assert json.loads(res.output) == {"location": "Paris", "temp_c": 18, "conditions": "partly cloudy", "temp_f": 64}
    assert threads and threads[0] != loop_thread
    assert not any(isinstance(f, (ToolCallFrame, ToolResultFrame)) for f in down)


@pytest.mark.anyio
async def test_sample_weather_tool_through_yaml_style_params():
    """The demo's get_weather, registered by import path, answers known cities and errors on others."""
    router = ToolRouter({"functions": {"get_weather": "processors.tools.examples:get_weather"}})
    up, _ = await run_calls(
        router, [call("c1", "get_weather", location="new york"), call("c2", "get_weather", location="Atlantis")], expect=2
    )
    res = results(up)
    assert json.loads(res["c1"].output) == {"location": "New York", "temp_c": 22, "conditions": "sunny"}
    assert res["c2"].is_error
    assert json.loads(res["c2"].output)["error"].startswith(
        "no weather data for 'Atlantis'; known cities: Paris, London"
    )


@pytest.mark.anyio
async def test_async_tool_runs_on_the_loop(toolmod):
    """An async tool runs on the event loop thread and its pydantic result is serialised."""
    loop_thread = threading.get_ident()

    async def lookup(street: str) -> Address:
        """Look up an address."""
        assert threading.get_ident() == loop_thread
        await anyio.lowlevel.checkpoint()
        return Address(street=street, city="Oslo")

    out = await run_frames(make_router(toolmod, lookup), [call("c1", "lookup", street="Main")])
    (res,) = out.of_type(ToolResultFrame, Direction.UPSTREAM)
    assert (res.call_id, res.is_error, json.loads(res.output)) == ("c1", False, {"street": "Main", "city": "Oslo"})


@pytest.mark.anyio
async def test_unknown_tool_and_invalid_arguments_answer_errors():
    """Unknown tools and bad arguments get error results the model can act on; nothing raises."""
    router = ToolRouter({"modules": ["processors.tools.examples"]})
    out = await run_frames(
        router,
        [
            call("c1", "get_wether", location="Paris"),
            call("c2", "get_weather", location="Paris", unit="kelvin"),
            ToolCallFrame("c3", "get_weather", '{"location": "Par', turn=1),  # type: ignore[arg-type]
        ],
    )
    res = results(out.upstream)
    assert all(r.is_error for r in res.values()) and set(res) == {"c1", "c2", "c3"}
    assert json.loads(res["c1"].output) == {
        "error": "unknown tool 'get_wether'; did you mean 'get_weather'? Available tools: get_weather."
    }
    assert json.loads(res["c2"].output) == {
        "error": "invalid arguments for get_weather: unit: Input should be 'celsius' or 'fahrenheit' (got 'kelvin')"
    }
    assert json.loads(res["c3"].output)["error"].startswith("arguments are not valid JSON")
    assert out.result.ok
    stats = out.stats["ToolRouter"]
    assert stats["unknown_tool_calls"] == 1
    assert stats["tools"]["get_weather"]["calls"] == 2
    assert stats["tools"]["get_weather"]["invalid"] == 2


@pytest.mark.anyio
async def test_exception_and_unserialisable_result_become_error_results(toolmod, caplog):
    """A raising tool and a non-JSON result answer with errors, logged for the developer."""

    async def boom(x: int) -> int:
        """Fail."""
        raise RuntimeError(f"database down for {x}")

    def opaque() -> object:
        """Return something that is not JSON."""
        return threading.Lock()

    up, _ = await run_calls(
        make_router(toolmod, boom, opaque),
        [call("c1", "boom", x=3), call("c2", "opaque"), call("c3", "boom", x="x")],
        expect=3,
    )
    res = results(up)
    assert json.loads(res["c1"].output) == {"error": "boom hit an internal error"}  # a bug: no exception text for the user
    assert json.loads(res["c2"].output) == {"error": "opaque returned a result that cannot be sent as JSON"}
    assert json.loads(res["c3"].output)["error"].startswith("invalid arguments for boom: x: Input should be a valid integer")
    assert all(r.is_error for r in res.values())
    failures = [r for r in caplog.records if r.levelname == "ERROR"]
    assert any(not r.exc_info and "boom raised RuntimeError: database down for 3 (" in r.getMessage() for r in failures)
    assert any("opaque returned a lock" in r.getMessage() for r in failures)


@pytest.mark.anyio
async def test_timeouts_default_and_per_tool(toolmod):
    """A call past its timeout (router default or per tool) answers with a timeout error."""
    release = threading.Event()
    never = anyio.Event()

    async def hangs() -> str:
        """Never returns."""
        await never.wait()
        return "late"

    @tool(timeout_s=0.01)
    def blocks() -> str:
        """Blocks its thread."""
        release.wait(10)
        return "late"

    async def quick() -> str:
        """Quick."""
        return "fast"

    router = make_router(toolmod, hangs, blocks, quick, timeout_s=0.02)
    try:
        up, _ = await run_calls(router, [call("c1", "hangs"), call("c2", "blocks"), call("c3", "quick")], expect=3)
    finally:
        release.set()  # free the abandoned worker thread
    res = results(up)
    assert json.loads(res["c1"].output) == {"error": "hangs did not finish within 0.02 s"}
    assert json.loads(res["c2"].output) == {"error": "blocks did not finish within 0.01 s"}
    assert (res["c3"].is_error, res["c3"].output) == (False, '"fast"')
    tools = router.statistics()["tools"]
    assert (tools["hangs"]["timeout"], tools["blocks"]["failures"], tools["quick"]["failures"]) == (1, 1, 0)


@pytest.mark.anyio
async def test_calls_run_concurrently_and_answer_in_completion_order(toolmod):
    """Two slow calls overlap: the first waits for the second to finish, so results come back second first."""
    second_done = anyio.Event()
    both_started = threading.Barrier(2, timeout=5)

    async def first() -> str:
        """Waits for the second."""
        await second_done.wait()
        return "first"

    async def second() -> str:
        """Finishes at once."""
        await anyio.lowlevel.checkpoint()
        second_done.set()
        return "second"

    def left() -> str:
        """Thread A."""
        both_started.wait()  # raises BrokenBarrierError if the threads do not overlap
        return "left"

    def right() -> str:
        """Thread B."""
        both_started.wait()
        return "right"

    router = make_router(toolmod, first, second, left, right, timeout_s=6)
    up, _ = await run_calls(
        router, [call("a", "first"), call("b", "second"), call("l", "left"), call("r", "right")], expect=4
    )
    order = [f.call_id for f in up if isinstance(f, ToolResultFrame)]
    assert order.index("b") < order.index("a")
    res = results(up)
    assert [res[c].output for c in "abl"] == ['"first"', '"second"', '"left"']
    assert not any(r.is_error for r in res.values())


@pytest.mark.anyio
async def test_interruption_cancels_only_cancellable_calls(toolmod):
    """On barge-in, cancel_on_interruption calls answer "cancelled"; the others finish and answer."""
    release, lookup_started = anyio.Event(), anyio.Event()

    @tool(cancel_on_interruption=True)
    async def lookup() -> str:
        """Moot once the user talks again."""
        lookup_started.set()
        await release.wait()
        return "looked up"

    async def order_pizza() -> str:
        """Has effects: must finish."""
        await release.wait()
        return "ordered"

    interruption = InterruptionFrame(turn=2)
    up, down = await run_calls(
        make_router(toolmod, lookup, order_pizza),
        [
            call("c1", "lookup", turn=1),
            call("c2", "order_pizza", turn=1),
            lookup_started.wait,  # c1 is running
            call("c3", "lookup", turn=1),  # c3 is interrupted before its task even started
            interruption,
            release.set,
        ],
        expect=3,
    )
    res = results(up)
    assert res["c1"].is_error and json.loads(res["c1"].output) == {
        "error": "lookup was cancelled because the user interrupted; call it again if it is still needed"
    }
    assert res["c3"].output == res["c1"].output
    assert (res["c2"].is_error, res["c2"].output) == (False, '"ordered"')
    assert interruption in down


@pytest.mark.anyio
async def test_end_of_stream_waits_for_running_calls(toolmod):
    """At the end of stream, stop() lets a running call finish instead of cancelling it."""
    gate = threading.Event()

    def slow() -> str:
        """Slow in a thread."""
        gate.wait(5)
        return "done"

    router = make_router(toolmod, slow)
    source, sink = CallSource([call("c1", "slow")], expect=0), CollectSink()
    graph = Graph.chain(source, router, sink, name="tools-end")
    graph.check()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_graph, graph)
        await anyio.wait_all_tasks_blocked()  # the source has ended; the router waits in stop()
        assert router.statistics()["tools"]["slow"]["calls"] == 0
        gate.set()
    stats = router.statistics()["tools"]["slow"]
    assert (stats["calls"], stats["failures"]) == (1, 0)


def test_yaml_errors_name_the_line_and_the_fix():
    """A typo in a YAML function path or a schemas key is reported at its line with a suggestion."""
    from pipeline.errors import PipelineError
    from pipeline.loader import load_text

    text = (
        "voxpipe: 1\n"
        "name: tools\n"
        "processors:\n"
        "  src: {type: procs:Counter, params: {count: 1}}\n"
        "  tools:\n"
        "    type: tools.router\n"
        "    params:\n"
        '      functions: {get_weather: "processors.tools.examples:get_wether"}\n'
        "links:\n"
        "  - src -> tools\n"
    )
    with pytest.raises(PipelineError) as err:
        load_text(text, file="agent.yaml")
    assert str(err.value).startswith(
        "agent.yaml:8: processor 'tools': param 'functions.get_weather': "
        "module 'processors.tools.examples' has no 'get_wether' (did you mean 'get_weather'?)"
    )
    fixed = text.replace("get_wether", "get_weather")
    with pytest.raises(PipelineError, match="processor 'tools': params.schemas.weather: no tool is named 'weather'"):
        load_text(fixed.replace("      functions:", "      schemas: {weather: {type: object}}\n      functions:"))
    graph = load_text(fixed)
    assert graph.nodes["tools"].processor.registry.names() == ["get_weather"]


def test_demo_rules_weather_calls_are_answerable():
    """Every weather example in the shipped demo rules gets data whose fields fill the spoken reply."""
    import re
    from pathlib import Path

    import yaml

    rules = yaml.safe_load((Path(__file__).parent.parent / "processors/brain/demo_rules.yaml").read_text())["rules"]
    weather = [r for r in rules if r.get("call", {}).get("name") == "get_weather"]
    assert weather
    for rule in weather:
        for example in rule["examples"]:
            city = re.search(rule["pattern"], example).group("city")
            result = get_weather(city.title())
            assert rule["then"].format(**result)


# --- the session context parameter ------------------------------------------------------------

from pipeline.session import SessionContext  # noqa: E402


def test_a_context_parameter_is_not_in_the_schema():
    """A SessionContext parameter (plain, optional or Annotated) never reaches the model's schema."""

    def transfer(department: str, ctx: SessionContext) -> dict:
        """Transfer the caller.

        Args:
            department: Where to.
        """
        return {}

    def maybe(ctx: Optional[SessionContext] = None, *, note: str = "") -> dict:
        """Maybe."""
        return {}

    spec = build_tool_spec(transfer)
    assert spec.context == "ctx" and spec.parameters["properties"].keys() == {"department"}
    assert spec.parameters["required"] == ["department"] and "ctx" not in json.dumps(spec.to_realtime())
    assert build_tool_spec(maybe).context == "ctx" and build_tool_spec(maybe).parameters["properties"].keys() == {"note"}

    def two(a: SessionContext, b: SessionContext) -> None:
        """Two."""

    with pytest.raises(ToolDefinitionError, match="one SessionContext parameter"):
        build_tool_spec(two)


@pytest.mark.anyio
async def test_the_router_passes_the_session_context(toolmod):
    """The tool gets the run's SessionContext (call id, parties, custom parameters); the model cannot set it."""
    seen = []

    def who_called(ctx: SessionContext, greeting: str = "hi") -> dict:
        """Who is on the line."""
        seen.append(ctx)
        return {"greeting": greeting, "from": ctx.metadata["from"], "agent": ctx.metadata["custom_parameters"]["agent"]}

    async def also_async(ctx: SessionContext | None = None) -> str:
        """The session id."""
        return ctx.id

    ctx = SessionContext(id="s1", metadata={"call_id": "CA1", "from": "+15550001111",
                                            "custom_parameters": {"agent": "sales"}})
    router = make_router(toolmod, who_called, also_async)
    out = await run_frames(router, [call("c1", "who_called", greeting="hello"), call("c2", "also_async"),
                                    call("c3", "who_called", ctx="forged")], context=ctx, expect_upstream=4)
    res = results(out.upstream)
    assert json.loads(res["c1"].output) == {"greeting": "hello", "from": "+15550001111", "agent": "sales"}
    assert seen == [ctx] and json.loads(res["c2"].output) == "s1"
    assert res["c3"].is_error and "ctx is not an argument of this tool" in res["c3"].output
