"""``voxpipe bench`` on real parts: a one-cycle turn run, a two-session step, and the aggregation.

The runs are real (the local server in another process, eSpeak speech, real sockets); the
tests check that figures are produced and add up, never how fast anything was.
"""

from __future__ import annotations

import json
import math

import pytest

from pipelines.bench import BENCHMARKS, format_summary, load_benchmark, run_bench, summarize, write_plots

pytestmark = pytest.mark.slow

_TURN_PARTS = ("vad_wait", "resample_hold", "framework_in", "server", "model_delay", "framework_out")


@pytest.fixture(scope="module")
def turn_result():
    return load_benchmark("turn").run(cycles=1)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_turn_records_add_up(turn_result):
    """Each measured turn's parts sum to its total; every stop is measured or counted as missing."""
    t = turn_result["turn"]
    assert turn_result["run"]["ended"] == "end" and turn_result["run"]["errors"] == []
    assert t["n"] >= 1
    assert t["n"] + sum(t["missing"].values()) >= 2  # "tell me a story" and "hello" each end a turn
    for r in t["records"]:
        assert all(_finite(r[k]) for k in (*_TURN_PARTS, "total", "framework", "residual"))
        assert r["total"] == pytest.approx(sum(r[k] for k in _TURN_PARTS), abs=1e-6)
        assert r["framework"] == pytest.approx(r["resample_hold"] + r["framework_in"] + r["framework_out"], abs=1e-6)
        assert r["vad_wait"] >= 500.0  # media time: the demo's silence_duration_ms must pass first
        assert r["model_delay"] == 200.0
    assert t["stats"]["total"]["n"] == t["n"]


def test_barge_in_records_add_up(turn_result):
    """The barge-in is measured or counted as missing, and its parts sum to its total."""
    b = turn_result["barge_in"]
    assert b["n"] + sum(b["missing"].values()) == 1
    for r in b["records"]:
        assert r["total"] == pytest.approx(r["vad_detection"] + r["resample_hold"] + r["framework"], abs=1e-6)
        assert r["beyond_vad"] == pytest.approx(r["resample_hold"] + r["framework"], abs=1e-6)
        assert r["vad_detection"] > 0  # media time: a VAD cannot decide before the onset


def test_turn_summary_rows_are_well_formed(turn_result):
    """The summary has a row per figure, with a verdict where there is a target."""
    rows = summarize("turn", turn_result)
    assert {r["figure"].split(":")[0] for r in rows} == {"turn", "barge-in"}
    for r in rows:
        assert set(r) >= {"figure", "unit", "median", "p99", "floor", "ratio", "target", "met"}
        assert (r["met"] is None) == (r["target"] is None)
    framework = next(r for r in rows if r["figure"].startswith("turn: framework share"))
    assert _finite(framework["median"]) and isinstance(framework["met"], bool)
    text = format_summary(rows)
    assert "turn: framework share" in text and "p99 < 10 ms" in text


def test_sessions_step_produces_figures():
    """Two concurrent demo sessions against one server process give a well-formed step."""
    result = load_benchmark("sessions").run(quick=True, steps=(2,))
    (row,) = result["rows"]
    assert row["sessions"] == 2 and row["ended"] == 2 and row["errors"] == 0
    assert row["answers_expected"] == 2
    assert row["input_latency"]["n"] > 0 and row["output_latency"]["n"] > 0
    assert isinstance(row["met"], bool)
    assert result["max_sessions"] in (0, 2)
    assert "max sessions" in load_benchmark("sessions").table(result)


def test_run_bench_prints_summary_and_writes_json(tmp_path, capsys):
    """voxpipe bench --only dsp prints the summary and writes JSON with versions."""
    out = tmp_path / "bench.json"
    assert run_bench(quick=True, only=["dsp"], json_path=str(out)) == 0
    printed = capsys.readouterr().out
    assert "== summary ==" in printed and "dsp: resample 48k->24k" in printed
    report = json.loads(out.read_text())
    assert report["quick"] is True and report["environment"]["python"]
    assert report["results"]["dsp"]["cases"]
    assert all(r["figure"].startswith("dsp: ") for r in report["summary"])


def test_unknown_benchmark_is_a_usage_error(capsys):
    """An unknown name exits 2 and lists the benchmarks there are."""
    assert run_bench(only=["nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark 'nope'" in err and ", ".join(BENCHMARKS) in err


def test_plots_or_a_clear_message(tmp_path, capsys, turn_result):
    """--plot writes PNGs when matplotlib is there, and otherwise says how to get it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert run_bench(quick=True, only=["dsp"], plot_dir=str(tmp_path)) == 2
        assert "pip install 'voxpipe[plot]'" in capsys.readouterr().err
        return
    paths = write_plots({"turn": turn_result}, tmp_path)
    assert {p.name for p in paths} >= {"turn_latency.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)
