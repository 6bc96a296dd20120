"""Turn latency and barge-in latency of the demo graph, against the local realtime server.

Questions. (1) From the end of the user's speech to the first sample of the answer handed
to playback, how much time is the client graph's own, once the VAD's silence wait, the
model's delay and the server's work are taken out? Target: under 10 ms at p99.
(2) From the onset of speech over a playing answer to playback flushed, how much is added
beyond the VAD's own detection delay? Target: at most 25 ms.

Setup. ``pipelines/demo.yaml`` as shipped (capture.wav at real time -> audio.resample ->
vad.energy -> realtime.openai -> console -> tools -> playback.null + playback.wav + record),
with probes put in by :mod:`_demo_session`, against ``voxpipe realtime-server`` in another
process with a fixed artificial model delay (200 ms). The caller (eSpeak NG) says "tell me
a story" and then "hello" over the story: two turns and one barge-in per cycle.

Each turn is cut at the probes into parts that add up to the total (ms):

==================  ==============================================================  =========
part                from -> to                                                      whose
==================  ==============================================================  =========
vad_wait            speech end (the VAD stop's pts) -> end of the frame that         the VAD
                    decided it (media time: silence_duration_ms + window/frame)
resample_hold       -> due time of the capture frame that released that frame       client DSP
                    (soxr withholds part of each block)
framework_in        -> the stop passes ``vad`` (capture pacing, queues, VAD,         client
                    and at once the commit is written to the socket)
server              -> first audio delta received by the client, minus the model    server
                    delay (loopback, recognition, responder, first eSpeak block)
model_delay         the configured artificial delay                                  server
framework_out       first delta received -> its first sample handed to playback     client
                    (decode, pusher, console, tools, playback queues)
==================  ==============================================================  =========

The framework's share is ``resample_hold + framework_in + framework_out``: everything the
client graph adds. Total minus VAD wait minus model delay is also printed (``residual``):
it is the framework's share plus the local server's own work.

A barge-in is cut the same way: ``vad_detection`` (true onset in the synthesised signal ->
end of the frame on which the VAD declared speech), ``resample_hold`` and ``framework``
(-> the InterruptionFrame is handed to playback, which drops its queue at once). Beyond the
VAD: ``resample_hold + framework``.

Run: ``python benchmarks/turn.py [--quick] [--cycles N] [--model-delay-ms MS] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _demo_session as ds  # noqa: E402

__all__ = ["barge_ins", "main", "run", "summary", "table", "turns"]

MODEL_DELAY_MS = 200.0
CYCLES = 25  # two turns and one barge-in each, ~4.5 s of conversation
QUICK_CYCLES = 5
TARGET_TURN_FRAMEWORK_P99_MS = 10.0
TARGET_BARGE_BEYOND_VAD_MS = 25.0
_MATCH_S = 0.25  # a VAD boundary this close to a true one is that utterance's
_TURN_PARTS = ("vad_wait", "resample_hold", "framework_in", "server", "model_delay", "framework_out")


async def measure(conversation: ds.Conversation, url: str, workdir: Path, *, timeout_s: float,
                  vad_first: bool = False) -> tuple[ds.Recorder, object]:
    """Run one instrumented demo session on ``conversation``; return its recorder and run result."""
    import anyio

    from pipeline.runner import Runner

    wav = conversation.write(workdir / "caller.wav")
    graph, rec = ds.build_session(url, wav, workdir / "out", vad_first=vad_first)
    with anyio.fail_after(timeout_s):
        result = await Runner(graph, realtime=True).run()
    return rec, result


def _nearest(utterances: list[ds.Utterance], at_s: float, attr: str) -> ds.Utterance | None:
    best = min(utterances, key=lambda u: abs(getattr(u, attr) - at_s), default=None)
    return best if best is not None and abs(getattr(best, attr) - at_s) <= _MATCH_S else None


def turns(rec: ds.Recorder, conversation: ds.Conversation, model_delay_ms: float) -> tuple[list[dict], dict]:
    """One record per completed turn (ms), and counts of what could not be measured."""
    stops = [e for e in rec.events if not e.started]
    out: list[dict] = []
    missing = {"spurious_stop": 0, "no_response": 0, "no_ttfb": 0, "no_audio": 0}
    for i, ev in enumerate(stops):
        said = _nearest(conversation.utterances, ev.pts_s, "end_s")
        if said is None:
            missing["spurious_stop"] += 1
            continue
        until = stops[i + 1].seen_s if i + 1 < len(stops) else math.inf
        turn = next((t for t, at in rec.responses if ev.seen_s < at < until), None)
        if turn is None:
            missing["no_response"] += 1
            continue
        ttfb_ms = rec.ttfb_ms.get(turn)
        played = rec.first_audio.get(turn)
        if ttfb_ms is None:
            missing["no_ttfb"] += 1
            continue
        if played is None:
            missing["no_audio"] += 1
            continue
        received = ev.seen_s + ttfb_ms / 1000
        r = {
            "turn": turn,
            "after_barge_in": said.barge_in,
            "speech_end_s": round(ev.pts_s, 4),
            "vad_end_error_ms": 1000 * (ev.pts_s - said.end_s),
            "vad_wait": 1000 * (ev.frame_end_s - ev.pts_s),
            "resample_hold": 1000 * (ev.capture_due_s - ev.frame_end_s),
            "framework_in": 1000 * (ev.seen_s - ev.capture_due_s),
            "server": ttfb_ms - model_delay_ms,
            "model_delay": model_delay_ms,
            "framework_out": 1000 * (played - received),
            "first_delta_ms": 1000 * (received - ev.pts_s),
            "total": 1000 * (played - ev.pts_s),
        }
        r["framework"] = r["resample_hold"] + r["framework_in"] + r["framework_out"]
        r["residual"] = r["total"] - r["vad_wait"] - model_delay_ms
        out.append(r)
    return out, missing


def barge_ins(rec: ds.Recorder, conversation: ds.Conversation) -> tuple[list[dict], dict]:
    """One record per barge-in over audio that was playing (ms), and counts of the others."""
    barges = [u for u in conversation.utterances if u.barge_in]
    out: list[dict] = []
    missing = {"not_detected": 0, "no_interruption": 0, "not_playing": 0}
    starts = [e for e in rec.events if e.started]
    for said in barges:
        ev = next((e for e in starts if abs(e.pts_s - said.onset_s) <= _MATCH_S), None)
        if ev is None:
            missing["not_detected"] += 1
            continue
        cut = next((c for c in rec.interruptions if 0 <= c.at_s - ev.seen_s < 0.5), None)
        if cut is None:
            missing["no_interruption"] += 1
            continue
        if not cut.playing:
            missing["not_playing"] += 1
            continue
        r = {
            "onset_s": round(said.onset_s, 4),
            "vad_onset_error_ms": 1000 * (ev.pts_s - said.onset_s),
            "vad_detection": 1000 * (ev.frame_end_s - said.onset_s),
            "resample_hold": 1000 * (ev.capture_due_s - ev.frame_end_s),
            "framework": 1000 * (cut.at_s - ev.capture_due_s),
            "total": 1000 * (cut.at_s - said.onset_s),
        }
        r["beyond_vad"] = r["resample_hold"] + r["framework"]
        out.append(r)
    return out, missing


def _stats(records: list[dict], keys) -> dict[str, dict]:
    return {k: ds.quantiles([r[k] for r in records], unit=1.0) for k in keys}


def run(quick: bool = False, *, cycles: int | None = None, model_delay_ms: float = MODEL_DELAY_MS, seed: int = 8,
        vad_first: bool = False) -> dict:
    """Measure and return the figures (``voxpipe bench`` calls this)."""
    import anyio

    cycles = cycles or (QUICK_CYCLES if quick else CYCLES)
    conversation = ds.make_conversation(cycles, seed=seed)
    started = time.monotonic()
    with ds.LocalServerProcess(model_delay_ms=model_delay_ms) as server, \
            tempfile.TemporaryDirectory(prefix="voxpipe-bench-turn-") as tmp:
        cpu0, busy0, own0, wall0 = server.cpu_s(), ds.machine_busy_s(), time.process_time(), time.monotonic()
        rec, result = anyio.run(lambda: measure(conversation, server.url, Path(tmp),
                                                timeout_s=conversation.duration_s + 60, vad_first=vad_first))
        server_cpu = None if cpu0 is None else server.cpu_s() - cpu0
        busy, own, wall = ds.machine_busy_s(), time.process_time() - own0, time.monotonic() - wall0
    other = None
    if None not in (busy, busy0, server_cpu):
        other = round(100 * max(0.0, busy - busy0 - own - server_cpu) / wall, 1)
    turn_records, turn_missing = turns(rec, conversation, model_delay_ms)
    barge_records, barge_missing = barge_ins(rec, conversation)
    turn_keys = ("total", "framework", "residual", "first_delta_ms", *_TURN_PARTS, "vad_end_error_ms")
    barge_keys = ("total", "beyond_vad", "vad_detection", "resample_hold", "framework", "vad_onset_error_ms")
    return {
        "setup": {"pipeline": str(ds.DEMO.relative_to(ds.ROOT)), "cycles": cycles, "seed": seed,
                  "model_delay_ms": model_delay_ms, "conversation_s": round(conversation.duration_s, 2),
                  "graph": "vad before resample (experiment)" if vad_first else "as shipped",
                  "server": "python -m pipeline.cli realtime-server (another process), benchmark rules",
                  "wall_s": round(time.monotonic() - started, 1), "client_cpu_pct": round(100 * own / wall, 1),
                  "server_cpu_pct": None if server_cpu is None else round(100 * server_cpu / wall, 1),
                  "other_cpu_pct": other},
        "run": {"ended": result.ended, "errors": [f"{e.processor}: {e.message}" for e in result.errors]},
        "turn": {"n": len(turn_records), "missing": turn_missing, "stats": _stats(turn_records, turn_keys),
                 "records": turn_records},
        "barge_in": {"n": len(barge_records), "missing": barge_missing, "stats": _stats(barge_records, barge_keys),
                     "records": barge_records},
        "frames": {"capture_to_resample": ds.quantiles(rec.capture_latency),
                   "capture_to_model": ds.quantiles(rec.in_latency),
                   "model_to_playback": ds.quantiles(rec.out_latency),
                   "underruns_client": rec.underruns_client, "underruns_server": rec.underruns_server},
        "targets": {"turn_framework_p99_ms": TARGET_TURN_FRAMEWORK_P99_MS,
                    "barge_in_beyond_vad_p99_ms": TARGET_BARGE_BEYOND_VAD_MS},
        "versions": _versions(),
    }


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "machine": platform.machine()}
    for dist in ("numpy", "soxr", "anyio", "websockets", "pocketsphinx", "espeakng-loader"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def summary(result: dict) -> list[dict]:
    """Rows for the ``voxpipe bench`` summary: figure, unit, median, p99, floor, ratio, target, met."""
    t, b = result["turn"]["stats"], result["barge_in"]["stats"]
    rows = []
    floor = _sum_medians(t, ("vad_wait", "server", "model_delay"))
    rows.append(_row("turn: speech end -> first sample at playback", t["total"], floor=floor))
    rows.append(_row("turn: framework share (hold + hops, client)", t["framework"],
                     target=TARGET_TURN_FRAMEWORK_P99_MS, target_text=f"p99 < {TARGET_TURN_FRAMEWORK_P99_MS:g} ms"))
    rows.append(_row("turn:   of which resampler hold", t["resample_hold"]))
    rows.append(_row("turn:   of which hops+scheduling", _sum_stats(result["turn"]["records"], ("framework_in", "framework_out"))))
    rows.append(_row("turn: total - VAD wait - model delay", t["residual"]))
    rows.append(_row("turn: local server work (not framework)", t["server"]))
    rows.append(_row("barge-in: onset -> playback flushed", b["total"], floor=b["vad_detection"]["median"]))
    rows.append(_row("barge-in: beyond VAD (hold + hops)", b["beyond_vad"],
                     target=TARGET_BARGE_BEYOND_VAD_MS, target_text=f"p99 <= {TARGET_BARGE_BEYOND_VAD_MS:g} ms"))
    rows.append(_row("barge-in:   of which hops+scheduling", b["framework"]))
    rows.append(_row("barge-in: VAD detection delay", b["vad_detection"]))
    return rows


def _sum_medians(stats: dict, keys) -> float:
    return sum(stats[k]["median"] for k in keys)


def _sum_stats(records: list[dict], keys) -> dict:
    return ds.quantiles([sum(r[k] for k in keys) for r in records], unit=1.0)


def _row(figure: str, q: dict, *, floor: float | None = None, target: float | None = None, target_text: str = "") -> dict:
    row = {"figure": figure, "unit": "ms", "n": q["n"], "median": q["median"], "p99": q["p99"], "max": q["max"],
           "floor": floor, "ratio": (q["median"] / floor) if floor else None, "target": target_text or None, "met": None}
    if target is not None:
        row["met"] = bool(q["n"]) and q["p99"] <= target
    return row


def table(result: dict) -> str:
    """The per-turn decomposition and the barge-in figures as text."""
    s = result["setup"]
    lines = [f"turn: {s['pipeline']} ({s['graph']}) against the local server in another process, model delay "
             f"{s['model_delay_ms']:g} ms, {s['cycles']} cycles ({s['conversation_s']:.0f} s of conversation)"]
    t = result["turn"]
    lines.append(f"{'turn part (ms)':<40} {'median':>8} {'p90':>8} {'p99':>8} {'max':>8}   n={t['n']}")
    names = [("vad_wait", "VAD silence wait (media)"), ("resample_hold", "resampler hold (client DSP)"),
             ("framework_in", "capture -> stop past vad (client)"), ("server", "local server work"),
             ("model_delay", "model delay (configured)"), ("framework_out", "first delta -> playback (client)"),
             ("total", "total: speech end -> playback"), ("framework", "framework share (hold+in+out)"),
             ("residual", "total - VAD wait - model delay"), ("first_delta_ms", "speech end -> first delta received"),
             ("vad_end_error_ms", "VAD stop pts - true speech end")]
    for key, label in names:
        q = t["stats"][key]
        lines.append(f"{label:<40} {q['median']:>8.2f} {q['p90']:>8.2f} {q['p99']:>8.2f} {q['max']:>8.2f}")
    target = result["targets"]["turn_framework_p99_ms"]
    p99 = t["stats"]["framework"]["p99"]
    lines.append(f"framework share p99 {p99:.2f} ms (target < {target:g} ms): {_verdict(p99 < target)}"
                 + (f"; not measured: {_nonzero(t['missing'])}" if any(t["missing"].values()) else ""))
    b = result["barge_in"]
    lines.append("")
    lines.append(f"{'barge-in part (ms)':<40} {'median':>8} {'p90':>8} {'p99':>8} {'max':>8}   n={b['n']}")
    for key, label in [("vad_detection", "VAD detection (true onset -> decided)"),
                       ("resample_hold", "resampler hold (client DSP)"),
                       ("framework", "-> playback flushed (client)"), ("total", "total: onset -> flushed"),
                       ("beyond_vad", "beyond VAD (hold + client)"), ("vad_onset_error_ms", "VAD start pts - true onset")]:
        q = b["stats"][key]
        lines.append(f"{label:<40} {q['median']:>8.2f} {q['p90']:>8.2f} {q['p99']:>8.2f} {q['max']:>8.2f}")
    target = result["targets"]["barge_in_beyond_vad_p99_ms"]
    p99 = b["stats"]["beyond_vad"]["p99"]
    lines.append(f"beyond VAD p99 {p99:.2f} ms (target <= {target:g} ms): {_verdict(p99 <= target)}"
                 + (f"; not measured: {_nonzero(b['missing'])}" if any(b["missing"].values()) else ""))
    f = result["frames"]
    lines.append("")
    lines.append(f"frames (ms): capture due -> resampler p50 {f['capture_to_resample']['median']:.2f} "
                 f"p99 {f['capture_to_resample']['p99']:.2f}; -> past vad p50 {f['capture_to_model']['median']:.2f} "
                 f"p99 {f['capture_to_model']['p99']:.2f}; model -> playback p50 {f['model_to_playback']['median']:.2f} "
                 f"p99 {f['model_to_playback']['p99']:.2f}; underruns {f['underruns_client']} client, "
                 f"{f['underruns_server']} server")
    lines.append(f"cpu (% of one core over the run): this process {s['client_cpu_pct']}, server {s['server_cpu_pct']}, "
                 f"everything else incl. the kernel {s['other_cpu_pct']}")
    if result["run"]["errors"] or result["run"]["ended"] != "end":
        lines.append(f"run ended: {result['run']['ended']}; errors: {result['run']['errors']}")
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _nonzero(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_CYCLES} cycles instead of {CYCLES}")
    ap.add_argument("--cycles", type=int, default=None, help="cycles of (story, barge-in): 2 turns and 1 barge-in each")
    ap.add_argument("--model-delay-ms", type=float, default=MODEL_DELAY_MS)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--vad-first", action="store_true",
                    help="move the VAD before the resampler (the shipped demo already has it there)")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the figures, records and versions as JSON")
    args = ap.parse_args(argv)
    result = run(args.quick, cycles=args.cycles, model_delay_ms=args.model_delay_ms, seed=args.seed,
                 vad_first=args.vad_first)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
