"""WebRTC without a browser: the sans-I/O parts, and ``voxpipe serve`` over real peer connections on this machine.

The peers are :class:`processors.webrtc.client.PeerClient` (aiortc): real ICE, DTLS, SRTP,
SCTP and Opus between two stacks in this process. The conversation tests run the shipped
``pipelines/webrtc_agent.yaml`` against the offline local realtime server; the lifecycle
and security tests use an echo graph (``transport.webrtc.input -> transport.webrtc.output``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import random
import sys
import threading
from http import HTTPStatus
from pathlib import Path

import anyio
import numpy as np
import pytest

from processors.webrtc.conceal import GapConcealer
from processors.webrtc.playout import FRAME, Playout
from processors.webrtc.rates import IntegerResampler
from processors.webrtc.sdp import MAX_SDP_BYTES, OfferError, check_offer
from webrtc_peers import loop_lag, speech_48k, weather_turn

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
HAVE_AIORTC = importlib.util.find_spec("aiortc") is not None
needs_aiortc = pytest.mark.skipif(not HAVE_AIORTC, reason="aiortc is not installed (pip install 'voxpipe[webrtc]')")
HAVE_LOCAL = all(importlib.util.find_spec(m) for m in ("pocketsphinx", "espeakng_loader"))
needs_local = pytest.mark.skipif(not HAVE_LOCAL, reason="the local model needs pocketsphinx and espeakng-loader")

OFFER = "\r\n".join(["v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
                     "a=ice-ufrag:abcd", "a=ice-pwd:0123456789abcdef012345",
                     "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=rtpmap:111 opus/48000/2"]) + "\r\n"

ECHO = """\
voxpipe: 1
name: webrtc-echo
processors:
  mic: {type: transport.webrtc.input, params: {media_timeout_s: %s}}
  out: {type: transport.webrtc.output}
links:
  - mic -> out
"""


# --- sans-I/O -----------------------------------------------------------------------------------


def test_offer_checks_say_what_to_send():
    """Wrong type, oversize, empty, non-SDP, no audio, no ICE, no fingerprint: each is a clear refusal."""
    assert check_offer(OFFER.encode(), "application/sdp; charset=utf-8") == OFFER
    cases = [
        (OFFER.encode(), "application/json", HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Content-Type: application/sdp"),
        (b"v=0\r\n" + b"a=x\r\n" * (MAX_SDP_BYTES // 5), "application/sdp", HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
         "the limit is 32768"),
        (b"  ", "application/sdp", HTTPStatus.BAD_REQUEST, "empty"),
        (b"\xff\xfe", "application/sdp", HTTPStatus.BAD_REQUEST, "not UTF-8"),
        (b"hello", "application/sdp", HTTPStatus.BAD_REQUEST, "first line must be `v=0`"),
        (b"v=0\r\nnot a line\r\n", "application/sdp", HTTPStatus.BAD_REQUEST, "line 2 is malformed"),
        (OFFER.replace("m=audio", "m=video").encode(), "application/sdp", HTTPStatus.BAD_REQUEST, "no audio section"),
        (OFFER.replace("a=ice-pwd", "a=x-pwd").encode(), "application/sdp", HTTPStatus.BAD_REQUEST, "ICE credentials"),
        (OFFER.replace("a=fingerprint", "a=x").encode(), "application/sdp", HTTPStatus.BAD_REQUEST, "fingerprint"),
    ]
    for body, ctype, status, words in cases:
        with pytest.raises(OfferError) as err:
            check_offer(body, ctype)
        assert err.value.status == status and words in str(err.value), (words, str(err.value))


def test_concealer_fills_gaps_and_keeps_media_time():
    """A lost frame becomes a fading repeat; late frames are dropped; pts stays continuous."""
    c = GapConcealer(48000, fade_ms=10)
    frame = np.full(FRAME, 1000, np.int16)
    out = c.process(frame, 0) + c.process(frame, 2 * FRAME) + c.process(frame, FRAME) + c.process(frame, 3 * FRAME)
    assert [pts for _, pts in out] == [0, FRAME, 2 * FRAME, 3 * FRAME]
    fill = out[1][0]
    assert fill[0] == 1000 and fill[-1] == 0 and np.all(np.diff(fill.astype(int)) <= 0)  # repeat, faded to silence
    assert c.statistics() == {"frames": 3, "gaps": 1, "concealed_ms": 20.0, "late_dropped": 1, "resyncs": 0}
    assert [pts for _, pts in c.process(frame, 10 * 48000)] == [10 * 48000]  # a pause longer than max_gap: resync
    assert c.resyncs == 1


def _stream(r: IntegerResampler, x: np.ndarray, frame: int) -> np.ndarray:
    """``x`` through ``r`` in frames of ``frame`` samples (the transports' 20 ms)."""
    return np.concatenate([r.process(x[i:i + frame]) for i in range(0, x.shape[0], frame)])


def _tone(hz: float, rate: int, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(amp * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def _level_db(y: np.ndarray, hz: float, rate: int, amp: float = 0.5) -> float:
    """Level of ``hz`` in ``y`` (after its first quarter) relative to a sine of amplitude ``amp``."""
    y = y[y.shape[0] // 4:].astype(np.float64)
    t = np.arange(y.shape[0]) / rate
    w = np.hanning(y.shape[0])
    c = 2 * np.abs(np.sum(w * y * np.exp(-2j * np.pi * hz * t))) / np.sum(w)
    return float(20 * np.log10(c / (amp * 32767) + 1e-12))


@pytest.mark.parametrize("rates", [(48000, 24000), (48000, 16000), (24000, 48000), (16000, 48000)],
                         ids=lambda r: f"{r[0] // 1000}k-{r[1] // 1000}k")
def test_integer_resampler_delay_flatness_and_aliasing(rates, capsys):
    """Through 20 ms frames: 1.25 ms delay exactly, flat passband, -6 dB at the cut-off, aliases and images gone."""
    a, b = rates
    frame, low = a // 50, min(a, b)
    # an impulse comes out 1.25 ms later, exactly (and every frame gives its whole output at once)
    x = np.zeros(a // 10, np.int16)
    x[2 * frame] = 20000
    r = IntegerResampler(a, b)
    assert [r.process(x[i:i + frame]).shape[0] for i in range(0, x.shape[0], frame)] == [b // 50] * 5
    r.reset()
    y = _stream(r, x, frame)
    assert y.shape[0] == x.shape[0] * b // a
    delay = int(np.argmax(np.abs(y))) - 2 * frame * b // a
    assert delay == r.delay and 1000 * delay / b == 1.25
    # passband: flat to 1 kHz (24 kHz) or 2 kHz (16 kHz) below the cut-off, half amplitude at it
    edge = low / 2 - 2000
    flat = {hz: _level_db(_stream(IntegerResampler(a, b), _tone(hz, a), frame), hz, b)
            for hz in (300, 1000, 3000, edge)}
    cut = _level_db(_stream(IntegerResampler(a, b), _tone(low / 2 - 1000, a), frame), low / 2 - 1000, b)
    assert all(abs(db) < 0.05 for db in flat.values()), flat
    assert -6.5 < cut < -5.5
    # a tone 1.2 kHz above the low Nyquist (decimation: aliases below it; interpolation: the
    # image of its mirror): the filter gives -90 dB there, int16 rounding leaves less than 1 LSB
    above = low / 2 + 1200
    if b < a:
        y = _stream(IntegerResampler(a, b), _tone(above, a), frame)
        stray = _level_db(y, low - above, b)
    else:
        y = _stream(IntegerResampler(a, b), _tone(low - above, a), frame)
        stray = _level_db(y, above, b)
    assert stray < -85, stray
    # a sweep over the 3 kHz next to the low Nyquist (faded in: an abrupt start is broadband).
    # Decimating it, all that comes out is alias; interpolating, its images land above Nyquist
    n = 2 * a
    t = np.arange(n) / a
    f0, f1 = (low / 2, low / 2 + 3000) if b < a else (low / 2 - 3000, low / 2)
    fade = np.minimum(1.0, t / 0.05)
    sweep = np.rint(16000 * fade * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * t[-1])))).astype(np.int16)
    y = _stream(IntegerResampler(a, b), sweep, frame).astype(np.float64)
    if b < a:
        worst = 20 * np.log10(np.abs(y).max() / 16000 + 1e-12)
    else:
        spectrum = np.abs(np.fft.rfft(y * np.hanning(y.shape[0])))
        hz = np.fft.rfftfreq(y.shape[0], 1 / b)
        worst = 20 * np.log10(spectrum[hz > low / 2].max() / spectrum[hz < low / 2].max())
    assert worst < -65, worst  # the filter: -73 dB at Nyquist itself; int16 rounding and the fade-in add a few dB
    with capsys.disabled():
        print(f"\nIntegerResampler {a}->{b}: delay {1000 * delay / b:.2f} ms; passband "
              f"{', '.join(f'{hz:g} Hz {db:+.3f} dB' for hz, db in flat.items())}; {low / 2 - 1000:g} Hz {cut:+.2f} dB; "
              f"stray tone of {above:g} Hz {'below 1 LSB' if stray < -120 else f'{stray:.0f} dB'}; {'alias' if b < a else 'image'} of a sweep {f0:g}-{f1:g} Hz at most {worst:.0f} dB")


def test_integer_resampler_streams_like_one_call_and_flushes_its_tail():
    """Frame boundaries change nothing (odd sizes included); flush() gives the 1.25 ms tail; bad rates are refused."""
    x = _tone(440, 48000, 0.3)
    whole = IntegerResampler(48000, 24000).process(x)
    r = IntegerResampler(48000, 24000)
    parts = []
    for size in (1, 7, 960, 333, 2000, 4099):  # odd sizes too: the leftover is carried to the next call
        parts.append(r.process(x[sum(p for p in (1, 7, 960, 333, 2000, 4099)[:len(parts)]):][:size]))
    got = np.concatenate(parts)
    assert np.array_equal(got, whole[:got.shape[0]])
    up = IntegerResampler(24000, 48000)
    body = up.process(_tone(440, 24000, 0.1))
    tail = up.flush()
    assert body.shape[0] == 4800 and tail.shape[0] == up.delay == 60 and np.abs(tail).max() > 0
    assert up.process(np.zeros(480, np.int16)).any() == False  # noqa: E712  (flush started a new stream)
    with pytest.raises(ValueError, match="pipeline.dsp.Resampler"):
        IntegerResampler(44100, 48000)


def test_playout_positions_and_barge_in():
    """Writes land at the stream position after what is queued; clear() drops everything at once."""
    p = Playout()
    assert p.read().any() == False and p.position == FRAME  # noqa: E712  (silence while idle)
    assert p.write(np.ones(1500, np.int16)) == FRAME
    assert p.write(np.ones(100, np.int16)) == FRAME + 1500
    assert p.read().sum() == FRAME and p.queued == 640
    assert p.clear() == 640 and p.queued == 0 and not p.read().any()
    assert p.write(np.ones(10, np.int16)) == 3 * FRAME  # after a flush the next sample goes out next frame


def test_jitter_buffer_steps_over_a_hole_and_reorders():
    """In order goes out at once; a reordered packet is put back; a lost one is skipped after `depth` more."""
    from types import SimpleNamespace

    from processors.webrtc.jitter import AudioJitterBuffer

    def pkt(seq: int):
        return SimpleNamespace(sequence_number=seq & 0xFFFF, timestamp=960 * seq, _data=bytes([seq & 0xFF]))

    jb = AudioJitterBuffer(depth=3)
    out = []
    for seq in (65534, 65535, 1, 0, 3, 4, 5, 6, 2):  # wraps; 0 and 1 swapped; 2 lost (arrives late)
        frame = jb.add(pkt(seq))[1]
        out.append(None if frame is None else frame.timestamp // 960)
    assert out == [65534, 65535, None, 0, 1, None, 3, 4, None]
    assert jb.skipped == 1 and jb.late == 1


# --- over real peer connections ---------------------------------------------------------------------


def _decoder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-decoder")]


@needs_aiortc
@needs_local
@pytest.mark.slow
@pytest.mark.anyio
async def test_ten_concurrent_sessions_each_complete_a_turn(monkeypatch, capsys):
    """Ten aiortc peers at once ask the weather over Opus; each hears its tool-backed answer; nothing is left.

    The peers run in a process of their own (tests/webrtc_peers.py says why), as callers'
    browsers do; the server, its ten graphs and the local model share this one.
    """
    from processors.web.server import web_server

    monkeypatch.delenv("VOXPIPE_REALTIME_URL", raising=False)
    monkeypatch.delenv("VOXPIPE_TOKEN", raising=False)
    lag: list[float] = []
    stop = anyio.Event()
    with anyio.fail_after(150):
        async with web_server(ROOT / "pipelines" / "webrtc_agent.yaml") as srv:
            async with anyio.create_task_group() as tg:
                tg.start_soon(loop_lag, lag, stop)
                peers = await anyio.run_process(
                    [sys.executable, str(ROOT / "tests" / "webrtc_peers.py"), srv.url + "webrtc/offer", "10"],
                    check=False, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])})
                stop.set()
            assert peers.returncode == 0, peers.stderr.decode()[-4000:]
            report = json.loads(peers.stdout.decode().strip().splitlines()[-1])
            with anyio.fail_after(10):
                await srv.webrtc.wait_idle()
            assert srv.webrtc.sessions_total == 10
            assert sorted(srv.webrtc.reasons.values()) == ["page_closed"] * 10, srv.webrtc.reasons
    assert len(report["results"]) == 10
    for r in report["results"]:
        assert "weather" in r["said"] and r["result"]["temp_c"] == 18 and r["answer_ms"] > 1000, r
    assert _decoder_threads() == []
    with capsys.disabled():
        for name, samples in (("the server's (it also runs the local model)", lag), ("the peers'", report["lag_s"])):
            ms = np.array(samples) * 1000
            print(f"\n10 WebRTC sessions, {name} event loop lag: p50 {np.percentile(ms, 50):.1f} ms, "
                  f"p99 {np.percentile(ms, 99):.1f} ms, max {ms.max():.1f} ms ({ms.size} samples)")


@needs_aiortc
@needs_local
@pytest.mark.slow
@pytest.mark.anyio
async def test_lossy_uplink_conversation_completes(monkeypatch, capsys):
    """5 % and 10 % of the client's RTP packets dropped: the turn completes; the server's concealment is reported."""
    from processors.web.server import web_server
    from processors.webrtc.client import PeerClient

    monkeypatch.delenv("VOXPIPE_REALTIME_URL", raising=False)
    monkeypatch.delenv("VOXPIPE_TOKEN", raising=False)
    question = speech_48k("what is the weather in paris")
    report: dict[str, dict] = {}
    with anyio.fail_after(120):
        async with web_server(ROOT / "pipelines" / "webrtc_agent.yaml") as srv:
            url = srv.url + "webrtc/offer"

            async def one(loss: float) -> None:
                async with PeerClient.connect(url, loss=loss, seed=int(loss * 100)) as peer:
                    turn = await weather_turn(peer, question)
                    session = srv.webrtc.sessions[peer.session_id]
                    conceal = dict(session.concealment)
                    report[f"{loss:.0%}"] = {"rtp_sent": peer.rtp_sent, "rtp_dropped": peer.rtp_dropped,
                                             "dropped_pct": round(100 * peer.rtp_dropped / max(1, peer.rtp_sent + peer.rtp_dropped), 1),
                                             **conceal, "said": turn["said"]}

            async with anyio.create_task_group() as tg:
                tg.start_soon(one, 0.05)
                tg.start_soon(one, 0.10)
    for name, r in report.items():
        assert "weather" in r["said"] and "paris" in r["said"], r
        # exactly the lost time is filled (the last few drops may not be followed by a packet yet)
        assert 20 * (r["rtp_dropped"] - 3) <= r["concealed_ms"] <= 20 * r["rtp_dropped"], r
        assert r["gaps"] >= 1 and r["resyncs"] == 0, r
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "webrtc_loss.json").write_text(json.dumps(report, indent=1))
    with capsys.disabled():
        for name, r in report.items():
            print(f"\nloss {name}: {r['rtp_dropped']} of {r['rtp_sent'] + r['rtp_dropped']} RTP packets dropped "
                  f"({r['dropped_pct']} %); server filled {r['gaps']} gaps, {r['concealed_ms']} ms concealed; "
                  f"recognised {r['said']!r}")


@pytest.fixture
def echo_yaml(tmp_path):
    def make(media_timeout_s: float = 10.0) -> Path:
        path = tmp_path / "echo.yaml"
        path.write_text(ECHO % media_timeout_s)
        return path
    return make


@needs_aiortc
@pytest.mark.anyio
async def test_signalling_refuses_bad_offers_and_applies_token_and_origin(echo_yaml, monkeypatch):
    """Oversize, malformed and mistyped offers get clear 4xx answers; the token and Origin rules are the websocket's."""
    from processors.web.server import web_server
    from processors.webrtc.client import post_offer

    monkeypatch.delenv("VOXPIPE_TOKEN", raising=False)
    async with web_server(echo_yaml(), token="s3cret") as srv:
        base = srv.url + "webrtc/offer"
        status, _, body = await post_offer(base + "?token=s3cret", OFFER.replace("v=0", "hello"))
        assert status == 400 and "first line must be `v=0`" in body
        status, _, body = await post_offer(base + "?token=s3cret", "v=0\r\n" + "a=x\r\n" * 7000)
        assert status == 413 and "the limit is 32768" in body
        status, _, body = await post_offer(base + "?token=s3cret", "x" * 70_000)
        assert status == 413  # past the POST reader's own limit: refused before it is read
        status, _, body = await post_offer(base + "?token=s3cret", OFFER, content_type="text/plain")
        assert status == 415 and "application/sdp" in body
        status, _, body = await post_offer(base + "?token=s3cret", OFFER)  # well-formed but not answerable
        assert status == 400 and "cannot be answered" in body
        status, _, body = await post_offer(base, OFFER)
        assert status == 401 and "token" in body
        status, _, body = await post_offer(base + "?token=wrong", OFFER)
        assert status == 401
        status, _, body = await post_offer(base + "?token=s3cret", OFFER, origin="http://evil.example")
        assert status == 403 and "origin http://evil.example is not allowed" in body
        assert srv.webrtc.sessions_total == 0
        # the page finds out how to connect
        status, _, body = await _get(srv.url + "webrtc/ice?token=s3cret")
        assert status == 200 and json.loads(body) == {"iceServers": [], "websocket": False, "webrtc": True}


async def _get(url: str) -> tuple[int, dict, str]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    stream = await anyio.connect_tcp(parts.hostname, parts.port)
    async with stream:
        await stream.send(f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        data = b""
        with anyio.move_on_after(5):
            while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
                    dict(line.split(": ", 1) for line in data.partition(b"\r\n\r\n")[0].decode().split("\r\n")[1:]
                         if ": " in line).get("Content-Length", "0")):
                data += await stream.receive()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), {}, body.decode()


async def _raw_peer(url: str, munge) -> object:
    """An aiortc peer whose offer is edited by ``munge`` before it is posted; returns the connection."""
    from aiortc import RTCPeerConnection, RTCSessionDescription

    from processors.webrtc.client import post_offer

    pc = RTCPeerConnection()
    pc.addTransceiver("audio", direction="sendrecv")  # no track: it sends no media
    pc.createDataChannel("events")
    await pc.setLocalDescription(await pc.createOffer())
    status, _, body = await post_offer(url, munge(pc.localDescription.sdp))
    assert status == 201, body
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
    return pc


@needs_aiortc
@pytest.mark.anyio
async def test_lifecycle_every_end_has_a_reason(echo_yaml, monkeypatch, caplog):
    """No media, DTLS failure, ICE failure, a peer that closes, one that vanishes: each ends with a reason, nothing left."""
    from processors.web.server import web_server
    from processors.webrtc.client import PeerClient

    monkeypatch.delenv("VOXPIPE_TOKEN", raising=False)
    caplog.set_level(logging.INFO, logger="voxpipe.webrtc")
    rng = random.Random(3)

    def bad_fingerprint(sdp: str) -> str:
        line = next(x for x in sdp.split("\r\n") if x.startswith("a=fingerprint:"))
        algo, value = line.split(" ", 1)
        forged = ":".join(f"{rng.randrange(256):02X}" for _ in value.split(":"))
        return sdp.replace(line, f"{algo} {forged}")

    def bad_ice(sdp: str) -> str:  # credentials the peer will not answer to: every check fails
        lines = [("a=ice-pwd:" + "x" * 24) if x.startswith("a=ice-pwd:") else x for x in sdp.split("\r\n")]
        return "\r\n".join(lines)

    before = asyncio.all_tasks()
    with anyio.fail_after(60):
        async with web_server(echo_yaml(media_timeout_s=1.5), stop_timeout_s=1.0) as srv:
            srv.webrtc.connect_timeout_s = 4.0
            url = srv.url + "webrtc/offer"
            pcs = [await _raw_peer(url, lambda s: s),  # connects, never sends audio
                   await _raw_peer(url, bad_fingerprint), await _raw_peer(url, bad_ice)]
            async with PeerClient.connect(url) as peer:  # talks, then closes without a goodbye
                await peer.wait_event("ready", timeout=10)
                peer.say(np.full(4800, 2000, np.int16))
                await anyio.sleep(0.3)
                peer.channel = None  # no "bye": the connection's close is what the server sees
            async with PeerClient.connect(url) as gone:  # talks, then sends nothing at all (a killed tab)
                await gone.wait_event("ready", timeout=10)
                gone.say(np.full(4800, 2000, np.int16))
                await anyio.sleep(0.5)
                gone.vanish()
                with anyio.fail_after(10):  # media_gap_s (2 s) after the last packet, not media_timeout_s
                    while "w5" not in srv.webrtc.reasons:
                        await anyio.sleep(0.1)
            with anyio.fail_after(15):
                await srv.webrtc.wait_idle()
            for pc in pcs:
                await pc.close()
            reasons = srv.webrtc.reasons
    assert reasons["w1"] == "no_media", reasons
    assert reasons["w2"] == "dtls_failed", reasons
    assert reasons["w3"] in ("ice_failed", "not_connected"), reasons  # aioice gives up after the 4 s deadline here
    assert reasons["w4"] == "page_closed", reasons
    assert reasons["w5"] == "peer_gone", reasons
    logged = [r.getMessage() for r in caplog.records]
    for sid, why in reasons.items():
        assert any(f"session {sid}: ending ({why}:" in m for m in logged), (sid, why)
        assert any(f"session {sid}: closed (" in m for m in logged), sid
    assert _decoder_threads() == []
    with anyio.move_on_after(2):  # aiortc's last callbacks finish after close() returns
        while [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()]:
            await anyio.sleep(0.05)
    assert [t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()] == []


@needs_aiortc
@pytest.mark.anyio
async def test_whip_delete_ends_the_session(echo_yaml, monkeypatch, caplog):
    """The answer's Location is an unguessable session resource; DELETE ends it (`deleted`), with the token and Origin rules."""
    from processors.web.server import web_server
    from processors.webrtc.client import PeerClient, delete_session

    monkeypatch.delenv("VOXPIPE_TOKEN", raising=False)
    caplog.set_level(logging.INFO, logger="voxpipe.webrtc")
    with anyio.fail_after(40):
        async with web_server(echo_yaml(), token="s3cret", stop_timeout_s=1.0) as srv:
            url = srv.url + "webrtc/offer?token=s3cret"
            async with PeerClient.connect(url) as peer, PeerClient.connect(url) as other:
                await peer.wait_event("ready", timeout=10)
                await other.wait_event("ready", timeout=10)
                loc, other_loc = peer.location, other.location
                assert loc.startswith("/webrtc/session/") and other_loc.startswith("/webrtc/session/")
                rid = loc.rsplit("/", 1)[1]
                assert len(rid) >= 24 and rid != other_loc.rsplit("/", 1)[1]  # random, not a counter
                status, _, body = await delete_session(srv.url + "webrtc/offer", loc)  # no token
                assert status == 401 and "token" in body
                status, _, body = await delete_session(url, loc, origin="http://evil.example")
                assert status == 403
                status, _, body = await delete_session(url, "/webrtc/session/" + "x" * 24)
                assert status == 404 and "no such WebRTC session" in body
                status, _, body = await _get(srv.url + loc.lstrip("/") + "?token=s3cret")  # a GET of it
                assert status == 405
                status, body = await _request(srv.url, "DELETE /webrtc/offer?token=s3cret HTTP/1.1")
                assert status == 405  # DELETE is taken only under /webrtc/session/
                assert len(srv.webrtc.sessions) == 2 and not srv.webrtc.reasons
                assert await peer.delete() == 200
                end = await peer.wait_event("session.end", timeout=5)
                assert end["reason"] == "deleted"
                with anyio.fail_after(10):
                    while len(srv.webrtc.sessions) > 1:
                        await anyio.sleep(0.05)
                assert list(srv.webrtc.reasons.values()) == ["deleted"]
                assert await peer.delete() == 404  # gone: its resource with it
                assert other.location in {"/webrtc/session/" + s.resource for s in srv.webrtc.sessions.values()}
    logged = [r.getMessage() for r in caplog.records]
    assert any("ending (deleted:" in m for m in logged)


async def _request(base: str, line: str) -> tuple[int, str]:
    """Send one raw request line (with Host, no body); returns the status and body."""
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    stream = await anyio.connect_tcp(parts.hostname, parts.port)
    async with stream:
        await stream.send(f"{line}\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        with anyio.move_on_after(5):
            try:
                while chunk := await stream.receive():
                    data += chunk
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()
