"""``voxpipe bench PIPELINE.yaml``: the user's own pipeline measured, compared with a
baseline (exit 1 past the tolerance), as JSON and as plots."""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest

from pipeline.cli import main
from pipelines import shipped
from pipelines.pipeline_bench import compare

WAV_VAD = str(shipped("wav_vad.yaml"))


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    assert main(["bench", WAV_VAD, "--fast", "--runs", "2", "--json", str(path), "--set", "out.path=" + str(path.with_suffix(".wav"))]) == 0
    return json.loads(path.read_text())


def test_the_report_has_every_processor_from_the_runners_stats(report):
    procs = report["processors"]
    assert list(procs) == ["in", "resample", "vad", "out"]
    assert [procs[n]["type"] for n in procs] == ["capture.wav", "audio.resample", "vad.energy", "playback.wav"]
    # two runs of the 5.5 s sample and its 0.5 s of padding, in 20 ms frames, through the resampler
    assert procs["resample"]["frames"] == 2 * 300
    for s in procs.values():
        assert s["budget_pct_p50"] == pytest.approx(100 * s["p50_us"] / 20000, abs=0.01)
        assert s["queue_size"] == 256 and s["dropped"] == 0
    assert report["mode"] == "fast" and report["runs"] == 2 and report["frame_ms"] == 20
    assert report["turns"] == {}  # no model in this graph


def test_the_table_is_printed(capsys, tmp_path):
    assert main(["bench", WAV_VAD, "--fast", "--set", f"out.path={tmp_path / 'o.wav'}"]) == 0
    out = capsys.readouterr().out
    assert "% of 20 ms" in out and "queue hw" in out
    assert any(line.startswith("vad ") and "vad.energy" in line for line in out.splitlines())


def test_compare_flags_figures_past_the_tolerance_and_ignores_noise():
    base = {"pipeline": "p", "mode": "fast", "processors": {
        "a": {"p50_us": 100.0, "p99_us": 400.0}, "b": {"p50_us": 2.0, "p99_us": 5.0}},
        "turns": {"speech_end_to_first_audio_ms": {"n": 5, "median": 200.0, "p99": 300.0}}}
    now = copy.deepcopy(base)
    now["processors"]["a"]["p50_us"] = 160.0          # 1.6x: worse
    now["processors"]["b"]["p50_us"] = 8.0            # 4x, but below the 20 us noise floor
    now["turns"]["speech_end_to_first_audio_ms"]["median"] = 280.0  # 1.4x: within
    lines, worse = compare(now, base, 1.5)
    assert worse == ["a p50 us"]
    assert any("below the noise floor" in ln and ln.startswith("b p50 us") for ln in lines)
    assert compare(base, base, 1.5)[1] == []


def test_baseline_past_the_tolerance_exits_1(report, tmp_path, capsys):
    """A baseline a million times faster on every processor's p99 fails the run.

    Every p99 is made tiny, not just one: which processor's p99 clears the noise floor in
    the second run is up to the machine, but one always does.
    """
    baseline = copy.deepcopy(report)
    for figures in baseline["processors"].values():
        figures["p99_us"] = 1e-6
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    code = main(["bench", WAV_VAD, "--fast", "--baseline", str(path), "--tolerance", "3",
                 "--set", f"out.path={tmp_path / 'o.wav'}"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "p99 us" in out and "WORSE (> 3x)" in out


def test_bench_refuses_fast_with_a_realtime_model(capsys):
    assert main(["bench", str(shipped("demo.yaml")), "--fast"]) == 2
    assert "Run it without --fast" in capsys.readouterr().err


def test_bench_options_need_a_pipeline(capsys):
    assert main(["bench", "--baseline", "x.json"]) == 2
    assert "give one" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed (pip install matplotlib)")
def test_plot_writes_pngs(tmp_path, capsys):
    assert main(["bench", WAV_VAD, "--fast", "--plot", str(tmp_path / "plots"), "--set", f"out.path={tmp_path / 'o.wav'}"]) == 0
    png = tmp_path / "plots" / "processors.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_model_pipeline_reports_per_turn_latency(tmp_path, capsys):
    """Two turns of the demo: speech end -> first audio at the sink, split into the VAD, the model and voxpipe."""
    pytest.importorskip("pocketsphinx")
    path = tmp_path / "demo.json"
    overrides = ["--set", f"record.path={tmp_path / 'c.wav'}", "--set", f"assistant_wav.path={tmp_path / 'a.wav'}"]
    assert main(["bench", str(shipped("demo.yaml")), "--turns", "2", "--json", str(path), *overrides]) == 0
    report = json.loads(path.read_text())
    assert report["sink"] == "speaker"  # the playback node, the one that reports progress
    first = report["turns"]["speech_end_to_sink_ms"]
    assert first["n"] >= 1 and 0 < first["median"] < 5000
    spoken = [r for r in report["turn_records"] if "speech_end_s" in r]
    assert spoken and spoken[0]["utterance"] == "hello" and spoken[0]["vad"] == "graph"
    for r in spoken:  # the parts add up, and each is a time, not a guess
        assert r["total_ms"] == pytest.approx(r["vad_wait_ms"] + r["framework_in_ms"] + r["model_ms"] + r["framework_out_ms"], abs=0.1)
        assert 400 <= r["vad_wait_ms"] <= 600  # the demo's 500 ms silence, to a frame
        assert r["framework_in_ms"] >= 0 and r["framework_out_ms"] >= 0 and r["model_ms"] > 0
    out = capsys.readouterr().out
    assert "user speech end -> first audio at the sink" in out and "voxpipe's share" in out
    assert '"hello"' in out  # the per-turn table, labelled by what was said
    assert report["processors"]["tools"]["queue_high_water"] < 10  # no pile after the end (docs/benchmarks.md)
    timeline = report["timeline"]
    speech = [e for e in timeline if e["kind"] == "user_speech"]
    first = [e for e in timeline if e["kind"] == "first_audio"]
    assert speech and first and speech[0]["start"] < speech[0]["end"] <= speech[0]["decided"] < first[0]["at"]


@pytest.mark.slow
def test_with_the_servers_vad_the_model_holds_the_wait_and_voxpipe_the_way_out(tmp_path):
    """No VAD in the graph: the stop comes out of the model, and the split says so."""
    pytest.importorskip("pocketsphinx")
    yaml = tmp_path / "server_vad.yaml"
    yaml.write_text(f"""\
voxpipe: 1
name: server-vad
processors:
  mic: {{type: capture.wav, params: {{path: {shipped('samples/demo_conversation_16k.wav')}, realtime: true}}}}
  resample: {{type: audio.resample, params: {{rate: 24000}}}}
  model: {{type: realtime.openai, params: {{url: local}}}}
  speaker: {{type: playback.null}}
links:
  - mic -> resample -> model -> speaker
""")
    path = tmp_path / "bench.json"
    assert main(["bench", str(yaml), "--turns", "1", "--json", str(path)]) == 0
    records = [r for r in json.loads(path.read_text())["turn_records"] if "total_ms" in r]
    assert records and all(r["vad"] == "model" and "vad_wait_ms" not in r for r in records)
    for r in records:
        assert r["total_ms"] == pytest.approx(r["model_ms"] + r["framework_out_ms"], abs=0.1)
        assert r["framework_ms"] == r["framework_out_ms"] >= 0 and r["model_ms"] > r["ttfb_ms"]
