"""The local model hears a session's own tools: real eSpeak NG speech through the real recogniser.

The end-to-end test drives the local server over a real socket with the official SDK; the
accuracy and word-error figures decode with the server's own grammar for the session
(:meth:`SpeechResources.grammar_for`) and print what they measured.
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from openai import AsyncOpenAI

from local_model_cases import BOOK_TABLE, GENERAL_SENTENCES, INSTRUCTIONS, SET_TIMER, STOCK_PRICE, TOOLS, requests
from pipeline.dsp.resample import resample
from processors.brain.rules import Call
from processors.realtime.server import serve_local
from processors.realtime.server.engine import SpeechResources
from processors.speech.sphinx import Recognizer, word_error_rate
from test_realtime_server import Events, audio_of, of_type, say

pytestmark = pytest.mark.slow


def spoken(text: str) -> np.ndarray:
    """16 kHz int16 eSpeak NG speech of ``text`` between 300 ms of quiet seeded noise."""
    from processors.speech.espeak import synthesize

    x, rate = synthesize(text)
    quiet = np.random.default_rng(len(text)).normal(0, 30, 4800).astype(np.int16)
    return np.concatenate([quiet, resample(x, rate, 16000), quiet]).astype(np.int16)


@pytest.fixture(scope="module")
def session_recognizer() -> tuple[SpeechResources, Recognizer]:
    resources = SpeechResources()
    recognizer = Recognizer(resources.phrases, fallback=True)
    recognizer.use_grammar(resources.grammar_for(TOOLS, INSTRUCTIONS))
    return resources, recognizer


TURNS = [  # (what is said, the call it means, the tool's output, words the spoken answer must have)
    ("book a table at golden dragon for four people at seven pm", "book_table",
     {"restaurant": "Golden Dragon", "time": "7:00 pm", "people": 4}, {"confirmed": True, "reference": "GD7"}, "GD7"),
    ("can you book a table at luigi's at eight thirty pm for two people", "book_table",
     {"restaurant": "Luigi's", "time": "8:30 pm", "people": 2}, {"confirmed": True, "reference": "LU2"}, "LU2"),
    ("what is the stock price of m s f t", "get_stock_price", {"symbol": "MSFT"}, {"price_usd": 412.5}, "412.5"),
    ("get the price of t s l a", "get_stock_price", {"symbol": "TSLA"}, {"price_usd": 251}, "251"),
    ("set a timer for ten minutes", "set_timer", {"minutes": 10}, {"ends_at": "10:42"}, "10:42"),
    ("please set a countdown timer for twenty five minutes", "set_timer", {"minutes": 25},
     {"ends_at": "11:05"}, "11:05"),
]


@pytest.mark.anyio
async def test_spoken_requests_call_undeclared_in_rules_tools_and_the_answer_uses_the_result():
    """SDK session with three tools no rule knows: each phrasing -> right call -> spoken answer with the result."""
    async with serve_local() as server:
        client = AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            events = Events(conn)
            await events.until("session.created")
            await conn.session.update(session={"type": "realtime", "tools": [BOOK_TABLE, STOCK_PRICE, SET_TIMER],
                                               "instructions": INSTRUCTIONS,
                                               "audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}})
            await events.until("session.updated")
            for said, name, arguments, output, needle in TURNS:
                await say(conn, said)
                turn = await events.until("response.done")
                calls = [o for o in turn[-1]["response"]["output"] if o["type"] == "function_call"]
                heard = of_type(events.seen, "conversation.item.input_audio_transcription.completed")
                assert len(calls) == 1, (said, heard[-1:] , turn[-1]["response"]["output"])
                assert (calls[0]["name"], json.loads(calls[0]["arguments"])) == (name, arguments), said
                await conn.conversation.item.create(item={"type": "function_call_output",
                                                          "call_id": calls[0]["call_id"], "output": json.dumps(output)})
                await conn.response.create()
                reply = await events.until("response.done")
                (transcript,) = of_type(reply, "response.output_audio_transcript.done")
                assert needle in transcript["transcript"], transcript
                assert len(audio_of(reply)) > 24000  # over a second of speech
                assert reply[-1]["response"]["status"] == "completed"
    events.checker.finish()


def test_tool_choice_and_argument_accuracy_over_63_spoken_requests(session_recognizer):
    """Seven tool schemas, nine generated phrasings each: at least 80% right tools, 70% right arguments."""
    resources, recognizer = session_recognizer
    cases = requests(9)
    right_tool = right_args = 0
    misses = []
    for case in cases:
        heard = recognizer.recognize(spoken(case.text), 16000)
        reply = resources.brain.respond(heard, TOOLS, instructions=INSTRUCTIONS)
        name = reply.name if isinstance(reply, Call) else None
        right_tool += name == case.name
        right_args += name == case.name and reply.arguments == case.arguments
        if not (name == case.name and reply.arguments == case.arguments):
            misses.append(f"{case.text!r} heard {heard!r} -> {reply}")
    n = len(cases)
    print(f"\ntool choice {right_tool}/{n} = {right_tool / n:.1%}; arguments {right_args}/{n} = {right_args / n:.1%}")
    print("\n".join(misses))
    assert n >= 60 and len(TOOLS) >= 6
    assert right_tool / n >= 0.80 and right_args / n >= 0.70


def test_out_of_grammar_speech_gets_the_general_model_not_the_nearest_phrase(session_recognizer):
    """Held-out sentences: the fallback's word error rate beats the session grammar's own words by far."""
    _, recognizer = session_recognizer
    final = forced = alone = 0.0
    general = 0
    for sentence in GENERAL_SENTENCES:
        heard = recognizer.recognize(spoken(sentence), 16000)
        final += word_error_rate(sentence, heard)
        forced += word_error_rate(sentence, recognizer.last_grammar)
        alone += word_error_rate(sentence, recognizer.last_general)
        general += recognizer.last_source == "general"
    n = len(GENERAL_SENTENCES)
    print(f"\nheld-out WER: with the fallback {final / n:.1%}; session model alone {forced / n:.1%}; "
          f"general model alone {alone / n:.1%}; general model chosen for {general}/{n}")
    assert final / n <= 0.60 and final / n < forced / n - 0.25 and general >= n // 2
