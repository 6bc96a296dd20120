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

import io
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

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


def _observer_class():
    from pipeline.frames import (
        AudioFrame,
        InterruptionFrame,
        MetricsFrame,
        PlaybackProgressFrame,
        ResponseStartFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
    )
    from processors.debug.console import ConsolePrinter

    class TurnObserver(ConsolePrinter):
        """A silent console right after the model: notes what leaves the model for the turn
        timing (``probes.notes``), and records a timeline on the media clock: the user's
        speech (from the VAD's frames), when the VAD decided, each reply's first audio and
        its playback."""

        def __init__(self, *args, on_turn=None, probes=None, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.on_turn = on_turn
            self.probes = probes
            self.timeline: list[dict] = []
            self._speech_start: float | None = None
            self._first: dict[str, float] = {}
            self._cut = False

        def clone(self):
            return type(self)(self.params.model_copy(deep=True), name=self.name, stream=self.stream,
                              on_turn=self.on_turn, probes=self.probes)

        async def process(self, frame, direction) -> None:
            if type(frame) is AudioFrame and frame.item_id is not None and frame.item_id not in self._first:
                self._first[frame.item_id] = now = self.clock.elapsed()
                self.timeline.append({"kind": "first_audio", "at": round(now, 3), "item": frame.item_id,
                                      "turn": frame.turn})
                self.probes.notes.left_model.setdefault(frame.turn, now)
            await super().process(frame, direction)

        def _observe(self, frame) -> None:
            notes = self.probes.notes
            if isinstance(frame, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame)) and frame.sample_rate:
                self.probes.out_of_model(frame, self.clock.elapsed())
            if isinstance(frame, UserStartedSpeakingFrame) and frame.sample_rate:
                self._speech_start = frame.pts / frame.sample_rate
            elif isinstance(frame, UserStoppedSpeakingFrame) and frame.sample_rate:
                end = frame.pts / frame.sample_rate
                self.timeline.append({"kind": "user_speech", "start": round(self._speech_start or end, 3),
                                      "end": round(end, 3), "decided": round(self.clock.elapsed(), 3)})
            elif isinstance(frame, ResponseStartFrame):
                notes.responses.setdefault(frame.turn, self.clock.elapsed())
            elif isinstance(frame, InterruptionFrame):
                self._cut = True
            elif isinstance(frame, MetricsFrame) and frame.name == "realtime.turn":
                notes.metrics[int(frame.values.get("turn", frame.turn))] = dict(frame.values)
            elif isinstance(frame, PlaybackProgressFrame) and frame.done and frame.item_id in self._first:
                turn = next((e["turn"] for e in self.timeline if e.get("item") == frame.item_id), None)
                start = self.probes.chosen_sink_notes().at_sink.get(turn) if turn is not None else None
                first = self._first.pop(frame.item_id)
                self.timeline.append({"kind": "playback", "item": frame.item_id,
                                      "start": round(start if start is not None else first, 3),
                                      "end": round(self.clock.elapsed(), 3), "played_ms": frame.played_ms,
                                      "interrupted": self._cut})
                self._cut = False
            n_before = len(self.metrics)
            super()._observe(frame)
            if len(self.metrics) > n_before and self.on_turn is not None:
                self.on_turn(self.metrics[-1])

    return TurnObserver


class _Probes:
    """The turn timing's probes in one graph copy (see :mod:`pipelines.turn_timing`).

    Three kinds, none of which changes a frame or holds one: the processors before the model
    get their ``process`` and ``push`` wrapped (per instance, in this copy only) so that a
    VAD's start or stop frame is stamped with the end of the audio frame the VAD was
    processing when it pushed it; the model's ``process`` stamps when such a frame enters
    it; the sinks after the model stamp each reply's first audio frame and each
    interruption as they enter ``process``. An observer right after the model (a silent
    console) notes what leaves the model. A wrapper adds one Python call per frame to the
    processor's measured ``process()`` time (well under a microsecond).
    """

    def __init__(self, graph, model: str) -> None:
        from .turn_timing import TurnNotes

        self.graph, self.model = graph, model
        self.notes = TurnNotes()
        self._seen: dict[int, tuple[Any, Any]] = {}  # id(frame) -> (frame, SpeechEvent): the frame is kept alive
        ancestors, todo = set(), [model]
        while todo:
            for up in graph.inputs(todo.pop()):
                if up not in ancestors:
                    ancestors.add(up)
                    todo.append(up)
        descendants, todo = [], [model]
        while todo:
            for down in graph.outputs(todo.pop()):
                if down not in descendants:
                    descendants.append(down)
                    todo.append(down)
        order = graph.topological()
        self.sinks = [n for n in order if n in descendants and not graph.outputs(n)]
        self.sink_notes = {n: TurnNotes() for n in self.sinks}
        self.reports_progress: list[str] = []
        for nid in ancestors:
            self._wrap_upstream(graph.nodes[nid].processor)
        self._wrap_model(graph.nodes[model].processor)
        for nid in self.sinks:
            self._wrap_sink(nid, graph.nodes[nid].processor)

    def chosen_sink(self) -> str | None:
        """The sink whose arrivals count: the one that reported playback progress, else the first playback."""
        if self.reports_progress:
            return self.reports_progress[0]
        types = {n: str(self.graph.nodes[n].type) for n in self.sinks}
        playing = [n for n in self.sinks if types[n].startswith("playback.") and types[n] != "playback.wav"]
        heard = [n for n in self.sinks if self.sink_notes[n].at_sink]
        return (playing or heard or self.sinks or [None])[0]

    def chosen_sink_notes(self):
        sink = self.chosen_sink()
        return self.sink_notes[sink] if sink is not None else self.notes

    def result(self):
        """The notes with the chosen sink's arrivals."""
        sink = self.sink_notes.get(self.chosen_sink())
        if sink is not None:
            self.notes.at_sink, self.notes.interruptions = sink.at_sink, sink.interruptions
        return self.notes

    def out_of_model(self, frame, now: float) -> None:
        if id(frame) not in self._seen:  # a new frame: the model's (server VAD), not one it passed on
            from .turn_timing import SpeechEvent

            event = SpeechEvent(type(frame).__name__ == "UserStartedSpeakingFrame", frame.pts / frame.sample_rate,
                                out_of_model_s=now)
            self._seen[id(frame)] = (frame, event)
            self.notes.events.append(event)

    def _wrap_upstream(self, proc) -> None:
        from pipeline.frames import AudioFrame, Direction, UserStartedSpeakingFrame, UserStoppedSpeakingFrame

        from .turn_timing import SpeechEvent

        down, process, push, current = Direction.DOWNSTREAM, proc.process, proc.push, [None]
        seen, events = self._seen, self.notes.events

        async def probed_process(frame, direction, *link):
            if type(frame) is AudioFrame and direction is down:
                current[0] = frame
            await process(frame, direction, *link)

        async def probed_push(frame, direction=down):
            kind = type(frame)
            if (kind is UserStoppedSpeakingFrame or kind is UserStartedSpeakingFrame) and direction is down \
                    and id(frame) not in seen and frame.sample_rate:
                at = current[0]
                decided = (at.pts + at.samples.shape[0]) / at.sample_rate if at is not None else math.nan
                event = SpeechEvent(kind is UserStartedSpeakingFrame, frame.pts / frame.sample_rate, decided_s=decided)
                seen[id(frame)] = (frame, event)
                events.append(event)
            await push(frame, direction)

        _set(proc, probed_process, probed_push)

    def _wrap_model(self, proc) -> None:
        from pipeline.frames import Direction, UserStartedSpeakingFrame, UserStoppedSpeakingFrame

        from .turn_timing import SpeechEvent

        down, process, seen, events = Direction.DOWNSTREAM, proc.process, self._seen, self.notes.events

        async def probed_process(frame, direction, *link):
            kind = type(frame)
            if (kind is UserStoppedSpeakingFrame or kind is UserStartedSpeakingFrame) and direction is down \
                    and frame.sample_rate:
                entry = seen.get(id(frame))
                if entry is None:  # a VAD the push probes missed: no decision time
                    entry = seen[id(frame)] = (frame, SpeechEvent(kind is UserStartedSpeakingFrame,
                                                                  frame.pts / frame.sample_rate))
                    events.append(entry[1])
                if math.isnan(entry[1].at_model_s):
                    entry[1].at_model_s = proc.clock.elapsed()
            await process(frame, direction, *link)

        _set(proc, probed_process, None)

    def _wrap_sink(self, nid: str, proc) -> None:
        from pipeline.frames import AudioFrame, Direction, InterruptionFrame, PlaybackProgressFrame

        down, process, push, notes = Direction.DOWNSTREAM, proc.process, proc.push, self.sink_notes[nid]
        reports = self.reports_progress

        async def probed_process(frame, direction, *link):
            kind = type(frame)
            if kind is AudioFrame and frame.item_id is not None and direction is down:
                notes.sink_audio(frame.turn, frame.samples.shape[0] / frame.sample_rate, proc.clock.elapsed())
            elif kind is InterruptionFrame:
                notes.sink_interrupted(frame.turn, proc.clock.elapsed())
            await process(frame, direction, *link)

        async def probed_push(frame, direction=down):
            if type(frame) is PlaybackProgressFrame and nid not in reports:
                reports.append(nid)
            await push(frame, direction)

        _set(proc, probed_process, probed_push)


def _set(proc, process, push) -> None:
    """Shadow a processor's ``process`` / ``push`` with a probe on this instance (the class is untouched)."""
    try:
        proc.process = process
        if push is not None:
            proc.push = push
    except AttributeError:  # a processor with __slots__ cannot be probed: its turns lose that stamp
        pass


def _attach_observer(graph, on_turn):
    """Put the probes and a silent observer after the realtime model; None when the graph has none."""
    model = next((nid for nid, n in graph.nodes.items() if str(n.type).startswith("realtime.")), None)
    if model is None:
        return None
    probes = _Probes(graph, model)
    observer = _observer_class()({"latency": False}, name="bench_observer", stream=io.StringIO(), on_turn=on_turn,
                                 probes=probes)
    outputs = graph.outputs(model)
    if outputs:
        graph.insert("bench_observer", observer, between=(model, outputs[0]), type="debug.console")
    else:
        graph.add("bench_observer", observer, type="debug.console")
        graph.link(model, "bench_observer")
        graph.check()
    return observer


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

    observer = _attach_observer(graph, on_turn)
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
        "timeline": timeline, "environment": environment(),
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
