"""Recognition is a function of the audio alone: no history, no other session changes it."""

from __future__ import annotations

import base64

import anyio
import numpy as np
import pytest
from openai import AsyncOpenAI

from pipeline.dsp.resample import resample
from pipelines import shipped
from processors.files.wavfile import read_wav
from processors.realtime.server import serve_local
from processors.speech.sphinx import Recognizer


def _samples():
    hello, rate = read_wav(shipped("samples/hello_16k.wav"))
    other, _ = read_wav(shipped("samples/demo_conversation_16k.wav"))
    return hello, other, rate


def test_same_audio_same_transcript_whatever_came_before():
    """A recogniser gives one transcript for one recording, before and after other speech."""
    hello, other, rate = _samples()
    rec = Recognizer(None)  # the general model: the most history-sensitive case
    first = rec.recognize(hello, rate)
    again = []
    for i in range(4):
        rec.recognize(other[i * 40000:(i + 1) * 40000], rate)  # different speech in between
        again.append(rec.recognize(hello, rate))
    assert first and again == [first] * 4
    assert Recognizer(None).recognize(hello, rate) == first  # and a fresh recogniser agrees


async def _transcript(server, audio24: bytes, before: bytes | None) -> str:
    client = AsyncOpenAI(api_key="sk-local", websocket_base_url=server.url)
    async with client.realtime.connect(model="gpt-realtime") as conn:
        await conn.session.update(session={"type": "realtime", "output_modalities": ["text"], "audio": {
            "input": {"transcription": {"model": "whisper-1"}, "turn_detection": None}}})
        transcripts = []
        for chunk in ([before] if before else []) + [audio24]:
            await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            await conn.input_audio_buffer.commit()
            with anyio.fail_after(30):
                async for event in conn:
                    if event.type == "conversation.item.input_audio_transcription.completed":
                        transcripts.append(event.transcript)
                        break
        return transcripts[-1]


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("processes, sequential, concurrent", [(0, 6, 4), (2, 30, 10)], ids=["threads", "processes"])
async def test_one_recording_on_many_connections_gives_identical_transcripts(tmp_path, processes, sequential,
                                                                             concurrent):
    """30 sequential and then 10 concurrent connections (the issue's 40; 6 + 4 in threads), half of
    them after different speech: one transcript.

    The rules have no examples, so the pooled recognisers use the general language model,
    where history used to change the words (a grammar hides most of it). With worker
    processes (the CLI's default) the utterances also land on different workers, each with
    its own history; the thread pool's run is the shorter one.
    """
    rules = tmp_path / "rules.yaml"
    rules.write_text('fallback: "I heard you."\nrules:\n  - pattern: "^never$"\n    reply: "no"\n')
    hello, other, rate = _samples()
    to24 = lambda x: resample(x, rate, 24000).astype("<i2").tobytes()
    audio = to24(hello)
    total = sequential + concurrent
    befores = [to24(other[(i % 8) * 30000:(i % 8) * 30000 + 24000]) if i % 2 else None for i in range(total)]
    results: list[str] = []
    async with serve_local(rules=rules, processes=processes) as server:
        for i in range(sequential):
            results.append(await _transcript(server, audio, befores[i]))

        async def one(i: int) -> None:
            results.append(await _transcript(server, audio, befores[i]))

        async with anyio.create_task_group() as tg:
            for i in range(sequential, total):
                tg.start_soon(one, i)
    assert len(results) == total
    assert len(set(results)) == 1, sorted(set(results))


def _espeak(text: str, rate: int = 16000) -> np.ndarray:
    from processors.speech.espeak import synthesize

    x, native = synthesize(text)
    quiet = np.random.default_rng(len(text)).normal(0, 30, rate * 3 // 10).astype(np.int16)
    return np.concatenate([quiet, resample(x, native, rate).astype(np.int16), quiet])


INSIDE = "what is the weather in tokyo"  # a demo phrase: the gate is sure, no second pass
OUTSIDE = "what is the capital of france"  # outside every phrase: the general model's words


@pytest.mark.slow
def test_the_gated_fallback_hears_the_same_before_and_after_it_loads_the_general_model():
    """The general model loads at the first unsure utterance: no transcript before or after changes."""
    from processors.brain.scripted import DEMO_RULES, Brain

    phrases = Brain.from_yaml(DEMO_RULES).phrases()
    inside, outside = _espeak(INSIDE), _espeak(OUTSIDE)
    rec = Recognizer(phrases, fallback="gated")
    first_in = rec.recognize(inside, 16000)
    assert first_in == INSIDE and not first_in.fallback and not rec.general_loaded
    first_out = rec.recognize(outside, 16000)
    assert first_out.fallback and rec.general_loaded and first_out not in phrases
    for _ in range(3):
        again_in, again_out = rec.recognize(inside, 16000), rec.recognize(outside, 16000)
        assert (again_in, again_in.fallback, again_out, again_out.fallback) == (first_in, False, first_out, True)
    fresh = Recognizer(phrases, fallback="gated")  # the out-of-grammar sentence first, on a fresh one
    assert fresh.recognize(outside, 16000) == first_out and fresh.recognize(inside, 16000) == first_in


@pytest.mark.slow
@pytest.mark.anyio
@pytest.mark.parametrize("processes", [0, 2], ids=["threads", "processes"])
async def test_out_of_grammar_speech_on_six_connections_gives_six_identical_transcripts(processes):
    """The demo rules (gated fallback, the default): 4 sequential and 2 concurrent connections, one transcript.

    Before it, some connections say a demo phrase (no second pass) and some say nothing, so
    recognisers (threads, or worker processes) hear it with and without the general model
    loaded, fresh or after other speech.
    """
    to24 = lambda x: x.astype("<i2").tobytes()
    audio = to24(_espeak(OUTSIDE, 24000))
    inside = to24(_espeak(INSIDE, 24000))
    befores = [inside if i % 2 else None for i in range(6)]
    results: list[str] = []
    async with serve_local(processes=processes) as server:
        for i in range(4):
            results.append(await _transcript(server, audio, befores[i]))

        async def one(i: int) -> None:
            results.append(await _transcript(server, audio, befores[i]))

        async with anyio.create_task_group() as tg:
            for i in range(4, 6):
                tg.start_soon(one, i)
    assert len(results) == 6
    assert len(set(results)) == 1 and results[0] != INSIDE and "capital" in results[0], sorted(set(results))
