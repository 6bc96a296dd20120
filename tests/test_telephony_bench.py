"""The phone benchmark's own accounting: a process tree's CPU, and py-spy's stacks attributed by part."""

from __future__ import annotations

import subprocess
import sys

import anyio
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import telephony  # noqa: E402

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\nprint('done', flush=True)\ninput()"


def test_tree_cpu_counts_live_children_and_reaped_ones():
    """A parent's tree CPU includes a child still running and, once it is reaped, the child's cutime."""
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys\n"
                               f"c = subprocess.Popen([sys.executable, '-c', {BURN!r}], stdin=subprocess.PIPE, "
                               "stdout=subprocess.PIPE, text=True)\n"
                               "print(c.stdout.readline().strip(), flush=True)\n"
                               "sys.stdin.readline(); c.communicate('\\n'); print('reaped', flush=True); input()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "done"  # the child burnt 0.3 s and waits
        assert telephony._tree_cpu_s(parent.pid) >= 0.3 > telephony._cpu_s(parent.pid)
        parent.stdin.write("\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "reaped"
        assert telephony._tree_cpu_s(parent.pid) >= 0.3  # now from the parent's cutime
    finally:
        parent.kill()
        parent.wait()


def test_spy_stacks_are_attributed_by_leaf_and_part(tmp_path):
    stacks = tmp_path / "spy.txt"
    stacks.write_text(
        "<module> (x.py:1);run (asyncio/base_events.py:600);select (selectors.py:468) 6\n"
        "<module> (x.py:1);receive (processors/telephony/call.py:160);loads (json/__init__.py:346) 3\n"
        "<module> (x.py:1);receive (processors/telephony/call.py:160) 1\n")
    top = telephony.spy_summary(str(stacks))
    assert top[0] == ("select (selectors.py:468)", 60.0, 60.0)
    assert ("receive (processors/telephony/call.py:160)", 10.0, 40.0) in top
    parts = dict(telephony.spy_parts(str(stacks)))
    assert parts == {"json": 75.0, "phone edge (processors/telephony)": 25.0}  # the selector's wait left out


def test_cpu_table_is_net_of_each_process_idle():
    r0 = {"a": 0.0, "b": 0.0, "c": 0.0, "t": 0.0}
    r1 = {"a": 2.0, "b": 1.5, "c": 0.5, "t": 10.0}
    idle = {"a": 0.0, "b": 0.05, "c": 0.0}
    cpu = telephony._cpu_table(r0, r1, idle, 10.0, 50.0)
    assert cpu["serve_worker"] == {"idle_core": 0.05, "gross_core": 0.15, "net_core": 0.1,
                                   "gross_core_per_call": 0.03, "net_core_per_call": 0.02}
    assert cpu["model_server"]["net_core_per_call"] == 0.04 and cpu["callers"]["gross_core"] == 0.05


def test_the_transport_floor_sends_the_schedule_and_hears_every_mark_echoed():
    """The floor server (a bare websockets process) sends a media + mark at each offset, the caller echoes each."""
    offsets = [200 + 20 * i for i in range(25)] + [900, 900, 900]  # a paced run, then a burst
    floor = anyio.run(lambda: telephony.run_floor(1.5, [offsets, offsets[:10]], 160))
    assert floor["calls"] == 2 and floor["outbound_media_per_call"] == 19.0
    assert floor["marks_echoed_per_call"] == 19.0  # every mark came back: the floor did the whole exchange
    assert floor["net_core_per_call"] > 0
