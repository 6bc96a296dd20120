"""audio.aec: echo cancellation measured on a synthetic conversation through a simulated room.

The scene (tests/quality_fixtures.py): eSpeak assistant lines played through a room impulse
response (exponentially decaying noise, RT60 300 ms) after a 30-120 ms delay, a second eSpeak
voice for the user (answering, or barging in over the assistant), white noise at -65 dBFS.
Figures: ERLE on far-end-only audio after 5 s, false barge-ins (energy-VAD starts not caused
by the user) with and without AEC, true barge-ins detected, user level change.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import numpy as np
import pytest

from pipeline.frames import AudioFrame, Direction, TextFrame
from pipeline.processor import Processor

from quality_fixtures import db, echo_conversation, to_int16, vad_starts
from test_devices_jack import jack_server  # noqa: F401  (the JACK dummy server fixture)

pytest.importorskip("pywebrtc_audio")

from pipeline.dsp.aec import EchoCanceller  # noqa: E402
from processors.audio.echo import EchoCancellerProcessor  # noqa: E402

_DOWN = Direction.DOWNSTREAM


@dataclass
class EchoFigures:
    erle_db: float
    false_without: int
    false_with: int
    barge_ins: int
    barge_ins_with: int
    barge_ins_without: int
    user_level_db: list[float]


def cancel(scene, *, frame_ms: float = 20.0) -> np.ndarray:
    """Run the capture through EchoCanceller in frames, reference first, like a live graph."""
    rate = scene.rate
    mic, far = to_int16(scene.mic), to_int16(scene.far)
    aec = EchoCanceller(rate, dtype=np.int16)
    n = int(rate * frame_ms / 1000)
    out = []
    for i in range(0, mic.shape[0] - n + 1, n):
        aec.reference(far[i : i + n])
        out.append(aec.process(mic[i : i + n]))
    out.append(aec.flush())
    y = np.concatenate(out).astype(np.float32) / 32768.0
    return y


def measure(scene, out: np.ndarray) -> EchoFigures:
    rate = scene.rate
    mic = to_int16(scene.mic).astype(np.float32) / 32768.0
    n = min(out.shape[0], mic.shape[0])
    out, mic = out[:n], mic[:n]
    user_busy = np.zeros(n, bool)
    for a, b in scene.user:
        user_busy[max(0, a - rate // 10) : b + rate // 5] = True
    echo_on = np.zeros(n, bool)
    for a, b in scene.assistant:
        echo_on[a + scene.delay : b + scene.delay] = True
    far_only = echo_on & ~user_busy
    far_only[: 5 * rate] = False  # after convergence
    erle = 10 * np.log10(np.sum(mic[far_only].astype(np.float64) ** 2) / np.sum(out[far_only].astype(np.float64) ** 2))

    def caused_by_user(p):
        return any(a - rate // 10 <= p <= b + rate // 5 for a, b in scene.user)

    def barge_hits(starts):
        return sum(any(scene.user[i][0] - rate // 20 <= p <= scene.user[i][0] + rate // 2 for p in starts)
                   for i in scene.barge_ins)

    frame = rate // 50
    raw = vad_starts(mic, rate, frame, silence_duration_ms=500)
    cleaned = vad_starts(out, rate, frame, silence_duration_ms=500)
    levels = [db(out[a:b]) - db(scene.user_clean[a:b])
              for i, (a, b) in enumerate(scene.user) if i not in scene.barge_ins]
    return EchoFigures(float(erle), sum(not caused_by_user(p) for p in raw), sum(not caused_by_user(p) for p in cleaned),
                       len(scene.barge_ins), barge_hits(cleaned), barge_hits(raw), levels)


# --- the DSP core --------------------------------------------------------------------------


def test_aec_conversation_16k_quality():
    """45 s at 16 kHz, 80 ms echo delay: ERLE >= 25 dB, no false barge-in, every barge-in heard, user level within 1 dB."""
    scene = echo_conversation(45.0, 16000, delay_ms=80.0)
    f = measure(scene, cancel(scene))
    assert f.barge_ins >= 2
    assert f.erle_db >= 25.0, f
    assert f.false_without >= 4, f  # the problem is real: the raw microphone starts false turns
    assert f.false_with == 0, f
    assert f.barge_ins_with == f.barge_ins, f
    assert max(abs(x) for x in f.user_level_db) <= 1.0, f


@pytest.mark.slow
@pytest.mark.parametrize("rate, delay_ms, max_false, min_barge", [
    # measured (5 min): ERLE 42.9 dB, 0 false, 17/19 barge-ins: AEC3's suppressor holds the user
    # 20+ dB down at the onset of two barge-ins, detected 0.64-0.68 s late (without the residual
    # gate: ERLE 34.1 dB, 5 false, 16/19)
    (16000, 30.0, 1, 0.78),
    # measured (5 min, AEC3 at 32 kHz): ERLE 53.3 dB, 0 false, 19/19 barge-ins (at 48 kHz: 54.7 dB, 0,
    # 19/19; without the gate: 38.8 dB, 0, 19/19)
    (24000, 120.0, 1, 0.94),
    # measured (5 min): ERLE 44.1 dB, 0 false, 19/19 barge-ins (without the gate: 39.5 dB, 0, 19/19)
    (48000, 60.0, 1, 0.94),
    # measured (5 min): ERLE 41.5 dB, 0 false, 19/19 barge-ins (without the gate: 36.2 dB, 2, 19/19)
    (48000, 30.0, 1, 0.94),
])
def test_aec_five_minute_conversation(rate, delay_ms, max_false, min_barge):
    """Five minutes of conversation: the honest figures per rate and delay, bounded one event past the measured.

    eSpeak's output differs a little from run to run (ERLE 38.81 vs 38.86 dB for the same case),
    and one false start or one late barge-in more than measured was seen under load: the bounds
    allow exactly that one.
    """
    scene = echo_conversation(300.0, rate, delay_ms=delay_ms)
    f = measure(scene, cancel(scene))
    print(f"\n{rate} Hz, {delay_ms:.0f} ms: {f}")
    assert f.erle_db >= 25.0, f
    assert f.false_without >= 30, f
    assert f.false_with <= max_false, f
    assert f.barge_ins_with >= min_barge * f.barge_ins, f
    assert f.barge_ins_without < f.barge_ins_with, f
    assert max(abs(x) for x in f.user_level_db) <= 1.0, f


def test_residual_gate_cuts_residual_echo_and_keeps_the_user():
    """Far end playing: a block 30 dB under the capture is cut 30 dB, one within 3 dB passes; idle: untouched."""
    from pipeline.dsp.aec import ResidualGate

    rng = np.random.default_rng(3)
    capture = to_int16(0.1 * rng.standard_normal(320).astype(np.float32))
    far = to_int16(0.1 * rng.standard_normal(320).astype(np.float32))
    silent = np.zeros(320, np.int16)
    gate = ResidualGate(16000, gate_db=10.0)
    residual = (capture // 32).astype(np.int16)  # about -30 dB: what AEC3 lets through of an echo
    out = residual.copy()
    gate.apply(capture, out, far)
    assert db(out.astype(np.float32)) < db(residual.astype(np.float32)) - 25
    user = (capture // 2).astype(np.int16)  # -6 dB: the user talking over the echo
    out = user.copy()
    gate.apply(capture, out, far)
    assert np.array_equal(out, user)
    # the far end stopped: still gated through the 500 ms tail, then never again
    for _ in range(24):
        out = residual.copy()
        gate.apply(capture, out, silent)
        assert not np.array_equal(out, residual)
    for _ in range(3):
        out = residual.copy()
        gate.apply(capture, out, silent)
    assert np.array_equal(out, residual)
    assert gate.gated == (1 + 25) * 320  # the first block and 500 ms of tail


@pytest.mark.parametrize("rate", [16000, 24000, 48000, 8000])
def test_aec_any_chunk_sizes_keep_length_and_alignment(rate):
    """Chunks of 7 ms, 17 samples or 33 ms come out as the same stream: same total length, no shift."""
    rng = np.random.default_rng(1)
    x = to_int16(0.05 * rng.standard_normal(rate // 2).astype(np.float32))
    outs = []
    for sizes in ([rate * 7 // 1000], [17], [rate * 33 // 1000]):
        aec = EchoCanceller(rate, dtype=np.int16)
        zero = np.zeros_like(x)
        parts, i, k = [], 0, 0
        while i < x.shape[0]:
            n = sizes[k % len(sizes)]
            aec.reference(zero[i : i + n])
            parts.append(aec.process(x[i : i + n]))
            i += n
            k += 1
        parts.append(aec.flush())
        y = np.concatenate(parts)
        assert y.shape == x.shape and y.dtype == np.int16
        outs.append(y)
    # with a silent reference AEC3 only high-passes: the streams agree with each other
    for y in outs[1:]:
        assert np.corrcoef(outs[0].astype(float), y.astype(float))[0, 1] > 0.99


def test_aec_whole_blocks_are_not_held():
    """20 ms frames at 16, 24 and 48 kHz: every frame comes out whole at once (no added latency at native rates)."""
    for rate in (16000, 48000):
        aec = EchoCanceller(rate)
        n = rate // 50
        x = np.zeros(n, np.int16)
        aec.reference(x)
        assert aec.process(x).shape == (n,)
        assert aec.delay == 0


def test_aec_silent_reference_reaches_aec3_as_faint_noise():
    """An all-zero reference block (or none: the reference ran dry) goes to AEC3 as +-1 LSB noise, never zeros.

    Zeros after speech drive AEC3's filter states subnormal and its cost up six-fold
    (pipeline/dsp/aec.py); the stand-in is below the residual gate's activity floor, so the
    gate stays idle, and the caller's reference array is left as it was.
    """
    for dtype, one in ((np.int16, 1), (np.float32, 1 / 32768)):
        aec = EchoCanceller(16000, dtype=dtype)
        seen = []
        run = aec._run

        def spy(x, ref, run=run, seen=seen):
            seen.append(ref.copy())
            return run(x, ref)

        aec._run = spy
        rng = np.random.default_rng(4)
        speech = (rng.standard_normal(320) * (3000 if dtype is np.int16 else 0.1)).astype(dtype)
        zeros = np.zeros(320, dtype)
        aec.reference(speech)
        aec.process(speech)
        aec.reference(zeros)
        aec.process(speech)
        aec.process(speech)  # nothing fed: the reference ran dry
        assert np.array_equal(seen[0], speech) and not zeros.any()
        for ref in seen[1:]:
            assert np.count_nonzero(ref) > 100 and np.abs(ref).max() <= one
        assert aec.reference_missing == 320
        quiet = EchoCanceller(16000, dtype=dtype)  # nothing ever played: the gate never acts
        for _ in range(50):
            quiet.reference(zeros)
            quiet.process(speech // 8 if dtype is np.int16 else speech / 8)
        assert quiet.gate.gated == 0


def test_aec_24k_runs_aec3_at_32k():
    """24 kHz goes through 32 kHz (the same band as 48 kHz, a third less AEC3 work); 8 kHz through 16 kHz."""
    from pipeline.dsp.aec import webrtc_rate

    assert [webrtc_rate(r) for r in (8000, 16000, 22050, 24000, 32000, 44100, 48000, 96000)] == [
        16000, 16000, 32000, 32000, 32000, 48000, 48000, 48000]
    assert EchoCanceller(24000).work_rate == 32000


def test_aec_capture_delay_holds_the_capture_back():
    """capture_delay_ms holds that much capture (reported in `delay`), flush releases it: same stream length."""
    aec = EchoCanceller(16000, capture_delay_ms=30.0)
    x = np.arange(16000, dtype=np.int16) % 1000
    out = []
    for i in range(0, 16000, 320):
        aec.reference(np.zeros(320, np.int16))
        out.append(aec.process(x[i : i + 320]))
    assert out[0].shape == (0,) and out[1].shape == (160,) and aec.delay == 480
    y = np.concatenate(out + [aec.flush()])
    assert y.shape == x.shape and aec.delay == 0


def test_aec_reference_bound_counts_what_it_drops():
    """A reference burst longer than max_reference_ms keeps the newest audio and counts the rest."""
    aec = EchoCanceller(16000, max_reference_ms=100.0)
    aec.reference(np.ones(16000 // 2, np.int16))
    assert aec.reference_dropped == 8000 - 1600
    aec.process(np.zeros(320, np.int16))
    assert aec.reference_missing == 0
    aec.process(np.zeros(1600, np.int16))
    assert aec.reference_missing == 320


@pytest.mark.anyio
@pytest.mark.parametrize("early", [2, 3, 4])
async def test_aec_capture_delay_pairs_by_arrival_whatever_reference_came_first(early):
    """With capture_delay_ms the pairing follows arrival, not which reference frame happened to come first.

    The JACK loopback's timing, as logged in test_aec_on_real_devices_...: capture frame k holds
    the echo of reference frame k + 3 and arrives with it. The 2-4 reference frames that come
    before the first capture (a start-up race; dropped, nothing to pair with) used to fix the
    pairing: after 2, every echo came 20 ms before its paired reference, which AEC3 cannot
    cancel (2.2 dB in 2 of 11 runs); the 80 ms hold only made the backlog deeper.
    """
    from pipeline.testing import run_frames
    from quality_fixtures import ASSISTANT_LINES, speech

    n, lead = 320, 3
    far = to_int16(np.concatenate([speech(t, 16000, "en-us", -20.0) for t in ASSISTANT_LINES[:2]]))
    count = far.shape[0] // n - lead
    mic = (far[lead * n : (count + lead) * n] // 2).astype(np.int16)  # a digital loopback, -6 dB
    frames: list = [(AudioFrame(far[j * n : (j + 1) * n], 16000, j * n), Direction.UPSTREAM) for j in range(early)]
    sent = early
    for k in range(count):
        frames.append(AudioFrame(mic[k * n : (k + 1) * n], 16000, k * n))
        for j in range(sent, k + lead + 1):  # the reference of this period, and any held back at the start
            frames.append((AudioFrame(far[j * n : (j + 1) * n], 16000, j * n), Direction.UPSTREAM))
        sent = max(sent, k + lead + 1)
    aec = EchoCancellerProcessor({"capture_delay_ms": 80.0})
    out = await run_frames(aec, frames)
    x, y = mic.astype(np.float64), out.audio().astype(np.float64)
    m = min(x.shape[0], y.shape[0]) // n * n
    ex = np.mean(x[:m].reshape(-1, n) ** 2, axis=1)
    ey = np.mean(y[:m].reshape(-1, n) ** 2, axis=1)
    loud = ex > (32768 * 10 ** (-45 / 20)) ** 2
    loud[: 3 * 50] = False  # after 3 s of convergence
    erle = 10 * np.log10(ex[loud].sum() / max(ey[loud].sum(), 1e-9))
    stats = aec.statistics()
    assert stats["reference_early"] == early
    assert loud.sum() > 100 and erle >= 25.0, (erle, stats)


def test_aec_rejects_wrong_types():
    """Float capture into an int16 canceller names both types."""
    aec = EchoCanceller(16000)
    with pytest.raises(TypeError, match="int16"):
        aec.process(np.zeros(160, np.float32))


# --- the processor -------------------------------------------------------------------------


class _Pushed:
    def __init__(self, proc: Processor):
        self.frames: list = []
        proc.push = self._push  # record at the boundary: what the processor sends on

    async def _push(self, frame, direction=_DOWN):
        self.frames.append((frame, direction))


@pytest.mark.anyio
async def test_aec_processor_takes_the_reference_from_its_link():
    """Frames from the `reference` link feed the canceller and stop there; capture comes out cleaned, same pts."""
    scene = echo_conversation(20.0, 24000, delay_ms=60.0)
    mic, far = to_int16(scene.mic), to_int16(scene.far)
    proc = EchoCancellerProcessor({"reference": "played"}, name="aec")
    pushed = _Pushed(proc)
    await proc.start()
    n = 480
    for i in range(0, mic.shape[0] - n + 1, n):
        await proc.process(AudioFrame(far[i : i + n], 24000, i), _DOWN, "played")
        await proc.process(AudioFrame(mic[i : i + n], 24000, i), _DOWN, "mic")
    await proc.process(TextFrame("hi"), _DOWN, "played")  # dropped: it reached the graph by its own path
    await proc.process(TextFrame("ok"), _DOWN, "mic")
    await proc.stop()
    audio = [f for f, _ in pushed.frames if isinstance(f, AudioFrame)]
    assert [type(f) for f, _ in pushed.frames if not isinstance(f, AudioFrame)] == [TextFrame]
    pts = [f.pts for f in audio]
    assert pts[0] == 0 and all(b.pts == a.pts + a.samples.shape[0] for a, b in zip(audio, audio[1:]))
    out = np.concatenate([f.samples for f in audio]).astype(np.float32) / 32768.0
    assert out.shape[0] == mic.shape[0] // n * n
    f = measure(scene, out)
    assert f.erle_db >= 20.0, f
    assert proc.statistics()["reference_frames"] == mic.shape[0] // n


@pytest.mark.anyio
async def test_aec_processor_start_checks_the_reference_is_an_input():
    """A `reference` that is not among the node's inputs is refused at start with the fix."""
    from pipeline.graph import Graph
    from pipeline.runner import Runner
    from pipeline.testing import CollectSink, FrameSource

    graph = Graph(name="aec-check")
    graph.add("mic", FrameSource([]))
    graph.add("played", FrameSource([], name="played"))
    graph.add("aec", EchoCancellerProcessor({"reference": "speaker"}))
    graph.add("out", CollectSink())
    graph.link("mic", "aec", "out")
    graph.link("played", "aec")
    graph.check()
    result = await Runner(graph, realtime=False).run()
    assert not result.ok
    (error,) = result.errors
    assert error.processor == "aec" and "link the playback side" in error.message and "['mic', 'played']" in error.message


@pytest.mark.anyio
async def test_aec_processor_in_a_graph_with_two_inputs():
    """mic -> aec <- played in a real graph: only the capture comes out, as much as went in."""
    from pipeline.graph import Graph
    from pipeline.runner import Runner
    from pipeline.testing import CollectSink, FrameSource

    n = 320
    rng = np.random.default_rng(2)
    far = to_int16(0.05 * rng.standard_normal(16000).astype(np.float32))
    mic = to_int16(0.01 * rng.standard_normal(16000).astype(np.float32))
    g = Graph(name="aec")
    g.add("mic", FrameSource([AudioFrame(mic[i : i + n], 16000, i) for i in range(0, 16000, n)], name="mic"))
    g.add("played", FrameSource([AudioFrame(far[i : i + n], 16000, i) for i in range(0, 16000, n)], name="played"))
    g.add("aec", EchoCancellerProcessor({"reference": "played"}))
    sink = g.add("sink", CollectSink())
    g.link("mic", "aec", "sink")
    g.link("played", "aec")
    g.check()
    result = await Runner(g, realtime=False).run()
    assert result.ok
    audio = [f for f in sink.received if isinstance(f, AudioFrame)]
    assert sum(f.samples.shape[0] for f in audio) == 16000


@pytest.mark.anyio
async def test_aec_processor_takes_the_reference_upstream():
    """Played audio sent back upstream (as playback.speaker's echo_reference does) is the reference, in a real graph."""
    from pipeline.testing import run_frames

    scene = echo_conversation(20.0, 16000, delay_ms=60.0)
    mic, far = to_int16(scene.mic), to_int16(scene.far)
    n = 320
    frames = []
    for i in range(0, mic.shape[0] - n + 1, n):
        frames.append((AudioFrame(far[i : i + n], 16000, i), Direction.UPSTREAM))  # from the sink's side
        frames.append(AudioFrame(mic[i : i + n], 16000, i))
    out = await run_frames(EchoCancellerProcessor(), frames)
    assert not [f for f in out.upstream if isinstance(f, AudioFrame)]  # consumed, not passed to the mic
    f = measure(scene, out.audio().astype(np.float32) / 32768.0)
    assert f.erle_db >= 25.0, f


@pytest.mark.slow
@pytest.mark.anyio
async def test_aec_on_real_devices_speaker_looped_into_microphone(jack_server):
    """JACK loopback at real time: playback.speaker's echo_reference lets audio.aec remove the played speech."""
    from test_devices_jack import RATE as JACK_RATE
    from test_devices_jack import PlaySentence, _jack_env, jack_device

    from pipeline.graph import Graph
    from pipeline.runner import Runner
    from pipeline.testing import CollectSink
    from processors.devices.sound import MicrophoneCapture, SpeakerPlayback
    from quality_fixtures import ASSISTANT_LINES, speech
    played = to_int16(np.concatenate([speech(t, JACK_RATE, "en-us", -20.0) for t in ASSISTANT_LINES[:3]]))
    device = jack_device()

    class Join(Processor):
        """Sends the assistant's audio on to the speaker; keeps the cancelled capture (no item id)."""

        def __init__(self):
            super().__init__(name="join")
            self.captured: list[AudioFrame] = []

        async def process(self, frame, direction):
            if direction is _DOWN and isinstance(frame, AudioFrame) and frame.item_id is None:
                self.captured.append(frame)
                return
            await self.push(frame, direction)

    player = PlaySentence(played, _jack_env(jack_server))
    speaker = SpeakerPlayback({"device": device, "sample_rate": JACK_RATE, "frame_ms": 20, "echo_reference": True})
    mic = MicrophoneCapture({"device": device, "sample_rate": JACK_RATE, "frame_ms": 20,
                             "duration_s": played.shape[0] / JACK_RATE + 1.5})
    # each reference frame reaches audio.aec just after the capture holding its echo (two queued hops
    # more): hold the capture 80 ms, so it pairs with reference 40 ms newer (margin for a loaded machine)
    aec = EchoCancellerProcessor({"capture_delay_ms": 80.0}, name="aec")
    join, raw = Join(), CollectSink(name="raw")
    g = Graph(name="jack-aec")
    for node in (player, speaker, mic, aec, join, raw):
        g.add(node.name, node)
    g.link(player.name, join.name, speaker.name)
    g.link(mic.name, aec.name, join.name)
    g.link(mic.name, raw.name)
    g.check()
    with anyio.fail_after(90):
        result = await Runner(g, realtime=True).run()
    assert result.ok, result.errors
    x = np.concatenate([f.samples for f in raw.received if isinstance(f, AudioFrame)]).astype(np.float64)
    y = np.concatenate([f.samples for f in join.captured]).astype(np.float64)
    n = min(x.shape[0], y.shape[0])
    w = JACK_RATE // 50
    ex = np.mean(x[: n // w * w].reshape(-1, w) ** 2, axis=1)
    ey = np.mean(y[: n // w * w].reshape(-1, w) ** 2, axis=1)
    loud = ex > (32768 * 10 ** (-45 / 20)) ** 2  # blocks where the echo is there
    loud[: 3 * 50] = False  # after 3 s of convergence
    erle = 10 * np.log10(ex[loud].sum() / max(ey[loud].sum(), 1e-9))  # all zeros out: finite, not inf
    figures = f"ERLE {erle:.1f} dB over {loud.sum()} blocks; aec {aec.statistics()}; speaker {speaker.statistics()}"
    print("\n" + figures)
    assert loud.sum() > 100, figures
    assert erle >= 25.0, figures
