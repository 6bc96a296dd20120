"""Every shipped pipeline validates; the ones that run offline are run."""

import re
from pathlib import Path

import numpy as np
import pytest

from pipeline.loader import load
from pipeline.runner import Runner
from processors.files.wavfile import read_wav, write_wav

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines"
SHIPPED = sorted(PIPELINES.glob("*.yaml"))


def test_the_expected_pipelines_ship():
    """The pipelines the README and the issues promise are all there."""
    names = {p.stem for p in SHIPPED}
    assert {"demo", "voice_agent", "realtime_server", "telephony", "transcribe", "web_agent", "wav_vad"} <= names


M16, M24, M8 = (16000, 1, "int16"), (24000, 1, "int16"), (8000, 1, "int16")
U8 = (8000, 1, "ulaw")  # G.711 mu-law codes, carried untouched
# What each node of each shipped pipeline puts on its output links (None: no audio out).
FORMATS = {
    "demo": {"mic": M16, "vad": M16, "resample": M24, "model": M24, "console": M24, "tools": M24,
             "speaker": M24, "assistant_wav": M24, "record": M24},
    # the server's graph carries events and text from a websocket, not audio links
    "realtime_server": {"protocol_in": None, "stt": None, "responder": None, "tts": None, "protocol_out": None},
    # G.711 at 8 kHz: auto_resample inserts 16 -> 8 kHz after the VAD
    "telephony": {"caller": M16, "vad": M16, "resample_vad_model": M8, "model": U8, "console": U8,
                  "tools": U8, "g711_tools_line": M8, "g711_tools_out": M8, "line": M8, "out": M8},
    "transcribe": {"mic": M16, "resample": M16, "vad": M16, "stt": M16, "console": M16},
    "phone_agent": {"caller": U8, "model": U8, "tools": U8, "ear": U8},
    "voice_agent": {"mic": M24, "aec": M24, "denoise": M24, "turn": M24, "model": M24, "tools": M24, "speaker": None},
    "wav_vad": {"in": M16, "resample": M24, "vad": M24, "out": M24},
    "web_agent": {"mic": M24, "model": M24, "page": M24, "tools": M24},
    # WebRTC: Opus decodes at 48 kHz; the transport converts to the model's 24 kHz itself
    "webrtc_agent": {"mic": M24, "model": M24, "page": M24, "tools": M24},
    "live_agent": {"mic": M16, "vad": M16, "resample": M24, "model": M24, "console": M24, "tools": M24,
                   "speaker": M24, "assistant_wav": M24, "record": M24},
    "live_web_agent": {"mic": M24, "vad": M24, "model": M24, "page": M24, "tools": M24},
    # live.openai takes PCM (no G.711 pass-through yet, unlike realtime.openai): a decoder goes in front
    "live_phone_agent": {"caller": U8, "g711_caller_model": M8, "model": M8, "tools": M8, "ear": M8},
}


def test_every_shipped_pipeline_has_expected_formats():
    """The format table below covers exactly the shipped pipelines."""
    assert set(FORMATS) == {p.stem for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_pipeline_validates(path):
    """Loading checks every shipped pipeline; each node's output rate, channels and dtype are the expected ones."""
    graph = load(path)
    got = {name: None if f is None else (f.rate, f.channels, f.dtype) for name, f in graph.formats.items()}
    assert got == FORMATS[path.stem]


@pytest.mark.anyio
async def test_transcribe_pipeline_prints_what_was_said(capsys):
    """transcribe.yaml cuts two turns and recognises the first exactly."""
    graph = load(PIPELINES / "transcribe.yaml")
    result = await Runner(graph, realtime=False).run()
    assert result.ok
    out = capsys.readouterr().out
    assert "user      : what is the weather like in paris today" in out
    assert out.count("user started speaking") == 2


@pytest.mark.anyio
async def test_wav_vad_pipeline_writes_a_correct_file(tmp_path):
    """capture.wav -> resample -> vad.energy (gated) -> playback.wav writes the speech at 24 kHz."""
    out = tmp_path / "speech.wav"
    graph = load(PIPELINES / "wav_vad.yaml", overrides=[f"out.path={out}"])
    result = await Runner(graph, realtime=False).run()
    assert result.ok
    samples, rate = read_wav(out)
    source, source_rate = read_wav(PIPELINES / "samples" / "two_turns_16k.wav")
    assert rate == 24000
    # the file keeps media time: as long as the input (gated silence written as zeros)
    assert abs(len(samples) / rate - len(source) / source_rate) < 0.6
    speech = np.abs(samples.astype(np.int32)) > 300
    assert 0.2 < speech.mean() < 0.9  # speech kept, the silence between turns is zeros
    assert np.abs(samples.astype(np.int32)).max() > 1000


@pytest.mark.anyio
async def test_telephony_pipeline_talks_g711_with_the_local_server(tmp_path, capsys):
    """telephony.yaml: 8 kHz G.711 both ways; the weather question gets its tool answer.

    The shipped sample leaves 0.6 s between the VAD's end of the question and the second turn's
    first word: on a loaded machine recognition can take longer, and the second turn then
    (rightly) cancels the answer before its tool call. The test spreads the two turns 3 s
    further apart, so that it checks the format path, not the machine's speed.
    """
    source, rate = read_wav(PIPELINES / "samples" / "two_turns_16k.wav")
    gap = 3 * rate  # after the question (speech ends at 2.48 s), before the second turn (3.58 s)
    spread = np.concatenate((source[: 3 * rate], np.zeros(gap, source.dtype), source[3 * rate :]))
    caller = tmp_path / "two_turns_spread.wav"
    write_wav(caller, spread, rate)
    out = tmp_path / "tel.wav"
    graph = load(PIPELINES / "telephony.yaml", overrides=[f"out.path={out}", f"caller.path={caller}"])
    assert "resample_vad_model" in graph.nodes  # auto_resample inserted 16 -> 8 kHz
    result = await Runner(graph, realtime=True).run()
    assert result.ok, result.errors
    text = capsys.readouterr().out
    assert "tool call : get_weather({'location': 'Paris'})" in text
    # the caller's second turn ("hi there") may start while the answer plays: printed as heard,
    # cut (possibly before its first word), or, on a loaded machine, purged before it reached
    # the console by a barge-in that came first
    answered = re.search(r"assistant : (It is 18 degrees and partly cloudy in Paris\.|(It is .*)?\[cut: the user barged in after)", text)
    assert answered or "(the user barged in: playback flushed)" in text, text
    samples, rate = read_wav(out)
    assert rate == 8000 and len(samples) > rate  # more than a second of assistant speech


@pytest.mark.anyio
async def test_demo_pipeline_runs_the_whole_conversation(tmp_path, capsys):
    """The demo: five turns, a tool call, a barge-in, and the two WAV files, offline."""
    conv, assistant = tmp_path / "conversation.wav", tmp_path / "assistant.wav"
    graph = load(PIPELINES / "demo.yaml", overrides=[f"record.path={conv}", f"assistant_wav.path={assistant}"])
    result = await Runner(graph, realtime=True).run()
    assert result.ok, result.errors
    text = capsys.readouterr().out
    for line in ("user      : hello", "tool call : get_weather({'location': 'Paris'})",
                 "(the user barged in: playback flushed)", "user      : what is the weather in tokyo",
                 "It is 25 degrees and humid and clear in Tokyo.", "assistant : Goodbye! Talk to you soon."):
        assert line in text
    # the story is printed as heard: up to the barge-in, the cut marked, the rest left out
    assert re.search(r"assistant : Once upon a time.* \[cut: the user barged in after \d\.\d s; \d+ words not heard\]", text)
    assert "three days and three nights" not in text
    stereo, rate = read_wav(conv)
    assert rate == 24000 and stereo.shape[1] == 2
    user, bot = np.abs(stereo.astype(np.int32)).T
    assert user.max() > 1000 and bot.max() > 1000
    turns = [v for name, v in graph.nodes["console"].processor.metrics if name == "realtime.turn"]
    assert len(turns) >= 7 and all("response_id" in t for t in turns)
