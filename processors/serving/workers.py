"""``voxpipe serve --workers N``: N worker processes on one port, a supervisor that keeps them running.

Theory of operation
-------------------
Each worker is a whole ``voxpipe serve`` (one event loop, its own sessions, its own local
realtime server when the pipeline uses ``url: local``) listening on the same port with
``SO_REUSEPORT``: the kernel spreads new connections over the listening workers, and a
session lives in exactly one of them, so a worker that crashes loses only its own
sessions. The supervisor (this module, no event loop, no sessions) starts the workers,
waits for each to report its port through a pipe, restarts a worker that exits while
serving (at most :data:`MAX_RESTARTS` a minute), and passes signals on: SIGTERM drains
every worker (each exits 0 once its sessions have ended or its drain deadline passed;
a second SIGTERM closes the rest), SIGINT stops them now. The supervisor exits 0 once
every worker has.

With port 0 the supervisor binds a ``SO_REUSEPORT`` socket (bound, never listening, so
it takes no connections) to choose the port, and closes it once the workers listen.
Metrics: the workers share one ``PROMETHEUS_MULTIPROC_DIR`` (a temporary directory unless
the environment names one), so any worker's ``/metrics`` answers for the machine; a dead
worker's live gauges are dropped (``mark_process_dead``).

Behind a balancer that must see each worker (HAProxy's leastconn, per-worker readiness),
run one ``voxpipe serve --workers 1`` per port instead: deploy/haproxy.cfg does that.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from typing import Any

import anyio

__all__ = ["MAX_RESTARTS", "run_workers", "watch_signals"]

log = logging.getLogger("voxpipe.serving")

#: Restarts of crashed workers allowed per minute before the supervisor gives up.
MAX_RESTARTS = 5
#: Seconds a worker may take to listen (the local server's speech models load first).
START_TIMEOUT_S = 180.0


async def watch_signals(serving: Any) -> None:
    """In a worker: SIGTERM drains (twice: stops now), SIGINT stops now."""
    terms = 0
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            if signum == signal.SIGTERM:
                terms += 1
                if terms == 1:  # a drain begun by POST /drain (a preStop hook) goes on as it was
                    serving.drain()
                    continue
            log.warning("%s: closing every session now", signal.Signals(signum).name)
            serving.force()


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen | None = None
        self.ready = False


def _reserve_port(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def _spawn(worker: _Worker, argv: list[str], port: int, env: dict[str, str]) -> int:
    read_fd, write_fd = os.pipe()
    cmd = [sys.executable, "-m", "pipeline.cli", *argv, "--port", str(port), "--workers", "1"]
    worker.proc = subprocess.Popen(cmd, pass_fds=(write_fd,), env={**env, "VOXPIPE_WORKER": str(worker.index),
                                                                   "VOXPIPE_READY_FD": str(write_fd)})
    worker.ready = False
    os.close(write_fd)
    return read_fd


def _wait_ready(pending: dict[int, _Worker], timeout: float) -> list[str]:
    """Read each worker's port line; returns the problems (a worker that died or never listened)."""
    problems = []
    sel = selectors.DefaultSelector()
    for fd, worker in pending.items():
        sel.register(fd, selectors.EVENT_READ, worker)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            worker = key.data
            data = os.read(key.fd, 64)
            sel.unregister(key.fd)
            os.close(key.fd)
            del pending[key.fd]
            if data.strip():
                worker.ready = True
            else:
                problems.append(f"worker {worker.index} exited ({worker.proc.wait()}) before listening")
    for fd, worker in pending.items():
        sel.unregister(fd)
        os.close(fd)
        problems.append(f"worker {worker.index} did not listen within {timeout:.0f} s")
    sel.close()
    return problems


def run_workers(n: int, argv: list[str], *, host: str, port: int, drain_timeout_s: float,
                verbose: int = 0) -> int:
    """Run ``n`` workers of ``voxpipe serve ARGV`` on ``host:port``; return the exit code."""
    from pipeline.errors import VoxpipeError

    env = dict(os.environ)
    own_dir = None
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        own_dir = env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="voxpipe-metrics-")
    reserve = _reserve_port(host) if port == 0 else None
    if reserve is not None:
        port = reserve.getsockname()[1]
    argv = ["-v"] * verbose + ["serve", *argv, "--host", host]
    workers = [_Worker(i) for i in range(n)]
    flags = {"term": 0, "int": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        flags["term" if signum == signal.SIGTERM else "int"] += 1
        for w in workers:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.send_signal(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        problems = _wait_ready({_spawn(w, argv, port, env): w for w in workers}, START_TIMEOUT_S)
        if reserve is not None:
            reserve.close()
        if flags["term"] or flags["int"]:  # Ctrl-C or SIGTERM while the workers started: a stop, not a fault
            for w in workers:
                try:
                    w.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass  # killed below
            return 0
        if problems:
            on_signal(signal.SIGINT, None)
            raise VoxpipeError("; ".join(problems) + " (run with --workers 1 -v to see why)")
        shown = f"[{host}]" if ":" in host else host
        print(f"voxpipe: serving on http://{shown}:{port}/ with {n} workers (pids "
              f"{', '.join(str(w.proc.pid) for w in workers)}); SIGTERM drains, Ctrl-C stops", flush=True)
        return _supervise(workers, argv, port, env, flags, drain_timeout_s)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for w in workers:  # nothing outlives the supervisor
            if w.proc is not None and w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait(timeout=5)
        if reserve is not None:
            reserve.close()
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def _mark_dead(pid: int, path: str) -> None:
    try:
        from prometheus_client import multiprocess
    except ImportError:
        return
    multiprocess.mark_process_dead(pid, path)


def _supervise(workers: list[_Worker], argv: list[str], port: int, env: dict[str, str], flags: dict[str, int],
               drain_timeout_s: float) -> int:
    restarts: deque[float] = deque()
    stop_by: float | None = None
    while True:
        stopping = flags["term"] or flags["int"]
        if stopping and stop_by is None:
            stop_by = time.monotonic() + drain_timeout_s + 30.0  # the workers' own deadline, then a margin
        alive = 0
        for w in workers:
            proc = w.proc
            if proc is None:
                continue
            code = proc.poll()
            if code is None:
                alive += 1
                continue
            _mark_dead(proc.pid, env["PROMETHEUS_MULTIPROC_DIR"])
            w.proc = None
            if stopping:
                continue
            now = time.monotonic()
            while restarts and now - restarts[0] > 60:
                restarts.popleft()
            if len(restarts) >= MAX_RESTARTS:
                log.error("worker %d exited (%s); %d restarts in the last minute: giving up", w.index, code,
                          MAX_RESTARTS)
                flags["term"] += 1
                for other in workers:
                    if other.proc is not None and other.proc.poll() is None:
                        other.proc.send_signal(signal.SIGTERM)
                continue
            restarts.append(now)
            log.warning("worker %d (pid %d) exited with %s; its sessions are lost; starting a new one", w.index,
                        proc.pid, code)
            problems = _wait_ready({_spawn(w, argv, port, env): w}, START_TIMEOUT_S)
            if problems:
                log.error("%s", "; ".join(problems))
            alive += 1
        if stopping and alive == 0:
            return 0
        if stop_by is not None and time.monotonic() > stop_by:
            log.error("workers still running %.0f s after the drain deadline: killing them", 30.0)
            for w in workers:
                if w.proc is not None:
                    w.proc.kill()
            return 1
        time.sleep(0.2)
