"""No key or token reaches the output of any CLI command, even at -vv (issue: secrets)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pipeline.logs import add_secret, redact

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-proj-MARKERKEY0123456789abcdef"
TOKEN = "pagetoken-MARKER-42x9"
MARKERS = (KEY, KEY[3:], TOKEN)


def _env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OPENAI_API_KEY=KEY, **extra)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_clean(text: str) -> None:
    for marker in MARKERS:
        assert marker not in text, f"secret {marker[:12]}... printed:\n" + "\n".join(
            line for line in text.splitlines() if marker in line)


def _voxpipe(*args: str, timeout: float = 60, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "-vv", *args], capture_output=True, text=True,
                          timeout=timeout, env=_env(**env), cwd=ROOT)


def _wait_for_port(port: int, proc: subprocess.Popen, deadline_s: float = 30) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the server never listened"
            time.sleep(0.05)


def test_shapes_and_registered_values_are_masked():
    """Bearer headers, sk- keys, token query values, the key subprotocol and known values."""
    add_secret("hunter2-hunter2")
    text = redact(f"Authorization: Bearer {KEY} GET /ws?token={TOKEN}&x=1 "
                  f"openai-insecure-api-key.{KEY} pw=hunter2-hunter2")
    _assert_clean(text)
    assert "hunter2-hunter2" not in text and "&x=1" in text and "GET /ws?token=" in text


def test_a_key_in_the_wrong_param_is_not_printed_back(tmp_path):
    """`${OPENAI_API_KEY}` in a numeric param: the validation message names the param, not the key."""
    path = tmp_path / "wrong.yaml"
    path.write_text("voxpipe: 1\nprocessors:\n  tone: {type: capture.tone, params: {sample_rate: \"${OPENAI_API_KEY}\"}}\n"
                    "  out: {type: playback.null}\nlinks:\n  - tone -> out\n")
    result = _voxpipe("validate", str(path))
    assert result.returncode == 2 and "sample_rate" in result.stderr
    _assert_clean(result.stdout + result.stderr)


def test_run_with_the_in_process_local_server_logs_no_key(tmp_path):
    """`voxpipe -vv run` of a `url: local` pipeline: the client's handshake is logged without the key."""
    path = tmp_path / "local.yaml"
    path.write_text(f"voxpipe: 1\nprocessors:\n  tone: {{type: capture.tone, params: {{sample_rate: 24000, duration_s: 0.3}}}}\n"
                    f"  model: {{type: realtime.openai, params: {{url: local, api_key: \"{KEY}\"}}}}\n"
                    "  out: {type: playback.null}\nlinks:\n  - tone -> model -> out\n")
    result = _voxpipe("run", str(path), timeout=120)  # at real time: --fast refuses a realtime model
    output = result.stdout + result.stderr
    assert "DEBUG" in output  # -vv really was verbose
    _assert_clean(output)


def test_realtime_server_logs_no_key():
    """`voxpipe -vv realtime-server`: a client's Authorization header and key subprotocol are masked."""
    from websockets.sync.client import connect

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "-vv", "realtime-server", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    try:
        _wait_for_port(port, proc)
        with connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime",
                     additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            assert '"session.created"' in ws.recv(timeout=20)
        with connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime",
                     subprotocols=["realtime", f"openai-insecure-api-key.{KEY}"]) as ws:
            assert '"session.created"' in ws.recv(timeout=20)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert "DEBUG" in err
    _assert_clean(out + err)


def test_serve_logs_no_page_token():
    """`voxpipe -vv serve --token T`: requests with the right and a wrong token are logged masked."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "-vv", "serve", "--port", str(port), "--token", TOKEN],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    try:
        _wait_for_port(port, proc, deadline_s=60)
        for token in (TOKEN, TOKEN + "-wrong"):
            with pytest.raises(urllib.error.HTTPError):  # a plain GET of the websocket path is refused
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ws?token={token}", timeout=10)
        urllib.request.urlopen(f"http://127.0.0.1:{port}/?token={TOKEN}", timeout=10).read()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    _assert_clean(out + err)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_servers_close_connections_and_exit_0_on_either_signal(sig):
    """SIGINT and SIGTERM: the realtime server closes its live connection with 1001 and exits 0."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "realtime-server", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT)
    try:
        _wait_for_port(port, proc)
        with connect(f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime",
                     additional_headers={"Authorization": "Bearer local"}) as ws:
            assert '"session.created"' in ws.recv(timeout=20)
            proc.send_signal(sig)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=20)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert sig.name in err
    # the bare TCP connect of _wait_for_port is one INFO line at most, never a traceback
    assert "Traceback" not in err and "ERROR" not in err, err
