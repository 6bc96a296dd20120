"""The scripted responder: rules, tool calls validated against the session's schemas, the processor."""

from __future__ import annotations

import json

import anyio
import pytest

from pipeline.frames import (
    Direction,
    InterruptionFrame,
    ResponseEndFrame,
    ResponseStartFrame,
    TextFrame,
    ToolCallFrame,
    ToolResultFrame,
    ToolsAvailableFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
)
from pipeline.graph import Graph
from pipeline.testing import CollectSink, FrameSource, run_frames, run_graph
from processors.brain.scripted import DEMO_RULES, Brain, Call, RulesError, Say, ScriptedResponder
from processors.brain.rules import heard_out_of_grammar, normalize_transcript, schema_errors

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["location"],
        "additionalProperties": False,
    },
}


@pytest.fixture(scope="module")
def demo() -> Brain:
    return Brain.from_yaml(DEMO_RULES)


def brain(rules: list | dict, **top) -> Brain:
    data = {"rules": rules, **top} if isinstance(rules, list) else rules
    return Brain.from_dict(data, source="test.yaml")


# --- the demo rules ----------------------------------------------------------------------------


def test_demo_greeting(demo):
    """'Hello!' gets the greeting, whatever the case and punctuation."""
    assert demo.respond("Hello!", []) == Say("Hello! I am the voxpipe local model.")


def test_demo_weather_calls_declared_tool_with_title_cased_city(demo):
    """A weather question becomes get_weather(location='Paris') when the session declares it."""
    reply = demo.respond("What is the weather in Paris?", [WEATHER])
    assert reply == Call("get_weather", {"location": "Paris"})
    assert reply.context["city"] == "paris"


def test_demo_weather_follow_up_uses_result_fields(demo):
    """The follow-up is formatted from the tool result's fields and the call's arguments."""
    call = demo.respond("what is the weather in new york", [WEATHER])
    assert call == Call("get_weather", {"location": "New York"})
    say = demo.after_tool(call, json.dumps({"temp_c": 22, "conditions": "sunny"}))
    assert say == Say("It is 22 degrees and sunny in New York.")


def test_after_tool_with_a_call_rebuilt_from_the_wire(demo):
    """A Call made of name and arguments only (as a server rebuilds it) finds the rule's template."""
    say = demo.after_tool(Call("get_weather", {"location": "Tokyo"}),
                          '{"location": "Tokyo", "temp_c": 25, "conditions": "humid and clear"}')
    assert say == Say("It is 25 degrees and humid and clear in Tokyo.")


def test_after_tool_with_an_error_or_other_fields(demo):
    """An error result is spoken as a failure; a result with other fields than the template is described."""
    call = demo.respond("what is the weather in rome", [WEATHER])
    assert demo.after_tool(call, '{"error": "no data for Rome"}') == Say("Sorry, I could not get the weather: no data for Rome.")
    assert demo.after_tool(call, '{"temp_c": 24}') == Say("The weather for Rome: the temp is 24 degrees Celsius.")
    berlin = demo.respond("what is the weather in berlin", [WEATHER])
    said = demo.after_tool(berlin, '{"location": "Berlin", "temperature_c": 21, "conditions": "sunny"}').text
    assert said == "The weather for Berlin: the temperature is 21 degrees Celsius and the conditions are sunny."


def test_demo_story_is_long(demo):
    """The story reply is several sentences (over 5 s of speech at 160 wpm: > 14 words)."""
    text = demo.respond("tell me a story", []).text
    assert text.count(".") >= 4 and len(text.split()) > 60


def test_demo_fallback_and_phrases(demo):
    """Unknown words get the fallback; phrases() lists every example for the grammar."""
    assert demo.respond("purple elephants dance", []).text.startswith("Sorry, I did not understand.")
    phrases = demo.phrases()
    assert "hello" in phrases and "what is the weather in paris" in phrases and "tell me a story" in phrases
    assert len(phrases) == len(set(phrases))
    for phrase in phrases:  # every example reaches a rule, not the fallback
        assert demo.respond(phrase, [WEATHER, {"type": "function", "name": "get_time", "parameters": {}}]) \
            != demo.respond("purple elephants dance", [])


# --- tool calls --------------------------------------------------------------------------------


def test_undeclared_tool_is_refused_aloud(demo):
    """A rule's tool the session did not declare is not called; the reply says why."""
    reply = demo.respond("what is the weather in berlin", [])
    assert reply == Say("I would use the get weather tool for that, but this session has not declared it.")


def test_bad_argument_type_is_refused_aloud():
    """An argument that does not match the declared schema's type is not sent."""
    b = brain([{"pattern": "weather in (?P<city>\\w+)", "call": {"name": "get_weather", "arguments": {"location": "{city}"}}}])
    tool = {**WEATHER, "parameters": {"type": "object", "properties": {"location": {"type": "integer"}},
                                      "required": ["location"]}}
    reply = b.respond("weather in paris", [tool])
    assert reply == Say("I cannot call the get weather tool: location must be integer, not string 'paris'.")


def test_arguments_are_coerced_where_unambiguous():
    """'{n}' fills an integer property as int; an enum value matches case-insensitively."""
    b = brain([{"pattern": "set (?P<n>\\d+) (?P<unit>\\w+)",
                "call": {"name": "set_timer", "arguments": {"minutes": "{n}", "unit": "{unit}", "loud": True}}}])
    tool = {"type": "function", "name": "set_timer", "parameters": {
        "type": "object", "required": ["minutes", "unit"],
        "properties": {"minutes": {"type": "integer", "minimum": 1}, "unit": {"enum": ["Minutes", "Hours"]},
                       "loud": {"type": "boolean"}}}}
    assert b.respond("Set 5 minutes", [tool]) == Call("set_timer", {"minutes": 5, "unit": "Minutes", "loud": True})
    assert b.respond("set 0 hours", [tool]) == Say("I cannot call the set timer tool: minutes must be at least 1.")
    assert b.respond("set 3 days", [tool]).text.endswith("unit must be one of 'Minutes', 'Hours', not 'days'.")


def test_missing_required_argument_is_refused():
    """A schema's required field that the rule does not fill is reported."""
    b = brain([{"pattern": "weather", "call": {"name": "get_weather", "arguments": {"unit": "celsius"}}}])
    assert b.respond("weather", [WEATHER]) == Say("I cannot call the get weather tool: location is required.")


def test_schema_errors_subset():
    """The validator covers types (bool is not integer), enums, required, extras, items, anyOf."""
    schema = {"type": "object", "required": ["a"], "additionalProperties": False, "properties": {
        "a": {"type": "integer"}, "b": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "c": {"anyOf": [{"type": "string"}, {"type": "null"}]}, "d": {"type": ["number", "null"]}}}
    assert schema_errors({"a": 1, "b": ["x"], "c": None, "d": 2.5}, schema) == []
    assert schema_errors({"a": True}, schema) == ["a must be integer, not boolean True"]
    assert schema_errors({"b": ["x", 2, "z"]}, schema) == [
        "a is required", "b takes at most 2 items", "b[1] must be string, not integer 2"]
    assert schema_errors({"a": 1, "c": 3, "zz": 1}, schema) == [
        "c matches none of the allowed forms", "zz is not an argument of this tool"]
    assert schema_errors("x", {"type": "object"}) == ["arguments must be object, not string 'x'"]


def test_tools_in_chat_completions_shape_are_tolerated(demo):
    """{"type": "function", "function": {...}} declares a tool too."""
    nested = {"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}
    assert demo.respond("what is the weather in london", [nested]) == Call("get_weather", {"location": "London"})


# --- modes and loading -------------------------------------------------------------------------


def test_echo_mode_repeats_the_user_and_expects_anything():
    """echo: true says the user's words back and asks for no grammar."""
    b = brain({"echo": True, "rules": [{"pattern": "hello", "examples": ["hello"], "reply": "Hi!"}]})
    assert b.respond("hello over there", []) == Say("hello over there")
    assert b.respond("  ", []) == Say("Sorry, I did not understand that.")
    assert b.phrases() == []


def test_fallback_can_quote_the_transcript():
    """{transcript} in the fallback is the normalised transcript."""
    b = brain({"fallback": "You said: {transcript}.", "rules": []})
    assert b.respond("Purple, Elephants!", []) == Say("You said: purple elephants.")
    assert normalize_transcript("  What's  the TIME?! ") == "what's the time"


@pytest.mark.parametrize(("rules", "message"), [
    ([{"pattern": "(", "reply": "x"}], "rule 1: pattern '(' is not a valid regex"),
    ([{"pattern": "weather in (?P<city>\\w+)", "reply": "In {cty}"}],
     "uses {cty}, but the pattern's named groups are ['city']; add (?P<name>...)"),
    ([{"pattern": "hello", "examples": ["goodbye"], "reply": "Hi"}], "example 'goodbye' does not match the pattern"),
    ([{"pattern": "hello", "reply": "Hi", "call": {"name": "x"}}], "give either `reply: text` or `call:"),
    ([{"pattern": "hello", "replied": "Hi"}], "unknown key(s) ['replied']"),
    ([{"pattern": "hello", "reply": "{transcript!x}"}], "unknown conversion !x"),
])
def test_rule_errors_name_the_rule_and_the_fix(rules, message):
    """A malformed rule fails at load, naming the file, the rule number and what to change."""
    with pytest.raises(RulesError) as info:
        brain(rules)
    assert str(info.value).startswith("test.yaml: rule 1")
    assert message in str(info.value)


def test_missing_rules_file_is_reported(tmp_path):
    """A path that does not exist, or bad YAML, raises RulesError naming the file."""
    with pytest.raises(RulesError, match="cannot read rules file"):
        Brain.from_yaml(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(RulesError, match="bad.yaml: not valid YAML"):
        Brain.from_yaml(bad)


# --- the processor -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_processor_answers_a_transcript_with_a_response():
    """A final transcript passes on and is followed by start, assistant text, end, in turn 1."""
    out = await run_frames(ScriptedResponder(), [TranscriptionFrame("hello"), TranscriptionFrame("hel", final=False)])
    kinds = [(type(f).__name__, f.turn) for f in out.downstream]
    assert kinds == [("TranscriptionFrame", 0), ("ResponseStartFrame", 1), ("TextFrame", 1), ("ResponseEndFrame", 1),
                     ("TranscriptionFrame", 0)]
    text = out.of_type(TextFrame)[0]
    assert (text.text, text.role, text.item_id) == ("Hello! I am the voxpipe local model.", "assistant", "item_2")
    assert out.of_type(ResponseStartFrame)[0].response_id == out.of_type(ResponseEndFrame)[0].response_id == "resp_1"


@pytest.mark.anyio
async def test_processor_tool_round_trip():
    """Declared tools -> ToolCallFrame; its result coming back upstream -> the spoken follow-up."""
    result = ToolResultFrame("call_2", "get_weather", json.dumps({"location": "Paris", "temp_c": 18,
                                                                  "conditions": "partly cloudy"}))
    out = await run_frames(ScriptedResponder(), [
        ToolsAvailableFrame(tools=[WEATHER]),
        TranscriptionFrame("what is the weather in paris"),
        (result, Direction.UPSTREAM),
    ])
    call = out.of_type(ToolCallFrame)[0]
    assert (call.call_id, call.name, call.arguments, call.response_id, call.turn) == (
        "call_2", "get_weather", {"location": "Paris"}, "resp_1", 1)
    said = out.of_type(TextFrame)
    assert [(t.text, t.turn) for t in said] == [("It is 18 degrees and partly cloudy in Paris.", 2)]
    assert not out.upstream or all(not isinstance(f, ToolResultFrame) for f in out.upstream)  # consumed


class PacedSource(FrameSource):
    """Pushes each frame once the sink holds a given number of frames (no overtaking)."""

    def __init__(self, steps: list[tuple[int, object]], sink: CollectSink) -> None:
        super().__init__([frame for _, frame in steps])
        self.steps, self.sink = steps, sink

    async def produce(self) -> None:
        for wait_for, frame in self.steps:
            while len(self.sink.received) < wait_for:
                await anyio.lowlevel.checkpoint()
            await self.push(frame)


@pytest.mark.anyio
async def test_processor_barge_in_raises_the_turn():
    """Speech after a reply pushes an interruption of the next turn; the next reply uses a later turn."""
    sink = CollectSink()
    source = PacedSource([
        (0, UserStartedSpeakingFrame(pts=0, sample_rate=16000)),  # before any reply: nothing to interrupt
        (1, TranscriptionFrame("tell me a story")),
        (5, UserStartedSpeakingFrame(pts=100, sample_rate=16000)),  # after the story's response end
        (7, TranscriptionFrame("goodbye")),
    ], sink)
    graph = Graph.chain(source, ScriptedResponder(), sink, name="barge-in")
    graph.check()
    result = await run_graph(graph, timeout_s=10)
    assert result.ok
    assert [f.turn for f in sink.received if isinstance(f, InterruptionFrame)] == [2]
    said = [(f.text[:7], f.turn) for f in sink.received if isinstance(f, TextFrame)]
    assert said == [("Once up", 1), ("Goodbye", 3)]


@pytest.mark.anyio
async def test_processor_echo_param_and_missing_file():
    """params.echo overrides the file; a missing rules file fails at start with its path."""
    out = await run_frames(ScriptedResponder({"echo": True}), [TranscriptionFrame("testing one two")])
    assert [t.text for t in out.of_type(TextFrame)] == ["testing one two"]
    out = await run_frames(ScriptedResponder({"rules": "/nonexistent/rules.yaml"}), [TranscriptionFrame("hello")])
    assert not out.result.ok
    assert "rules file /nonexistent/rules.yaml does not exist" in out.result.errors[0].message


def test_out_of_grammar_is_read_from_the_recognisers_words():
    """heard_out_of_grammar: the Heard's flag, unless the words answered are other words (one check for both servers)."""
    from processors.speech.sphinx import Heard

    general = Heard("what is the capital of france", fallback=True)
    assert heard_out_of_grammar(general) and heard_out_of_grammar(general, "what is the capital of france")
    assert not heard_out_of_grammar(general, "hello")  # the client replaced the transcript
    assert not heard_out_of_grammar(Heard("hello")) and not heard_out_of_grammar("hello")
    assert not heard_out_of_grammar(None) and not heard_out_of_grammar(general.strip())  # strip() drops the flag
    brain = Brain.from_yaml(DEMO_RULES)
    assert brain.respond(general) == Say("Sorry, I can't help with what is the capital of france.")
