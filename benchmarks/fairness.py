"""One client floods the local server: another client's turn latency, against idle, with and without give-way.

Question (issue 13 item 7). While one client streams speech at full speed with server VAD,
how long does another client's spoken turn take (its append sent -> ``response.done``),
against the same turn on the idle server? Target: every turn within 2x of idle, the first
one after the flood starts included.

Setup. A local realtime server in this process (``serve_local``), recognition in threads
(``--processes 0``) or worker processes. The flooder is a child process (a real hostile
client has its own CPU) sending 100 ms appends of eSpeak NG speech as fast as the server
reads them. Per configuration, ``--floods`` episodes on one server, each: ``--turns`` idle
turns, then a flooder starts, runs freely for ``--lead`` seconds, then ``--turns`` loaded
turns (``--gap`` seconds apart: with a gap the flooder runs freely before every turn, so
every turn is a "first" one), each on a new connection (as ``tests/test_hostile.py`` does);
the flooder is killed and the next episode starts. Each loaded turn's ratio is its latency
over the median idle turn of its own episode. Reported: median, p90 and max of those
ratios over every loaded turn, and the first turn of each episode on its own.

Each configuration runs with the connections' give-way and pre-emption
(:class:`~processors.realtime.server.fairness.LoopShare`, the default) and without
(``max_defer_s`` 0 and ``preempt`` off: a heavy connection never waits), the floor it is
compared with.

Run: ``python benchmarks/fairness.py [--turns 8] [--floods 3] [--processes 0,2] [--gap 0]``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

FLOOD = """
import sys, anyio
sys.path.insert(0, sys.argv[3])
from test_hostile import utterance, raw, append, recv_until
async def main():
    speech = utterance("what is the weather like in paris today")
    msgs = [append(speech[i:i + 4800]) for i in range(0, len(speech), 4800)]
    async with raw(sys.argv[1]) as ws:
        await recv_until(ws, "session.created")
        print("go", flush=True)
        with anyio.move_on_after(float(sys.argv[2])):
            while True:
                for m in msgs:
                    await ws.send(m)
anyio.run(main)
"""


async def episode(server, turns: int, lead_s: float, gap_s: float) -> dict:
    """Idle turns, then a flood and loaded turns; the flooder is killed at the end."""
    import anyio

    from test_hostile import _timed_turn

    idle = [(await _timed_turn(server.url))[0] for _ in range(turns)]
    before = {id(a) for a in server.loop_share.accounts}
    proc = await anyio.open_process([sys.executable, "-c", FLOOD, server.url, str(30 + 2 * turns),
                                     str(ROOT / "tests")], stderr=None)
    try:
        with anyio.fail_after(30):
            await proc.stdout.receive()
        flooder = next(a for a in server.loop_share.accounts if id(a) not in before)
        await anyio.sleep(lead_s)
        loaded = []
        for i in range(turns):
            if i and gap_s:
                await anyio.sleep(gap_s)
            loaded.append((await _timed_turn(server.url))[0])
        alive = flooder in server.loop_share.accounts
    finally:
        proc.kill()
        await proc.wait()
    with anyio.fail_after(10):
        while flooder in server.loop_share.accounts:  # the flooder's connection is gone before the next idle turn
            await anyio.sleep(0.05)
    return {"idle": idle, "loaded": loaded, "messages": flooder.messages, "preempted": flooder.preempted,
            "alive": alive}


def _p(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


async def run(processes: int, give_way: bool, turns: int, floods: int, lead_s: float, gap_s: float) -> dict:
    from processors.realtime.server import serve_local
    from test_hostile import _timed_turn

    async with serve_local(processes=processes) as server:
        if not give_way:
            server.loop_share.max_defer_s = 0.0
            server.loop_share.preempt = False
        await _timed_turn(server.url)  # warm-up, not counted
        episodes = [await episode(server, turns, lead_s, gap_s) for _ in range(floods)]
    ratios, first = [], []
    for e in episodes:
        idle = statistics.median(e["idle"])
        rs = [x / idle for x in e["loaded"]]
        ratios += rs
        first.append(rs[0])
    ms = lambda xs: [round(1000 * x) for x in xs]
    return {"processes": processes, "give_way": give_way, "ratios": ratios, "first": first,
            "median": statistics.median(ratios), "p90": _p(ratios, 0.9), "max": max(ratios),
            "idle_ms": [ms(e["idle"]) for e in episodes], "loaded_ms": [ms(e["loaded"]) for e in episodes],
            "messages": [e["messages"] for e in episodes], "preempted": [e["preempted"] for e in episodes],
            "closed": sum(not e["alive"] for e in episodes)}


def main(argv: list[str] | None = None) -> int:
    import anyio

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=8, help="idle and loaded turns per episode")
    ap.add_argument("--floods", type=int, default=3, help="episodes (floods) per configuration")
    ap.add_argument("--lead", type=float, default=1.0, help="seconds the flood runs before the first loaded turn")
    ap.add_argument("--gap", type=float, default=0.0, help="seconds between loaded turns (the flood runs freely)")
    ap.add_argument("--processes", default="0,2")
    ap.add_argument("--without", action=argparse.BooleanOptionalAction, default=True,
                    help="also run without give-way (the floor)")
    args = ap.parse_args(argv)
    print(f"loadavg {open('/proc/loadavg').read().strip()}", flush=True)
    for processes in (int(p) for p in args.processes.split(",")):
        for give_way in ((False, True) if args.without else (True,)):
            r = anyio.run(run, processes, give_way, args.turns, args.floods, args.lead, args.gap)
            print(f"processes={processes} give_way={str(give_way):<5} loaded/idle per turn: median x{r['median']:.2f} "
                  f"p90 x{r['p90']:.2f} max x{r['max']:.2f}; first turn of each flood "
                  f"{' '.join(f'x{x:.2f}' for x in r['first'])}", flush=True)
            for idle, loaded in zip(r["idle_ms"], r["loaded_ms"]):
                print(f"    idle {idle} ms; loaded {loaded} ms")
            print(f"    flooder messages read {r['messages']}; its recognitions pre-empted {r['preempted']}; "
                  f"flooders closed by the server {r['closed']}/{args.floods}", flush=True)
    print(f"loadavg {open('/proc/loadavg').read().strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
