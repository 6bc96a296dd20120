"""Per-frame cost of the DSP core and the audio processors, each against a floor in the same run.

Question: what does each audio step cost per frame, and how much do our wrappers add to
the library call they wrap?

Every case is timed call by call (``perf_counter_ns``) on the same frames as its floor,
the two interleaved frame by frame so that both see the same machine state; the garbage
collector is off while timing. Figures are medians and 99th percentiles in microseconds;
the ratio is median over floor median.

* resample: ``audio.resample`` ``process()`` (frame in, new frame out, a push to no
  neighbours) vs the raw ``soxr.ResampleStream.resample_chunk`` on the same 20 ms frames
  (target <= 1.10x; int16 is resampled in float32 and rounded back since it must be
  reproducible, which costs about 1.3-1.4x, docs/benchmarks.md). soxr delivers output on about every other frame, so each distribution
  has two modes (no output: ~4 us; output: ~10 us) and the medians sit in the upper one,
  the frames that also build and push an ``AudioFrame``; the ``Resampler.process`` row
  times the DSP object alone against the same call;
* energy VAD: :class:`EnergyVAD` per 20 ms frame at 24 kHz on speech with many boundaries
  (the shipped ``pipelines/samples/*.wav`` resampled, then as long again of synthesised
  syllable bursts), floor: the frame's mean square alone (``astype`` + ``vdot``). Frames
  are classified beforehand by a second VAD as steady (the state does not change) or
  boundary (leaving silence on activity, leaving speech on a quiet window: where the onset
  or offset is searched inside the window), and reported apart; the target (<= 2.5 us) is
  on the average, each path's median weighted by its share of frames;
* Silero: ``vad.silero`` ``process()`` per 32 ms int16 chunk at 16 kHz (processor, model
  call, state machine) vs a raw ``session.run`` on inputs made before timing (context and
  chunk as float32) with the state fed back (target <= 1.08x); a second row compares with
  the same model call made through IO binding, onnxruntime's least;
* G.711 mu-law and A-law encode+decode of 20 ms at 8 kHz, a mixer of 4 inputs, int16 <->
  float32 conversions and the rechunker: figures, with the plainest numpy as the floor.

Processors have no neighbours and their ``process()`` is awaited inside one coroutine that is
driven without an event loop (it never suspends): this times the processor as the runner
calls it, not the scheduler (the per-hop cost of the framework is ``benchmarks/hops.py``'s
question).

``--quality`` also measures the soxr quality/latency table of ``docs/dsp.md``; ``--only``
runs some groups (resample, vad, silero, other).
Run: ``python benchmarks/dsp.py [--quick] [--quality] [--only GROUPS] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.dsp import (EnergyVAD, Mixer, QUALITIES, Rechunker, alaw_decode, alaw_encode,  # noqa: E402
                          to_float32, to_int16, ulaw_decode, ulaw_encode)
from pipeline.frames import AudioFrame, Direction  # noqa: E402

_DOWN = Direction.DOWNSTREAM


def _drive(coro) -> None:
    """Run a coroutine that never suspends to completion, without an event loop."""
    try:
        coro.send(None)
    except StopIteration:
        return
    raise RuntimeError("benchmark driver: the processor suspended (it must have no neighbours)")


def _stats(ns: list[int]) -> tuple[float, float]:
    a = np.asarray(ns, dtype=np.float64) / 1000.0
    return float(np.median(a)), float(np.percentile(a, 99))


def _pair(case: Callable[[int], object], floor: Callable[[int], object] | None, n: int, warmup: int = 50,
          *, awaited: bool = False, keep: bool = False) -> dict:
    """Time ``case(i)`` and ``floor(i)`` interleaved for i in range(n).

    With ``awaited`` the case returns a coroutine (a processor's ``process``) that is
    awaited inside one driving coroutine, as the runner awaits it. With ``keep`` the
    per-call times (us, arrays) are returned too, as ``case_us`` and ``floor_us``.
    """
    tc: list[int] = []
    tf: list[int] = []
    clock = time.perf_counter_ns

    async def timed() -> None:
        for i in range(n):
            t0 = clock()
            if awaited:
                await case(i)  # type: ignore[misc]
            else:
                case(i)
            t1 = clock()
            if floor is not None:
                floor(i)
                tf.append(clock() - t1)
            tc.append(t1 - t0)

    for i in range(min(warmup, n)):
        _drive(case(i)) if awaited else case(i)
        if floor is not None:
            floor(i)
    gc.collect()
    gc.disable()
    try:
        _drive(timed())
    finally:
        gc.enable()
    med, p99 = _stats(tc)
    out = {"median_us": med, "p99_us": p99, "frames": n}
    if floor is not None:
        fmed, fp99 = _stats(tf)
        out.update(floor_median_us=fmed, floor_p99_us=fp99, ratio=med / fmed if fmed > 0 else float("nan"))
    if keep:
        out.update(case_us=np.asarray(tc, np.float64) / 1000.0, floor_us=np.asarray(tf, np.float64) / 1000.0)
    return out


def _tone_frames(rate: int, frame: int, count: int, dtype=np.int16, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(frame * count) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.shape[0])
    x = np.rint(x * 32767).astype(np.int16) if dtype == np.int16 else x.astype(np.float32)
    return [x[i * frame : (i + 1) * frame] for i in range(count)]


def _speechlike_frames(rate: int, frame: int, count: int) -> list[np.ndarray]:
    """Bursts of 'syllables' (modulated tones) and pauses over a noise floor: all VAD states."""
    rng = np.random.default_rng(2)
    n = frame * count
    t = np.arange(n) / rate
    envelope = (np.sin(2 * np.pi * 4 * t) > 0) * (np.sin(2 * np.pi * 0.25 * t) > -0.3)
    x = 0.2 * envelope * np.sin(2 * np.pi * 180 * t) + 0.003 * rng.standard_normal(n)
    x = np.rint(x * 32767).astype(np.int16)
    return [x[i * frame : (i + 1) * frame] for i in range(count)]


# --- cases --------------------------------------------------------------------------------


def bench_resample(n: int, in_rate: int, out_rate: int) -> dict:
    import soxr

    from processors.audio import ResampleProcessor

    frame = in_rate // 50
    xs = _tone_frames(in_rate, frame, n)
    frames = [AudioFrame(x, in_rate, pts=i * frame) for i, x in enumerate(xs)]
    proc = ResampleProcessor({"rate": out_rate})
    raw = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=proc.params.quality)
    process = proc.process
    chunk = raw.resample_chunk
    return _pair(lambda i: process(frames[i], _DOWN), lambda i: chunk(xs[i]), n, awaited=True)


_SAMPLES = Path(__file__).resolve().parent.parent / "pipelines" / "samples"


def _vad_frames(rate: int, frame: int, count: int) -> list[np.ndarray]:
    """Speech with many boundaries: the shipped samples (``pipelines/samples/*.wav``, eSpeak
    turns with pauses) resampled to ``rate``, then as long again of synthesised syllable
    bursts (a 4 Hz on/off envelope, every gap a speech pause), cut into frames and repeated
    up to ``count`` frames."""
    from pipeline.dsp import resample
    from processors.files.wavfile import read_wav

    parts = []
    for path in sorted(_SAMPLES.glob("*.wav")):
        x, sr = read_wav(path, "float32")
        parts.append(resample(x.reshape(x.shape[0], -1)[:, 0].copy(), sr, rate))
    x = to_int16(np.concatenate(parts))
    frames = [x[i : i + frame] for i in range(0, x.shape[0] - frame + 1, frame)]
    frames += _speechlike_frames(rate, frame, len(frames))
    return [frames[i % len(frames)] for i in range(count)]


def _boundary_frames(vad: EnergyVAD, frames: list[np.ndarray]) -> np.ndarray:
    """Which frames take the boundary path: out of SILENCE on activity (onset search) or
    out of SPEECH on a quiet window (offset search). Decided by a separate VAD's states, so
    the timed VAD is not instrumented."""
    from pipeline.dsp import VADState

    silence, speech = VADState.SILENCE, VADState.SPEECH
    mask = np.zeros(len(frames), bool)
    for i, x in enumerate(frames):
        before = vad.state
        vad.process(x)
        after = vad.state
        mask[i] = (before is silence or before is speech) and after is not before
    return mask


def bench_energy_vad(n: int) -> dict:
    frames = _vad_frames(24000, 480, n)
    boundary = _boundary_frames(EnergyVAD(24000), frames)
    vad = EnergyVAD(24000)
    process = vad.process
    f32 = np.float32

    def floor(i: int) -> float:
        y = frames[i].astype(f32)
        return float(np.vdot(y, y))

    # no warm-up: the classifying pass above ran the same code, and the timed VAD must see
    # the frames from the first one for the classification to hold
    out = _pair(lambda i: process(frames[i]), floor, n, warmup=0, keep=True)
    t, tf = out.pop("case_us"), out.pop("floor_us")
    share = float(boundary.mean())

    def part(mask: np.ndarray) -> dict:
        fmed = float(np.median(tf[mask]))
        med = float(np.median(t[mask]))
        return {"median_us": med, "p99_us": float(np.percentile(t[mask], 99)), "frames": int(mask.sum()),
                "floor_median_us": fmed, "floor_p99_us": float(np.percentile(tf[mask], 99)), "ratio": med / fmed}

    steady, edge = part(~boundary), part(boundary)
    # what a stream of this material costs per frame on average, robust to the machine's
    # preemptions: each path's median weighted by how often the path is taken
    out.update(average_us=(1.0 - share) * steady["median_us"] + share * edge["median_us"],
               mean_us=float(t.mean()), boundary_share=share)
    return {"all": out, "steady": steady, "boundary": edge}


def bench_resampler_object(n: int, in_rate: int, out_rate: int) -> dict:
    import soxr

    from pipeline.dsp import Resampler

    frame = in_rate // 50
    xs = _tone_frames(in_rate, frame, n)
    r = Resampler(in_rate, out_rate, dtype="int16")
    raw = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=r.quality)
    process, chunk = r.process, raw.resample_chunk
    return _pair(lambda i: process(xs[i]), lambda i: chunk(xs[i]), n)


def bench_energy_vad_processor(n: int) -> dict:
    from processors.audio.vad import EnergyVADProcessor

    xs = _speechlike_frames(24000, 480, n)
    frames = [AudioFrame(x, 24000, pts=i * 480) for i, x in enumerate(xs)]
    proc = EnergyVADProcessor()
    vad = EnergyVAD(24000)
    process = proc.process
    return _pair(lambda i: process(frames[i], _DOWN), lambda i: vad.process(xs[i], i * 480), n, awaited=True)


def bench_silero(n: int) -> dict[str, dict]:
    import onnxruntime as ort

    from pipeline.dsp.silero import _session, silero_model_path
    from processors.audio.vad import SileroVADProcessor

    xs = _speechlike_frames(16000, 512, n)
    frames = [AudioFrame(x, 16000, pts=i * 512) for i, x in enumerate(xs)]
    proc = SileroVADProcessor()
    _drive(proc.start())
    process = proc.process
    session = _session(silero_model_path())
    # The floor is the least a caller of session.run must do per chunk: the model inputs
    # (64 samples of context, then the chunk, as float32) are made before timing, and the
    # state is fed back through the feed dict.
    inputs = []
    prev = np.zeros(64, np.float32)
    for x in xs:
        chunk = x.astype(np.float32) / np.float32(32768.0)
        inputs.append(np.concatenate([prev, chunk])[None, :])
        prev = chunk[-64:]
    feeds = {"input": inputs[0], "state": np.zeros((2, 1, 128), np.float32), "sr": np.array(16000, dtype=np.int64)}
    run = session.run

    def floor(i: int) -> None:
        feeds["input"] = inputs[i]
        out, feeds["state"] = run(None, feeds)

    out = {"run": _pair(lambda i: process(frames[i], _DOWN), floor, n, warmup=20, awaited=True)}
    # the same model call through IO binding (what SileroVAD does): onnxruntime's own least
    buf = np.zeros((1, 576), np.float32)
    states = [np.zeros((2, 1, 128), np.float32) for _ in range(2)]
    values = [ort.OrtValue.ortvalue_from_numpy(a) for a in (buf, np.array(16000, np.int64),
                                                             np.zeros((1, 1), np.float32), *states)]
    bindings = []
    for k in range(2):
        binding = session.io_binding()
        binding.bind_ortvalue_input("input", values[0])
        binding.bind_ortvalue_input("state", values[3 + k])
        binding.bind_ortvalue_input("sr", values[1])
        binding.bind_ortvalue_output("output", values[2])
        binding.bind_ortvalue_output("stateN", values[4 - k])
        bindings.append(binding)
    run_bound = session.run_with_iobinding

    def bound(i: int) -> None:
        np.copyto(buf, inputs[i])
        run_bound(bindings[i & 1])

    out["bound"] = _pair(lambda i: process(frames[i], _DOWN), bound, n, warmup=20, awaited=True)
    return out


def bench_g711(n: int, law: str) -> dict:
    enc, dec = (ulaw_encode, ulaw_decode) if law == "ulaw" else (alaw_encode, alaw_decode)
    xs = _tone_frames(8000, 160, n)
    table = np.arange(65536, dtype=np.uint32).astype(np.uint8)  # a same-size lookup, as plain numpy
    return _pair(lambda i: dec(enc(xs[i])), lambda i: table[xs[i].view(np.uint16)], n)


def bench_mixer(n: int) -> dict:
    streams = [_tone_frames(24000, 480, n, seed=s) for s in range(4)]
    m = Mixer(4, dtype="int16", clip="soft")
    write, read = m.write, m.read

    def case(i: int) -> None:
        pts = i * 480
        for k in range(4):
            write(streams[k][i], pts, k)
        read()

    f32 = np.float32

    def floor(i: int) -> np.ndarray:
        acc = streams[0][i].astype(f32)
        for k in (1, 2, 3):
            acc += streams[k][i]
        return np.clip(acc, -32768, 32767).astype(np.int16)

    return _pair(case, floor, n)


def bench_conversions(n: int) -> dict:
    ints = _tone_frames(24000, 480, n)
    floats = [to_float32(x) for x in ints]
    out = {}
    out["to_float32"] = _pair(lambda i: to_float32(ints[i]), lambda i: ints[i].astype(np.float32), n)
    out["to_int16"] = _pair(lambda i: to_int16(floats[i]), lambda i: (floats[i] * 32768).astype(np.int16), n)
    r = Rechunker(512)
    out["rechunk_480_to_512"] = _pair(lambda i: r.process(ints[i]), lambda i: ints[i].copy(), n)
    return out


# --- the soxr quality / latency table -----------------------------------------------------


def _lag_ms(in_rate: int, out_rate: int, quality: str, chunk_ms: int = 20, chunks: int = 150) -> tuple[float, float]:
    import soxr

    s = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)
    n = in_rate * chunk_ms // 1000
    x = np.zeros(n, np.float32)
    produced = consumed = 0
    lags = []
    for i in range(chunks):
        produced += s.resample_chunk(x).shape[0]
        consumed += n
        if i >= 25:  # steady state
            lags.append(consumed * out_rate / in_rate - produced)
    a = np.asarray(lags) * 1000.0 / out_rate
    return float(a.mean()), float(a.max())


def _level_db(y: np.ndarray, rate: int, freq: float) -> float:
    y = y[rate // 4 : -rate // 4].astype(np.float64)
    w = np.blackman(y.shape[0])
    spec = np.abs(np.fft.rfft(y * w)) / (w.sum() / 2)
    k = int(round(freq * y.shape[0] / rate))
    return 20 * np.log10(spec[max(k - 4, 0) : k + 5].max() + 1e-20)


def quality_table() -> list[dict]:
    """Delay, passband and alias rejection of each soxr quality preset (one-off, ~2 s)."""
    import soxr

    rows = []
    for q in QUALITIES:
        row: dict = {"quality": q}
        for a, b in ((48000, 24000), (24000, 48000), (24000, 16000), (16000, 24000), (8000, 24000)):
            mean, worst = _lag_ms(a, b, q)
            row[f"delay_{a // 1000}_{b // 1000}_ms"] = round(mean, 1)
            row[f"delay_{a // 1000}_{b // 1000}_max_ms"] = round(worst, 1)
        t = np.arange(48000 * 2) / 48000
        # passband: a tone at 90% of the output Nyquist (10.8 kHz at 24 kHz out)
        y = soxr.resample((0.5 * np.sin(2 * np.pi * 10800 * t)).astype(np.float32), 48000, 24000, quality=q)
        row["passband_90pct_db"] = round(_level_db(y, 24000, 10800) - 20 * np.log10(0.5), 2)
        # alias: 13.2 kHz into a 24 kHz output would fold to 10.8 kHz
        y = soxr.resample((0.5 * np.sin(2 * np.pi * 13200 * t)).astype(np.float32), 48000, 24000, quality=q)
        row["alias_rejection_db"] = round(_level_db(y, 24000, 10800) - 20 * np.log10(0.5), 1)
        xs = _tone_frames(48000, 960, 400)
        s = soxr.ResampleStream(48000, 24000, 1, dtype="int16", quality=q)
        row["cpu_48_24_us"] = round(_pair(lambda i: s.resample_chunk(xs[i]), None, 400)["median_us"], 1)
        rows.append(row)
    return rows


# --- entry points -------------------------------------------------------------------------


def _versions() -> dict:
    import soxr

    v = {"python": platform.python_version(), "numpy": np.__version__, "soxr": soxr.__version__,
         "machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        import onnxruntime

        v["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return v


GROUPS = ("resample", "vad", "silero", "other")


def run(quick: bool = False, *, quality: bool = False, only: tuple[str, ...] = GROUPS) -> dict:
    """Measure and return the figures (``voxpipe bench`` calls this); ``only`` picks groups."""
    n = 1000 if quick else 5000
    cases: dict[str, dict] = {}
    if "resample" in only:
        cases["resample 48k->24k (audio.resample vs soxr)"] = bench_resample(n, 48000, 24000)
        cases["resample 24k->16k (audio.resample vs soxr)"] = bench_resample(n, 24000, 16000)
        cases["resample 24k->48k (audio.resample vs soxr)"] = bench_resample(n, 24000, 48000)
        cases["Resampler.process 48k->24k (vs soxr)"] = bench_resampler_object(n, 48000, 24000)
    if "vad" in only:
        vad = bench_energy_vad(n)
        cases["energy VAD 20 ms 24k speech (vs mean square)"] = vad["all"]
        cases["  of which steady-state frames"] = vad["steady"]
        cases["  of which boundary frames (onset/offset)"] = vad["boundary"]
        cases["vad.energy process (vs EnergyVAD)"] = bench_energy_vad_processor(n)
    if "silero" in only:
        try:
            silero = bench_silero(300 if quick else 1500)
            cases["vad.silero 32 ms 16k (vs onnxruntime run)"] = silero["run"]
            cases["vad.silero 32 ms 16k (vs IO-bound run)"] = silero["bound"]
        except ImportError as exc:  # onnxruntime or the silero-vad wheel missing
            cases["vad.silero 32 ms 16k (vs onnxruntime run)"] = {"skipped": str(exc)}
    if "other" in only:
        cases["G.711 mu-law enc+dec 20 ms 8k (vs table take)"] = bench_g711(n, "ulaw")
        cases["G.711 A-law enc+dec 20 ms 8k (vs table take)"] = bench_g711(n, "alaw")
        cases["mixer 4 x 20 ms 24k int16 (vs numpy sum+clip)"] = bench_mixer(n)
        for name, fig in bench_conversions(n).items():
            cases[f"{name} 480 samples (vs plain numpy)"] = fig
    result = {
        "cases": cases,
        "targets": {
            "resample 48k->24k (audio.resample vs soxr)": {"ratio": 1.10},
            "energy VAD 20 ms 24k speech (vs mean square)": {"average_us": 2.5},
            "vad.silero 32 ms 16k (vs onnxruntime run)": {"ratio": 1.08},
        },
        "versions": _versions(),
    }
    if quality:
        result["resample_quality"] = quality_table()
    return result


def table(result: dict) -> str:
    lines = [
        "dsp: per-frame cost, case vs floor interleaved in one run (us)",
        f"{'case':<48} | {'median':>7} {'p99':>7} | {'floor':>7} {'p99':>7} | {'ratio':>6} | target",
    ]
    targets = result.get("targets", {})
    for name, fig in result["cases"].items():
        if "skipped" in fig:
            lines.append(f"{name:<48} | skipped: {fig['skipped']}")
            continue
        floor = f"{fig['floor_median_us']:>7.2f} {fig['floor_p99_us']:>7.2f}" if "floor_median_us" in fig else f"{'':>7} {'':>7}"
        ratio = f"{fig['ratio']:>5.2f}x" if "ratio" in fig else f"{'':>6}"
        target = ""
        t = targets.get(name)
        if t:
            if "ratio" in t:
                target = f"<= {t['ratio']}x {'ok' if fig['ratio'] <= t['ratio'] else 'MISSED'}"
            elif "average_us" in t:
                avg = fig["average_us"]
                target = (f"average {avg:.2f} us ({100 * fig['boundary_share']:.0f}% boundaries; mean "
                          f"{fig['mean_us']:.2f}) <= {t['average_us']} us {'ok' if avg <= t['average_us'] else 'MISSED'}")
            else:
                target = f"<= {t['median_us']} us {'ok' if fig['median_us'] <= t['median_us'] else 'MISSED'}"
        lines.append(f"{name:<48} | {fig['median_us']:>7.2f} {fig['p99_us']:>7.2f} | {floor} | {ratio} | {target}")
    if "resample_quality" in result:
        lines.append("")
        lines.append("soxr quality: mean [max] delay in ms streaming 20 ms chunks; passband at 90% Nyquist; alias "
                     "rejection; CPU per 20 ms 48k->24k")
        lines.append(f"{'quality':<7} | {'48->24':>12} | {'24->48':>12} | {'24->16':>12} | {'16->24':>12} | "
                     f"{'8->24':>12} | {'pb90 dB':>7} | {'alias dB':>8} | {'cpu us':>6}")
        for r in result["resample_quality"]:
            cells = [f"{r[f'delay_{p}_ms']:>5.1f} [{r[f'delay_{p}_max_ms']:>4.1f}]"
                     for p in ("48_24", "24_48", "24_16", "16_24", "8_24")]
            lines.append(f"{r['quality']:<7} | " + " | ".join(f"{c:>12}" for c in cells)
                         + f" | {r['passband_90pct_db']:>7.2f} | {r['alias_rejection_db']:>8.1f} | {r['cpu_48_24_us']:>6.1f}")
    v = result.get("versions", {})
    lines.append("versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer frames (about 5 s instead of 20 s)")
    ap.add_argument("--quality", action="store_true", help="also measure the soxr quality/latency table")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the figures and versions as JSON")
    ap.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups among {', '.join(GROUPS)}")
    args = ap.parse_args(argv)
    only = tuple(g.strip() for g in args.only.split(","))
    unknown = set(only) - set(GROUPS)
    if unknown:
        ap.error(f"unknown group(s) {', '.join(sorted(unknown))}; choose among {', '.join(GROUPS)}")
    result = run(args.quick, quality=args.quality, only=only)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
