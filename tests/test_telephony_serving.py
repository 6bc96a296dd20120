"""Phone calls are sessions of the serving host: admission, drain and metrics, over real sockets on 127.0.0.1.

A call is counted where a browser page is (``voxpipe_sessions_active``, the outcomes), is
refused past ``--max-sessions`` or while draining (the webhook answers 503 with the reason;
a stream that holds no slot is closed 1013 with the reason), and outlives a drain until it
ends or the drain's deadline closes it (1012, with the reason). The pipeline is a phone line
that plays the caller back to the caller: no model, so each call costs next to nothing.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import anyio
import pytest

from phone_network import TOKENS, SimulatedCall, http_get, http_post
from processors.serving.host import ServingHost
from processors.web.server import web_server

pytestmark = pytest.mark.anyio

ECHO_YAML = """
voxpipe: 1
name: phone-echo
processors:
  caller: {type: transport.phone.input}
  ear: {type: transport.phone.output}
links:
  - caller -> ear
"""


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKENS["twilio"])


@pytest.fixture
def echo_yaml(tmp_path):
    path = tmp_path / "echo.yaml"
    path.write_text(ECHO_YAML)
    return path


def metric(text: str, line_start: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


async def until(predicate, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


async def test_calls_are_counted_refused_at_capacity_and_their_outcome_recorded(echo_yaml):
    """Two slots: a live call and a reserved webhook hold them; a third webhook is answered 503 with the reason."""
    pytest.importorskip("prometheus_client")
    async with web_server(echo_yaml, max_sessions=2) as server:
        first, second, third = (SimulatedCall(server.url, "twilio", seed=s) for s in (1, 2, 3))
        assert await first.fetch_webhook() == 200
        async with anyio.create_task_group() as tg:
            await tg.start(first.run)
            await until(lambda: len(server.serving.live) == 1)
            status, body = await http_get(server.url + "metrics")
            assert status == 200 and metric(body, "voxpipe_sessions_active") == 1.0
            assert (await http_get(server.url + "readyz"))[1] == "ready: 1 sessions\n"
            assert await second.fetch_webhook() == 200  # the last slot, reserved for its stream
            assert await third.fetch_webhook() == 503
            assert third.webhook_body.startswith("capacity: the server is at capacity (2 sessions)")
            assert server.serving.refused == {"capacity": 1}
            await tg.start(second.run)  # its reservation lets it in
            await until(lambda: len(server.serving.live) == 2)
            await first.wait_heard(0.2)
            await first.hang_up()
            await second.hang_up()
            tg.cancel_scope.cancel()
        await until(lambda: not server.serving.live)
        assert server.serving.ended == {"client_closed": 2} and server.serving.started_total == 2
        _, body = await http_get(server.url + "metrics")
        assert metric(body, "voxpipe_sessions_active") == 0.0
        assert metric(body, 'voxpipe_sessions_ended_total{outcome="client_closed"}') == 2.0
        assert metric(body, 'voxpipe_sessions_refused_total{reason="capacity"}') == 1.0


async def test_a_stream_without_a_slot_is_closed_with_the_reason(echo_yaml):
    """A webhook's reservation lapsed and its slot was taken: the stream is accepted, then closed 1013 with why."""
    async with web_server(echo_yaml, max_sessions=1) as server:
        server.telephony.reserve_s = 0.0  # reservations lapse at once: each stream is admitted on its own
        first, late = SimulatedCall(server.url, "twilio", seed=1), SimulatedCall(server.url, "twilio", seed=2)
        assert await first.fetch_webhook() == 200 and await late.fetch_webhook() == 200
        async with anyio.create_task_group() as tg:
            await tg.start(first.run)
            await until(lambda: len(server.serving.live) == 1)
            await tg.start(late.run)
            with anyio.fail_after(5):
                await late.closed.wait()
            assert late.close_code == 1013 and "at capacity (1 sessions)" in late.close_reason
            assert not first.closed.is_set() and server.serving.refused == {"capacity": 1}
            await first.hang_up()
            tg.cancel_scope.cancel()
        await until(lambda: not server.serving.live)
        assert server.serving.ended == {"client_closed": 1}


@asynccontextmanager
async def one_live_call(echo_yaml, drain_timeout_s: float):
    """A server with one live Twilio call: yields (serving host, server, call); the call's task ends after."""
    serving = ServingHost(max_sessions=8, drain_timeout_s=drain_timeout_s)
    async with web_server(echo_yaml, serving=serving) as server:
        call = SimulatedCall(server.url, "twilio", seed=1)
        assert await call.fetch_webhook() == 200
        async with anyio.create_task_group() as tg:
            await tg.start(call.run)
            await until(lambda: len(serving.live) == 1)
            yield serving, server, call
            tg.cancel_scope.cancel()


async def test_a_drain_keeps_a_call_until_it_ends_and_refuses_new_ones(echo_yaml):
    """POST /drain: /readyz 503, webhooks 503 (draining), the live call goes on; its end stops the worker."""
    async with one_live_call(echo_yaml, drain_timeout_s=60.0) as (serving, server, call):
        status, body = await http_post(server.url + "drain", b"", {})
        assert status == 202 and body.startswith("draining: 1 live sessions")
        status, body = await http_get(server.url + "readyz")
        assert status == 503 and body.startswith("not ready: draining")
        other = SimulatedCall(server.url, "twilio", seed=2)
        assert await other.fetch_webhook() == 503 and other.webhook_body.startswith("draining: ")
        heard = call.heard.played
        await anyio.sleep(1.5)  # past a sampler tick: the drain waits for the call
        assert not call.closed.is_set() and not serving.stopping.is_set()
        assert call.heard.played > heard  # still talking and hearing itself
        await call.hang_up()
        with anyio.fail_after(5):
            await serving.stopping.wait()  # the last session ended: the drain is over
        assert serving.ended == {"client_closed": 1} and serving.refused == {"draining": 1}


async def test_the_drain_deadline_closes_a_call_with_the_reason(echo_yaml):
    """A call still talking when the drain's deadline passes is closed 1012, saying why, counted as drained."""
    async with one_live_call(echo_yaml, drain_timeout_s=0.5) as (serving, server, call):
        assert serving.drain()
        with anyio.fail_after(5):  # the sampler checks the deadline once a second
            await call.closed.wait()
        assert call.close_code == 1012 and call.close_reason.startswith("drain deadline passed")
        await until(lambda: not serving.live)
        assert serving.ended == {"drained": 1} and serving.stopping.is_set()
