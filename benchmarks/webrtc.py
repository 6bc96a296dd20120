"""WebRTC transport: mouth-to-ear beside the websocket, CPU per session beside the raw Opus floor, sessions per process.

Questions and how each is measured, all on loopback, in one run:

1. **Mouth-to-ear.** The user's speech ends at the client -> the first voiced assistant
   sample would play at the client (the arrival of the decoded frame, or websocket message,
   holding it, plus its offset in it), for the same question ("hello") to the same local engine
   (``url: local``, in this process), over WebRTC (``pipelines/webrtc_agent.yaml``, an
   aiortc :class:`~processors.webrtc.client.PeerClient`: Opus both ways, its jitter buffer)
   and over the websocket (``pipelines/web_agent.yaml``, a websocket client sending 20 ms
   PCM16 frames at real time, as the page does); both clients talk after 0.5 s of silence.
   "Speech ends" is when the last speech frame leaves the client's paced sender; both
   include the server VAD's 500 ms of silence. Each turn is also traced stage by stage
   (:class:`StageTrace`: VAD decided, transcript, first delta, sent, RTP out, heard; the
   recognition thread's wall and CPU time, and the same audio recognised again alone). The
   browser adds its own playout buffer to either (the page's worklet prebuffers 80 ms;
   Chromium's NetEq adapts, typically 40-80 ms on loopback): not counted here.
2. **Sessions per process.** This process serves an echo graph (``transport.webrtc.input
   -> transport.webrtc.output``: every session decodes the peer's Opus, runs the graph and
   encodes Opus back, 50 frames a second each way); a second process runs N talking aiortc
   peers. For each N: this process's event loop lag (a 10 ms sleep's lateness) p50/p99 over
   the steady window, and the largest N with p99 < 20 ms.
3. **CPU per session.** This process's CPU time (all threads: aiortc decodes on a thread per
   receiver and encodes on the default executor) over the steady window, per session,
   beside the floor: one raw Opus decode plus one encode of a 20 ms frame through the same
   PyAV calls aiortc makes, 50 times a second.

Run: ``python benchmarks/webrtc.py [--quick] [--only m2e|capacity] [--reps N] [--trace] [--steps 1,4,8,16]
[--json FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

__all__ = ["main"]

ECHO = """\
voxpipe: 1
name: webrtc-echo
processors:
  mic: {type: transport.webrtc.input, params: {media_timeout_s: 30}}
  out: {type: transport.webrtc.output}
links:
  - mic -> out
"""


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _voice(n: int, seed: int) -> np.ndarray:
    """A voice-like 48 kHz signal: a 140 Hz harmonic buzz with a syllable envelope and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 48000
    buzz = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.15 * buzz * env + 0.01 * rng.standard_normal(n)).astype(np.float32)


# --- 1. mouth-to-ear ------------------------------------------------------------------------------


#: The stages of a turn, in order: (key, what), each a perf_counter time in this process.
STAGES = (("speech_in", "the last loud frame of the question reached the model client (inbound transport)"),
          ("vad", "the server's VAD decided the turn ended (realtime server)"),
          ("vad_out", "speech.stopped reached the output transport"),
          ("transcript", "the user's transcript reached the output transport"),
          ("delta", "the answer's first audio reached the output transport"),
          ("sent", "its first samples left for the wire (WebRTC: encoded, handed to aiortc; websocket: sent)"),
          ("rtp", "WebRTC: the first RTP packet carrying them was sent"),
          ("heard", "the first answer sample decoded at the client"))


class StageTrace:
    """Times each stage of one turn after ``armed`` (perf_counter), by wrapping the parts in this process.

    The client, the server and the local engine share this process and clock, so every
    stage is comparable: the same hooks for both transports, except ``sent`` / ``rtp``.
    Only the first occurrence after :meth:`arm` counts.
    """

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.armed: float | None = None
        self._undo: list = []
        self.heard: list = []  # (SpeechResources, _recognize_sync's arguments) of each traced turn

    def arm(self, t_end: float) -> None:
        self.armed, self.t = t_end, {}

    def hit(self, key: str) -> None:
        if self.armed is not None and key not in self.t:
            self.t[key] = time.perf_counter()

    def stages_ms(self) -> dict[str, float]:
        if self.armed is None:
            return {}
        return {k: 1000 * (v if k.startswith("recognize") else v - self.armed) for k, v in self.t.items()}  # ms

    def _patch(self, owner, name: str, make) -> None:
        old = getattr(owner, name)
        setattr(owner, name, make(old))
        self._undo.append((owner, name, old))

    def __enter__(self) -> StageTrace:
        from pipeline.frames import AudioFrame, Direction, TranscriptionFrame, UserStoppedSpeakingFrame
        from processors.realtime.client.client import OpenAIRealtime
        from processors.realtime.server.engine import SpeechResources
        from processors.realtime.server.turns import TurnDetector
        from processors.web.session import WebSession
        from processors.web.transport import WebsocketOutput
        from processors.webrtc.transport import WebRTCOutput

        hit = self.hit

        def turns(old):
            def process(detector, samples):
                out = old(detector, samples)
                if any(kind == "stop" for kind, _ in out):
                    hit("vad")
                return out
            return process

        def output(old):
            async def process(proc, frame, direction):
                if isinstance(frame, UserStoppedSpeakingFrame):
                    hit("vad_out")
                elif isinstance(frame, TranscriptionFrame) and frame.role == "user" and frame.final:
                    hit("transcript")
                elif isinstance(frame, AudioFrame) and direction is Direction.DOWNSTREAM and frame.turn > 0:
                    hit("delta")
                return await old(proc, frame, direction)
            return process

        def ws_audio(old):
            async def send_audio(session, pcm, **kw):
                hit("sent")
                return await old(session, pcm, **kw)
            return send_audio

        def recognize(old):
            def recognize_sync(resources, *args, **kw):  # runs in a worker thread (url: local, processes=0)
                w0, c0 = time.perf_counter(), time.thread_time()
                try:
                    return old(resources, *args, **kw)
                finally:
                    if self.armed is not None and "recognize_wall" not in self.t:
                        self.t["recognize_wall"] = time.perf_counter() - w0  # durations (s), not times
                        self.t["recognize_cpu"] = time.thread_time() - c0
                        self.heard.append((resources, args))  # to hear the same audio again, alone
                        self.t["recognize_audio"] = args[1].shape[0] / args[2]  # seconds of audio heard
            return recognize_sync

        def model_in(old):
            async def process(proc, frame, direction):
                if isinstance(frame, AudioFrame) and direction is Direction.DOWNSTREAM and self.armed is not None \
                        and "vad" not in self.t and frame.samples.shape[0] and int(np.abs(frame.samples).max()) > 300:
                    self.t["speech_in"] = time.perf_counter()  # the last one before the VAD decided
                return await old(proc, frame, direction)
            return process

        self._patch(OpenAIRealtime, "process", model_in)
        self._patch(SpeechResources, "_recognize_sync", recognize)
        self._patch(TurnDetector, "process", turns)
        self._patch(WebRTCOutput, "process", output)
        self._patch(WebsocketOutput, "process", output)
        self._patch(WebSession, "send_audio", ws_audio)
        return self

    def watch_webrtc(self, session) -> None:
        """Hook one server PeerSession: the first voiced frame handed to aiortc, the first RTP after it."""
        track, hit = session.track, self.hit
        recv = track.recv

        playout = session.playout

        async def traced_recv():
            before = playout.sent_samples
            packet = await recv()
            if self.armed is not None and "delta" in self.t and playout.sent_samples > before:
                hit("sent")  # the first frame holding answer audio, encoded and handed to aiortc
            return packet

        track.recv = traced_recv
        dtls = session.sender.transport
        send_rtp = dtls._send_rtp

        async def traced_send(data: bytes):
            if "sent" in self.t:
                hit("rtp")
            return await send_rtp(data)

        dtls._send_rtp = traced_send

    def __exit__(self, *exc) -> None:
        for owner, name, old in reversed(self._undo):
            setattr(owner, name, old)
        self._undo.clear()


async def _peer_turn(url: str, phase: int, on_ready=None) -> tuple[float, float]:
    """One WebRTC turn from a PeerClient: ``(speech end, first voiced sample)``, perf_counter times."""
    from speech_fixtures import utterance

    from processors.webrtc.client import PeerClient

    speech48 = utterance("hello", 48000)
    async with PeerClient.connect(url) as peer:
        await peer.wait_event("ready", timeout=20)
        if on_ready is not None:
            on_ready()
        await asyncio.sleep(0.5)
        # start the speech on a frame whose index is `phase` mod 3 of the stream (see mouth_to_ear)
        frame = (peer.mic.position + peer.mic.queued) // 960
        peer.say(np.zeros(960 * ((phase - frame) % 3), np.int16))
        peer.say(speech48)
        while peer.mic.queued:
            await asyncio.sleep(0.002)
        t_end = time.perf_counter()
        peer.mark()
        deadline = t_end + 20
        while peer.first_voice_at is None and time.perf_counter() < deadline:
            await asyncio.sleep(0.002)
        if peer.first_voice_at is None:
            raise RuntimeError("no answer over WebRTC")
        return t_end, peer.first_voice_at


async def _webrtc_turn(srv, trace: StageTrace, phase: int, *, peer_process: bool = False) -> float:
    """A turn over WebRTC; the client in this process, or (``peer_process``) in another one.

    In another process its aiortc stack (encode, SRTP, decode thread) does not share this
    process's GIL with the server's and the recogniser. perf_counter is CLOCK_MONOTONIC, one
    clock for every process of the machine, so the times stay comparable.
    """
    url = srv.url + "webrtc/offer"

    def watch() -> None:
        for session in srv.webrtc.sessions.values():
            trace.watch_webrtc(session)

    if not peer_process:
        trace.arm(0.0)  # every stage counts from the start; the reference is set below
        t_end, heard = await _peer_turn(url, phase, watch)
    else:
        proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--m2e-peer", url, "--phase", str(phase),
                                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            with_deadline = time.perf_counter() + 30
            while not srv.webrtc.sessions and time.perf_counter() < with_deadline:
                await asyncio.sleep(0.005)
            watch()
            trace.arm(0.0)
            out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        lines = out.decode().strip().splitlines()
        if not lines:
            raise RuntimeError("the peer process gave no answer over WebRTC")
        t_end, heard = json.loads(lines[-1])
    trace.armed = t_end
    trace.t = {k: v for k, v in trace.t.items() if k.startswith("recognize") or v >= t_end or k == "speech_in"}
    trace.t["heard"] = heard
    return 1000 * (heard - t_end)


async def _websocket_turn(ws_url: str, speech24: np.ndarray, trace: StageTrace, phase: int) -> float:
    from websockets.asyncio.client import connect

    from pipeline.dsp import to_int16

    frame = 480
    pcm = to_int16(speech24)  # padded to whole frames, as the WebRTC client's mic stream is (and a page's):
    pcm = np.concatenate([pcm, np.zeros(-pcm.shape[0] % frame, np.int16)])  # a short last one shifts every later frame
    async with connect(ws_url, max_size=None) as ws:
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready" and ready["input_rate"] == 24000, ready
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        sent = 0
        t_end = None
        first = None
        silence = np.zeros(frame, np.int16).tobytes()
        # 0.5 s of silence first, as the WebRTC client has (it talks 0.5 s after `ready`): without
        # it the server VAD's 300 ms prefix padding finds nothing before the speech, and the
        # websocket's turn is 0.29 s shorter to recognise (48 instead of 68 ms of pocketsphinx)
        lead = np.zeros(frame, np.int16)
        chunks = [lead] * (24 + (phase - 24) % 3) + [pcm[i:i + frame] for i in range(0, len(pcm), frame)]
        total = len(chunks) + 50 * 20

        async def reader() -> None:
            nonlocal first
            async for message in ws:
                if isinstance(message, bytes) and t_end is not None and first is None:
                    x = np.frombuffer(message, "<i2")
                    loud = np.flatnonzero(np.abs(x) > 300)
                    if loud.size:  # as the WebRTC client: when that sample plays if the message plays on arrival
                        first = time.perf_counter() + loud[0] / 24000
                        return

        task = asyncio.ensure_future(reader())
        try:
            while sent < total and first is None:
                due = t0 + sent * 0.02
                await asyncio.sleep(max(0.0, due - loop.time()))
                await ws.send(chunks[sent].tobytes() if sent < len(chunks) else silence)
                sent += 1
                if sent == len(chunks):
                    t_end = time.perf_counter()
                    trace.arm(t_end)
        finally:
            task.cancel()
        if first is None:
            raise RuntimeError("no answer over the websocket")
        trace.t["heard"] = first
        return 1000 * (first - t_end)


async def mouth_to_ear(reps: int, *, peer_process: bool = False) -> tuple[dict, dict]:
    """Mouth-to-ear per transport (ms, one per repetition), and each repetition's stage times (ms after speech end)."""
    from speech_fixtures import utterance

    from processors.web.server import web_server

    os.environ.pop("VOXPIPE_REALTIME_URL", None)
    out: dict[str, list[float]] = {"webrtc": [], "websocket": []}
    stages: dict[str, list[dict[str, float]]] = {"webrtc": [], "websocket": []}
    # realtime.openai sends the user's audio in 60 ms appends (append_ms), so the server's VAD
    # decides up to 40 ms after the frame that ends the turn, by where the speech falls on
    # that 60 ms grid: repetition r starts the speech on a frame whose index is r mod 3 (of
    # the stream both sides count from the first frame), on both transports alike
    with StageTrace() as trace:
        for r in range(reps):
            async with web_server(ROOT / "pipelines" / "webrtc_agent.yaml") as srv:
                out["webrtc"].append(await _webrtc_turn(srv, trace, r % 3, peer_process=peer_process))
                stages["webrtc"].append(trace.stages_ms())
            async with web_server(ROOT / "pipelines" / "web_agent.yaml") as srv:
                out["websocket"].append(await _websocket_turn(srv.ws_url, utterance("hello", 24000), trace, r % 3))
                stages["websocket"].append(trace.stages_ms())
    alone = recognize_alone(trace.heard)  # webrtc, websocket, webrtc, ... (a turn with no recognition: none)
    if len(alone) == 2 * reps:
        for k, ms in enumerate(alone):
            stages["webrtc" if k % 2 == 0 else "websocket"][k // 2]["recognize_alone_cpu"] = ms
    return out, stages


def print_steps(stages: dict[str, list[dict[str, float]]]) -> None:
    """The medians of each run's own steps (robust where the medians of the times are not), WebRTC beside websocket."""
    spans = (("inbound", None, "speech_in"), ("VAD", "speech_in", "vad"), ("VAD -> output", "vad", "vad_out"),
             ("recognition", "vad_out", "transcript"), ("first delta", "transcript", "delta"),
             ("to the wire", "delta", "sent"), ("wire -> heard", "sent", "heard"))
    print("\nper step, median of each run's own step, ms")
    print(f"{'step':<14} {'webrtc':>8} {'websocket':>10} {'diff':>7}")
    for label, a, b in spans:
        cells = []
        for name in ("webrtc", "websocket"):
            xs = [r[b] - (r[a] if a else 0.0) for r in stages[name] if b in r and (a is None or a in r)]
            cells.append(float(np.median(xs)) if xs else float("nan"))
        print(f"{label:<14} {cells[0]:8.1f} {cells[1]:10.1f} {cells[0] - cells[1]:+7.1f}")


def recognize_alone(heard: list, repeats: int = 3) -> list[float]:
    """Thread CPU (ms) to recognise each traced turn's audio again, with nothing else running: median of ``repeats``."""
    out = []
    for resources, args in heard:
        cpu = []
        for _ in range(repeats):
            c0 = time.thread_time()
            resources._recognize_sync(*args)
            cpu.append(1000 * (time.thread_time() - c0))
        out.append(float(np.median(cpu)))
    return out


def print_stages(stages: dict[str, list[dict[str, float]]]) -> None:
    """Median time of each stage after speech end, per transport, and the step from the stage before."""
    print("\nper stage, ms after speech end at the client (median over runs; step = from the stage before)")
    print(f"{'stage':<11} {'webrtc':>8} {'step':>7} {'websocket':>10} {'step':>7}  what")
    last = {"webrtc": 0.0, "websocket": 0.0}
    for key, what in STAGES:
        cells = []
        for name in ("webrtc", "websocket"):
            xs = [r[key] for r in stages[name] if key in r]
            if xs:
                m = float(np.median(xs))
                cells.append(f"{m:8.1f} {m - last[name]:+7.1f}" if name == "webrtc" else f"{m:10.1f} {m - last[name]:+7.1f}")
                last[name] = m
            else:
                cells.append(f"{'-':>8} {'':>7}" if name == "webrtc" else f"{'-':>10} {'':>7}")
        print(f"{key:<11} {cells[0]} {cells[1]}  {what}")
    for name in ("webrtc", "websocket"):
        wall = [r["recognize_wall"] for r in stages[name] if "recognize_wall" in r]
        cpu = [r["recognize_cpu"] for r in stages[name] if "recognize_cpu" in r]
        alone = [r["recognize_alone_cpu"] for r in stages[name] if "recognize_alone_cpu" in r]
        if wall:
            print(f"recognition thread, {name}: wall {np.median(wall):.1f} ms, its own CPU {np.median(cpu):.1f} ms "
                  f"(median): {np.median(wall) - np.median(cpu):.1f} ms waiting for the GIL or a core"
                  + (f"; the same audio recognised again alone: {np.median(alone):.1f} ms CPU" if alone else ""))


# --- 2. and 3. sessions per process, CPU per session ----------------------------------------------


def codec_floor_ms(frames: int = 500) -> float:
    """Raw Opus decode + encode of one 20 ms frame (ms), through the PyAV calls aiortc makes."""
    import av
    from aiortc.codecs.opus import OpusDecoder, OpusEncoder
    from aiortc.jitterbuffer import JitterFrame

    enc, dec = OpusEncoder(), OpusDecoder()
    x = (32767 * _voice(960 * frames, 1)).astype(np.int16)
    packets = []
    for k in range(frames):  # the packets to decode, made beforehand
        f = av.AudioFrame.from_ndarray(x[k * 960:(k + 1) * 960].reshape(1, -1), format="s16", layout="mono")
        f.sample_rate, f.pts, f.time_base = 48000, k * 960, fractions.Fraction(1, 48000)
        packets += enc.encode(f)[0]
    enc2 = OpusEncoder()
    t = time.process_time()
    for k in range(frames):
        f = av.AudioFrame.from_ndarray(x[k * 960:(k + 1) * 960].reshape(1, -1), format="s16", layout="mono")
        f.sample_rate, f.pts, f.time_base = 48000, k * 960, fractions.Fraction(1, 48000)
        enc2.encode(f)
        dec.decode(JitterFrame(packets[k % len(packets)], k * 960))
    return 1000 * (time.process_time() - t) / frames


async def _clients_main(url: str, n: int, seconds: float) -> None:
    """The peer process: n talking clients for ``seconds``; prints what they received."""
    from processors.webrtc.client import PeerClient

    received: list[int] = []

    async def one(i: int) -> None:
        async with PeerClient.connect(url, seed=i) as peer:
            await peer.wait_event("ready", timeout=30)
            peer.say(_voice(int(48000 * seconds), i))
            await asyncio.sleep(seconds)
            received.append(peer.received_samples)

    await asyncio.gather(*(one(i) for i in range(n)))
    print(json.dumps({"received_s": [r / 48000 for r in received]}), flush=True)


async def capacity_step(n: int, seconds: float) -> dict:
    from processors.web.server import web_server

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "echo.yaml"
        path.write_text(ECHO)
        async with web_server(path, max_sessions=max(16, n + 1)) as srv:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client", srv.url + "webrtc/offer", "--clients", str(n),
                "--seconds", str(seconds), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            try:
                with_all = time.perf_counter() + 60
                while len(srv.webrtc.sessions) < n or any(s.connected_at is None for s in srv.webrtc.sessions.values()):
                    if time.perf_counter() > with_all:
                        raise RuntimeError(f"only {len(srv.webrtc.sessions)} of {n} peers connected")
                    await asyncio.sleep(0.05)
                await asyncio.sleep(1.0)  # settle: every peer talking
                lag: list[float] = []
                cpu0, t0 = _cpu(), time.perf_counter()
                window = max(2.0, seconds - 3.0)
                while time.perf_counter() - t0 < window:
                    t = time.perf_counter()
                    await asyncio.sleep(0.01)
                    lag.append(time.perf_counter() - t - 0.01)
                cpu, wall = _cpu() - cpu0, time.perf_counter() - t0
                frames = sum(s.media_frames for s in srv.webrtc.sessions.values())
                out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 60)
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    lag_ms = np.array(lag) * 1000
    got = json.loads(out.decode().strip().splitlines()[-1])["received_s"] if out.strip() else []
    return {"sessions": n, "lag_p50_ms": float(np.percentile(lag_ms, 50)), "lag_p99_ms": float(np.percentile(lag_ms, 99)),
            "cpu_per_session_pct": 100 * cpu / wall / n, "process_cpu_pct": 100 * cpu / wall,
            "frames_in": frames, "echo_received_s_min": min(got) if got else 0.0}


def report_m2e(m2e: dict, stages: dict, *, trace: bool = False) -> None:
    print(f"\nmouth-to-ear on loopback (speech end at the client -> first answer sample decoded at the client), ms; "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'transport':<10} {'median':>8} {'min':>8} {'max':>8}  runs")
    for name, xs in m2e.items():
        print(f"{name:<10} {np.median(xs):8.1f} {min(xs):8.1f} {max(xs):8.1f}  {len(xs)}")
    diff = float(np.median(m2e["webrtc"]) - np.median(m2e["websocket"]))
    pairs = np.array(m2e["webrtc"]) - np.array(m2e["websocket"])  # repetition r of each: the same 60 ms phase
    print(f"webrtc - websocket: {diff:+.1f} ms (difference of the medians); run by run (same phase): median "
          f"{np.median(pairs):+.1f}, mean {pairs.mean():+.1f}, min {pairs.min():+.1f}, max {pairs.max():+.1f} ms")
    print_stages(stages)
    print_steps(stages)
    if trace:
        for name, runs in stages.items():
            for k, r in enumerate(runs):
                print(f"{name} run {k + 1}: " + ", ".join(f"{key} {r[key]:.1f}" for key in
                                                          [*(k for k, _ in STAGES), "recognize_wall", "recognize_cpu",
                                                           "recognize_alone_cpu", "recognize_audio"]
                                                          if key in r))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and steps, shorter windows")
    ap.add_argument("--steps", default=None, help="session counts, e.g. 1,4,8,16")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--only", choices=("m2e", "capacity"), default=None, help="run only mouth-to-ear or only capacity")
    ap.add_argument("--reps", type=int, default=None, help="mouth-to-ear repetitions per transport (default 5, --quick 2)")
    ap.add_argument("--ab-encode", action="store_true", help="capacity: each step twice, the server's tracks "
                    "encoding Opus themselves (the default) and handing aiortc raw frames (its encoder, on its thread pool)")
    ap.add_argument("--trace", action="store_true", help="print each repetition's stage times, not only the medians")
    ap.add_argument("--peer-process", action="store_true", help="mouth-to-ear: run the WebRTC client in another "
                    "process (its aiortc stack off this process's GIL)")
    ap.add_argument("--m2e-peer", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--phase", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--client", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--clients", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.ERROR)
    if args.m2e_peer:
        print(json.dumps(asyncio.run(_peer_turn(args.m2e_peer, args.phase))), flush=True)
        return 0
    if args.client:
        asyncio.run(_clients_main(args.client, args.clients, args.seconds))
        return 0
    steps = [int(s) for s in args.steps.split(",")] if args.steps else ([1, 4, 8] if args.quick else [1, 2, 4, 8, 12, 16])
    seconds = 8.0 if args.quick else 12.0
    reps = args.reps or (2 if args.quick else 5)

    m2e, stages = asyncio.run(mouth_to_ear(reps, peer_process=args.peer_process)) if args.only in (None, "m2e") else ({}, {})
    if m2e:
        report_m2e(m2e, stages, trace=args.trace)
    if args.only == "m2e":
        if args.json:
            Path(args.json).write_text(json.dumps({"mouth_to_ear_ms": m2e, "stages_ms": stages,
                                                   "load": os.getloadavg()}, indent=1))
        return 0
    floor = codec_floor_ms()
    floor_pct = floor * 50 / 10  # ms per 20 ms frame -> % of one core (50 frames/s)
    rows = []
    print("\nsessions per process (echo graph: Opus decode + graph + Opus encode per session; peers in another process)")
    print(f"{'sessions':>8} {'lag p50 ms':>10} {'lag p99 ms':>10} {'CPU/session %':>14} {'floor %':>8} {'ratio':>6} "
          f"{'process CPU %':>13}")
    from processors.webrtc.session import OutboundTrack

    for n in steps:
        for encode in ((True, False) if args.ab_encode else (True,)):
            OutboundTrack.ENCODE = encode  # this process's (the server's) tracks only
            r = asyncio.run(capacity_step(n, seconds))
            r["floor_pct"], r["track_encodes"] = floor_pct, encode
            rows.append(r)
            label = f"{n:>8}" + ("" if not args.ab_encode else " track" if encode else " aiortc")
            print(f"{label} {r['lag_p50_ms']:10.1f} {r['lag_p99_ms']:10.1f} {r['cpu_per_session_pct']:14.2f} "
                  f"{floor_pct:8.2f} {r['cpu_per_session_pct'] / floor_pct:6.1f} {r['process_cpu_pct']:13.1f}")
        OutboundTrack.ENCODE = True
        if r["lag_p99_ms"] >= 20 and n != steps[-1] and not args.ab_encode:
            print("(p99 passed 20 ms: stopping)")
            break
    ok = [r["sessions"] for r in rows if r["lag_p99_ms"] < 20 and r["track_encodes"]]
    print(f"\nsessions per process with loop lag p99 < 20 ms: {max(ok) if ok else 0} (of steps {sorted({r['sessions'] for r in rows})})")
    print(f"raw Opus decode + encode floor: {floor:.3f} ms per 20 ms frame = {floor_pct:.2f} % of a core per session")
    if args.json:
        import aiortc
        import av

        Path(args.json).write_text(json.dumps({
            "mouth_to_ear_ms": m2e, "stages_ms": stages, "capacity": rows, "codec_floor_ms_per_frame": floor,
            "versions": {"python": platform.python_version(), "aiortc": aiortc.__version__, "av": av.__version__},
            "load": os.getloadavg()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
