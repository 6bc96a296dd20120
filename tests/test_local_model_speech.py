"""The local model hears a session's own tools: real eSpeak NG speech through the real recogniser.

The end-to-end tests drive the local server over a real socket with the official SDK; the
accuracy, gate and word-error figures decode with the server's own grammar for the session
(:meth:`SpeechResources.grammar_for`) and the server's recogniser (``fallback="gated"``), and
print what they measured. The gate's thresholds were chosen on other material
(``GATE_TUNING`` sentences, ``requests(9, seed=TUNING_SEED)``); these tests use the held-out
half (``HELD_OUT``) and the accuracy test's own requests (seed 18).
"""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from openai import AsyncOpenAI

from local_model_cases import BOOK_TABLE, HELD_OUT, INSTRUCTIONS, SET_TIMER, STOCK_PRICE, TOOLS, requests
from pipeline.dsp.resample import resample
from processors.brain.rules import Call, Say
from processors.realtime.server import serve_local
from processors.realtime.server.engine import SpeechResources
from processors.speech.sphinx import Recognizer, word_error_rate
from test_realtime_server import Events, audio_of, of_type, say

pytestmark = pytest.mark.slow


def spoken(text: str, voice: str = "en-us+klatt", rate_wpm: int = 160) -> np.ndarray:
    """16 kHz int16 eSpeak NG speech of ``text`` between 300 ms of quiet seeded noise."""
    from processors.speech.espeak import synthesize

    x, rate = synthesize(text, voice=voice, rate_wpm=rate_wpm)
    quiet = np.random.default_rng(len(text)).normal(0, 30, 4800).astype(np.int16)
    return np.concatenate([quiet, resample(x, rate, 16000), quiet]).astype(np.int16)


@pytest.fixture(scope="module")
def session_recognizer() -> tuple[SpeechResources, Recognizer]:
    resources = SpeechResources()
    recognizer = Recognizer(resources.phrases, fallback="gated")  # as the server builds it
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


def test_the_phone_loop_decides_only_inside_the_score_band_and_gives_the_same_ratio_for_the_same_audio():
    """A session model's gate asks the phone loop only for scores inside its band; it loads at first use."""
    resources = SpeechResources()
    recognizer = Recognizer(resources.phrases, fallback="gated")
    recognizer.use_grammar(resources.grammar_for(TOOLS, INSTRUCTIONS))
    assert recognizer.loop_passes == 0  # nothing decoded yet, the phone loop is not loaded at start
    low, high = Recognizer.GATE_BAND_CORPUS
    in_band = 0
    # measured scores (klatt): -47 to -50 for the convert requests, -30 to -36 for the others
    for text in ("convert fifty to dollars please", "convert thirty to pounds please",
                 "please set a countdown timer for sixty minutes", "book a table at blue lagoon for seven people"):
        audio = spoken(text)
        first = recognizer.recognize(audio, 16000)
        ratio, sure, passes = recognizer.last_loop, recognizer.last_sure, recognizer.loop_passes
        if low <= recognizer.last_score < high:
            in_band += 1
            assert ratio is not None and sure == (ratio >= Recognizer.GATE_LOOP_CORPUS), text
        else:
            assert ratio is None and sure == (recognizer.last_score >= high), text
        again = recognizer.recognize(audio, 16000)
        assert (str(again), recognizer.last_loop, recognizer.last_sure) == (str(first), ratio, sure), text
        assert recognizer.loop_passes - passes == (ratio is not None)
    assert in_band >= 1
    # telephone-band audio gets no general pass, so the loop's verdict would go unused: not asked
    audio = resample(resample(spoken("convert fifty to dollars please"), 16000, 8000), 8000, 16000)
    passes = recognizer.loop_passes
    recognizer.start_utterance()
    recognizer.feed(audio)
    heard = recognizer.end_utterance(narrowband=True)
    assert heard and low <= recognizer.last_score < high  # in the band, where 16 kHz audio asks the loop
    assert recognizer.last_loop is None and recognizer.loop_passes == passes


def test_below_the_score_band_a_loose_agreement_no_longer_keeps_the_session_models_words(session_recognizer):
    """Below GATE_BAND_CORPUS the session model's words need a close agreement (AGREE_PER_BELOW_BAND).

    Both utterances are doubted and agree with the general model at a phone error rate that
    AGREE_PER_CORPUS (0.55) accepts. The out-of-grammar one scored below the band (measured
    -66.5: its words were forced, "how five is there for ten paris", 0.52 from the general
    model's), so the general model's words are the transcript now; before, the session
    model's were kept. The request scored inside the band (-51.5) and keeps its words at 0.36.
    """
    resources, recognizer = session_recognizer
    low, high = Recognizer.GATE_BAND_CORPUS
    assert Recognizer.agreement_limit(True, low - 1) == Recognizer.AGREE_PER_BELOW_BAND < Recognizer.AGREE_PER_CORPUS
    assert Recognizer.agreement_limit(True, low) == Recognizer.AGREE_PER_CORPUS
    assert Recognizer.agreement_limit(False, low - 1) == Recognizer.AGREE_PER  # a phrase grammar: unchanged

    heard = recognizer.recognize(spoken("how far is the airport from here", "en-us+adam", 185), 16000)
    per = recognizer.phone_error_rate(recognizer.last_grammar, recognizer.last_general)
    assert recognizer.last_score < low and not recognizer.last_sure
    assert Recognizer.AGREE_PER_BELOW_BAND < per <= Recognizer.AGREE_PER_CORPUS  # the old rule kept it
    assert heard.fallback and heard == recognizer.last_general and recognizer.last_source == "general"
    reply = resources.brain.respond(heard, TOOLS, instructions=INSTRUCTIONS, out_of_grammar=heard.fallback)
    assert isinstance(reply, Say)

    heard = recognizer.recognize(spoken("set the heating in the kitchen to nineteen degrees", "en-us+adam", 185), 16000)
    per = recognizer.phone_error_rate(recognizer.last_grammar, recognizer.last_general)
    assert low <= recognizer.last_score < high and not recognizer.last_sure and recognizer.last_general
    assert Recognizer.AGREE_PER_BELOW_BAND < per <= Recognizer.AGREE_PER_CORPUS
    assert not heard.fallback and heard == recognizer.last_grammar
    reply = resources.brain.respond(heard, TOOLS, instructions=INSTRUCTIONS)
    assert reply == Call("set_thermostat", {"room": "kitchen", "degrees": 19})


def _outcome(reply, case) -> tuple[bool, bool]:
    name = reply.name if isinstance(reply, Call) else None
    return name == case.name, name == case.name and reply.arguments == case.arguments


def test_tool_choice_and_argument_accuracy_over_63_spoken_requests(session_recognizer):
    """Seven tool schemas, nine generated phrasings each: the gate costs no accuracy, and seldom fires.

    Beside the server's gated recogniser, the same requests as the session model alone would
    give them (its words, when the gate sent them to the general model): the gate must not
    lose requests the grammar got right.
    """
    resources, recognizer = session_recognizer
    cases = requests(9)
    gated = [0, 0]
    alone = [0, 0]
    fallbacks = []
    misses = []
    for case in cases:
        heard = recognizer.recognize(spoken(case.text), 16000)
        reply = resources.brain.respond(heard, TOOLS, instructions=INSTRUCTIONS)
        tool, args = _outcome(reply, case)
        gated[0] += tool
        gated[1] += args
        grammar_words = recognizer.last_grammar if heard.fallback else heard
        tool, args = _outcome(resources.brain.respond(grammar_words, TOOLS, instructions=INSTRUCTIONS), case)
        alone[0] += tool
        alone[1] += args
        if heard.fallback:
            fallbacks.append(f"{case.text!r}: grammar {recognizer.last_grammar!r} ({heard.score:.1f}/frame), "
                             f"general {heard!r}")
        if reply != Call(case.name, case.arguments):
            misses.append(f"{case.text!r} heard {heard!r} -> {reply}")
    n = len(cases)
    print(f"\ngated: tool choice {gated[0]}/{n} = {gated[0] / n:.1%}; arguments {gated[1]}/{n} = {gated[1] / n:.1%}"
          f"\nsession model alone: tool choice {alone[0]}/{n}; arguments {alone[1]}/{n}"
          f"\nfalse fallbacks (in-grammar requests sent to the general model's words): {len(fallbacks)}/{n}")
    print("\n".join(["misses:", *misses, "fallbacks:", *fallbacks]))
    assert n >= 60 and len(TOOLS) >= 6
    assert gated[0] / n >= 0.85 and gated[1] / n >= 0.78
    # measured: 58/63 and 55/63 gated, 58/63 and 55/63 alone, no false fallback (with the phone loop;
    # before it 58/63 and 54/63 gated, 59/63 and 55/63 alone: one false fallback lost a right call)
    assert gated[0] >= alone[0] - 2 and gated[1] >= alone[1] - 2
    assert len(fallbacks) <= 4


def test_held_out_speech_falls_back_to_the_general_model_not_the_nearest_phrase(session_recognizer):
    """24 held-out sentences no grammar covers, with the demo grammar and with the seven-tool session model.

    The gate sends most of them to the general model, whose words are the transcript and
    which the responder answers as out-of-grammar speech; the word error rate of the
    transcripts is far below the grammar's forced words.
    """
    resources, recognizer = session_recognizer
    report = []
    for label, grammar in (("demo grammar", resources.grammar_for([], "")),
                           ("session model", resources.grammar_for(TOOLS, INSTRUCTIONS))):
        recognizer.use_grammar(grammar)
        caught = 0
        wer = {"transcript": 0.0, "grammar alone": 0.0, "general model": 0.0}
        sorry = 0
        for sentence in HELD_OUT:
            audio = spoken(sentence)
            heard = recognizer.recognize(audio, 16000)
            caught += heard.fallback
            general = recognizer.last_general or recognizer.general_words(audio, 16000)
            wer["transcript"] += word_error_rate(sentence, heard)
            wer["grammar alone"] += word_error_rate(sentence, recognizer.last_grammar or heard)
            wer["general model"] += word_error_rate(sentence, general)
            reply = resources.brain.respond(heard, TOOLS if label == "session model" else [])
            sorry += isinstance(reply, Say) and reply.text.startswith("Sorry, I can't help with")
        n = len(HELD_OUT)
        report.append((label, caught, sorry, {k: v / n for k, v in wer.items()}))
        print(f"\n{label}: gate sent {caught}/{n} to the general model; answered as out-of-grammar {sorry}/{n}; WER "
              + ", ".join(f"{k} {v / n:.1%}" for k, v in wer.items()))
    recognizer.use_grammar(resources.grammar_for(TOOLS, INSTRUCTIONS))
    for label, caught, sorry, wer in report:
        # measured: 24/24 with the demo grammar, 18-19/24 with the session model and its phone loop
        # (14-16/24 with the score alone); transcript WER 46-50% and 55-60% (63-70% before), general
        # model alone 46-51%, grammar alone 86-100%
        demo = label == "demo grammar"
        assert caught >= (21 if demo else 15), label
        assert sorry >= caught - 4, label  # a general transcript may still name a tool and fill it
        assert wer["general model"] <= 0.60, label
        assert wer["transcript"] <= (0.60 if demo else 0.80) and wer["transcript"] < wer["grammar alone"] - 0.2, label


@pytest.mark.anyio
async def test_out_of_grammar_speech_is_answered_as_such_and_the_general_model_loads_only_for_it():
    """Over the socket: a phrase is answered and loads nothing; a held-out sentence gets the general model's words."""
    async with serve_local() as server:
        assert server.resources.statistics()["general_loaded"] == 0  # not at start
        client = AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url)
        async with client.realtime.connect(model="gpt-realtime") as conn:
            events = Events(conn)
            await events.until("session.created")
            await conn.session.update(session={"type": "realtime", "audio": {
                "input": {"transcription": {"model": "gpt-4o-transcribe"}}}})
            await events.until("session.updated")
            await say(conn, "hello")
            reply = await events.until("response.done")
            (said,) = of_type(reply, "response.output_audio_transcript.done")
            assert said["transcript"] == "Hello! I am the voxpipe local model."
            assert server.resources.statistics()["general_loaded"] == 0  # the gate was sure
            await say(conn, "what is the capital of france")
            reply = await events.until("response.done")
            heard = of_type(events.seen, "conversation.item.input_audio_transcription.completed")[-1]["transcript"]
            (said,) = of_type(reply, "response.output_audio_transcript.done")
            assert heard not in server.resources.phrases and "capital" in heard, heard
            assert said["transcript"] == f"Sorry, I can't help with {heard}.", said
            assert server.resources.statistics()["general_loaded"] == 1
    events.checker.finish()
