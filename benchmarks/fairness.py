"""One client floods the local server: another client's turn latency, against idle, with and without give-way.

Question (issue 13 item 7). While one client streams speech at full speed with server VAD,
how long does another client's spoken turn take (its append sent -> ``response.done``),
against the same turn on the idle server? Target: within 2x of idle.

Setup. A local realtime server in this process (``serve_local``), recognition in threads
(``--processes 0``) or worker processes. The flooder is a child process (a real hostile
client has its own CPU) sending 100 ms appends of eSpeak NG speech as fast as the server
reads them. Per configuration: ``--turns`` idle turns, then the flood, then ``--turns``
loaded turns, each on a new connection (as ``tests/test_hostile.py`` does). Each
configuration runs with the connections' give-way (:class:`~processors.realtime.server.
fairness.LoopShare`, the default) and without it (``max_defer_s`` 0: a heavy connection
never waits), which is the floor it is compared with.

Run: ``python benchmarks/fairness.py [--turns 8] [--processes 0,2]``.
"""

from __future__ import annotations

import argparse
import os
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


async def run(processes: int, give_way: bool, turns: int) -> dict:
    import anyio

    from processors.realtime.server import serve_local
    from test_hostile import _timed_turn

    async with serve_local(processes=processes) as server:
        if not give_way:
            server.loop_share.max_defer_s = 0.0
        idle = [(await _timed_turn(server.url))[0] for _ in range(turns)]
        proc = await anyio.open_process([sys.executable, "-c", FLOOD, server.url, str(30 + 2 * turns),
                                         str(ROOT / "tests")], stderr=None)
        try:
            with anyio.fail_after(30):
                await proc.stdout.receive()
            await anyio.sleep(1.0)
            loaded = [(await _timed_turn(server.url))[0] for _ in range(turns)]
            flooder = max(server.loop_share.accounts, key=lambda a: a.messages)
            read = flooder.messages
        finally:
            proc.kill()
            await proc.wait()
    ms = lambda xs: [round(1000 * x) for x in xs]
    return {"processes": processes, "give_way": give_way, "idle_ms": ms(idle), "loaded_ms": ms(loaded),
            "ratio_median": round(statistics.median(loaded) / statistics.median(idle), 2),
            "flood_messages_read": read}


def main(argv: list[str] | None = None) -> int:
    import anyio

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--processes", default="0,2")
    args = ap.parse_args(argv)
    print(f"load {os.getloadavg()[0]:.2f}")
    for processes in (int(p) for p in args.processes.split(",")):
        for give_way in (False, True):
            r = anyio.run(run, processes, give_way, args.turns)
            print(f"processes={processes} give_way={str(give_way):<5}  loaded median x{r['ratio_median']} of idle; "
                  f"loaded {r['loaded_ms']} ms, idle {r['idle_ms']} ms; flooder messages read "
                  f"{r['flood_messages_read']}")
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
