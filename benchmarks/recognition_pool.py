"""Many sessions speaking at once: speech end -> first audio, recognition in threads vs worker processes.

Question. When 20 sessions of one local realtime server finish speaking at the same moment,
how long does each wait from the end of its speech to the first audio of the answer, with
speech recognition in threads of the server process (``--processes 0``, one core under the
GIL) and in 1 or 2 worker processes (``--processes N``)? How does it scale with cores, and
how far is it from the floor, the raw pocketsphinx call?

Setup. ``voxpipe realtime-server`` in a child process (the benchmark rules of
:mod:`_demo_session`, no model delay), one configuration after another. This process opens
``--sessions`` websocket sessions (default 20) with server VAD (``silence_duration_ms`` 200)
and, each round, all of them stream the same eSpeak NG recording of "tell me a joke" at real
time, starting together: 300 ms of quiet noise, the speech, 700 ms of quiet noise, in 40 ms
appends. Per session and round: *speech end* is when the append holding the last speech sample
was sent, *first audio* when the first ``response.output_audio.delta`` of the answer arrived.
The latency includes the VAD's 200 ms of silence. Also per turn: when the transcript
event arrived (``heard``: VAD, queueing for a recogniser, recognition) and from there to the
first audio (``-> audio``: responder, synthesis of the first block, events). ``--rounds`` rounds (default 5: 100 turns
per configuration), after one warm-up round; also one session alone (idle) per configuration.

Synthesis, the next candidate for a pool, is timed the same way (``raw_synthesis_ms``: eSpeak
NG speaking the whole answer in this process).

Floor. In this process, the same utterance decoded by a recogniser built as the server builds
it (same rules grammar), timed per call (median): ``raw_call_ms``. 20 recognitions of
``raw_call_ms`` each on N cores, ideally scheduled, finish at ``ceil(k / N) * raw_call_ms``;
the median of those, plus the idle latency, is the best a server on N cores could do
(``ideal_median_ms``).

Run: ``python benchmarks/recognition_pool.py [--quick] [--sessions 20] [--rounds 5]
[--configs 0,1,2] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _demo_session as ds  # noqa: E402

__all__ = ["main", "run_config"]

TEXT = "tell me a joke"
CHUNK_MS = 40
LEAD_MS, TAIL_MS = 300, 700
AUTH = {"Authorization": "Bearer sk-local"}


def utterance() -> tuple[np.ndarray, int]:
    """pcm16 24 kHz samples of the request, and the sample index where its speech ends."""
    from pipeline.dsp.resample import resample
    from processors.speech.espeak import synthesize

    x, rate = synthesize(TEXT)
    speech = resample(x, rate, 24000).astype(np.int16)
    rng = np.random.default_rng(3)
    quiet = lambda ms: rng.normal(0, 30, 24 * ms).astype(np.int16)
    return np.concatenate([quiet(LEAD_MS), speech, quiet(TAIL_MS)]), 24 * LEAD_MS + speech.shape[0]


def raw_call_ms(samples24: np.ndarray, calls: int) -> float:
    """Median ms of one recognition of the utterance by a recogniser built like the server's."""
    from processors.realtime.server.engine import SpeechResources

    resources = SpeechResources(ds_rules_path())
    grammar = resources.grammar_for([], "")
    recognizer = resources._new_recognizer()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        resources._recognize_sync(recognizer, samples24, 24000, grammar)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def raw_synthesis_ms(calls: int) -> float:
    """Median ms for eSpeak NG to speak the benchmark's joke answer (whole), in this process."""
    import re

    from processors.speech.espeak import synthesize

    reply = re.search(r'joke"\]\s*reply: "([^"]+)"', ds.BENCH_RULES.replace("\n", " "))
    text = reply.group(1) if reply else "Why did the robot go on holiday? It needed to recharge."
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        synthesize(text)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


_RULES_FILE: list[Path] = []


def ds_rules_path() -> Path:
    if not _RULES_FILE:
        import tempfile

        path = Path(tempfile.mkdtemp(prefix="voxpipe-bench-")) / "rules.yaml"
        path.write_text(ds.BENCH_RULES)
        _RULES_FILE.append(path)
    return _RULES_FILE[0]


class _Session:
    """One websocket session: streams a turn on request and records its speech end and first audio."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.first_audio: float | None = None
        self.heard: float | None = None  # the transcript arrived
        self.done = None

    async def open(self) -> None:
        import anyio

        with anyio.fail_after(30):
            while json.loads(await self.ws.recv())["type"] != "session.created":
                pass
        await self.ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {
            "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 200},
                      "transcription": {"model": "whisper-1"}}}}}))

    async def receive(self) -> None:
        async for message in self.ws:
            if self.first_audio is None and '"response.output_audio.delta"' in message[:200]:
                self.first_audio = time.perf_counter()
            elif self.heard is None and "input_audio_transcription.completed" in message[:200]:
                self.heard = time.perf_counter()
            elif '"type":"response.done"' in message[:200] and self.done is not None:
                self.done.set()

    async def turn(self, samples: np.ndarray, speech_end: int, t0: float) -> tuple[float, float]:
        """Stream the utterance at real time from ``t0``; seconds from speech end to (transcript, first audio)."""
        import anyio

        self.first_audio, self.heard, self.done = None, None, anyio.Event()
        step = 24 * CHUNK_MS
        end_sent = None
        for k, i in enumerate(range(0, samples.shape[0], step)):
            delay = t0 + k * CHUNK_MS / 1000 - time.perf_counter()
            if delay > 0:
                await anyio.sleep(delay)
            chunk = samples[i:i + step]
            await self.ws.send(json.dumps({"type": "input_audio_buffer.append",
                                           "audio": base64.b64encode(chunk.astype("<i2").tobytes()).decode()}))
            if end_sent is None and i + step >= speech_end:
                end_sent = time.perf_counter()
        with anyio.fail_after(60):
            await self.done.wait()
        if self.first_audio is None or end_sent is None or self.heard is None:
            raise RuntimeError("a response ended without audio or a transcript")
        return self.heard - end_sent, self.first_audio - end_sent


async def run_config(processes: int, sessions: int, rounds: int, samples: np.ndarray, speech_end: int) -> dict:
    """Figures of one server configuration (``--processes``)."""
    import anyio
    from websockets.asyncio.client import connect

    with ds.LocalServerProcess(model_delay_ms=0, processes=processes) as server:
        url = server.url + "?model=gpt-realtime"
        async with anyio.create_task_group() as tg:
            opened = []
            try:
                for _ in range(sessions):
                    ws = await connect(url, additional_headers=AUTH, max_size=None, compression=None)
                    opened.append(_Session(ws))
                    await opened[-1].open()
                    tg.start_soon(opened[-1].receive)
                idle = [(await opened[0].turn(samples, speech_end, time.perf_counter() + 0.05))[1] for _ in range(3)]
                latencies: list[float] = []
                heard: list[float] = []
                cpu0, wall0 = server.cpu_s(), time.perf_counter()
                for r in range(rounds + 1):  # the first round warms every session up
                    t0 = time.perf_counter() + 0.2
                    got: list[tuple[float, float]] = []

                    async def one(s: _Session) -> None:
                        got.append(await s.turn(samples, speech_end, t0))

                    async with anyio.create_task_group() as round_tg:
                        for s in opened:
                            round_tg.start_soon(one, s)
                    if r:
                        latencies += [audio for _, audio in got]
                        heard += [h for h, _ in got]
                    await anyio.sleep(0.3)
                cpu = server.cpu_s() - cpu0 if cpu0 is not None else None
                wall = time.perf_counter() - wall0
            finally:
                for s in opened:
                    await s.ws.close()
                tg.cancel_scope.cancel()
    ms = sorted(1000 * x for x in latencies)
    return {"processes": processes, "sessions": sessions, "turns": len(ms),
            "idle_ms": round(1000 * statistics.median(idle), 1),
            "median_ms": round(statistics.median(ms), 1),
            "p99_ms": round(ms[min(len(ms) - 1, math.ceil(0.99 * len(ms)) - 1)], 1),
            "max_ms": round(ms[-1], 1),
            "transcript_median_ms": round(1000 * statistics.median(heard), 1),
            "transcript_to_audio_median_ms": round(1000 * statistics.median(
                [a - h for a, h in zip(latencies, heard)]), 1),
            "server_cpu_pct": round(100 * cpu / wall, 1) if cpu is not None else None}


def ideal_median_ms(call_ms: float, sessions: int, cores: int, idle_ms: float) -> float:
    finish = sorted(math.ceil(k / cores) * call_ms for k in range(1, sessions + 1))
    return round(idle_ms + statistics.median(finish), 1)


def main(argv: list[str] | None = None) -> int:
    import anyio

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 rounds per configuration")
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--configs", default="0,1,2", help="--processes values to compare (0: in-process threads)")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    samples, speech_end = utterance()
    call_ms = raw_call_ms(samples, 20)
    synth_ms = raw_synthesis_ms(20)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    rows = []
    for processes in (int(c) for c in args.configs.split(",")):
        row = anyio.run(run_config, processes, args.sessions, rounds, samples, speech_end)
        row["ideal_median_ms"] = ideal_median_ms(call_ms, args.sessions, max(1, min(processes or 1, cores)),
                                                 row["idle_ms"])
        rows.append(row)
    print(f"raw pocketsphinx call (the floor): {call_ms:.1f} ms per {TEXT!r} "
          f"({(samples.shape[0]) / 24000:.2f} s of audio); eSpeak NG speaking the answer: {synth_ms:.1f} ms; "
          f"{cores} cores; {os.getloadavg()[0]:.2f} load")
    print(f"{'recognition':<22}{'idle':>8}{'median':>9}{'p99':>9}{'max':>9}{'ideal med':>11}{'heard med':>11}"
          f"{'->audio med':>13}{'server cpu':>12}")
    for row in rows:
        where = "threads (0)" if not row["processes"] else f"{row['processes']} process(es)"
        print(f"{where:<22}{row['idle_ms']:>8}{row['median_ms']:>9}{row['p99_ms']:>9}{row['max_ms']:>9}"
              f"{row['ideal_median_ms']:>11}{row['transcript_median_ms']:>11}{row['transcript_to_audio_median_ms']:>13}"
              f"{str(row['server_cpu_pct']) + '%':>12}")
    by = {r["processes"]: r for r in rows}
    if 1 in by and 2 in by:
        print(f"scaling 1 -> 2 processes: median x{by[1]['median_ms'] / by[2]['median_ms']:.2f}, "
              f"p99 x{by[1]['p99_ms'] / by[2]['p99_ms']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": platform.platform(), "cores": cores, "raw_call_ms": call_ms, "raw_synthesis_ms": synth_ms,
                                               "sessions": args.sessions, "rounds": rounds, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
