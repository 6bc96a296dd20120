"""``voxpipe bench PIPELINE.yaml``: benchmark the user's own pipeline.

It loads the pipeline, runs it (``runs`` times, each on a fresh ``graph.copy()``) at real
time or, with ``fast``, as fast as the graph allows, and reports from the runner's own
statistics:

* per processor: frames, time in ``process()`` (median, p99), that time as a share of one
  frame's budget (the source's ``frame_ms``), the queue's high-water mark (exact: the
  queue's own counter), drops and stale frames;
* per turn, when a realtime model is in the graph: the end of the user's speech to the
  reply's first audio at the sink, split into the VAD's wait, the model's time and
  voxpipe's share, and a barge-in's onset to silence at the sink, with median and p99
  (the split is defined in :mod:`pipelines.turn_timing`); and a table of the turns,
  labelled by what the user said (``voxpipe demo`` prints it too).

``baseline`` compares with a JSON file written by an earlier ``--json``: any figure more
than ``tolerance`` times its baseline (ratios, so that a CI job can use it) makes the exit
code 1. ``plot_dir`` writes PNGs when matplotlib is installed. Nothing here needs a source
checkout: it runs from a wheel install.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from .turn_probes import attach_probes

__all__ = ["TURN_FIGURES", "bench_pipeline", "compare", "format_report", "format_turns", "measure", "measure_graph",
           "write_pipeline_plots"]

#: Figures below these are noise on a shared machine; a baseline compare ignores them.
MIN_US = 20.0
MIN_MS = 5.0
WATCH_S = 0.1


def _quantiles(values: list[float]) -> dict[str, Any]:
    data = sorted(v for v in values if v is not None and math.isfinite(v))
    if not data:
        return {"n": 0}
    p99 = data[min(len(data) - 1, math.ceil(0.99 * len(data)) - 1)]
    return {"n": len(data), "median": round(statistics.median(data), 3), "p99": round(p99, 3),
            "max": round(data[-1], 3), "values": [round(v, 3) for v in data]}


def _frame_ms(graph) -> float:
    """The frame duration of the graph's first source with a ``frame_ms`` param (else 20 ms)."""
    ranked = sorted(graph.nodes.items(), key=lambda item: bool(graph.inputs(item[0])))  # sources first
    for _nid, node in ranked:
        value = getattr(getattr(node.processor, "params", None), "frame_ms", None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return 20.0


async def _run_once(graph, *, realtime: bool, duration_s: float | None, max_turns: int | None,
                    progress, handle_signals: bool = False) -> tuple[Any, Any, float]:
    import signal

    import anyio

    from pipeline.runner import Runner

    turns_seen = [0]
    runner: Runner | None = None

    def on_turn(metric) -> None:
        name, values = metric
        if name == "realtime.turn" and ("ttfb_ms" in values or "first_audio_ms" in values):
            turns_seen[0] += 1
            if max_turns and turns_seen[0] >= max_turns and runner is not None:
                runner.end()

    observer = attach_probes(graph, on_turn)
    runner = Runner(graph, realtime=realtime, stats=True)
    done = anyio.Event()
    t0 = time.perf_counter()

    async def watch() -> None:  # the progress line and --duration; queue high-water marks are the queues' own
        while not done.is_set():
            elapsed = time.perf_counter() - t0
            progress(elapsed, turns_seen[0])
            if duration_s is not None and elapsed >= duration_s:
                runner.end()
            with anyio.move_on_after(WATCH_S):
                await done.wait()

    async def watch_signals() -> None:  # Ctrl-C ends the run (its figures are printed), twice cancels
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            presses = 0
            async for _ in signals:
                presses += 1
                runner.end() if presses == 1 else runner.cancel()

    result = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        if handle_signals:
            tg.start_soon(watch_signals)
        try:
            result = await runner.run()
        finally:
            done.set()
            tg.cancel_scope.cancel()
    return result, observer, time.perf_counter() - t0


def measure(path: str | Path, *, overrides: list[str] | None = None, fast: bool = False, runs: int = 1,
            duration_s: float | None = None, max_turns: int | None = None, show_progress: bool = True) -> dict:
    """Load the pipeline, run it and return the report (what ``--json`` writes)."""
    from pipeline.loader import load

    return measure_graph(load(path, overrides=overrides), file=str(path), fast=fast, runs=runs, duration_s=duration_s,
                         max_turns=max_turns, show_progress=show_progress)


#: The per-turn figures of a report: key -> (the turn record's field, the label in the table).
TURN_FIGURES = {
    "speech_end_to_sink_ms": ("total_ms", "user speech end -> first audio at the sink"),
    "framework_ms": ("framework_ms", "  voxpipe's share (in + out)"),
    "framework_in_ms": ("framework_in_ms", "    decided -> the model has the stop"),
    "framework_out_ms": ("framework_out_ms", "    first delta -> the sink has it"),
    "vad_wait_ms": ("vad_wait_ms", "  the VAD's silence wait"),
    "model_ms": ("model_ms", "  the model (stop or created -> 1st delta)"),
    "created_to_first_audio_ms": ("first_audio_ms", "response created -> first delta"),
    "barge_in_to_silence_ms": ("total_ms", "barge-in onset -> silence at the sink"),
    "barge_in_framework_ms": ("framework_ms", "  voxpipe's share (decided -> silence)"),
    "barge_in_vad_ms": ("vad_detection_ms", "  the VAD's detection"),
}


def measure_graph(template, *, file: str = "", fast: bool = False, runs: int = 1, duration_s: float | None = None,
                  max_turns: int | None = None, show_progress: bool = True, handle_signals: bool = False) -> dict:
    """Run a loaded, checked graph ``runs`` times (a fresh ``copy()`` each) and return the report.

    ``voxpipe bench PIPELINE.yaml`` and ``voxpipe demo`` both come here: the demo is one
    real-time run of its graph, its console printing, and the per-turn table of the report.
    """
    import anyio

    from .turn_timing import split_barge_ins, split_turns

    frame_ms = _frame_ms(template)
    per_node: dict[str, list[dict]] = {}
    types: dict[str, str] = {}
    turn_records: list[dict] = []
    barge_records: list[dict] = []
    wall = 0.0
    errors: list[str] = []
    timeline: list[dict] = []
    ended, sink = "end", None
    bar = _Progress(runs, duration_s, max_turns, enabled=show_progress)
    for i in range(runs):
        graph = template.copy()
        bar.run = i + 1
        result, observer, elapsed = anyio.run(
            lambda: _run_once(graph, realtime=not fast, duration_s=duration_s, max_turns=max_turns, progress=bar.update,
                              handle_signals=handle_signals))
        wall += elapsed
        ended = result.ended if result.ended != "end" else ended
        errors += [f"{e.processor}: {e.message}" for e in result.errors]
        for nid, s in result.stats.items():
            if nid == "bench_observer":
                continue
            per_node.setdefault(nid, []).append(s)
            types[nid] = str(graph.nodes[nid].type) if nid in graph.nodes else "?"
        if observer is None:
            continue
        if i == 0:
            timeline = observer.timeline
        notes = observer.probes.result()
        sink = observer.probes.chosen_sink()
        split = {r["turn"]: r for r in split_turns(notes)}
        for name, v in observer.metrics:
            if name != "realtime.turn":
                continue
            info = observer.turns.get(v.get("turn"), {})
            record = {"run": i + 1, "turn": v.get("turn"), "utterance": info.get("utterance"),
                      "after_tool": info.get("after_tool"), "tool_calls": info.get("tool_calls") or [],
                      "interrupted": bool(info.get("interrupted")), "heard_ms": info.get("heard_ms"),
                      "status": v.get("status"),
                      **{k: v[k] for k in ("ttfb_ms", "first_audio_ms", "response_ms", "output_tokens") if k in v}}
            record.update({k: x for k, x in split.get(v.get("turn"), {}).items() if k != "turn"})
            turn_records.append(record)
        barge_records += [{"run": i + 1, **b} for b in split_barge_ins(notes)]
    bar.close()
    budget_us = frame_ms * 1000
    processors = {}
    for nid, runs_stats in per_node.items():
        p50 = statistics.median(s.get("p50_us", 0.0) for s in runs_stats)
        p99 = max(s.get("p99_us", 0.0) for s in runs_stats)
        processors[nid] = {
            "type": types[nid], "frames": sum(s.get("frames", 0) for s in runs_stats),
            "p50_us": round(p50, 2), "p99_us": round(p99, 2),
            "max_us": round(max(s.get("max_us", 0.0) for s in runs_stats), 2),
            "budget_pct_p50": round(100 * p50 / budget_us, 3), "budget_pct_p99": round(100 * p99 / budget_us, 3),
            "queue_high_water": max(s.get("high_water", 0) for s in runs_stats),
            "queue_size": runs_stats[0].get("max_size", 0),
            "dropped": sum(s.get("dropped", 0) for s in runs_stats), "stale": sum(s.get("stale", 0) for s in runs_stats),
        }
    from .bench import environment

    turns = {}
    if turn_records:
        for key, (field_name, _label) in TURN_FIGURES.items():
            source = barge_records if key.startswith("barge_in") else turn_records
            turns[key] = _quantiles([r[field_name] for r in source if field_name in r])
    return {
        "pipeline": template.name, "file": file, "mode": "fast" if fast else "realtime", "runs": runs,
        "wall_s": round(wall, 3), "frame_ms": frame_ms, "ended": ended, "errors": errors, "processors": processors,
        "sink": sink, "turns": turns, "turn_records": turn_records, "barge_in_records": barge_records,
        "timeline": [{k: round(v, 3) if isinstance(v, float) else v for k, v in e.items()} for e in timeline],
        "environment": environment(),
    }


class _Progress:
    """One status line on stderr (a bar when it is a terminal), updated at most 4 times a second."""

    def __init__(self, runs: int, duration_s: float | None, max_turns: int | None, *, enabled: bool) -> None:
        self.runs, self.duration_s, self.max_turns = runs, duration_s, max_turns
        self.enabled = enabled and sys.stderr.isatty()
        self.run = 1
        self._last = 0.0

    def update(self, elapsed: float, turns: int) -> None:
        if not self.enabled or time.monotonic() - self._last < 0.25:
            return
        self._last = time.monotonic()
        if self.duration_s:
            share = min(1.0, elapsed / self.duration_s)
        elif self.max_turns:
            share = min(1.0, turns / self.max_turns)
        else:
            share = (self.run - 1) / self.runs
        done = int(30 * share)
        sys.stderr.write(f"\r[{'#' * done}{'.' * (30 - done)}] run {self.run}/{self.runs}  {elapsed:6.1f} s  "
                         f"{turns} turns ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 72 + "\r")
            sys.stderr.flush()


def format_report(report: dict) -> str:
    """The per-processor table, and the per-turn table when the pipeline has a model."""
    procs = report["processors"]
    budget = report["frame_ms"]
    w = max([len(n) for n in procs] + [9])
    head = (f"{'processor':<{w}}  {'type':<20}{'frames':>8}{'p50 us':>10}{'p99 us':>10}"
            f"{f'% of {budget:g} ms':>12}{'p99 %':>8}{'queue hw':>10}{'dropped':>9}{'stale':>7}")
    lines = [f"{report['pipeline']} ({report['file']}): {report['runs']} run(s) {report['mode']}, "
             f"{report['wall_s']:.1f} s", "", head, "-" * len(head)]
    for nid, s in procs.items():
        lines.append(f"{nid:<{w}}  {s['type'][:19]:<20}{s['frames']:>8}{s['p50_us']:>10.1f}{s['p99_us']:>10.1f}"
                     f"{s['budget_pct_p50']:>11.2f}%{s['budget_pct_p99']:>7.2f}%"
                     f"{str(s['queue_high_water']) + '/' + str(s['queue_size']):>10}{s['dropped']:>9}{s['stale']:>7}")
    lines.append(f"time in process() per frame; % of the {budget:g} ms frame budget; queue hw: the most frames "
                 "that waited in the queue at once / the queue's bound")
    turns = report.get("turns") or {}
    if turns:
        lines += ["", f"{'per turn (ms)':<44}{'n':>5}{'median':>9}{'p99':>9}"]
        for key, (_field, label) in TURN_FIGURES.items():
            q = turns.get(key, {})
            if q.get("n"):
                lines.append(f"{label:<44}{q['n']:>5}{q['median']:>9.1f}{q['p99']:>9.1f}")
            else:
                lines.append(f"{label:<44}{0:>5}{'-':>9}{'-':>9}")
        lines.append(f"wall clock on the media clock; the sink is {report.get('sink')!r} (the first audio of a reply "
                     "entering its process()); voxpipe's share is the time in the graph's processors, queues and "
                     "hops, the model's is the socket and the server (docs/benchmarks.md, the framework's share)")
        lines += ["", format_turns(report.get("turn_records") or [], run=1)]
    if report.get("errors"):
        lines += ["", "errors: " + "; ".join(report["errors"])]
    return "\n".join(lines)


def format_turns(records: list[dict], *, run: int | None = None) -> str:
    """One row per response, labelled by what the user said, with its status and where its time went.

    A reply that follows a tool result is labelled by the tool; a reply the user barged
    into says ``interrupted`` and how much was heard, whatever status the server gave it
    (it had finished sending; the user had not finished hearing). ``run``: only that run's rows.
    """
    rows = [r for r in records if run is None or r.get("run") == run]

    def label(r: dict) -> str:
        if r.get("after_tool"):
            return f"({r['after_tool']} result)"
        return f'"{r["utterance"]}"' if r.get("utterance") else "(no user words)"

    def status(r: dict) -> str:
        if r.get("interrupted"):
            heard = r.get("heard_ms")
            return "interrupted" + (f", heard {heard / 1000:.1f} s" if heard is not None else "")
        if r.get("tool_calls") and "first_audio_ms" not in r:
            return "calls " + ", ".join(r["tool_calls"])
        return str(r.get("status") or "?")

    def ms(r: dict, key: str) -> str:
        return f"{r[key]:.0f}" if isinstance(r.get(key), (int, float)) and math.isfinite(r[key]) else "-"

    width = max([len(label(r)) for r in rows] + [len("the user said")])
    swidth = max([len(status(r)) for r in rows] + [len("status")])
    head = (f"{'the user said':<{width}}  {'status':<{swidth}}  {'to the sink':>11}{'VAD wait':>10}{'model':>8}"
            f"{'voxpipe':>9}{'tokens':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{label(r):<{width}}  {status(r):<{swidth}}  {ms(r, 'total_ms' if 'total_ms' in r else 'created_to_sink_ms'):>11}"
                     f"{ms(r, 'vad_wait_ms'):>10}{ms(r, 'model_ms'):>8}{ms(r, 'framework_ms'):>9}{r.get('output_tokens', '-'):>8}")
    if not rows:
        lines.append("  (no turn completed)")
    lines.append("ms; to the sink: the user's speech end (after a tool: the response's creation) -> the reply's first "
                 "audio at the sink; a reply that calls a tool has no audio, the reply after it speaks the result")
    return "\n".join(lines)


def _figures(report: dict) -> dict[str, tuple[float, float]]:
    """Comparable figures: name -> (value, noise floor below which it is not compared)."""
    out: dict[str, tuple[float, float]] = {}
    for nid, s in report.get("processors", {}).items():
        out[f"{nid} p50 us"] = (s["p50_us"], MIN_US)
        out[f"{nid} p99 us"] = (s["p99_us"], MIN_US)
    for key, q in (report.get("turns") or {}).items():
        if q.get("n"):
            out[f"{key} median"] = (q["median"], MIN_MS)
            out[f"{key} p99"] = (q["p99"], MIN_MS)
    return out


def compare(report: dict, baseline: dict, tolerance: float) -> tuple[list[str], list[str]]:
    """Lines comparing each figure with the baseline, and the names of those past ``tolerance``."""
    now, before = _figures(report), _figures(baseline)
    lines, worse = [], []
    w = max([len(k) for k in now] + [6])
    lines.append(f"{'figure':<{w}}{'baseline':>12}{'now':>12}{'ratio':>8}")
    for key, (value, floor) in now.items():
        if key not in before:
            continue
        old = before[key][0]
        if max(value, old) < floor:
            verdict, ratio_text = "  (below the noise floor)", "-"
        else:
            ratio = value / old if old > 0 else math.inf
            ratio_text = f"{ratio:.2f}"
            verdict = ""
            if ratio > tolerance:
                worse.append(key)
                verdict = f"  WORSE (> {tolerance:g}x)"
        lines.append(f"{key:<{w}}{old:>12.1f}{value:>12.1f}{ratio_text:>8}{verdict}")
    if baseline.get("mode") != report.get("mode") or baseline.get("pipeline") != report.get("pipeline"):
        lines.insert(0, f"note: the baseline is {baseline.get('pipeline')!r} run {baseline.get('mode')}, this is "
                        f"{report.get('pipeline')!r} run {report.get('mode')}: the ratios compare different things")
    missing = sorted(set(before) - set(now))
    if missing:
        lines.append(f"not in this run: {', '.join(missing)}")
    return lines, worse


def write_pipeline_plots(report: dict, out_dir: Path) -> list[Path]:
    """PNGs: per-processor cost bars, and per-turn latency distributions with a timeline when there are turns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    procs = report["processors"]
    names = list(procs)
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(names) + 2), 4))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [procs[n]["p50_us"] for n in names], width=0.4, label="median")
    ax.bar([i + 0.2 for i in x], [procs[n]["p99_us"] for n in names], width=0.4, label="p99")
    ax.set_xticks(list(x), names, rotation=30, ha="right")
    ax.set_ylabel("time in process() per frame (us)")
    ax.set_title(f"{report['pipeline']}: cost per processor ({report['mode']}, {report['runs']} run(s))")
    ax.legend()
    fig.tight_layout()
    path = out_dir / "processors.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    turns = report.get("turns") or {}
    series = {k: q.get("values", []) for k, q in turns.items() if q.get("n")}
    if series:
        fig, ax = plt.subplots(figsize=(8, 0.42 * len(series) + 1.6))
        # log axis: voxpipe's share (about a millisecond) beside the model's (hundreds); values under 0.1 ms at 0.1
        ax.boxplot([[max(v, 0.1) for v in values] for values in series.values()], vert=False)
        ax.set_yticks(range(1, len(series) + 1),  # labels set apart: matplotlib renamed the keyword
                      [TURN_FIGURES[k][1].strip() if k in TURN_FIGURES else k for k in series], fontsize=8)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_xlabel("ms (wall clock, log scale)")
        ax.set_title(f"{report['pipeline']}: per-turn latency")
        fig.tight_layout()
        path = out_dir / "turn_latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if report.get("timeline"):
        written.append(_timeline_plot(plt, report, out_dir / "timeline.png"))
    return written


def _timeline_plot(plt, report: dict, path: Path) -> Path:
    """The first run on the media clock: user speech, the VAD's decision, first audio, playback."""
    events = report["timeline"]
    fig, ax = plt.subplots(figsize=(11, 2.8))
    rows = {"user speech": 3, "VAD / first audio": 2, "playback": 1}
    for e in events:
        if e["kind"] == "user_speech":
            ax.barh(rows["user speech"], e["end"] - e["start"], left=e["start"], height=0.5, color="#2f6fed")
            ax.plot([e["decided"]], [rows["VAD / first audio"]], marker="|", markersize=14, color="#2f6fed")
        elif e["kind"] == "first_audio":
            ax.plot([e["at"]], [rows["VAD / first audio"]], marker="v", color="#1f8a4c")
        elif e["kind"] == "playback":
            ax.barh(rows["playback"], e["end"] - e["start"], left=e["start"], height=0.5,
                    color="#c0392b" if e["interrupted"] else "#1f8a4c")
    ax.set_yticks(list(rows.values()), list(rows))
    ax.set_xlabel("media time (s): blue bars the user's speech, | the VAD's decision, v the model's first audio, "
                  "bars its playback (red: cut by a barge-in)", fontsize=8)
    ax.set_title(f"{report['pipeline']}: the first run's turns")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def bench_pipeline(path: str | Path, *, overrides: list[str] | None = None, fast: bool = False, runs: int = 1,
                   duration_s: float | None = None, max_turns: int | None = None, json_path: str | None = None,
                   baseline: str | None = None, tolerance: float = 1.5, plot_dir: str | None = None) -> int:
    """``voxpipe bench PIPELINE.yaml``: measure, print, compare; return the exit code."""
    from pipeline.errors import VoxpipeError

    if runs < 1:
        raise VoxpipeError(f"--runs must be at least 1, not {runs}")
    if tolerance <= 1:
        raise VoxpipeError(f"--tolerance is a ratio above 1 (1.5: 50% slower fails), not {tolerance:g}")
    if plot_dir is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise VoxpipeError("--plot needs matplotlib, which is not installed: pip install 'voxpipe[plot]', "
                               "or leave out --plot") from None
    old = None
    if baseline is not None:
        try:
            old = json.loads(Path(baseline).read_text())
        except (OSError, ValueError) as exc:
            raise VoxpipeError(f"cannot read the baseline {baseline}: {exc}; write one with --json {baseline}") from None
    report = measure(path, overrides=overrides, fast=fast, runs=runs, duration_s=duration_s, max_turns=max_turns)
    to_stdout = json_path == "-"
    text_out = sys.stderr if to_stdout else sys.stdout
    print(format_report(report), file=text_out)
    code = 1 if report["errors"] else 0
    if old is not None:
        lines, worse = compare(report, old, tolerance)
        print(f"\ncompared with {baseline} (tolerance {tolerance:g}x):", file=text_out)
        print("\n".join(lines), file=text_out)
        report["baseline"] = {"file": baseline, "tolerance": tolerance, "worse": worse}
        if worse:
            print(f"{len(worse)} figure(s) past the tolerance: {', '.join(worse)}", file=text_out)
            code = 1
    if json_path:
        text = json.dumps(report, indent=2, default=str)
        if to_stdout:
            print(text)
        else:
            Path(json_path).write_text(text + "\n")
            print(f"wrote {json_path}", file=text_out)
    if plot_dir is not None:
        for p in write_pipeline_plots(report, Path(plot_dir)):
            print(f"wrote {p}", file=text_out)
    return code
