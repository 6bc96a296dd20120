"""--allow-host / VOXPIPE_ALLOW_HOSTS: a reverse proxy's name is answered, other names still refused (issue 13.9)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from websockets.asyncio.client import connect as ws_connect

from pipeline.cli import build_parser
from pipeline.errors import VoxpipeError
from processors.guard import ALLOW_HOSTS_ENV, HostCheck
from processors.realtime.server import serve_local
from processors.web.server import web_server
from test_hostile import http_request, status_of

pytestmark = pytest.mark.anyio


@pytest.fixture
def echo_yaml(tmp_path):
    from test_web_server import ECHO

    path = tmp_path / "web_echo.yaml"
    path.write_text(ECHO)
    return path


async def test_both_servers_answer_an_allowed_proxy_name(echo_yaml, monkeypatch):
    """Host voice.example.test (flag), *.tunnel.test (wildcard) and proxy.test (env) pass; evil.example gets 403."""
    monkeypatch.setenv(ALLOW_HOSTS_ENV, "proxy.test, other.test")
    allowed = ["voice.example.test", "*.tunnel.test"]
    async with web_server(echo_yaml, allow_hosts=allowed) as web, serve_local(allow_hosts=allowed) as rt:
        auth = [("Authorization", "Bearer x")]
        for port, path, extra in ((web.port, "/ws", []), (rt.port, "/v1/realtime?model=m", auth)):
            for host in ("voice.example.test", "VOICE.example.test:443", "abc.tunnel.test", "proxy.test:8080",
                         f"127.0.0.1:{port}"):
                assert status_of(await http_request(port, path, extra, host=host)) == 101, host
            for host in ("evil.example", "tunnel.test", "xvoice.example.test", "voice.example.test.evil.example"):
                response = await http_request(port, path, extra, host=host)
                assert status_of(response) == 403, host
                assert b"--allow-host" in response
        # the page itself, as a proxy forwards it (Origin and Host are the public name)
        origin = [("Origin", "https://voice.example.test")]
        assert status_of(await http_request(web.port, "/", [], host="voice.example.test")) == 200
        assert status_of(await http_request(web.port, "/ws", origin, host="voice.example.test")) == 101
        async with ws_connect(web.ws_url) as ws:  # loopback still works as before
            assert json.loads(await ws.recv())["type"] == "ready"


def test_names_are_checked_when_given():
    """A URL or a wildcard in the middle is refused with what to write instead."""
    with pytest.raises(VoxpipeError, match="not a URL"):
        HostCheck("127.0.0.1", ["https://voice.example.test/"])
    with pytest.raises(VoxpipeError, match=r"first label \(\*\.example\.com\)"):
        HostCheck("127.0.0.1", ["voice.*.test"])
    check = HostCheck("127.0.0.1", ["[2001:db8::1]", "Voice.Example.Test:443"])
    assert check.allows("[2001:db8::1]:8080") and check.allows("voice.example.test")


def test_both_commands_take_the_option():
    """`voxpipe serve` and `voxpipe realtime-server` accept --allow-host, repeatable."""
    parser = build_parser()
    for argv in (["serve", "x.yaml"], ["realtime-server"]):
        args = parser.parse_args([*argv, "--allow-host", "a.test", "--allow-host", "*.b.test"])
        assert args.allow_host == ["a.test", "*.b.test"]


def test_a_bad_name_is_one_line_from_the_cli(echo_yaml):
    """`voxpipe serve --allow-host https://...` exits 2 with one line naming the fix, no traceback."""
    env = {**os.environ, ALLOW_HOSTS_ENV: ""}
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "serve", str(echo_yaml), "--port", "0",
                           "--allow-host", "https://voice.example.test"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "give a host name such as voice.example.com" in proc.stderr
