"""Turn latency of live.openai beside realtime.openai, on the same local engine, in one run.

Question. Of the time from the end of the user's speech to the first sample of the answer
handed to playback, how much is the client graph's own (the framework's share), for the
Live client and for the Realtime client? Target: under 10 ms at p99 for both.

Setup. ``benchmarks/turn.py``'s instrumented session (:mod:`_demo_session`: the probes, the
synthesised caller saying "tell me a story" then "hello" over the reply, the server in
another process with the benchmark rules), run twice in one process, interleaved per
round: ``pipelines/live_agent.yaml`` (live.openai, ``/v1/live/sessions``) and
``pipelines/demo.yaml`` (realtime.openai, ``/v1/realtime``). Both graphs are the same shape
(capture -> vad -> resample -> model -> console -> tools -> playback) and talk to the same
server program; the model delay is 0 for both (the Live side has none to emulate). Each
turn is cut into turn.py's parts; the framework's share is ``resample_hold + framework_in +
framework_out``. For live.openai "server" also holds the Live model's own decision to speak
(its utterance VAD's 500 ms silence): Live has no client commit.

Run: ``python benchmarks/live_turn.py [--rounds N] [--cycles N] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _demo_session as ds  # noqa: E402
import turn  # noqa: E402

__all__ = ["main", "run"]

TARGET_FRAMEWORK_P99_MS = 10.0
LIVE = ds.ROOT / "pipelines" / "live_agent.yaml"


class _LiveServer(ds.LocalServerProcess):
    """The same server program; the client connects to its Live path."""

    def __enter__(self):
        super().__enter__()
        self.url = self.url.replace("/realtime", "/live/sessions")
        return self


def _one(which: str, cycles: int, seed: int) -> tuple[list[dict], dict]:
    """One instrumented session of ``which`` client: its turn records (ms) and what was missing."""
    import tempfile

    import anyio

    demo = ds.DEMO
    conversation = ds.make_conversation(cycles, seed=seed)
    server_class = _LiveServer if which == "live" else ds.LocalServerProcess
    try:
        ds.DEMO = LIVE if which == "live" else demo
        with server_class(model_delay_ms=0.0) as server, tempfile.TemporaryDirectory(prefix="voxpipe-live-turn-") as tmp:
            rec, result = anyio.run(lambda: turn.measure(conversation, server.url, Path(tmp),
                                                         timeout_s=conversation.duration_s + 60))
    finally:
        ds.DEMO = demo
    records, missing = turn.turns(rec, conversation, 0.0)
    missing["errors"] = [f"{e.processor}: {e.message}" for e in result.errors]
    return records, missing


def run(rounds: int = 2, cycles: int = 5, seed: int = 8) -> dict:
    """Interleave ``rounds`` sessions of each client; pool their turns; return the figures (ms)."""
    records: dict[str, list[dict]] = {"live": [], "realtime": []}
    missing: dict[str, list[dict]] = {"live": [], "realtime": []}
    for r in range(rounds):
        for which in ("live", "realtime"):
            got, miss = _one(which, cycles, seed + r)
            records[which] += got
            missing[which].append(miss)
    out: dict = {"setup": {"rounds": rounds, "cycles": cycles, "seed": seed, "model_delay_ms": 0}}
    for which in ("live", "realtime"):
        recs = records[which]
        out[which] = {"turns": len(recs), "missing": missing[which],
                      **{k: ds.quantiles([r[k] / 1000 for r in recs]) for k in
                         ("framework", "resample_hold", "framework_in", "framework_out", "server", "total")}}
    out["environment"] = {"python": platform.python_version(), "machine": platform.machine()}
    return out


def table(fig: dict) -> str:
    """The summary: per client, the framework's share (median, p99) against the target, and the turn."""
    lines = ["client           turns  framework median  framework p99  in p99  out p99  target  met   "
             "total median  server median",
             "---------------  -----  ----------------  -------------  ------  -------  ------  ----  "
             "------------  -------------"]
    for which in ("live", "realtime"):
        f = fig[which]
        fw = f["framework"]
        met = "yes" if fw["p99"] < TARGET_FRAMEWORK_P99_MS else "NO"
        lines.append(f"{which + '.openai':<15}  {f['turns']:>5}  {fw['median']:>13.2f} ms  {fw['p99']:>10.2f} ms"
                     f"  {f['framework_in']['p99']:>6.2f}  {f['framework_out']['p99']:>7.2f}  < 10 ms  {met:>4}"
                     f"  {f['total']['median']:>9.0f} ms  {f['server']['median']:>10.0f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    fig = run(args.rounds, args.cycles)
    print(table(fig))
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
