"""``voxpipe bench PIPELINE.yaml``: benchmark the user's own pipeline.

It loads the pipeline, runs it (``runs`` times, each on a fresh ``graph.copy()``) at real
time or, with ``fast``, as fast as the graph allows, and reports from the runner's own
statistics:

* per processor: frames, time in ``process()`` (median, p99), that time as a share of one
  frame's budget (the source's ``frame_ms``), the queue's high-water mark (sampled every
  5 ms while running), drops and stale frames;
* per turn, when a realtime model is in the graph: the end of the user's speech to the
  model's first audio, the response's creation to its first audio, and a barge-in (the
  model's interruption) to playback reporting it stopped, with median and p99.

``baseline`` compares with a JSON file written by an earlier ``--json``: any figure more
than ``tolerance`` times its baseline (ratios, so that a CI job can use it) makes the exit
code 1. ``plot_dir`` writes PNGs when matplotlib is installed. Nothing here needs a source
checkout: it runs from a wheel install.
"""

from __future__ import annotations

import io
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["bench_pipeline", "compare", "format_report", "measure", "write_pipeline_plots"]

#: Figures below these are noise on a shared machine; a baseline compare ignores them.
MIN_US = 20.0
MIN_MS = 5.0
SAMPLE_S = 0.005


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


def _observer_class():
    from pipeline.frames import (
        AudioFrame,
        InterruptionFrame,
        PlaybackProgressFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
    )
    from processors.debug.console import ConsolePrinter

    class TurnObserver(ConsolePrinter):
        """A silent console that also times each barge-in to the end of its playback, and
        records a timeline on the media clock: the user's speech (from the VAD's frames),
        when the VAD decided, each reply's first audio and the end of its playback."""

        def __init__(self, *args, on_turn=None, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.on_turn = on_turn
            self.barge_ms: list[float] = []
            self._barge_at: float | None = None
            self.timeline: list[dict] = []
            self._speech_start: float | None = None
            self._first: dict[str, float] = {}

        def clone(self):
            return type(self)(self.params.model_copy(deep=True), name=self.name, stream=self.stream,
                              on_turn=self.on_turn)

        async def process(self, frame, direction) -> None:
            if type(frame) is AudioFrame and frame.item_id is not None and frame.item_id not in self._first:
                self._first[frame.item_id] = now = self.clock.elapsed()
                self.timeline.append({"kind": "first_audio", "at": round(now, 3), "item": frame.item_id,
                                      "turn": frame.turn})
            await super().process(frame, direction)

        def _observe(self, frame) -> None:
            if isinstance(frame, UserStartedSpeakingFrame) and frame.sample_rate:
                self._speech_start = frame.pts / frame.sample_rate
            elif isinstance(frame, UserStoppedSpeakingFrame) and frame.sample_rate:
                end = frame.pts / frame.sample_rate
                self.timeline.append({"kind": "user_speech", "start": round(self._speech_start or end, 3),
                                      "end": round(end, 3), "decided": round(self.clock.elapsed(), 3)})
            elif isinstance(frame, PlaybackProgressFrame) and frame.done and frame.item_id in self._first:
                self.timeline.append({"kind": "playback", "item": frame.item_id,
                                      "start": round(self._first.pop(frame.item_id), 3),
                                      "end": round(self.clock.elapsed(), 3), "played_ms": frame.played_ms,
                                      "interrupted": self._barge_at is not None})
            n_before = len(self.metrics)
            super()._observe(frame)
            if isinstance(frame, InterruptionFrame):
                self._barge_at = time.perf_counter()
            elif isinstance(frame, PlaybackProgressFrame) and frame.done and self._barge_at is not None:
                self.barge_ms.append(1000 * (time.perf_counter() - self._barge_at))
                self._barge_at = None
            if len(self.metrics) > n_before and self.on_turn is not None:
                self.on_turn(self.metrics[-1])

    return TurnObserver


def _attach_observer(graph, on_turn, *, name: str = "bench_observer", observer=None):
    """Put a silent observer after the realtime model; None when the graph has none.

    ``observer`` (default: a fresh TurnObserver) is what is inserted: ``voxpipe serve``'s
    session observer (:mod:`processors.serving.observer`) comes in the same way.
    """
    model = next((nid for nid, n in graph.nodes.items() if str(n.type).startswith("realtime.")), None)
    if model is None:
        return None
    if observer is None:
        observer = _observer_class()({"latency": False}, name=name, stream=io.StringIO(), on_turn=on_turn)
    outputs = graph.outputs(model)
    if outputs:
        graph.insert(name, observer, between=(model, outputs[0]), type="debug.console")
    else:
        graph.add(name, observer, type="debug.console")
        graph.link(model, name)
        graph.check()
    return observer


async def _run_once(graph, *, realtime: bool, duration_s: float | None, max_turns: int | None,
                    progress) -> tuple[Any, dict[str, int], Any, float]:
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

    observer = _attach_observer(graph, on_turn)
    runner = Runner(graph, realtime=realtime, stats=True)
    high: dict[str, int] = {}
    done = anyio.Event()
    t0 = time.perf_counter()

    async def sample() -> None:
        while not done.is_set():
            for node in getattr(runner, "nodes", None) or ():
                try:
                    nid, size = node.id, len(node.queue)
                except (AttributeError, TypeError):
                    continue
                if size > high.get(nid, 0):
                    high[nid] = size
            elapsed = time.perf_counter() - t0
            progress(elapsed, turns_seen[0])
            if duration_s is not None and elapsed >= duration_s:
                runner.end()
            with anyio.move_on_after(SAMPLE_S):
                await done.wait()

    result = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(sample)
        try:
            result = await runner.run()
        finally:
            done.set()
    return result, high, observer, time.perf_counter() - t0


def measure(path: str | Path, *, overrides: list[str] | None = None, fast: bool = False, runs: int = 1,
            duration_s: float | None = None, max_turns: int | None = None, show_progress: bool = True) -> dict:
    """Run the pipeline and return the report (what ``--json`` writes)."""
    import anyio

    from pipeline.loader import load

    template = load(path, overrides=overrides)
    frame_ms = _frame_ms(template)
    per_node: dict[str, list[dict]] = {}
    high: dict[str, int] = {}
    types: dict[str, str] = {}
    ttfb, created, barge = [], [], []
    turn_records: list[dict] = []
    wall = 0.0
    errors: list[str] = []
    timeline: list[dict] = []
    bar = _Progress(runs, duration_s, max_turns, enabled=show_progress)
    for i in range(runs):
        graph = template.copy()
        bar.run = i + 1
        result, hw, observer, elapsed = anyio.run(
            lambda: _run_once(graph, realtime=not fast, duration_s=duration_s, max_turns=max_turns, progress=bar.update))
        wall += elapsed
        errors += [f"{e.processor}: {e.message}" for e in result.errors]
        for nid, s in result.stats.items():
            if nid == "bench_observer":
                continue
            per_node.setdefault(nid, []).append(s)
            types[nid] = str(graph.nodes[nid].type) if nid in graph.nodes else "?"
            high[nid] = max(high.get(nid, 0), hw.get(nid, 0))
        if observer is not None:
            barge += observer.barge_ms
            if i == 0:
                timeline = observer.timeline
            for name, v in observer.metrics:
                if name != "realtime.turn":
                    continue
                info = observer.turns.get(v.get("turn"), {})
                record = {"run": i + 1, "turn": v.get("turn"), "utterance": info.get("utterance"),
                          "after_tool": info.get("after_tool"), "interrupted": bool(info.get("interrupted")),
                          **{k: v[k] for k in ("ttfb_ms", "first_audio_ms", "response_ms") if k in v}}
                turn_records.append(record)
                if "ttfb_ms" in v:
                    ttfb.append(v["ttfb_ms"])
                if "first_audio_ms" in v:
                    created.append(v["first_audio_ms"])
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
            "queue_high_water": high.get(nid, 0), "queue_size": runs_stats[0].get("max_size", 0),
            "dropped": sum(s.get("dropped", 0) for s in runs_stats), "stale": sum(s.get("stale", 0) for s in runs_stats),
        }
    from .bench import environment

    return {
        "pipeline": template.name, "file": str(path), "mode": "fast" if fast else "realtime", "runs": runs,
        "wall_s": round(wall, 3), "frame_ms": frame_ms, "errors": errors, "processors": processors,
        "turns": {"speech_end_to_first_audio_ms": _quantiles(ttfb), "created_to_first_audio_ms": _quantiles(created),
                  "barge_in_to_playback_stopped_ms": _quantiles(barge)} if (ttfb or created or turn_records) else {},
        "turn_records": turn_records, "timeline": timeline, "environment": environment(),
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
                 f"seen waiting (sampled every {SAMPLE_S * 1000:g} ms) / the queue's bound")
    turns = report.get("turns") or {}
    if turns:
        lines += ["", f"{'per turn':<40}{'n':>5}{'median':>11}{'p99':>11}"]
        names = {"speech_end_to_first_audio_ms": "user speech end -> model's first audio",
                 "created_to_first_audio_ms": "response created -> first audio",
                 "barge_in_to_playback_stopped_ms": "barge-in -> playback stopped"}
        for key, label in names.items():
            q = turns.get(key, {})
            if q.get("n"):
                lines.append(f"{label:<40}{q['n']:>5}{q['median']:>8.0f} ms{q['p99']:>8.0f} ms")
            else:
                lines.append(f"{label:<40}{0:>5}{'-':>11}{'-':>11}")
        lines.append("wall clock, measured where the model's frames leave it (the framework's share is not split out)")
    if report.get("errors"):
        lines += ["", "errors: " + "; ".join(report["errors"])]
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
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.boxplot(list(series.values()), vert=False)  # labels set apart: matplotlib renamed the keyword
        ax.set_yticks(range(1, len(series) + 1), [k.replace("_ms", "").replace("_", " ") for k in series])
        ax.set_xlabel("ms (wall clock)")
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
