"""Phone calls: CPU per call, turn latency and its framework share, barge-in to clear, calls per process.

Question: what does voxpipe's phone path cost and add, per call, between a provider's
media stream and the realtime model? Targets (issue 14): <= 0.02 core of framework CPU per
call at real time; framework share of caller-stop -> first assistant audio < 10 ms p99;
barge-in -> ``clear`` <= 25 ms beyond the VAD's detection; the most simultaneous calls one
process holds with p99 frame lateness under 20 ms.

Setup: three processes, so that each figure belongs to one of them.

* **A**, the model: ``voxpipe realtime-server`` (the offline local server: VAD, pocketsphinx,
  the scripted responder, eSpeak NG).
* **B**, the framework: ``voxpipe serve pipelines/phone_agent.yaml`` (G.711 mu-law end to
  end), its model pointed at A *through a timing proxy*.
* **C**, this script: the simulated phone network of ``tests/phone_network.py`` (signed
  webhook, websocket, 20 ms mu-law at real time, an ear that plays at real time and
  echoes marks) and the proxy between B and A, which timestamps on C's clock the model's
  events as they pass: each ``input_audio_buffer.append`` (B -> A), each audio delta and
  each ``speech_started`` (A -> B). Caller and proxy share one clock, so:

  - *inbound lateness* of a frame: the caller sent it -> the append holding it reached
    the proxy, less the append batching hold (``append_ms``, the model's param: the
    lateness of an append is measured from the send of its *last* frame);
  - *outbound lateness* of an audio delta: it passed the proxy -> its last byte reached
    the caller (B's work: decode, three hops, encode, chunk, marks, the socket);
  - *turn*: caller's last speech frame sent -> first assistant audio received, and the
    framework's share of it: the first delta's outbound lateness plus the inbound
    lateness of the last speech frame;
  - *barge-in*: ``speech_started`` passed the proxy -> ``clear`` reached the caller;
  - *truncation error*: the ``audio_end_ms`` of B's ``conversation.item.truncate`` minus
    what the caller had played of the answer when the ``clear`` reached it;
  - *caller underruns*: the caller's ear ran dry mid-answer (a silence of under 0.5 s
    between two played frames with no ``clear`` between them), counted with their length.

CPU is read from ``/proc`` for each process on its own: **B**, the serve worker (started
with ``--workers 1``: ``voxpipe serve`` otherwise runs a supervisor and one worker per
core, and the supervisor's pid is not where the calls run; ``--max-sessions`` is raised to
the number of calls, since phone calls are sessions of the worker's admission); **A**, the
model server with its speech recognition worker processes (its whole process tree, plus
what exited children left in ``cutime``); **C**, this process (callers and proxy: the load
generator). Each is reported gross and net of its own idle CPU, measured first over a
window with no calls, and per call: CPU seconds over the calls' summed duration (a core
per call at real time). B's net figure is the framework's client-side cost per call.

``--py-spy FILE`` attaches py-spy (non-blocking, 250 Hz) to B for the calls' window and
writes its collapsed stacks to FILE (``.svg``: a flame graph; ``.json``: speedscope); for
collapsed stacks the leaf functions with the most samples are printed, so the per-call
cost can be attributed.

Run: ``python benchmarks/telephony.py [--quick] [--steps 5,10,20] [--json FILE] [--py-spy FILE]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import numpy as np
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from phone_network import TOKENS, SimulatedCall  # noqa: E402

QUESTION = "what is the weather in paris"
BARGE = "hello"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TCK


def _sys_s(pid: int) -> float:
    """System (kernel) CPU seconds of one process: its system calls, loopback delivery included."""
    return int(_stat(pid)[12]) / _TCK


def _tree_cpu_s(pid: int) -> float:
    """CPU seconds of ``pid``, its live descendants, and the children it has reaped (``cutime``)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = _stat(p)
            kids = [int(k) for t in Path(f"/proc/{p}/task").iterdir()
                    for k in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / _TCK
        todo += kids
    return total


def _self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class _Meter:
    """CPU seconds of the three processes, read together."""

    def __init__(self, a: int, b: int) -> None:
        self.a, self.b = a, b

    def read(self) -> dict[str, float]:
        return {"a": _tree_cpu_s(self.a), "b": _cpu_s(self.b), "b_sys": _sys_s(self.b), "c": _self_cpu_s(),
                "t": time.perf_counter()}

    @staticmethod
    def rates(r0: dict[str, float], r1: dict[str, float]) -> dict[str, float]:
        wall = r1["t"] - r0["t"]
        return {k: (r1[k] - r0[k]) / wall for k in ("a", "b", "b_sys", "c")}


async def _wait_port(port: int, timeout: float = 60.0) -> None:
    with anyio.fail_after(timeout):
        while True:
            try:
                s = await anyio.connect_tcp("127.0.0.1", port)
                await s.aclose()
                return
            except OSError:
                await anyio.sleep(0.1)


class Proxy:
    """Forwards B's model connections to A and timestamps the events that matter, per connection."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.conns: list[dict] = []

    async def handle(self, ws) -> None:
        rec = {"appends": [], "deltas": [], "speech_started": [], "truncates": [], "appended": 0, "delta_bytes": 0}
        self.conns.append(rec)
        headers = {k: v for k, v in ws.request.headers.raw_items() if k.lower() in ("authorization", "openai-beta")}
        path = ws.request.path[ws.request.path.index("/realtime"):]
        async with connect(self.upstream + path, additional_headers=headers, max_size=None, compression=None) as up:
            async def down() -> None:  # A -> B
                async for message in up:
                    now = time.perf_counter()
                    if '"delta"' in message and "audio.delta" in message:
                        n = _b64_bytes(message, '"delta":"')
                        rec["delta_bytes"] += n
                        rec["deltas"].append((now, rec["delta_bytes"]))
                    elif "speech_started" in message:
                        rec["speech_started"].append(now)
                    await ws.send(message)

            async with anyio.create_task_group() as tg:
                tg.start_soon(down)
                try:
                    async for message in ws:  # B -> A
                        if "conversation.item.truncate" in message:
                            rec["truncates"].append(json.loads(message)["audio_end_ms"])
                        if "input_audio_buffer.append" in message:
                            n = _b64_bytes(message, '"audio":"')
                            rec["appended"] += n
                            rec["appends"].append((time.perf_counter(), rec["appended"]))
                        await up.send(message)
                except Exception:
                    pass
                tg.cancel_scope.cancel()


def _b64_bytes(message: str, key: str) -> int:
    """Decoded length of the base64 string after ``key`` (G.711: one byte per sample), without decoding it."""
    start = message.index(key) + len(key)
    end = message.index('"', start)
    return (end - start) * 3 // 4 - message[end - 2:end].count("=")


async def _loop_lag(out: list[float], stop: anyio.Event) -> None:
    """How late this process's own event loop wakes (a 5 ms sleep): the callers' and proxy's clock quality."""
    while not stop.is_set():
        t = time.perf_counter()
        await anyio.sleep(0.005)
        out.append(1000 * (time.perf_counter() - t - 0.005))


def _inbound_lateness(call: SimulatedCall, rec: dict) -> list[float]:
    sent = call.sent_at
    out = []
    for t, cum in rec["appends"]:
        last = cum // 160 - 1  # index of the last whole frame in this append
        if 0 <= last < len(sent):
            out.append(1000 * (t - sent[last]))
    return out


def _outbound_lateness(call: SimulatedCall, rec: dict) -> list[float]:
    """Per delta of the first answer (up to 100 ms before the barge-in: later ones may be flushed in B)."""
    got = call.received
    until = rec["speech_started"][-1] - 0.1 if rec["speech_started"] else float("inf")
    out, j = [], 0
    for t, cum in rec["deltas"]:
        if t > until:
            break
        while j < len(got) and got[j][1] < cum:
            j += 1
        if j < len(got):
            out.append(1000 * (got[j][0] - t))
    return out


def _q(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    a = np.asarray(xs)
    return {"n": len(xs), "median": round(float(np.median(a)), 2), "p99": round(float(np.percentile(a, 99)), 2),
            "max": round(float(a.max()), 2)}


async def _one_call(url: str, seed: int, barge: bool, listen_s: float) -> SimulatedCall:
    call = SimulatedCall(url, "twilio", seed=seed)
    assert await call.fetch_webhook() == 200
    async with anyio.create_task_group() as tg:
        await tg.start(call.run)
        await anyio.sleep(0.5)
        call.say(QUESTION)
        call.question_ended_at = None
        with anyio.fail_after(30):
            while call.speech_ended_at is None:
                await anyio.sleep(0.005)
        call.question_ended_at = call.speech_ended_at
        await call.wait_heard(0.6, timeout=60)
        if barge:
            call.barge_at = time.perf_counter()
            call.say(BARGE)
            with anyio.fail_after(20):
                while not call.heard.clears:
                    await anyio.sleep(0.005)
        await anyio.sleep(listen_s)
        await call.hang_up()
        tg.cancel_scope.cancel()
    return call


async def _warm_up(url: str) -> None:
    """One short call before anything is measured: first-call imports and model loading are not per-call costs."""
    call = SimulatedCall(url, "twilio", seed=999, speed=2.0)
    assert await call.fetch_webhook() == 200, call.webhook_body
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            await tg.start(call.run)
            call.say(QUESTION)
            await call.wait_heard(0.3, timeout=60)
            await call.hang_up()
            tg.cancel_scope.cancel()


# timed by the thread's CPU clock, not the wall: a loopback send() that is preempted when it wakes
# the peer would otherwise look like 1 ms of work per message
_PROFILED = ("import cProfile, signal, sys, time; from pipeline.cli import main; p = cProfile.Profile(time.thread_time); "
             "signal.signal(signal.SIGUSR1, lambda *a: p.enable()); "
             "signal.signal(signal.SIGUSR2, lambda *a: (p.disable(), p.dump_stats({path!r}))); main(sys.argv[1:])")


def _pipeline(chunk_ms: int, report_ms: int | None = None, sets: list[str] | None = None) -> str:
    """The shipped phone agent, with the output's chunk size (and report interval) and ``NODE.PARAM=VALUE`` s set."""
    import tempfile

    import yaml

    spec = yaml.safe_load((ROOT / "pipelines/phone_agent.yaml").read_text())
    ear = spec["processors"]["ear"].setdefault("params", {})
    ear["chunk_ms"] = chunk_ms
    if report_ms is not None:
        ear["report_ms"] = report_ms
    for item in sets or ():
        key, sep, value = item.partition("=")
        node, dot, param = key.partition(".")
        if not (sep and dot and node in spec["processors"]):
            raise SystemExit(f"--set {item!r}: use NODE.PARAM=VALUE with NODE one of {', '.join(spec['processors'])}")
        spec["processors"][node].setdefault("params", {})[param] = yaml.safe_load(value)
    path = Path(tempfile.mkdtemp()) / "phone_agent.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def _first(exc: BaseException) -> str:
    while getattr(exc, "exceptions", None):  # an exception group: its first
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:160]


def _py_spy() -> str:
    """The py-spy beside this interpreter, else on PATH."""
    import shutil

    here = Path(sys.executable).with_name("py-spy")
    found = str(here) if here.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("--py-spy needs py-spy: pip install py-spy")
    return found


def _spy_format(path: str) -> str:
    return {".svg": "flamegraph", ".json": "speedscope"}.get(Path(path).suffix, "raw")


def _cpu_table(r0: dict, r1: dict, idle: dict, wall: float, call_seconds: float) -> dict:
    """Per process: idle core, gross and net core during the calls, and gross and net core per call."""
    out = {}
    for key, name in (("b", "serve_worker"), ("a", "model_server"), ("c", "callers")):
        gross = r1[key] - r0[key]
        net = gross - idle[key] * wall
        out[name] = {"idle_core": round(idle[key], 4), "gross_core": round(gross / wall, 4),
                     "net_core": round(net / wall, 4),
                     "gross_core_per_call": round(gross / call_seconds, 4) if call_seconds else None,
                     "net_core_per_call": round(net / call_seconds, 4) if call_seconds else None}
    if "b_sys" in r0:  # of the serve worker's gross CPU, the kernel's part (socket reads and writes, epoll)
        system = r1["b_sys"] - r0["b_sys"]
        out["serve_worker"]["system_core_per_call"] = round(system / call_seconds, 4) if call_seconds else None
        out["serve_worker"]["system_idle_core"] = round(idle["b_sys"], 4)
    return out


def spy_summary(path: str, top: int = 15) -> list[tuple[str, float, float]]:
    """From py-spy's collapsed stacks: the ``top`` leaf frames by share of samples, with their inclusive share."""
    leaf: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    ranked = sorted(leaf.items(), key=lambda kv: -kv[1])[:top]
    return [(f, 100 * n / total, 100 * incl[f] / total) for f, n in ranked] if total else []


#: Where a leaf frame's file puts its sample (first match), for the attribution by part.
_PARTS = (("phone edge (processors/telephony)", "processors/telephony/"),
          ("model client (processors/realtime)", "processors/realtime/"),
          ("runner and frames (pipeline/)", "pipeline/"), ("serving (processors/serving)", "processors/serving/"),
          ("tools (processors/tools)", "processors/tools/"), ("websockets", "websockets/"),
          ("json", "json/"), ("base64", "base64.py"), ("anyio", "anyio/"),
          ("asyncio event loop, selector, sockets", "asyncio/"), ("asyncio event loop, selector, sockets", "selectors.py"))


def spy_parts(path: str) -> list[tuple[str, float]]:
    """From py-spy's collapsed stacks: the share of samples whose leaf frame is in each part of the stack.

    Samples waiting in the selector (``EpollSelector.select``: py-spy's non-blocking mode
    cannot always tell that wait from work) are left out, so the shares are of the work.
    """
    parts: dict[str, int] = {}
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.split(";")[-1]
        if leaf.startswith(("EpollSelector.select ", "select (selectors.py")):
            continue
        part = next((name for name, needle in _PARTS if needle in leaf), "other")
        parts[part] = parts.get(part, 0) + int(count)
        total += int(count)
    return sorted(((k, 100 * v / total) for k, v in parts.items()), key=lambda kv: -kv[1]) if total else []


# The transport floor (``--floor``): a bare ``websockets`` server in its own process that does
# only what any media-stream server must: parse each inbound message and base64-decode its
# payload, and send the media + mark messages the real call's caller received, at the moments
# it received them (offsets from the call's first frame). Its caller plays at real time and
# echoes each mark when its playback reaches it, as the simulated network's ear does. Its CPU
# per call is the library floor under B's figure; B's net minus it is voxpipe's own share.
_FLOOR_SERVER = r"""
import asyncio, base64, json, sys
from websockets.asyncio.server import serve

async def speak(ws, sid, t0, offsets, size):
    loop = asyncio.get_running_loop()
    payload = base64.b64encode(bytes(size)).decode()
    for i, ms in enumerate(offsets):
        await asyncio.sleep(max(0.0, t0 + ms / 1000 - loop.time()))
        await ws.send(json.dumps({"event": "media", "streamSid": sid, "media": {"payload": payload}}))
        await ws.send(json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": str(i)}}))

async def handle(ws):
    tasks, t0 = [], None
    try:
        async for message in ws:
            msg = json.loads(message)
            event = msg.get("event")
            if event == "media":
                base64.b64decode(msg["media"]["payload"])
                if t0 is None:  # offsets count from the call's first frame
                    t0 = asyncio.get_running_loop().time()
                    p = start["customParameters"]
                    offsets = [int(x) for x in p["offsets"].split(",") if x]
                    tasks.append(asyncio.ensure_future(speak(ws, start["streamSid"], t0, offsets, int(p["size"]))))
            elif event == "start":
                start = msg["start"]
    finally:
        for t in tasks:
            t.cancel()

async def main(port):
    async with serve(handle, "127.0.0.1", port, compression=None, max_size=None):
        await asyncio.Future()

asyncio.run(main(int(sys.argv[1])))
"""


async def _floor_call(port: int, seed: int, seconds: float, offsets: list[int], size: int) -> int:
    """One caller of the floor server: 20 ms media at real time for ``seconds``; plays what it gets, echoes marks.

    Returns the number of marks it echoed (one per media message the server sent).
    """
    sid = f"MZ{seed:030d}"
    payload = base64.b64encode(bytes(160)).decode()
    async with connect(f"ws://127.0.0.1:{port}/", compression=None) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": {
            "streamSid": sid, "callSid": f"CA{seed:030d}", "tracks": ["inbound"],
            "customParameters": {"offsets": ",".join(map(str, offsets)), "size": str(size)},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        due: list[tuple[float, dict]] = []  # (when playback reaches it, the mark)
        wake = anyio.Event()
        played_until = [0.0]
        echoed = 0

        async def listen() -> None:
            async for raw in ws:
                msg = json.loads(raw)
                now = time.perf_counter()
                if msg.get("event") == "media":
                    played_until[0] = max(now, played_until[0]) + size / 8000
                elif msg.get("event") == "mark":
                    due.append((played_until[0], msg["mark"]))
                    wake.set()

        async def ear() -> None:
            nonlocal wake, echoed
            while True:
                if not due:
                    await wake.wait()
                    wake = anyio.Event()
                    continue
                at, mark = due[0]
                await anyio.sleep(max(0.0, at - time.perf_counter()))
                due.pop(0)
                await ws.send(json.dumps({"event": "mark", "streamSid": sid, "mark": mark}))
                echoed += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(listen)
            tg.start_soon(ear)
            t0 = time.perf_counter()
            for i in range(int(seconds * 50)):
                await anyio.sleep(max(0.0, t0 + i * 0.02 - time.perf_counter()))
                await ws.send(json.dumps({"event": "media", "streamSid": sid, "media": {
                    "track": "inbound", "chunk": str(i + 1), "timestamp": str(i * 20), "payload": payload}}))
            await ws.send(json.dumps({"event": "stop", "streamSid": sid}))
            with anyio.move_on_after(2.0):  # the last marks still playing
                while due or echoed < len(offsets):
                    await anyio.sleep(0.02)
            tg.cancel_scope.cancel()
    return echoed


async def run_floor(seconds: float, schedules: list[list[int]], size: int) -> dict:
    """The floor server's CPU per call for calls shaped like the real step's (see _FLOOR_SERVER)."""
    n = len(schedules)
    port = _free_port()
    f = subprocess.Popen([sys.executable, "-c", _FLOOR_SERVER, str(port)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        await _wait_port(port)
        await anyio.sleep(0.5)
        i0, t_i0 = _cpu_s(f.pid), time.perf_counter()
        await anyio.sleep(2.0)
        idle = (_cpu_s(f.pid) - i0) / (time.perf_counter() - t_i0)
        c0, t0 = _cpu_s(f.pid), time.perf_counter()
        echoed: list[int] = []

        async def one(i: int, offsets: list[int]) -> None:
            echoed.append(await _floor_call(port, 2000 + i, seconds, offsets, size))

        async with anyio.create_task_group() as tg:
            for i, offsets in enumerate(schedules):
                tg.start_soon(one, i, offsets)
                await anyio.sleep(0.3)
        wall = time.perf_counter() - t0
        gross = _cpu_s(f.pid) - c0
    finally:
        f.terminate()
        try:
            f.wait(10)
        except subprocess.TimeoutExpired:
            f.kill()
    net = gross - idle * wall
    return {"calls": n, "seconds_per_call": round(seconds, 2),
            "outbound_media_per_call": round(sum(map(len, schedules)) / n, 1),
            "marks_echoed_per_call": round(sum(echoed) / n, 1),
            "net_core_per_call": round(net / (n * seconds), 4), "idle_core": round(idle, 4)}


async def run_step(n: int, *, quick: bool, profile: str | None = None, chunk_ms: int = 20,
                   py_spy: str | None = None, report_ms: int | None = None, sets: list[str] | None = None) -> dict:
    """N calls at once (started 0.3 s apart), each asks, hears, barges in once and listens on."""
    load_before = round(os.getloadavg()[0], 2)
    a_port, b_port, p_port = _free_port(), _free_port(), _free_port()
    env = {**os.environ, "TWILIO_AUTH_TOKEN": TOKENS["twilio"], "OPENAI_API_KEY": "sk-local",
           "VOXPIPE_REALTIME_URL": f"ws://127.0.0.1:{p_port}/v1/realtime"}
    a = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "realtime-server", "--port", str(a_port)], cwd=ROOT,
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    launch = ["-c", _PROFILED.format(path=profile)] if profile else ["-m", "pipeline.cli"]
    # one worker: the process measured is the one holding the calls (no supervisor in between)
    b = subprocess.Popen([sys.executable, *launch, "serve", _pipeline(chunk_ms, report_ms, sets), "--port", str(b_port),
                          "--workers", "1", "--max-sessions", str(max(n, 16))], cwd=ROOT, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    spy = None
    proxy = Proxy(f"ws://127.0.0.1:{a_port}/v1")
    try:
        await _wait_port(a_port)
        await _wait_port(b_port)
        async with serve(proxy.handle, "127.0.0.1", p_port, max_size=None, compression=None):
            meter = _Meter(a.pid, b.pid)
            url = f"http://127.0.0.1:{b_port}/"
            await _warm_up(url)
            await anyio.sleep(1.0)  # let both settle after start-up
            base = len(proxy.conns)  # the warm-up's model connection(s) come first
            idle0 = meter.read()
            await anyio.sleep(3.0 if quick else 5.0)
            idle = meter.rates(idle0, meter.read())
            done_calls: dict[int, SimulatedCall] = {}
            listen_s = 4.0 if quick else 8.0

            failures: list[str] = []

            async def start(i: int) -> None:
                try:
                    done_calls[i] = await _one_call(url, 1000 + i, True, listen_s)
                except Exception as exc:  # a call that timed out (an overloaded step) is reported, not fatal
                    failures.append(f"call {i}: {_first(exc)}")

            if profile:
                b.send_signal(signal.SIGUSR1)
            if py_spy:
                spy = subprocess.Popen([_py_spy(), "record", "--pid", str(b.pid),
                                        "--nonblocking", "--rate", "250", "--output", py_spy,
                                        "--format", _spy_format(py_spy)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE)
            r0 = meter.read()
            t0 = r0["t"]
            lag: list[float] = []
            done = anyio.Event()
            async with anyio.create_task_group() as outer:
                outer.start_soon(_loop_lag, lag, done)
                async with anyio.create_task_group() as tg:
                    for i in range(n):
                        tg.start_soon(start, i)
                        await anyio.sleep(0.3)
                done.set()
            r1 = meter.read()
            wall = r1["t"] - t0
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
                try:
                    _, err = spy.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    err = b"py-spy did not finish"
                if spy.returncode not in (0, -signal.SIGINT, 130):
                    print(f"py-spy: {err.decode(errors='replace')[-400:]}", file=sys.stderr)
            if profile:
                b.send_signal(signal.SIGUSR2)
                await anyio.sleep(1.0)
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
        for p in (b, a):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
    # call i made B's i-th model connection (calls start 0.3 s apart); failed calls leave their gap
    pairs = [(done_calls[i], proxy.conns[base + i]) for i in sorted(done_calls) if base + i < len(proxy.conns)]
    calls = [c for c, _ in pairs]
    inbound, outbound, turn, share, barge, cut_error = [], [], [], [], [], []
    for call, rec in pairs:
        inb, outb = _inbound_lateness(call, rec), _outbound_lateness(call, rec)
        inbound += inb
        outbound += outb
        ended = call.question_ended_at
        if call.received and ended:
            first = next(t for t, _ in call.received if t > ended)
            turn.append(1000 * (first - ended))
            last_frame = len([t for t in call.sent_at if t <= ended]) - 1
            # the append carrying the question's last frame, measured from the send of its own last frame
            ins = [1000 * (t - call.sent_at[cum // 160 - 1]) for t, cum in rec["appends"] if cum // 160 - 1 >= last_frame]
            if outb and ins:
                share.append(outb[0] + ins[0])
        if call.heard.clears and rec["speech_started"]:
            clear_at = call.heard.clears[0][0]
            started = [t for t in rec["speech_started"] if t <= clear_at]
            if started:
                barge.append(1000 * (clear_at - started[-1]))
            if rec["truncates"]:  # the answer is the call's only audio before the clear
                cut_error.append(rec["truncates"][0] - call.heard.clears[0][1] / 8)
    call_seconds = sum(c.sent_at[-1] - c.sent_at[0] for c in calls)
    # the shape of the real calls, for the transport floor (--floor): length, first answer, chunks
    shape = {"seconds": call_seconds / len(calls) if calls else 0.0, "size": chunk_ms * 8,
             "schedules": [[round(1000 * (t - c.sent_at[0])) for t, _ in c.received] for c in calls]}
    return {"shape": shape,
        "calls": n, "chunk_ms": chunk_ms, "report_ms": report_ms, "set": list(sets or ()), "completed": len(calls), "failures": failures[:5], "load_before": load_before, "load_average_1min": round(os.getloadavg()[0], 2), "wall_s": round(wall, 1),
        "cpu": _cpu_table(r0, r1, idle, wall, call_seconds),
        "inbound_lateness_ms": _q(inbound), "outbound_lateness_ms": _q(outbound),
        "callers_loop_lag_ms": _q(lag), "turn_ms": _q(turn), "framework_share_ms": _q(share), "barge_in_to_clear_ms": _q(barge),
        "caller_underruns": sum(c.heard.underruns for c in calls),
        "caller_underrun_ms": round(sum(c.heard.underrun_ms for c in calls), 1),
        "caller_played_s": round(sum(c.heard.played for c in calls) / 8000, 1),
        "truncation_minus_heard_ms": _q(cut_error), "truncation_minus_heard_abs_max_ms":
            round(max(map(abs, cut_error)), 2) if cut_error else None,
    }


def edge_costs(frames: int = 20000) -> dict:
    """Per 20 ms frame: the phone edge's own work beside its floor (json + base64 alone), in one run.

    Inbound: a Twilio ``media`` message -> :class:`PhoneCall.receive` (serializer, checks,
    queue) -> the frame's mu-law codes (``np.frombuffer``: passed through, not decoded).
    Outbound: the model's codes -> bytes -> ``media`` + ``mark`` messages and the ledger
    entry. Floor: ``json.loads`` + ``b64decode`` and ``b64encode`` +
    two ``json.dumps`` (Twilio's media and mark are filled-in templates, so the outbound side
    can be under this floor). At 50 frames a second each way this is the edge's CPU per call.
    """
    import base64
    from collections import deque

    from processors.telephony.call import PhoneCall
    from processors.telephony.twilio import TwilioProtocol

    call = PhoneCall(TwilioProtocol(), None)  # type: ignore[arg-type]
    call.receive(json.dumps({"event": "start", "streamSid": "MZ1", "start": {
        "streamSid": "MZ1", "callSid": "CA1", "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}}}))
    payload = bytes(range(160))
    msg = json.dumps({"event": "media", "sequenceNumber": "3", "streamSid": "MZ1",
                      "media": {"track": "inbound", "chunk": "1", "timestamp": "20",
                                "payload": base64.b64encode(payload).decode()}})
    codes = np.frombuffer(payload, dtype=np.uint8)

    def inbound() -> None:
        call.receive(msg)
        np.frombuffer(call._inbound.popleft()[1], dtype=np.uint8)
        call._backlog = 0

    def inbound_floor() -> None:
        base64.b64decode(json.loads(msg)["media"]["payload"])

    proto = call.protocol
    pending: deque = call.ledger._pending

    def outbound() -> None:
        data = codes.tobytes()
        name = call.ledger.sent("item_1", 1, 160, 0.0)
        proto.media(data)
        proto.mark(name)
        pending.clear()

    def outbound_floor() -> None:
        b64 = base64.b64encode(payload).decode()
        json.dumps({"event": "media", "streamSid": "MZ1", "media": {"payload": b64}})
        json.dumps({"event": "mark", "streamSid": "MZ1", "mark": {"name": "1"}})

    out = {}
    for name, fn in (("inbound", inbound), ("inbound_floor", inbound_floor), ("outbound", outbound),
                     ("outbound_floor", outbound_floor)):
        samples = []
        for _ in range(7):  # the best of 7 runs: on a shared machine the others measure the neighbours
            t = time.perf_counter()
            for _ in range(frames // 7):
                fn()
            samples.append((time.perf_counter() - t) / (frames // 7) * 1e6)
        out[name + "_us"] = round(min(samples), 2)
    out["edge_core_per_call"] = round((out["inbound_us"] + out["outbound_us"]) * 50 / 1e6, 5)
    return out


def table(result: dict) -> str:
    rows = ["| calls | serve worker / call, net (gross) | model server / call, net (gross) | callers / call, net (gross) | inbound lateness p50 / p99 (ms) | "
            "outbound lateness p50 / p99 (ms) | turn p50 / p99 (ms) | framework share p50 / p99 (ms) | "
            "speech_started -> clear p50 / p99 (ms) | truncation - heard, max abs (ms) | caller underruns (ms, of s played) | "
            "callers' loop lag p99 (ms) | load |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in result["steps"]:
        f = lambda q: f"{q.get('median', '-')} / {q.get('p99', '-')}"  # noqa: E731
        c = s["cpu"]
        g = lambda k: f"{c[k]['net_core_per_call']} ({c[k]['gross_core_per_call']})"  # noqa: E731
        rows.append(f"| {s['calls']} | {g('serve_worker')} | {g('model_server')} | {g('callers')} | "
                    f"{f(s['inbound_lateness_ms'])} | {f(s['outbound_lateness_ms'])} | {f(s['turn_ms'])} | "
                    f"{f(s['framework_share_ms'])} | {f(s['barge_in_to_clear_ms'])} | "
                    f"{s['truncation_minus_heard_abs_max_ms']} | "
                    f"{s['caller_underruns']} ({s['caller_underrun_ms']} ms, of {s['caller_played_s']} s) | "
                    f"{s['callers_loop_lag_ms'].get('p99', '-')} | {s['load_average_1min']} |")
    held = [s["calls"] for s in result["steps"] if s["inbound_lateness_ms"].get("p99", 1e9) < 20
            and s["outbound_lateness_ms"].get("p99", 1e9) < 20 and s["completed"] == s["calls"]]
    rows.append(f"\nmost calls with p99 frame lateness < 20 ms both ways: {max(held) if held else 'none of the steps'}")
    for s in result["steps"]:
        if "floor" in s:
            f = s["floor"]
            rows.append(f"{s['calls']} call(s): serve worker net {s['cpu']['serve_worker']['net_core_per_call']} core per call; "
                        f"transport floor (bare websockets + json + base64, same messages and cadence) "
                        f"{f['net_core_per_call']}; voxpipe's own share {s['framework_core_per_call']} (floor run at load "
                        f"{f['load_average_1min']})")
    e = result.get("edge")
    if e:
        rows.append(f"phone edge per 20 ms frame: inbound {e['inbound_us']} us (floor json+base64 {e['inbound_floor_us']} us), "
                    f"outbound {e['outbound_us']} us (floor {e['outbound_floor_us']} us); "
                    f"at 50 frames/s each way: {e['edge_core_per_call']} core per call")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter calls")
    ap.add_argument("--steps", default=None, help="comma-separated numbers of simultaneous calls (default 1,5,10,20)")
    ap.add_argument("--json", default=None, metavar="FILE")
    ap.add_argument("--chunk-ms", type=int, default=20, help="transport.phone.output chunk_ms (a mark per chunk)")
    ap.add_argument("--report-ms", type=int, default=None, help="transport.phone.output report_ms (heard-position "
                    "reports upstream; 0: one per echoed mark; default: the processor's)")
    ap.add_argument("--set", action="append", default=[], metavar="NODE.PARAM=VALUE", help="set a param of the "
                    "pipeline's node (for example model.append_ms=100; a YAML value); repeatable")
    ap.add_argument("--floor", action="store_true", help="after each step, the transport floor: a bare websockets "
                    "server doing the same messages at the same cadence (its CPU per call beside the serve worker's)")
    ap.add_argument("--profile", default=None, metavar="FILE", help="cProfile the server process (B) into FILE "
                    "(timed by CPU time, not wall time)")
    ap.add_argument("--py-spy", default=None, metavar="FILE", help="record a py-spy profile of the serve worker (B) "
                    "during the calls into FILE (.svg flame graph, .json speedscope, else collapsed stacks); "
                    "with several steps, FILE gets the step's number of calls before its suffix")
    args = ap.parse_args(argv)
    if args.py_spy:
        _py_spy()  # fail now, not after the first step's set-up
    steps = [int(x) for x in ("1,5,10,20" if args.steps is None else args.steps).split(",") if x]
    result = {"versions": {"python": platform.python_version(), "machine": platform.machine(),
                           "cpus": os.cpu_count()}, "steps": [], "edge": edge_costs()}
    print(json.dumps(result["edge"]), flush=True)
    for n in steps:
        spy = None
        if args.py_spy:
            p = Path(args.py_spy)
            spy = str(p if len(steps) == 1 else p.with_name(f"{p.stem}-{n}{p.suffix}"))
        step = anyio.run(lambda: run_step(n, quick=args.quick, profile=args.profile, chunk_ms=args.chunk_ms,
                                          py_spy=spy, report_ms=args.report_ms, sets=args.set))
        shape = step.pop("shape")
        if args.floor and step["completed"]:
            floor = anyio.run(lambda: run_floor(shape["seconds"], shape["schedules"], shape["size"]))
            floor["load_average_1min"] = round(os.getloadavg()[0], 2)
            step["floor"] = floor
            step["framework_core_per_call"] = round(step["cpu"]["serve_worker"]["net_core_per_call"]
                                                    - floor["net_core_per_call"], 4)
        result["steps"].append(step)
        print(json.dumps(step), flush=True)
        if spy and _spy_format(spy) == "raw" and Path(spy).exists():
            print(f"py-spy, serve worker, {n} calls ({spy}): leaf function, % of samples (inclusive %)")
            for frame, self_pct, incl_pct in spy_summary(spy):
                print(f"  {self_pct:5.1f}% ({incl_pct:5.1f}%)  {frame}")
            print("  by part of the stack (leaf frame's file; waits in the selector left out): " + ", ".join(f"{k} {v:.0f}%" for k, v in spy_parts(spy)))
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
