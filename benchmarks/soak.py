"""Soak and churn: does the local realtime server's memory stay flat, and do closes leave nothing behind?

Two questions (issue 13):

``soak``: one session of the local realtime server fed speech at full speed (server VAD on,
a spoken reply created and barged in on every turn) for ``--duration`` seconds (default
600). The server runs in its own process (``voxpipe realtime-server``), so its RSS and this
client's are sampled apart, every ``--interval`` seconds (default 10). Reported: RSS per
sample, and the least-squares slope (MB/min) of each process after ``--warmup`` seconds
(default 180: at full speed the conversation reaches its bounds, 120 s of audio and 4,096
items, after about 140 s).
Target: under 1 MB/min for both.

``churn``: ``--count`` connections (default 10,000) opened and closed against an
in-process server, cycling through every kind of connect and close: a handshake then an
immediate close; a session.update then close; speech, then close right after
``speech_stopped`` (recognition in flight); speech, then close mid-response; a close
without the closing handshake (TCP reset); a bare TCP connect with no HTTP; refused
handshakes (no key, wrong path, browser Origin, foreign Host, overlong path). Before, and after
the last close (once the server reports no connection and a ``gc.collect()``), it records
RSS, open file descriptors, asyncio tasks and the idle recogniser pool, and prints both.

Run: ``python benchmarks/soak.py soak [--duration 600]`` and
``python benchmarks/soak.py churn [--count 10000]``; ``--json FILE`` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import numpy as np

__all__ = ["churn", "main", "rss_mb", "slope_mb_per_min", "soak"]

ROOT = Path(__file__).resolve().parent.parent
AUTH = {"Authorization": "Bearer sk-local"}
PHRASES = ("hello", "what is the weather like in paris today", "tell me a joke")


def rss_mb(pid: int | str = "self") -> float:
    """Resident set size of process ``pid`` in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for {pid}")


def open_fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    if len(samples) < 2:
        return float("nan")
    t = np.array([s[0] for s in samples]) / 60.0
    y = np.array([s[1] for s in samples])
    return float(np.polyfit(t, y, 1)[0])


def speech(text: str, lead_ms: int = 300, tail_ms: int = 700) -> bytes:
    """pcm16 24 kHz of eSpeak NG saying ``text`` between quiet seeded noise."""
    from pipeline.dsp.resample import resample
    from processors.speech.espeak import synthesize

    x, rate = synthesize(text)
    rng = np.random.default_rng(len(text))
    quiet = lambda ms: rng.normal(0, 30, 24 * ms).astype(np.int16)
    return np.concatenate([quiet(lead_ms), resample(x, rate, 24000), quiet(tail_ms)]).astype("<i2").tobytes()


def _append(data: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()})


# --- soak ---------------------------------------------------------------------------------------


def _start_server(log_path: Path) -> tuple[subprocess.Popen, int]:
    # output to a file: a pipe nobody reads would stall the server once it filled
    out = log_path.open("w")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "realtime-server", "--port", "0"], cwd=ROOT,
                            stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"ws://127\.0\.0\.1:(\d+)/v1", log_path.read_text())
        if found:
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"voxpipe realtime-server did not start; see {log_path}")


async def soak(duration_s: float = 600.0, interval_s: float = 10.0, warmup_s: float = 180.0) -> dict[str, Any]:
    """Run the soak (see the module docstring); the figures as a dict."""
    from websockets.asyncio.client import connect

    log_path = Path(tempfile.gettempdir()) / f"voxpipe-soak-server-{os.getpid()}.log"
    proc, port = _start_server(log_path)
    audio = [speech(p) for p in PHRASES]
    counts = {"sent_audio_s": 0.0, "events": 0, "responses": 0, "committed": 0, "deleted": 0, "errors": 0}
    samples: list[dict[str, float]] = []
    try:
        async with connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime", additional_headers=AUTH,
                           max_size=None) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {
                "input": {"transcription": {"model": "whisper-1"}}}}}))
            t0 = time.monotonic()
            heard = {"n": 0}

            async def read() -> None:
                async for message in ws:
                    counts["events"] += 1
                    kind = json.loads(message)["type"] if len(message) < 4096 else ""
                    if kind == "response.done":
                        counts["responses"] += 1
                    elif kind == "input_audio_buffer.committed":
                        counts["committed"] += 1
                    elif kind == "conversation.item.deleted":
                        counts["deleted"] += 1
                    elif kind == "error":
                        counts["errors"] += 1
                    elif kind.startswith("conversation.item.input_audio_transcription.") and kind[-5:] in (
                            "leted", "ailed"):
                        heard["n"] += 1

            async def feed() -> None:
                n = 0
                while time.monotonic() - t0 < duration_s:
                    data = audio[n % len(audio)]
                    for i in range(0, len(data), 4800):  # 100 ms appends, no pacing
                        await ws.send(_append(data[i:i + 4800]))
                        await anyio.lowlevel.checkpoint()  # send() may not yield: let the reader read
                    counts["sent_audio_s"] += len(data) / 48000
                    n += 1
                    # the protocol has no back-pressure: speak again once this turn was heard (the
                    # reply is still being made and is barged in on), so commands cannot pile up
                    with anyio.move_on_after(30):
                        while heard["n"] < n:
                            await anyio.sleep(0.002)
                    heard["n"] = n = max(n, heard["n"])

            async def sample() -> None:
                while True:
                    now = time.monotonic() - t0
                    samples.append({"t_s": round(now, 1), "server_mb": round(rss_mb(proc.pid), 1),
                                    "client_mb": round(rss_mb(), 1), "sent_audio_s": round(counts["sent_audio_s"]),
                                    "responses": counts["responses"]})
                    print(f"{now:7.0f} s  server {samples[-1]['server_mb']:7.1f} MB  client "
                          f"{samples[-1]['client_mb']:7.1f} MB  audio sent {counts['sent_audio_s']:8.0f} s  "
                          f"responses {counts['responses']}", flush=True)
                    await anyio.sleep(interval_s)

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                tg.start_soon(sample)
                await feed()
                samples.append({"t_s": round(time.monotonic() - t0, 1), "server_mb": round(rss_mb(proc.pid), 1),
                                "client_mb": round(rss_mb(), 1), "sent_audio_s": round(counts["sent_audio_s"]),
                                "responses": counts["responses"]})
                tg.cancel_scope.cancel()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    after = [s for s in samples if s["t_s"] >= warmup_s]
    return {
        "duration_s": duration_s, "interval_s": interval_s, "warmup_s": warmup_s, "counts": counts,
        "samples": samples, "server_log": str(log_path),
        "server_slope_mb_per_min": slope_mb_per_min([(s["t_s"], s["server_mb"]) for s in after]),
        "client_slope_mb_per_min": slope_mb_per_min([(s["t_s"], s["client_mb"]) for s in after]),
        "versions": {"python": platform.python_version(), "machine": platform.machine()},
    }


# --- churn --------------------------------------------------------------------------------------

KINDS = ("open_close", "update_close", "close_after_speech_stopped", "close_mid_response", "reset",
         "bare_tcp", "refused_no_key", "refused_path", "refused_origin", "refused_host", "refused_long_path")


async def _one(kind: str, url: str, port: int, hello: bytes) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    endpoint = f"{url}/realtime?model=gpt-realtime"
    if kind == "bare_tcp":
        async with await anyio.connect_tcp("127.0.0.1", port):
            pass
        return
    if kind == "refused_host":  # by hand: websockets' client always sends its own Host
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"GET /v1/realtime?model=m HTTP/1.1\r\nHost: evil.example\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                              b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer x\r\n\r\n")
            response = await stream.receive()
        if not response.startswith(b"HTTP/1.1 403"):
            raise AssertionError(f"{kind}: {response[:40]!r}")
        return
    if kind.startswith("refused"):
        options: dict[str, Any] = {"additional_headers": AUTH}
        target = endpoint
        if kind == "refused_no_key":
            options = {}
        elif kind == "refused_path":
            target = f"{url}/nothing"
        elif kind == "refused_origin":
            options["origin"] = "http://evil.example"
        elif kind == "refused_long_path":
            target = endpoint + "&x=" + "a" * 9000
        try:
            async with connect(target, **options):
                raise AssertionError(f"{kind}: accepted")
        except (InvalidStatus, OSError, Exception) as exc:
            if isinstance(exc, AssertionError):
                raise
        return
    async with connect(endpoint, additional_headers=AUTH, max_size=None) as ws:
        json.loads(await ws.recv())  # session.created
        if kind == "update_close":
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "instructions": "x"}}))
            json.loads(await ws.recv())
        elif kind in ("close_after_speech_stopped", "close_mid_response"):
            await ws.send(_append(hello))
            wanted = "input_audio_buffer.speech_stopped" if kind == "close_after_speech_stopped" else "response.created"
            for _ in range(1000):
                if json.loads(await ws.recv())["type"] == wanted:
                    break
        elif kind == "reset":
            ws.transport.abort()  # no closing handshake
            return


def _server_figures(server: Any) -> dict[str, Any]:
    gc.collect()
    return {"rss_mb": round(rss_mb(), 1), "fds": open_fds(), "tasks": len(asyncio.all_tasks()),
            "idle_recognizers": server.resources.idle_recognizers, "open_connections": server.connections}


async def churn(count: int = 10_000, concurrency: int = 4) -> dict[str, Any]:
    """Run the churn (see the module docstring); baseline and final figures as a dict."""
    from processors.realtime.server import serve_local

    import logging

    logging.getLogger("voxpipe").setLevel(logging.ERROR)  # each refusal is a warning line: 10,000 of them
    hello = speech("hello")
    done = {k: 0 for k in KINDS}
    failures: dict[str, str] = {}
    async with serve_local() as server:
        for kind in KINDS:  # one of each first: warm every path before the baseline
            await _one(kind, server.url, server.port, hello)
        await _settle(server)
        baseline = _server_figures(server)
        print(f"baseline: {baseline}", flush=True)
        t0 = time.monotonic()
        progress = {"n": 0}

        async def worker(w: int) -> None:
            while progress["n"] < count:
                n = progress["n"]
                progress["n"] += 1
                kind = KINDS[n % len(KINDS)]
                try:
                    with anyio.fail_after(60):
                        await _one(kind, server.url, server.port, hello)
                    done[kind] += 1
                except Exception as exc:
                    failures[kind] = f"{type(exc).__name__}: {exc}"[:200]
                if n and n % 1000 == 0:
                    print(f"{n:6d} closes  {time.monotonic() - t0:6.0f} s  rss {rss_mb():.1f} MB  fds {open_fds()}  "
                          f"tasks {len(asyncio.all_tasks())}  idle recognisers {server.resources.idle_recognizers}",
                          flush=True)

        async with anyio.create_task_group() as tg:
            for w in range(concurrency):
                tg.start_soon(worker, w)
        await _settle(server)
        final = _server_figures(server)
        print(f"final:    {final}", flush=True)
    return {"count": count, "concurrency": concurrency, "elapsed_s": round(time.monotonic() - t0, 1),
            "done": done, "failures": failures, "baseline": baseline, "final": final,
            "versions": {"python": platform.python_version(), "machine": platform.machine()}}


async def _settle(server: Any) -> None:
    with anyio.move_on_after(30):
        while server.connections:
            await anyio.sleep(0.05)
    await anyio.sleep(0.5)  # handlers unwind; recognitions in flight finish and return their recogniser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("soak", help="one session at full speed; RSS of server and client")
    p.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between RSS samples (default 10)")
    p.add_argument("--warmup", type=float, default=180.0, help="seconds left out of the slope (default 180)")
    p.add_argument("--json", default=None)
    p = sub.add_parser("churn", help="connect/close of every kind; leftovers against a baseline")
    p.add_argument("--count", type=int, default=10_000, help="connections (default 10,000)")
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.what == "soak":
        result = anyio.run(soak, args.duration, args.interval, args.warmup)
        print(f"\n| process | RSS at warm-up (MB) | RSS at end (MB) | slope after {args.warmup:.0f} s (MB/min) |")
        print("|---|---|---|---|")
        after = [s for s in result["samples"] if s["t_s"] >= args.warmup] or result["samples"]
        for who in ("server", "client"):
            print(f"| {who} | {after[0][who + '_mb']:.1f} | {after[-1][who + '_mb']:.1f} | "
                  f"{result[who + '_slope_mb_per_min']:.2f} |")
        print(f"counts: {result['counts']}")
    else:
        result = anyio.run(churn, args.count, args.concurrency)
        print("\n| figure | baseline | after | change |")
        print("|---|---|---|---|")
        for key in ("rss_mb", "fds", "tasks", "idle_recognizers", "open_connections"):
            b, f = result["baseline"][key], result["final"][key]
            print(f"| {key} | {b} | {f} | {f - b:+.1f} |")
        print(f"done: {result['done']}  failures: {result['failures'] or 'none'}  ({result['elapsed_s']} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
