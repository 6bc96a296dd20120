"""Real ``voxpipe serve`` workers and a real HAProxy for the serving tests, each with a deadline to stop.

:class:`Worker` runs ``python -m pipeline.cli serve PIPELINE --workers 1 --port P``;
:class:`Balancer` runs Debian's ``haproxy`` with ``deploy/haproxy.cfg``, its server lines
replaced by the test's workers, and reads server states from its runtime API socket.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HAPROXY = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.path.exists(p)), None)

__all__ = ["Balancer", "HAPROXY", "ROOT", "Worker", "free_port", "get"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET ``url``: (status, body); (0, why) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:
        return 0, str(exc)


class Worker:
    """One ``voxpipe serve --workers 1`` process; its log goes to ``log_path``."""

    def __init__(self, name: str, pipeline: Path, port: int, log_dir: Path, *extra: str) -> None:
        self.name, self.port = name, port
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "-v", "serve", str(pipeline), "--workers", "1", "--port", str(port),
             *extra], cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.sigterm_at: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            if get(self.url + "/readyz", 1.0)[0] == 200:
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name} not ready after {timeout} s:\n{self.log()}")

    def terminate(self) -> None:
        self.sigterm_at = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


class Balancer:
    """HAProxy with deploy/haproxy.cfg in front of ``servers`` ({name: port}), on ``port``."""

    def __init__(self, servers: dict[str, int], port: int, run_dir: Path, *, inter: str = "300ms") -> None:
        self.port = port
        self.sock_path = run_dir / "haproxy.sock"
        text = (ROOT / "deploy" / "haproxy.cfg").read_text()
        text = re.sub(r"(?m)^\s*log /dev/log.*$", "", text)
        text = re.sub(r"(?m)^\s*stats socket \S+", f"    stats socket {self.sock_path}", text)
        text = text.replace("bind *:8080", f"bind 127.0.0.1:{port}").replace("inter 1s", f"inter {inter}")
        text = re.sub(r"(?m)^\s*server \S+ \S+\n", "", text)
        text += "".join(f"    server {name} 127.0.0.1:{p}\n" for name, p in servers.items())
        self.cfg = run_dir / "haproxy.cfg"
        self.cfg.write_text(text)
        self.log_path = run_dir / "haproxy.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)], stdout=self._log, stderr=subprocess.STDOUT)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.sock_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        return b"".join(chunks).decode()

    def states(self) -> dict[str, str]:
        """{server: UP / DOWN / ...} of the workers' backend."""
        out = {}
        lines = self.command("show stat").splitlines()
        if not lines:
            return out
        head = lines[0].lstrip("# ").split(",")
        for line in lines[1:]:
            row = dict(zip(head, line.split(",")))
            if row.get("pxname") == "voxpipe_workers" and row.get("svname") not in ("BACKEND", "FRONTEND"):
                out[row["svname"]] = row.get("status", "")
        return out

    def wait_state(self, server: str, state: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        seen = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited {self.proc.returncode}: {self.log()}")
            try:
                seen = self.states().get(server)
            except OSError:
                seen = None
            if seen is not None and seen.split(" ")[0] == state:
                return
            time.sleep(0.05)
        raise AssertionError(f"haproxy: {server} is {seen}, not {state}, after {timeout} s")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._log.close()
