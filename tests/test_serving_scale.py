"""Three real `voxpipe serve` workers behind a real HAProxy: 30 sessions speaking, then a rolling restart.

The issue's load-balancer test (docs/serving.md): every worker is ``voxpipe serve
pipelines/web_agent.yaml --workers 1`` with its own offline local realtime server; HAProxy
runs deploy/haproxy.cfg (leastconn, readiness on /readyz) with the test's workers as its
servers, three of them and three replacement slots, as a rolling update with a surge of one
does it. 30 pages (tests/serve_page.py) stream eSpeak NG speech at real time through
HAProxy and wait for every answer. While they talk, each worker in turn gets SIGTERM and
its replacement starts: once HAProxy has marked the draining worker down, new sessions
opened through HAProxy all reach a serving worker. Worker 3 goes first and drains with a
2 s deadline, so its live sessions are closed with the drain reason once the deadline has
passed; workers 1 and 2 drain with a minute to spare, so their sessions complete. At the end: every
session either completed with all its turns or was closed by worker 3's deadline; no worker
refused a session; every drained worker exited 0.
"""

from __future__ import annotations

import re

import anyio
import pytest

from serve_page import converse
from serving_procs import HAPROXY, ROOT, Balancer, Worker, free_port

pytestmark = [pytest.mark.slow, pytest.mark.skipif(HAPROXY is None, reason="needs Debian's haproxy "
                                                   "(.ci/run installs it: apt-get install haproxy)")]

SESSIONS = 30
TEXTS = ["hello", "what is the weather in paris", "hello", "what is the weather in london"]
PIPELINE = ROOT / "pipelines" / "web_agent.yaml"


async def test_thirty_sessions_and_a_rolling_restart_behind_haproxy(tmp_path):
    names = ["w1", "w2", "w3", "w1b", "w2b", "w3b"]
    ports = {n: free_port() for n in names}
    front = free_port()
    drain = {"w1": "60", "w2": "60", "w3": "2"}
    workers = {n: Worker(n, PIPELINE, ports[n], tmp_path, "--max-sessions", "20", "--drain-timeout", drain[n])
               for n in ("w1", "w2", "w3")}
    lb = None
    try:
        for w in workers.values():
            await anyio.to_thread.run_sync(w.wait_ready)
        lb = Balancer(ports, front, tmp_path)
        for n in ("w1", "w2", "w3"):
            await anyio.to_thread.run_sync(lb.wait_state, n, "UP")
        for n in ("w1b", "w2b", "w3b"):  # haproxy counts a server up until its first check fails
            await anyio.to_thread.run_sync(lb.wait_state, n, "DOWN")
        url = f"ws://127.0.0.1:{front}/ws"
        results: dict[int, object] = {}
        probes: list = []

        async def page(i: int) -> None:
            await anyio.sleep(0.1 * i)  # pages arrive over 3 s
            results[i] = await converse(url, TEXTS, turn_timeout_s=40)

        async def probe(i: int) -> None:  # a new page during the restart: it must reach a serving worker
            probes.append(await converse(url, [], turn_timeout_s=10))

        async def rolling_restart() -> None:
            await anyio.sleep(5)  # every page is talking
            for n in ("w3", "w1", "w2"):  # w3 first, while every page is surely mid-conversation
                workers[n].terminate()
                workers[n + "b"] = Worker(n + "b", PIPELINE, ports[n + "b"], tmp_path, "--max-sessions", "20")
                await anyio.to_thread.run_sync(lb.wait_state, n, "DOWN")
                await anyio.to_thread.run_sync(lb.wait_state, n + "b", "UP", 60.0)
                for k in range(3):
                    await probe(k)

        with anyio.fail_after(80):
            async with anyio.create_task_group() as tg:
                for i in range(SESSIONS):
                    tg.start_soon(page, i)
                tg.start_soon(rolling_restart)
        codes = {}
        for n in ("w1", "w2", "w3"):
            codes[n] = await anyio.to_thread.run_sync(workers[n].wait, 30)
    finally:
        if lb is not None:
            lb.stop()
        for w in workers.values():
            w.kill()
    logs = {n: w.log() for n, w in workers.items()}
    assert codes == {"w1": 0, "w2": 0, "w3": 0}, logs
    completed = [c for c in results.values() if c.completed]
    drained = [c for c in results.values() if not c.completed]
    assert len(results) == SESSIONS
    # zero turns lost among the sessions that completed: each utterance got its answer, the weather ones via the tool
    for c in completed:
        assert len(c.turns) == len(TEXTS), c
        assert c.tool_calls == ["get_weather", "get_weather"], (c.transcripts, c.tool_calls, c.turns)
    # the others were on worker 3 and closed with the drain reason once its 2 s deadline had passed
    for c in drained:
        assert c.close_code == 1012 and "drain deadline passed" in c.close_reason, c
        assert c.closed_at is not None and c.closed_at >= workers["w3"].sigterm_at + 2.0, c
    closed_by_w3 = re.search(r"closing (\d+) live sessions: drain deadline passed", logs["w3"])
    assert closed_by_w3 and int(closed_by_w3.group(1)) == len(drained) > 0, (len(drained), logs["w3"])
    assert "drain deadline" not in logs["w1"] + logs["w2"]
    # every page, the probes opened during the restart included, reached a worker that took it
    assert len(probes) == 9 and all(p.session and p.close_code == 1000 for p in probes), probes
    assert not any("refused a session" in text for text in logs.values()), logs
    # leastconn spread the 30 pages over the three workers
    for n in ("w1", "w2", "w3"):
        opened = len(re.findall(r"session s\d+: opened", logs[n]))
        assert opened >= 5, (n, opened)
