"""Phone calls over real sockets on 127.0.0.1: the simulated phone network against ``voxpipe serve``.

The network (tests/phone_network.py) follows the providers' documentation; the server is
the real one (webhook, signatures, one graph per stream); with ``pipelines/phone_agent.yaml``
the model is the offline local realtime server (pocketsphinx, the scripted responder,
eSpeak NG).
"""

from __future__ import annotations

import base64
import json
import logging
import re

import anyio
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from phone_network import TOKENS, SimulatedCall, ask_and_listen
from phone_probe import CallProbe
from pipelines import shipped
from processors.speech.sphinx import Recognizer
from processors.web.server import web_server

pytestmark = pytest.mark.anyio

PROBE_YAML = """
voxpipe: 1
name: phone-probe
processors:
  caller: {type: transport.phone.input}
  probe: {type: "phone_probe:CallProbe"}
  tools: {type: tools.router, params: {modules: [processors.telephony.tools]}}
  ear: {type: transport.phone.output}
links:
  - caller -> probe -> tools -> ear
"""


@pytest.fixture
def telnyx_key(monkeypatch):
    ed = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    from cryptography.hazmat.primitives import serialization

    key = ed.Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    monkeypatch.setenv("TELNYX_PUBLIC_KEY", base64.b64encode(raw).decode())
    return key


@pytest.fixture(autouse=True)
def _credentials(monkeypatch):
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKENS["twilio"])
    monkeypatch.setenv("PLIVO_AUTH_TOKEN", TOKENS["plivo"])


@pytest.fixture
def probe_yaml(tmp_path):
    path = tmp_path / "probe.yaml"
    path.write_text(PROBE_YAML)
    return path


async def finished(server, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        await server.telephony.wait_idle()


@pytest.mark.parametrize("provider", ["twilio", "telnyx", "plivo"])
async def test_a_call_shows_the_graph_its_facts_keys_and_ear(probe_yaml, provider, telnyx_key):
    """Webhook -> stream; the call in the context; DTMF frames; marks prove playback; routed tools; hang-up."""
    async with web_server(probe_yaml) as server:
        call = SimulatedCall(server.url, provider, query={"agent": "sales"}, telnyx_key=telnyx_key, seed=3)
        assert await call.fetch_webhook() == 200
        assert call.stream_url.startswith(f"ws://127.0.0.1:{server.port}/telephony/{provider}/stream/")
        async with anyio.create_task_group() as tg:
            await tg.start(call.run)
            await call.press("1")
            await call.wait_heard(0.4, timeout=10)
            with anyio.fail_after(5):
                while not any(p == ("probe_1", 400, False) for p in CallProbe.record["progress"]):
                    await anyio.sleep(0.01)
            await call.press("5")
            with anyio.fail_after(10):
                while CallProbe.record["routed"] is None:
                    await anyio.sleep(0.01)
            await call.press("9")
            with anyio.fail_after(10):
                await call.closed.wait()
            tg.cancel_scope.cancel()
        await finished(server)
    rec = CallProbe.record
    routed = json.loads(rec["routed"].output)  # call_details through the router: its context parameter
    assert not rec["routed"].is_error and routed["from"] == "+15550001111" and routed["provider"] == provider
    assert routed["custom"]["agent"] == "sales"
    meta = rec["metadata"]
    assert meta["provider"] == provider and meta["call_id"] == call.call_id and meta["stream_id"] == call.stream_id
    assert meta["from"] == "+15550001111" and meta["to"] == "+15550002222"
    assert meta["custom_parameters"]["agent"] == "sales"
    assert rec["digits"] == ["1", "5", "9"] and rec["same_call"] and rec["thread_sees_call"]
    assert rec["details"]["from"] == "+15550001111" and rec["details"]["custom"]["agent"] == "sales"
    assert rec["audio_in"] > 0
    assert call.heard.played == 3200 and call.heard.marks_echoed == 20  # 20 chunks of 20 ms, each marked
    assert np.abs(call.heard.audio().astype(np.int32)).max() > 4000  # the tone, not silence
    assert call.close_code == 1000  # the agent hung up after the tone had played


async def test_weather_question_tool_call_spoken_answer(caplog):
    """A spoken question reaches the model, the tool runs, and the caller hears the answer (recognised)."""
    async with web_server(shipped("phone_agent.yaml")) as server:
        call = await ask_and_listen(server.url, "what is the weather in paris")
        await finished(server)
        (result,) = server.telephony.results.values()
    tools = result.stats["tools"]["tools"]["get_weather"]
    assert tools["calls"] == 1 and tools["failures"] == 0
    heard = call.heard.audio()
    assert heard.shape[0] > 8000 and call.heard.clears == []
    from pipeline.dsp.resample import resample

    text = Recognizer(["it is eighteen degrees and partly cloudy in paris", "hello i am the voxpipe local model",
                       "what is the weather in london"]).recognize(resample(heard, 8000, 16000), 16000)
    assert text == "it is eighteen degrees and partly cloudy in paris"
    assert call.heard.marks_echoed == call.heard.media_received  # every chunk was marked and echoed


async def test_barge_in_clears_and_truncates_at_the_heard_position(caplog):
    """Speaking over the answer gets a clear; the model's item is cut within 20 ms of what the caller played."""
    caplog.set_level(logging.DEBUG, logger="voxpipe.realtime")
    async with web_server(shipped("phone_agent.yaml")) as server:
        call = SimulatedCall(server.url, "twilio", speed=2.0, seed=5)
        assert await call.fetch_webhook() == 200
        async with anyio.create_task_group() as tg:
            await tg.start(call.run)
            call.say("what is the weather in london")
            await call.wait_heard(0.8, timeout=30)  # 0.8 s into "It is 14 degrees and light rain in London."
            call.speed = 1.0
            call.say("hello")
            with anyio.fail_after(10):
                while not call.heard.clears:
                    await anyio.sleep(0.01)
            with anyio.fail_after(10):
                while not re.search(r"truncated at \d+ ms", caplog.text):
                    await anyio.sleep(0.01)
            await call.hang_up()
            tg.cancel_scope.cancel()
        await finished(server)
    (_, heard_at_clear) = call.heard.clears[0]
    truncated_ms = int(re.search(r"truncated at (\d+) ms", caplog.text).group(1))
    heard_ms = heard_at_clear / 8
    assert heard_ms > 800
    assert abs(truncated_ms - heard_ms) <= 20, (truncated_ms, heard_ms)


@pytest.mark.parametrize("how", ["stop", "drop"])
async def test_hang_up_mid_response_ends_the_session(how):
    """The caller hanging up (stop) or the provider vanishing (no stop) ends the graph with nothing left."""
    async with web_server(shipped("phone_agent.yaml"), stop_timeout_s=1.0) as server:
        call = SimulatedCall(server.url, "twilio", speed=2.0, seed=7)
        assert await call.fetch_webhook() == 200
        async with anyio.create_task_group() as tg:
            await tg.start(call.run)
            call.say("what is the weather in tokyo")
            await call.wait_heard(0.3, timeout=30)
            await (call.hang_up() if how == "stop" else call.drop())
            tg.cancel_scope.cancel()
        await finished(server, timeout=1.0 + 1.0 + 2.0)
        (result,) = server.telephony.results.values()
        assert not server.telephony.calls
    assert result.ended == "cancel" and result.hung == [] and result.errors == []


async def test_bad_input_is_counted_and_the_call_goes_on(probe_yaml, caplog):
    """Malformed messages are logged once per kind, counted and skipped; the call still works after them."""
    async with web_server(probe_yaml) as server:
        call = SimulatedCall(server.url, "twilio", seed=9)
        assert await call.fetch_webhook() == 200
        async with anyio.create_task_group() as tg:
            await tg.start(call.run)
            good = {"event": "media", "streamSid": call.stream_id, "media": {"track": "inbound", "payload": "/w=="}}
            for message in ["{oops", "{oops", json.dumps({"event": "nope"}),
                            json.dumps({**good, "streamSid": "MZother"}),
                            json.dumps({**good, "media": {"track": "inbound", "payload": "!!"}}), b"\x00"]:
                await call.send_raw(message)
            await call.press("1")
            await call.wait_heard(0.4, timeout=10)
            (live,) = server.telephony.calls.values()
            bad = dict(live.bad_input)
            await call.hang_up()
            tg.cancel_scope.cancel()
        await finished(server)
    assert bad == {"bad_json": 2, "unknown_event": 1, "wrong_stream": 1, "bad_base64": 1, "binary_message": 1}
    assert caplog.text.count("(bad_json)") == 1  # logged once, counted twice
    assert CallProbe.record["digits"] == ["1"]


async def test_media_before_start_is_skipped(probe_yaml):
    """Audio before ``start`` is counted and skipped; the stream still starts."""
    async with web_server(probe_yaml) as server:
        call = SimulatedCall(server.url, "twilio", seed=11)
        assert await call.fetch_webhook() == 200
        async with connect(call.stream_url, additional_headers=call._ws_headers()) as ws:
            await ws.send(json.dumps({"event": "media", "media": {"track": "inbound", "payload": "/w=="}}))
            await ws.send(json.dumps(call._start_message()))
            with anyio.fail_after(5):
                while not server.telephony.calls or next(iter(server.telephony.calls.values())).info is None:
                    await anyio.sleep(0.01)
            (live,) = server.telephony.calls.values()
            assert dict(live.bad_input) == {"media_before_start": 1}
        await finished(server)


async def test_signatures_are_required(probe_yaml, monkeypatch):
    """A bad or missing signature, a forged, reused or unsigned stream: 403 and nothing started."""
    async with web_server(probe_yaml) as server:
        for call in (SimulatedCall(server.url, "twilio", sign=False), SimulatedCall(server.url, "plivo", sign=False)):
            assert await call.fetch_webhook() == 403
        wrong = SimulatedCall(server.url, "twilio")
        monkeypatch.setitem(TOKENS, "twilio", "not-the-token")
        assert await wrong.fetch_webhook() == 403
        monkeypatch.setitem(TOKENS, "twilio", "twilio-test-token")
        good = SimulatedCall(server.url, "twilio")
        assert await good.fetch_webhook() == 200
        with pytest.raises(InvalidStatus) as err:  # the upgrade without Twilio's signature
            async with connect(good.stream_url):
                pass
        assert err.value.response.status_code == 403
        forged = good.stream_url[:-3] + ("xyz" if not good.stream_url.endswith("xyz") else "abc")
        with pytest.raises(InvalidStatus) as err:
            async with connect(forged, additional_headers=good._ws_headers()):
                pass
        assert err.value.response.status_code == 403
        assert server.telephony.calls_total == 0 and server.telephony.refused == 5
        # Plivo's upgrade: a signature that is present must verify
        plivo = SimulatedCall(server.url, "plivo")
        assert await plivo.fetch_webhook() == 200
        with pytest.raises(InvalidStatus):
            async with connect(plivo.stream_url, additional_headers={"X-Plivo-Signature-V3-Nonce": "n",
                                                                     "X-Plivo-Signature-V3": "bad"}):
                pass
        assert server.telephony.calls_total == 0
        monkeypatch.delenv("TWILIO_AUTH_TOKEN")
    async with web_server(probe_yaml) as server:  # no credential: refused, not waved through
        assert await SimulatedCall(server.url, "twilio").fetch_webhook() == 403


async def test_verification_off_is_explicit_and_loud(probe_yaml, caplog):
    """Only verify_signatures=False lets unsigned requests in, and it says so in the log."""
    async with web_server(probe_yaml, verify_signatures=False) as server:
        call = SimulatedCall(server.url, "twilio", sign=False)
        assert await call.fetch_webhook() == 200
        async with anyio.create_task_group() as tg:
            await tg.start(call.run)
            await call.press("1")
            await call.wait_heard(0.2, timeout=10)
            await call.hang_up()
            tg.cancel_scope.cancel()
        await finished(server)
    assert "signature verification is OFF" in caplog.text and "WITHOUT" in caplog.text


async def test_public_url_sets_the_stream_url_and_the_signed_url(probe_yaml):
    """Behind a tunnel, the markup's stream URL and the URL the signature covers are the public ones."""
    async with web_server(probe_yaml, public_url="https://agent.example.com") as server:
        call = SimulatedCall(server.url, "twilio")
        assert await call.fetch_webhook() == 403  # signed for http://127.0.0.1:..., not the public URL
        url, body, headers = call._webhook_request()
        from phone_network import http_post
        from processors.telephony.webhook import twilio_signature

        form = dict(x.split("=", 1) for x in body.decode().split("&"))
        from urllib.parse import unquote_plus

        form = {k: unquote_plus(v) for k, v in form.items()}
        headers["X-Twilio-Signature"] = twilio_signature(TOKENS["twilio"], "https://agent.example.com/telephony/twilio",
                                                         form)
        status, text = await http_post(url, body, headers)
        assert status == 200 and 'url="wss://agent.example.com/telephony/twilio/stream/' in text


async def test_post_elsewhere_and_oversized_bodies(probe_yaml):
    """POSTs outside the webhooks get 404; a body over the limit gets 413 without reaching the host."""
    from phone_network import http_post

    async with web_server(probe_yaml) as server:
        status, _ = await http_post(server.url + "ws", b"x=1", {})
        assert status == 404
        status, _ = await http_post(server.url + "telephony/twilio", b"x" * 70000, {})
        assert status == 413
        status, _ = await http_post(server.url + "telephony/skype", b"x=1", {})
        assert status == 404
        with pytest.raises(InvalidStatus) as err:  # a phone-only pipeline has no page and no /ws
            async with connect(server.ws_url):
                pass
        assert err.value.response.status_code == 404


@pytest.mark.slow
async def test_twenty_simultaneous_calls():
    """20 calls in one process each ask a question and each hears its own answer."""
    async with web_server(shipped("phone_agent.yaml"), stop_timeout_s=1.0, max_sessions=20) as server:
        calls = [SimulatedCall(server.url, "twilio", seed=100 + i) for i in range(20)]
        for call in calls:
            assert await call.fetch_webhook() == 200
        async def one(call):
            async with anyio.create_task_group() as tg:
                await tg.start(call.run)
                call.say("hello")
                await call.wait_heard(1.0, timeout=90)
                await call.wait_quiet(600, timeout=60)
                await call.hang_up()
                tg.cancel_scope.cancel()
        async with anyio.create_task_group() as tg:
            for call in calls:
                tg.start_soon(one, call)
        await finished(server, 10)
    assert all(c.heard.played > 8000 for c in calls)
    assert len({c.call_id for c in calls}) == 20
