"""Seeing what a run does: the console prints what was heard and marks the cut, the demo's
table labels rows by utterance, ``voxpipe run`` shows a live view on a terminal, is silent
with ``--quiet``, speaks JSON with ``--log-format json`` and refuses ``--fast`` with a
realtime model."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.frames import (
    AudioFrame,
    Direction,
    InterruptionFrame,
    MetricsFrame,
    PlaybackProgressFrame,
    ResponseEndFrame,
    ResponseStartFrame,
    TextFrame,
    TranscriptionFrame,
)
from pipeline.testing import run_frames
from pipelines import shipped
from pipelines.demo import turn_table
from processors.debug.console import ConsolePrinter, heard_text

ROOT = Path(__file__).resolve().parent.parent
UP = Direction.UPSTREAM


def test_heard_text_cuts_inside_the_segment_under_way():
    segments = [(0.0, "One two three four. "), (2000.0, "Five six seven eight.")]
    assert heard_text(segments, 4000.0, 4000.0) == ("One two three four. Five six seven eight.", "")
    assert heard_text(segments, 4000.0, 1000.0) == ("One two", "three four. Five six seven eight.")
    assert heard_text(segments, 4000.0, 3000.0) == ("One two three four. Five six", "seven eight.")
    assert heard_text(segments, 4000.0, 0.0) == ("", "One two three four. Five six seven eight.")


def speech(ms: int, item: str, turn: int) -> list[AudioFrame]:
    return [AudioFrame(np.zeros(480, np.int16), 24000, pts=i * 480, item_id=item, turn=turn) for i in range(ms // 20)]


@pytest.mark.anyio
async def test_console_prints_an_interrupted_reply_as_heard_with_the_cut():
    out = io.StringIO()
    console = ConsolePrinter(stream=out)
    frames = [
        TranscriptionFrame("tell me a story"),
        ResponseStartFrame(response_id="r1", turn=1),
        TextFrame("Once upon a time there was a clockmaker. ", item_id="i1", turn=1),
        *speech(2000, "i1", 1),
        TextFrame("He wound every clock on the wall.", item_id="i1", turn=1),
        *speech(2000, "i1", 1),
        ResponseEndFrame(response_id="r1", turn=1),
        MetricsFrame("realtime.turn", {"turn": 1, "status": "completed", "ttfb_ms": 240.0, "first_audio_ms": 239.0}),
        (PlaybackProgressFrame("i1", 1000), UP),
        InterruptionFrame(turn=2),
        (PlaybackProgressFrame("i1", 1000, done=True), UP),
    ]
    await run_frames(console, frames)
    text = out.getvalue()
    assert "  user      : tell me a story" in text
    assert "  assistant : Once upon a time [cut: the user barged in after 1.0 s; 11 words not heard]" in text
    assert "wound every clock" not in text
    assert "  latency   : turn 1: speech end -> first audio 240 ms" in text
    assert console.turns[1] == {"turn": 1, "tool_calls": [], "interrupted": True, "utterance": "tell me a story",
                                "heard_ms": 1000}


@pytest.mark.anyio
async def test_console_labels_a_delegation_answer_by_the_words_and_a_realtime_tool_reply_by_the_tool():
    """Realtime: the question's response calls the tool, the next one speaks the result. Live: the call
    comes with no response open, and the one reply after it answers the question."""
    from pipeline.frames import ToolCallFrame, ToolResultFrame

    realtime = ConsolePrinter(stream=io.StringIO())
    await run_frames(realtime, [
        TranscriptionFrame("what is the weather in paris"),
        ResponseStartFrame(response_id="r1", turn=1),
        ToolCallFrame("c1", "get_weather", {"location": "Paris"}, turn=1),
        ResponseEndFrame(response_id="r1", turn=1),
        (ToolResultFrame("c1", "get_weather", "{}", turn=1), UP),
        ResponseStartFrame(response_id="r2", turn=2),
        ResponseEndFrame(response_id="r2", turn=2),
    ])
    assert realtime.turns[1]["utterance"] == "what is the weather in paris"
    assert realtime.turns[2]["after_tool"] == "get_weather" and "utterance" not in realtime.turns[2]
    live = ConsolePrinter(stream=io.StringIO())
    await run_frames(live, [
        TranscriptionFrame("what is the weather in paris"),
        ToolCallFrame("c1", "get_weather", {"location": "Paris"}, turn=2),
        (ToolResultFrame("c1", "get_weather", "{}", turn=2), UP),
        ResponseStartFrame(response_id="r2", turn=2),
        ResponseEndFrame(response_id="r2", turn=2),
    ])
    assert live.turns[2]["utterance"] == "what is the weather in paris" and "after_tool" not in live.turns[2]


@pytest.mark.anyio
async def test_console_prints_a_reply_when_its_playback_ends_and_json_on_request():
    out = io.StringIO()
    console = ConsolePrinter({"format": "json"}, stream=out)
    frames = [ResponseStartFrame(response_id="r1", turn=1), TextFrame("Hi.", item_id="i1", turn=1),
              *speech(200, "i1", 1), (PlaybackProgressFrame("i1", 100), UP), ResponseEndFrame(response_id="r1", turn=1),
              (PlaybackProgressFrame("i1", 200, done=True), UP), TranscriptionFrame("hello")]
    await run_frames(console, frames)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in events] == ["assistant", "user"]
    assert events[0]["text"] == "Hi." and events[0]["interrupted"] is False
    assert console.turns[1]["utterance"] == "hello"  # recognised after the response started


def test_demo_table_labels_rows_by_utterance_and_says_interrupted():
    """The demo's table is the bench's per-turn table: rows by utterance, `interrupted`, the split."""
    records = [{"run": 1, "turn": 1, "utterance": "hello", "status": "completed", "ttfb_ms": 90.0, "total_ms": 600.0,
                "vad_wait_ms": 500.0, "model_ms": 90.0, "framework_ms": 10.0},
               {"run": 1, "turn": 2, "utterance": "weather in paris", "tool_calls": ["get_weather"], "status": "completed",
                "response_ms": 200.0},
               {"run": 1, "turn": 3, "after_tool": "get_weather", "status": "completed", "first_audio_ms": 5.0,
                "created_to_sink_ms": 7.0, "model_ms": 5.0, "framework_ms": 2.0},
               {"run": 1, "turn": 4, "utterance": "tell me a story", "interrupted": True, "heard_ms": 2900,
                "status": "completed", "ttfb_ms": 300.0, "total_ms": 805.0}]
    rows = turn_table(records).splitlines()[2:6]
    assert rows[0].startswith('"hello"') and "completed" in rows[0] and rows[0].split()[-5:-1] == ["600", "500", "90", "10"]
    assert rows[1].startswith('"weather in paris"') and "calls get_weather" in rows[1]
    assert rows[2].startswith("(get_weather result)") and rows[2].split()[-5:-1] == ["7", "-", "5", "2"]
    assert rows[3].startswith('"tell me a story"') and "interrupted, heard 2.9 s" in rows[3] and "completed" not in rows[3]


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text("voxpipe: 1\nname: t\n" + textwrap.dedent(body))
    return path


def test_fast_with_a_realtime_model_is_refused_saying_why(tmp_path, capsys):
    path = write(tmp_path, """\
        processors:
          tone: {type: capture.tone, params: {sample_rate: 24000}}
          model: {type: realtime.openai, params: {url: local}}
          out: {type: playback.null}
        links:
          - tone -> model -> out
        """)
    assert main(["run", str(path), "--fast"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "realtime model (model)" in err and "Run it without --fast" in err


TRANSCRIBE = """\
    processors:
      mic: {type: capture.wav, params: {path: %s, realtime: false, pad_ms: 600}}
      vad: {type: vad.energy, params: {silence_duration_ms: 300}}
      stt: {type: stt.pocketsphinx}
      out: {type: playback.null}
    links:
      - mic -> vad -> stt -> out
    """


@pytest.fixture
def transcribe(tmp_path):
    pytest.importorskip("pocketsphinx")
    return write(tmp_path, TRANSCRIBE % shipped("samples/hello_16k.wav"))


def test_run_shows_a_live_view_on_a_terminal(transcribe, capsys, monkeypatch):
    monkeypatch.setattr("pipeline.cli._is_terminal", lambda: True)
    assert main(["run", str(transcribe), "--fast"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("voxpipe run: 't' as fast as possible; Ctrl-C ends it, --quiet hides this view")
    assert "(user started speaking at 0." in out and "short test of" in out


def test_run_is_silent_without_a_terminal_and_with_quiet(transcribe, capsys, monkeypatch):
    monkeypatch.setattr("pipeline.cli._is_terminal", lambda: False)
    assert main(["run", str(transcribe), "--fast"]) == 0
    assert capsys.readouterr().out == ""
    monkeypatch.setattr("pipeline.cli._is_terminal", lambda: True)
    with_console = transcribe.read_text().replace("stt -> out", "stt -> console -> out").replace(
        "  out:", "  console: {type: debug.console}\n  out:")
    transcribe.write_text(with_console)
    assert main(["run", str(transcribe), "--fast", "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_run_log_format_json_is_one_object_per_line(transcribe, capsys):
    assert main(["run", str(transcribe), "--fast", "--log-format", "json", "--stats"]) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]
    kinds = [e["event"] for e in events]
    assert "user" in kinds and kinds[-2:] == ["stats", "end"]
    assert next(e for e in events if e["event"] == "user")["text"].endswith("pipeline")
    assert events[-1] == {"event": "end", "pipeline": "t", "ended": "end", "ok": True}
    assert events[-2]["stats"]["stt"]["frames"] > 0


@pytest.mark.slow
def test_voxpipe_demo_prints_the_bench_table_with_the_split_and_the_barge_in(tmp_path, monkeypatch, capsys):
    """`voxpipe demo` is one real-time run on the bench's machinery: its table is the bench's."""
    pytest.importorskip("pocketsphinx")
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "tool call : get_weather({'location': 'Paris'})" in out and "[cut: the user barged in after" in out
    table = out[out.index("latency per turn"):].splitlines()
    assert "to the sink" in table[1] and "voxpipe" in table[1]
    story = next(line for line in table if line.startswith('"tell me a story"'))
    assert "interrupted, heard" in story
    hello = next(line for line in table if line.startswith('"hello"'))
    total, vad_wait, model, voxpipe = (float(x) for x in hello.split()[-5:-1])
    assert abs(total - (vad_wait + model + voxpipe)) <= 3  # each rounded to a millisecond
    assert "barge-in: the user's speech onset -> silence at the sink" in out
    assert (tmp_path / "out" / "conversation.wav").stat().st_size > 44
