"""``voxpipe bench``: run the benchmarks of a checkout, print one summary, write JSON and plots.

The benchmarks are the scripts in ``benchmarks/`` beside this package (a source checkout:
they are not installed with the wheel), loaded by path, each with ``run(quick) -> dict``
and ``table(result) -> str``; a script that also has ``summary(result) -> list[dict]``
gives its own summary rows, the others are summarised here. Each figure is compared with
its floor and its target *in the same run*: the reference machine is noisy, so only
same-run ratios mean something. See ``docs/benchmarks.md`` for what each figure means.

Exit code: 0 when every benchmark ran (a missed target is a finding, not a failure; it
shows as ``MISSED``), 1 when one of them failed to run, 2 for a usage error.
"""

from __future__ import annotations

import importlib.util
import json
import math
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["BENCHMARKS", "BENCH_DIR", "environment", "format_summary", "load_benchmark", "run_bench", "summarize",
           "write_plots"]

#: The benchmarks ``voxpipe bench`` runs, in order (cheap to expensive).
BENCHMARKS = ("hops", "session_copy", "dsp", "turn", "sessions")
BENCH_DIR = Path(__file__).resolve().parent.parent / "benchmarks"


def load_benchmark(name: str, bench_dir: Path = BENCH_DIR) -> ModuleType:
    """Import ``benchmarks/<name>.py`` by path (once per process) and return the module."""
    key = f"_voxpipe_bench_{name}"
    if key in sys.modules:
        return sys.modules[key]
    path = bench_dir / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: `voxpipe bench` runs the scripts in benchmarks/ of a "
                                "source checkout (git clone the project and `pip install -e .` it)")
    spec = importlib.util.spec_from_file_location(key, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[key] = module  # dataclasses look their module up while the file executes
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[key]
        raise
    return module


def run_bench(*, quick: bool = False, json_path: str | None = None, plot_dir: str | None = None,
              only: list[str] | None = None) -> int:
    """Run the benchmarks (all, or ``only`` these), print their tables and the summary; return the exit code."""
    names = list(BENCHMARKS) if not only else [n.strip() for item in only for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: unknown benchmark {', '.join(map(repr, unknown))}; choose from {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    if plot_dir is not None and not _have_matplotlib():
        print("error: --plot needs matplotlib, which is not installed: pip install 'voxpipe[plot]' "
              "(or pip install matplotlib), or leave out --plot", file=sys.stderr)
        return 2
    started = time.time()
    results: dict[str, dict] = {}
    failed: list[str] = []
    for name in names:
        print(f"== {name}{' (quick)' if quick else ''} ==", flush=True)
        t0 = time.monotonic()
        try:
            module = load_benchmark(name)
            result = module.run(quick)
            print(module.table(result), flush=True)
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            traceback.print_exc()
            print(f"{name}: failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed.append(name)
            continue
        result["elapsed_s"] = round(time.monotonic() - t0, 1)
        results[name] = result
        print(f"({name}: {result['elapsed_s']:.0f} s)\n", flush=True)
    rows = [row for name in names for row in summarize(name, results[name])]
    print(format_summary(rows))
    report = {
        "voxpipe": _voxpipe_version(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "elapsed_s": round(time.time() - started, 1),
        "quick": quick,
        "command": "voxpipe bench" + (" --quick" if quick else "") + "".join(f" --only {n}" for n in (only or [])),
        "environment": environment(),
        "summary": rows,
        "results": results,
    }
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(_finite(report), indent=2) + "\n")
        print(f"wrote {json_path}")
    if plot_dir:
        for path in write_plots(results, Path(plot_dir)):
            print(f"wrote {path}")
    return 1 if failed else 0


# --- the summary --------------------------------------------------------------------------------


def summarize(name: str, result: dict) -> list[dict]:
    """Summary rows of one benchmark's result: figure, unit, n, median, p99, floor, ratio, target, met."""
    if "error" in result:
        return [_row(f"{name}: did not run ({result['error']})", "")]
    module = sys.modules.get(f"_voxpipe_bench_{name}")
    if module is not None and hasattr(module, "summary"):
        return module.summary(result)
    if name == "hops":
        return _hops_rows(result)
    if name == "dsp":
        return _dsp_rows(result)
    return []


def _row(figure: str, unit: str, *, median=None, p99=None, floor=None, ratio=None, target=None, met=None, n=None) -> dict:
    return {"figure": figure, "unit": unit, "n": n, "median": median, "p99": p99, "floor": floor, "ratio": ratio,
            "target": target, "met": met}


def _hops_rows(r: dict) -> list[dict]:
    import numpy as np

    rows = []
    ns = [x["n"] for x in r["rows"]]
    p99 = float(np.polyfit(ns, [x["closed_p99_us"] for x in r["rows"]], 1)[0]) if len(ns) > 1 else None
    rows.append(_row("hops: latency per hop (closed loop, slope over N)", "us", median=r["per_hop_us"], p99=p99,
                     floor=r["floor_per_hop_us"], ratio=r["ratio"], target="<= 1.5x floor", met=r["ratio"] <= 1.5))
    rows.append(_row("hops: CPU per frame per hop (burst)", "us", median=r["cpu_per_frame_per_hop_us"],
                     floor=r["floor_cpu_per_frame_per_hop_us"], ratio=r["cpu_ratio"], target="<= 2 us",
                     met=r["cpu_per_frame_per_hop_us"] <= 2.0))
    ten = next((x for x in r["rows"] if x["n"] == 10), None)
    if ten is not None:
        rows.append(_row("hops: 10 hops, one frame every 20 ms", "us", median=ten["paced_p50_us"], p99=ten["paced_p99_us"],
                         floor=ten["floor_paced_p50_us"], ratio=ten["paced_p50_us"] / ten["floor_paced_p50_us"]))
    st = r.get("startup")
    if st:
        rows.append(_row("startup: voxpipe --help", "ms", median=1000 * st["help_s"], floor=1000 * st["python_s"],
                         ratio=st["help_s"] / st["python_s"], target="< 500 ms", met=st["help_s"] < 0.5))
    return rows


def _dsp_rows(r: dict) -> list[dict]:
    rows = []
    targets = r.get("targets", {})
    for name, fig in r["cases"].items():
        if "skipped" in fig:
            rows.append(_row(f"dsp: {name}: skipped ({fig['skipped']})", "us"))
            continue
        t = targets.get(name, {})
        target = met = None
        if "ratio" in t:
            target, met = f"<= {t['ratio']}x floor", fig["ratio"] <= t["ratio"]
        elif "median_us" in t:
            target, met = f"<= {t['median_us']} us", fig["median_us"] <= t["median_us"]
        rows.append(_row(f"dsp: {name}", "us", median=fig["median_us"], p99=fig["p99_us"],
                         floor=fig.get("floor_median_us"), ratio=fig.get("ratio"), target=target, met=met))
    return rows


def format_summary(rows: list[dict]) -> str:
    """The summary table: one line per figure, units in their own column."""
    width = max([len(r["figure"]) for r in rows] + [20])
    head = (f"{'figure':<{width}} | {'unit':<8} | {'median':>9} {'p99':>9} | {'floor':>9} {'ratio':>7} | "
            f"{'target':<18} | met?")
    lines = ["== summary ==", head, "-" * len(head)]
    for r in rows:
        met = {True: "yes", False: "MISSED", None: ""}[r["met"]]
        lines.append(f"{r['figure']:<{width}} | {r['unit']:<8} | {_num(r['median']):>9} {_num(r['p99']):>9} | "
                     f"{_num(r['floor']):>9} {_num(r['ratio'], 'x'):>7} | {r['target'] or '':<18} | {met}")
    return "\n".join(lines)


def _num(v: Any, suffix: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, int):
        return f"{v}{suffix}"
    a = abs(v)
    text = f"{v:.2f}" if a < 100 else f"{v:.1f}" if a < 1000 else f"{v:.0f}"
    return text + suffix


# --- JSON -------------------------------------------------------------------------------------------


def environment() -> dict:
    """Versions and machine facts that a figure depends on."""
    import os

    env: dict[str, Any] = {"python": platform.python_version(), "implementation": platform.python_implementation(),
                           "platform": platform.platform(), "machine": platform.machine(), "cpus": os.cpu_count()}
    for dist in ("numpy", "soxr", "anyio", "websockets", "pydantic", "onnxruntime", "pocketsphinx", "espeakng-loader"):
        env[dist] = _dist_version(dist)
    env["git"] = _git_revision()
    return env


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _voxpipe_version() -> str | None:
    return _dist_version("voxpipe")


def _git_revision() -> str | None:
    root = BENCH_DIR.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                               text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# --- plots ------------------------------------------------------------------------------------------


def _have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def write_plots(results: dict[str, dict], out_dir: Path) -> list[Path]:
    """PNG plots of the latency distributions per stage; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig, name: str) -> None:
        path = out_dir / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    turn = results.get("turn", {})
    if turn.get("turn", {}).get("records"):
        recs = turn["turn"]["records"]
        stages = [("vad_wait", "VAD silence wait"), ("resample_hold", "resampler hold"),
                  ("framework_in", "capture -> past vad"), ("server", "local server work"),
                  ("model_delay", "model delay"), ("framework_out", "first delta -> playback"),
                  ("framework", "framework share"), ("total", "total")]
        save(_box(plt, [[r[k] for r in recs] for k, _ in stages], [label for _, label in stages],
                  f"turn latency per stage ({len(recs)} turns): speech end -> first sample at playback",
                  target=turn["targets"]["turn_framework_p99_ms"]), "turn_latency.png")
    if turn.get("barge_in", {}).get("records"):
        recs = turn["barge_in"]["records"]
        stages = [("vad_detection", "VAD detection"), ("resample_hold", "resampler hold"),
                  ("framework", "-> playback flushed"), ("beyond_vad", "beyond VAD"), ("total", "total")]
        save(_box(plt, [[r[k] for r in recs] for k, _ in stages], [label for _, label in stages],
                  f"barge-in latency per stage ({len(recs)} barge-ins): speech onset -> playback flushed",
                  target=turn["targets"]["barge_in_beyond_vad_p99_ms"]), "barge_in_latency.png")
    sessions = results.get("sessions", {})
    if sessions.get("rows"):
        save(_sessions_plot(plt, sessions), "sessions.png")
    hops = results.get("hops", {})
    if hops.get("rows"):
        fig, ax = plt.subplots(figsize=(7, 4))
        ns = [x["n"] for x in hops["rows"]]
        for key, label in (("closed_p50_us", "voxpipe p50"), ("closed_p99_us", "voxpipe p99"),
                           ("floor_closed_p50_us", "asyncio.Queue p50"), ("floor_closed_p99_us", "asyncio.Queue p99"),
                           ("inline_closed_p50_us", "inline p50")):
            ax.plot(ns, [x[key] for x in hops["rows"]], marker="o", label=label)
        ax.set(xlabel="hops (processors in a chain)", ylabel="latency source -> sink (us)",
               title="per-hop latency, one 20 ms frame in flight")
        ax.legend()
        ax.grid(alpha=0.3)
        save(fig, "hops.png")
    dsp = results.get("dsp", {})
    if dsp.get("cases"):
        cases = [(k, v) for k, v in dsp["cases"].items() if "skipped" not in v]
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(cases) + 1.5))
        y = list(range(len(cases)))
        ax.barh([i + 0.2 for i in y], [v["median_us"] for _, v in cases], height=0.4, label="median")
        ax.barh([i - 0.2 for i in y], [v.get("floor_median_us", 0) for _, v in cases], height=0.4, label="floor median")
        ax.scatter([v["p99_us"] for _, v in cases], [i + 0.2 for i in y], marker="|", color="k", label="p99", zorder=3)
        ax.set_yticks(y, [k for k, _ in cases], fontsize=7)
        ax.set_xscale("log")
        ax.set(xlabel="us per frame", title="DSP per 20 ms frame, case vs floor")
        ax.invert_yaxis()
        ax.legend(fontsize=7)
        save(fig, "dsp.png")
    return written


def _box(plt, data: list[list[float]], labels: list[str], title: str, *, target: float | None = None):
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(labels) + 1.6))
    floor = 0.01  # log axis: values at or below 10 us are drawn at 10 us
    clipped = [[max(v, floor) for v in d] for d in data]
    try:
        ax.boxplot(clipped, orientation="horizontal", whis=(1, 99))
    except TypeError:  # matplotlib < 3.10
        ax.boxplot(clipped, vert=False, whis=(1, 99))
    ax.set_yticks(range(1, len(labels) + 1), labels)
    ax.set_xscale("log")
    ax.set(xlabel="ms (box: quartiles; whiskers: p1-p99)", title=title)
    if target is not None:
        ax.axvline(target, color="r", linestyle="--", linewidth=1, label=f"target of the framework's share: {target:g} ms")
        ax.legend(loc="lower right", fontsize=8)
    ax.invert_yaxis()
    ax.grid(alpha=0.3, axis="x")
    return fig


def _sessions_plot(plt, sessions: dict):
    rows = sessions["rows"]
    ns = [r["sessions"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, label in (("input_latency", "capture -> past vad"), ("output_latency", "model -> playback")):
        ax.plot(ns, [r[key]["median"] for r in rows], marker="o", label=f"{label} p50")
        ax.plot(ns, [r[key]["p99"] for r in rows], marker="s", linestyle="--", label=f"{label} p99")
    ax.axhline(sessions["target_p99_ms"], color="r", linewidth=1, label=f"p99 target {sessions['target_p99_ms']:g} ms")
    ax.set_yscale("log")
    ax.set(xlabel="concurrent sessions", ylabel="frame latency (ms)",
           title=f"concurrent demo sessions: max {sessions['max_sessions']} (target >= {sessions['target_sessions']})")
    cpu = ax.twinx()
    cpu.plot(ns, [r["client_cpu_pct"] for r in rows], color="grey", linestyle=":", marker=".", label="client CPU %")
    cpu.set_ylabel("client CPU (% of one core)")
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = cpu.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    return fig
