"""Offline speech: eSpeak NG synthesis, pocketsphinx recognition, and their processors.

Real audio throughout: eSpeak NG speaks, soxr resamples, pocketsphinx listens.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.frames import (
    AudioFormat,
    AudioFrame,
    InterruptionFrame,
    TextFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipeline.testing import run_frames
from processors.brain.scripted import DEMO_RULES, Brain
from processors.speech import espeak, sphinx
from processors.speech.stt import PocketsphinxSTT
from processors.speech.tts import EspeakTTS

DEMO_PHRASES = Brain.from_yaml(DEMO_RULES).phrases()


def padded(text: str, *, pad_s: float = 0.3, voice: str = espeak.DEFAULT_VOICE) -> tuple[np.ndarray, int]:
    """``text`` spoken with ``pad_s`` of silence on both sides."""
    x, rate = espeak.synthesize(text, voice=voice)
    pad = np.zeros(int(rate * pad_s), np.int16)
    return np.concatenate([pad, x, pad]), rate


def vad_frames(speech: np.ndarray, rate: int, *, frame_ms: int = 20, lead_s: float = 0.5,
               trail_s: float = 0.8, hangover_s: float = 0.5, events_first: bool = False) -> list:
    """Audio frames with speaking events where an ideal VAD would put them.

    The start event follows the frame where speech starts, the stop event (pts = end of
    speech) follows the frame ``hangover_s`` later. ``events_first`` puts both events
    before any audio, as when system frames overtake queued audio.
    """
    n = rate * frame_ms // 1000
    lead, trail = np.zeros(int(rate * lead_s), np.int16), np.zeros(int(rate * trail_s), np.int16)
    x = np.concatenate([lead, speech, trail])
    x = np.concatenate([x, np.zeros(-len(x) % n, np.int16)])
    start, end = len(lead), len(lead) + len(speech)
    started = UserStartedSpeakingFrame(pts=start, sample_rate=rate)
    stopped = UserStoppedSpeakingFrame(pts=end, sample_rate=rate)
    frames: list = [started, stopped] if events_first else []
    for i in range(0, len(x), n):
        frames.append(AudioFrame(x[i:i + n], rate, pts=i))
        if not events_first and i <= start < i + n:
            frames.append(started)
        if not events_first and i <= end + int(rate * hangover_s) < i + n:
            frames.append(stopped)
    return frames


# --- eSpeak NG ---------------------------------------------------------------------------


def test_synthesize_gives_int16_speech_at_native_rate():
    """A phrase becomes about a second and a half of non-silent int16 mono at 22050 Hz."""
    x, rate = espeak.synthesize("what is the weather in paris")
    assert rate == espeak.native_sample_rate() == 22050
    assert x.dtype == np.int16 and x.ndim == 1
    assert 1.0 < x.shape[0] / rate < 2.5
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) > 500  # speech, not silence


def test_synthesize_is_stable_across_calls():
    """The same text twice: same duration within 1%, same loudness within 1 dB."""
    a, rate = espeak.synthesize("tell me a story")
    b, _ = espeak.synthesize("tell me a story")
    assert abs(a.shape[0] - b.shape[0]) < 0.01 * a.shape[0]
    rms = [np.sqrt(np.mean(v.astype(np.float64) ** 2)) for v in (a, b)]
    assert abs(20 * np.log10(rms[0] / rms[1])) < 1.0


def test_rate_wpm_changes_duration():
    """Speaking at 240 wpm takes clearly less time than at 120 wpm."""
    slow, _ = espeak.synthesize("open the window and let the air in", rate_wpm=120)
    fast, _ = espeak.synthesize("open the window and let the air in", rate_wpm=240)
    assert fast.shape[0] < 0.75 * slow.shape[0]


def test_blank_text_is_empty_audio():
    """Whitespace synthesises to an empty array, not an error."""
    x, _ = espeak.synthesize("   ")
    assert x.shape == (0,) and x.dtype == np.int16
    assert list(espeak.synthesize_chunks("")) == []


def test_chunks_stream_the_same_speech():
    """Streamed blocks are small, int16, and add up to the whole utterance's duration."""
    whole, rate = espeak.synthesize("hello there, how are you today")
    blocks = list(espeak.synthesize_chunks("hello there, how are you today"))
    assert len(blocks) > 5
    assert all(b.dtype == np.int16 for b in blocks)
    assert blocks[0].shape[0] <= rate // 10  # first audio after at most 100 ms of speech
    total = sum(b.shape[0] for b in blocks)
    assert abs(total - whole.shape[0]) < 0.01 * whole.shape[0]


def test_closing_the_stream_aborts_synthesis():
    """Closing after one block stops early; the engine then works normally."""
    blocks = espeak.synthesize_chunks("one two three four five six seven eight nine ten " * 10)
    first = next(blocks)
    blocks.close()
    assert first.size > 0
    x, _ = espeak.synthesize("hello")
    assert x.size > 0


def test_concurrent_use_is_serialised_safely():
    """Threads and interleaved streams share the global engine without mixing their audio."""
    from concurrent.futures import ThreadPoolExecutor

    expect = {t: espeak.synthesize(t)[0].shape[0] for t in ("hello there", "goodbye")}
    with ThreadPoolExecutor(4) as pool:
        lengths = list(pool.map(lambda t: (t, espeak.synthesize(t)[0].shape[0]), ["hello there", "goodbye"] * 4))
    assert all(abs(n - expect[t]) < 0.01 * expect[t] for t, n in lengths)
    a, b = espeak.synthesize_chunks("hello there"), espeak.synthesize_chunks("goodbye")
    got = {"hello there": 0, "goodbye": 0}
    for pair in itertools.zip_longest(a, b):  # one block of each in turn
        for text, block in zip(got, pair):
            got[text] += 0 if block is None else block.shape[0]
    assert all(abs(got[t] - expect[t]) < 0.01 * expect[t] for t in got)


def test_unknown_voice_names_the_fix():
    """An unknown language or variant raises at once, with a suggestion."""
    with pytest.raises(espeak.UnknownVoiceError, match="no voice 'xx-nowhere'"):
        espeak.synthesize("hi", voice="xx-nowhere")
    with pytest.raises(espeak.UnknownVoiceError, match="did you mean 'en-us\\+klatt'"):
        espeak.synthesize_chunks("hi", voice="en-us+klat")
    with pytest.raises(ValueError, match="80..450"):
        espeak.synthesize("hi", rate_wpm=20)


# --- pocketsphinx --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grammar_recognizer():
    return sphinx.Recognizer(DEMO_PHRASES)


def test_grammar_recognises_every_demo_phrase_exactly(grammar_recognizer):
    """With the demo rules' grammar, each synthesised example comes back word for word."""
    assert grammar_recognizer.uses_grammar
    heard = {p: grammar_recognizer.recognize(*padded(p)) for p in DEMO_PHRASES}
    assert heard == {p: p for p in DEMO_PHRASES}


def test_grammar_recognises_the_plain_espeak_voice_too(grammar_recognizer):
    """The default (non-Klatt) eSpeak voice is recognised exactly through the grammar."""
    for phrase in ("what is the weather in tokyo", "tell me a story", "goodbye"):
        assert grammar_recognizer.recognize(*padded(phrase, voice="en-us")) == phrase


def test_streamed_feed_matches_one_shot(grammar_recognizer):
    """Feeding 20 ms blocks at 16 kHz gives the one-shot result; partials grow on the way."""
    x, rate = padded("what is the weather in london")
    x16 = sphinx._to_16k_int16(x, rate)
    r = grammar_recognizer
    r.start_utterance()
    partials = []
    for i in range(0, x16.shape[0], 320):
        r.feed(x16[i:i + 320])
        partials.append(r.partial())
    assert r.end_utterance() == "what is the weather in london" == r.recognize(x, rate)
    assert any(partials) and partials[0] == ""


def test_float32_input_is_accepted(grammar_recognizer):
    """recognize() takes float32 audio at any rate (48 kHz here)."""
    import soxr

    x, rate = padded("hello")
    y = soxr.resample(x.astype(np.float32) / 32768, rate, 48000)
    assert grammar_recognizer.recognize(y, 48000) == "hello"


def test_out_of_vocabulary_words_are_split_or_dropped():
    """'voxpipe' becomes 'vox pipe'; a word with no pronunciation is dropped and reported."""
    r = sphinx.Recognizer(["Hello, voxpipe!", "zqxwv", "what is the qzxv weather"])
    assert r.replaced == {"voxpipe": "vox pipe"}
    assert r.dropped == ["zqxwv", "qzxv"]
    assert r.phrases == ["hello vox pipe", "what is the weather"]
    assert r.recognize(*padded("hello voxpipe")) == "hello vox pipe"


def test_recognizer_misuse_names_the_fix():
    """Wrong rate, feeding before start, float input to feed: each error says what to do."""
    with pytest.raises(ValueError, match="resample the audio to 16000"):
        sphinx.Recognizer(["hello"], sample_rate=8000)
    r = sphinx.Recognizer(["hello"])
    with pytest.raises(RuntimeError, match="start_utterance"):
        r.feed(np.zeros(160, np.int16))
    r.start_utterance()
    with pytest.raises(TypeError, match="int16"):
        r.feed(np.zeros(160, np.float32))
    assert r.end_utterance() == ""


def test_word_error_rate():
    """WER counts substitutions, insertions and deletions over the reference words."""
    assert sphinx.word_error_rate("what is the weather", "What is the weather?") == 0
    assert sphinx.word_error_rate("what is the weather", "what was weather") == 0.5
    assert sphinx.word_error_rate("a b", "a b c d") == 1.0


def test_general_model_word_error_rate_is_bounded():
    """Without a grammar (general trigram model) synthetic speech is mostly understood.

    Measured: WER 0.11 on these four phrases (0.34 over the 13 demo phrases, 0.55 with
    the plain en-us voice); the bound leaves room for eSpeak's run-to-run variation.
    """
    phrases = ["what time is it", "can you hear me", "what is the weather in paris", "please call me tomorrow morning"]
    r = sphinx.Recognizer()
    assert not r.uses_grammar
    errors = sum(sphinx.word_error_rate(p, r.recognize(*padded(p))) * len(p.split()) for p in phrases)
    wer = errors / sum(len(p.split()) for p in phrases)
    assert wer < 0.5


# --- processors ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_tts_processor_emits_tagged_20ms_frames():
    """Text in, the text then 20 ms int16 frames at 24 kHz with its item id, turn and running pts."""
    tts = EspeakTTS()
    assert tts.output_format(None) == AudioFormat(24000, 1, "int16")
    out = await run_frames(tts, [TextFrame("hello there", item_id="item_1", turn=1),
                                 TextFrame("ignored", role="user"),
                                 TextFrame("goodbye", item_id="item_2", turn=1)])
    assert [type(f).__name__ for f in out.downstream[:2]] == ["TextFrame", "AudioFrame"]
    audio = out.of_type(AudioFrame)
    assert {f.item_id for f in audio} == {"item_1", "item_2"}
    assert all(f.sample_rate == 24000 and f.samples.dtype == np.int16 and f.turn == 1 for f in audio)
    for item in ("item_1", "item_2"):
        sizes = [f.num_samples for f in audio if f.item_id == item]
        assert set(sizes[:-1]) == {480} and 0 < sizes[-1] <= 480  # the last frame of a reply may be short
    assert [f.pts for f in audio] == list(np.cumsum([0] + [f.num_samples for f in audio[:-1]]))
    native = sum(espeak.synthesize(t)[0].shape[0] for t in ("hello there", "goodbye")) / 22050
    assert abs(out.audio().shape[0] / 24000 - native) < 0.01


@pytest.mark.anyio
async def test_tts_processor_rejects_unknown_voice_at_start():
    """A voice typo fails the run at start with the voice error (no audio is produced)."""
    out = await run_frames(EspeakTTS({"voice": "en-us+klat"}), [TextFrame("hello")])
    assert not out.of_type(AudioFrame)
    assert not out.result.ok
    assert any("did you mean 'en-us+klatt'" in e.message for e in out.result.errors)


@pytest.mark.anyio
async def test_tts_drops_reply_of_an_interrupted_turn():
    """After an interruption to turn 2, the turn-1 reply yields no audio; turn 2 is spoken."""
    out = await run_frames(EspeakTTS(), [TextFrame("tell me a long story about the sea " * 3, item_id="old", turn=1),
                                         InterruptionFrame(turn=2),
                                         TextFrame("hello", item_id="new", turn=2)])
    audio = out.of_type(AudioFrame)
    assert audio and {f.item_id for f in audio} == {"new"}


@pytest.mark.anyio
@pytest.mark.parametrize("events_first", [False, True])
async def test_text_to_speech_to_text_round_trip(events_first):
    """TTS audio at 24 kHz, cut by VAD events, is heard back exactly through the grammar.

    ``events_first``: the speaking events overtake all the audio (system frames skip queues).
    """
    spoken = await run_frames(EspeakTTS(), [TextFrame("what is the weather in berlin")])
    frames = vad_frames(spoken.audio(), 24000, events_first=events_first)
    out = await run_frames(PocketsphinxSTT({"rules": str(DEMO_RULES)}), frames)
    texts = out.of_type(TranscriptionFrame)
    assert [(t.text, t.final, t.role) for t in texts] == [("what is the weather in berlin", True, "user")]
    assert len(out.of_type(AudioFrame)) == sum(isinstance(f, AudioFrame) for f in frames)  # audio passes on


@pytest.mark.anyio
async def test_stt_transcribes_each_utterance_with_partials():
    """Two utterances in one stream give two finals; partial results come while speaking."""
    first, rate = espeak.synthesize("hello there")
    second, _ = espeak.synthesize("tell me a story")
    frames = vad_frames(first, rate)
    offset = frames[-1].pts + frames[-1].num_samples
    for f in vad_frames(second, rate):
        if isinstance(f, AudioFrame):
            frames.append(AudioFrame(f.samples, rate, pts=f.pts + offset))
        else:
            frames.append(type(f)(pts=f.pts + offset, sample_rate=rate))
    stt = PocketsphinxSTT({"phrases": ["hello there", "tell me a story", "goodbye"], "partial_interval_ms": 200})
    out = await run_frames(stt, frames)
    finals = [t.text for t in out.of_type(TranscriptionFrame) if t.final]
    partials = [t.text for t in out.of_type(TranscriptionFrame) if not t.final]
    assert finals == ["hello there", "tell me a story"]
    assert partials
    assert all(any(f.startswith(p) for f in finals) for p in partials)  # partials are prefixes of finals


@pytest.mark.anyio
async def test_stt_ends_an_open_utterance_at_end_of_stream():
    """A start without a stop is still transcribed when the stream ends."""
    x, rate = padded("goodbye")
    frames = [f for f in vad_frames(x, rate) if not isinstance(f, UserStoppedSpeakingFrame)]
    out = await run_frames(PocketsphinxSTT({"phrases": ["hello", "goodbye"]}), frames)
    assert [t.text for t in out.of_type(TranscriptionFrame)] == ["goodbye"]
