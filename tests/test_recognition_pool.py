"""Recognition in worker processes (issue 15 item 7): same words, cancels, crashes, shutdown, signals.

Real worker processes running pocketsphinx on eSpeak NG speech; every wait has a deadline.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import numpy as np
import pytest

from processors.realtime.server.engine import SpeechResources
from processors.speech.pool import RecognitionFailed, RecognizerPool

pytestmark = pytest.mark.anyio

PHRASES = ["what is the weather in paris", "tell me a joke", "hello there"]


@functools.lru_cache(maxsize=None)
def speech(text: str) -> tuple[np.ndarray, int]:
    """eSpeak NG saying ``text`` between quiet seeded noise (int16, native rate)."""
    from processors.speech.espeak import synthesize

    x, rate = synthesize(text)
    rng = np.random.default_rng(len(text))
    quiet = lambda s: rng.normal(0, 30, int(rate * s)).astype(np.int16)
    return np.concatenate([quiet(0.3), x, quiet(0.5)]), rate


def gone(pid: int) -> bool:
    """True once ``pid`` is no process at all (exited and reaped; a zombie still counts as there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_gone(pids: list[int], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


async def test_the_pool_hears_what_a_recogniser_in_this_process_hears():
    """Every phrase, several times, concurrently on two workers: the in-process transcript each time.

    Both with the server's default gated fallback: "tell me a joke" and "hello there" are not
    demo phrases, so workers also load and use the general model, lazily, each on its own.
    """
    resources = SpeechResources()
    grammar = resources.grammar_for([], "")
    resources_local = SpeechResources()
    await resources_local.warm_up()
    expected = {t: await resources_local.recognize(*speech(t), grammar) for t in PHRASES}
    assert expected["what is the weather in paris"] == "what is the weather in paris"
    pool = RecognizerPool(2, resources.phrases, fallback=resources.fallback)
    await pool.start()
    try:
        got: list[tuple[str, str]] = []

        async def one(text: str) -> None:
            got.append((text, await pool.recognize(*speech(text), grammar)))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for text in PHRASES * 4:
                    tg.start_soon(one, text)
        assert len(got) == 12 and all(words == expected[text] for text, words in got), got
        assert all(words.fallback == expected[text].fallback for text, words in got)  # the verdict crosses the pipe
        assert pool.statistics()["jobs"] == 12 and len(pool.pids) == 2
    finally:
        await pool.aclose()


async def test_a_cancelled_recognition_returns_its_worker_at_once():
    """200 recognitions of a long recording cancelled mid-way: no worker lost or replaced, words unchanged."""
    resources = SpeechResources()
    grammar = resources.grammar_for([], "")
    x, rate = speech("what is the weather in paris")
    long = np.tile(x, 30)  # about 80 s: far longer than each cancel waits
    pool = RecognizerPool(2, resources.phrases)
    await pool.start()
    try:
        pids = sorted(pool.pids)
        with anyio.fail_after(120):
            for i in range(200):
                with anyio.move_on_after(0.002 * (1 + i % 5)):
                    await pool.recognize(long, rate, grammar)
                assert pool.statistics()["idle"] == 2  # back in the pool as the call returns
            stats = pool.statistics()
            # (a cancel may land before the call reaches the pool on a loaded machine)
            assert 100 <= stats["cancelled"] <= 200 and stats["restarts"] == 0 and sorted(pool.pids) == pids
            # each worker stopped decoding and answered the cancel: the next words are right
            words = [await pool.recognize(x, rate, grammar) for _ in range(4)]
        assert words == ["what is the weather in paris"] * 4
    finally:
        await pool.aclose()


async def test_a_worker_killed_mid_recognition_is_replaced_and_the_job_retried():
    """SIGKILL the worker decoding a long recording: the job completes on its replacement."""
    resources = SpeechResources()
    grammar = resources.grammar_for([], "")
    x, rate = speech("what is the weather in paris")
    long = np.tile(x, 12)
    pool = RecognizerPool(1, resources.phrases)
    await pool.start()
    try:
        (victim,) = pool.pids
        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                result: list[str] = []

                async def job() -> None:
                    result.append(await pool.recognize(long, rate, grammar))

                tg.start_soon(job)
                while pool.statistics()["idle"]:  # the job has taken the worker
                    await anyio.sleep(0.001)
                await anyio.sleep(0.02)
                os.kill(victim, signal.SIGKILL)
        assert result and result[0].startswith("what is the weather in paris")
        assert pool.statistics()["restarts"] == 1 and pool.pids and pool.pids != [victim] and gone(victim)
        assert await pool.recognize(x, rate, grammar) == "what is the weather in paris"
    finally:
        await pool.aclose()


async def test_close_with_recognitions_in_flight_leaves_no_process():
    """aclose while both workers decode: the calls fail with RecognitionFailed, every worker is reaped."""
    resources = SpeechResources()
    x, rate = speech("tell me a joke")
    long = np.tile(x, 40)
    pool = RecognizerPool(2, resources.phrases, stop_timeout_s=2.0)
    await pool.start()
    pids = pool.pids
    failures: list[BaseException] = []

    async def job() -> None:
        try:
            await pool.recognize(long, rate, resources.grammar_for([], ""))
        except RecognitionFailed as exc:
            failures.append(exc)

    with anyio.fail_after(30):  # a bound, not a timing: stop_timeout_s is 2 s per worker
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(job)
            while pool.statistics()["idle"]:
                await anyio.sleep(0.001)
            await pool.aclose()
    assert len(failures) == 2 and all("closed" in str(f) for f in failures)
    assert all(gone(p) for p in pids) and pool.pids == []
    with pytest.raises(RecognitionFailed, match="closed"):
        await pool.recognize(x, rate)


_ORPHAN_SCRIPT = """
import anyio, sys
from processors.speech.pool import RecognizerPool
async def main():
    pool = RecognizerPool(2, ["hello there"])
    await pool.start()
    print(*pool.pids, flush=True)
    await anyio.sleep(60)
anyio.run(main)
"""


def test_workers_exit_when_their_parent_is_killed():
    """SIGKILL the process that owns a pool (no cleanup runs): its workers go too."""
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and not any(gone(p) for p in pids)
    finally:
        proc.kill()
        proc.wait(10)
    assert wait_gone(pids), [p for p in pids if not gone(p)]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or sys.platform != "linux", reason="needs Linux /proc")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_realtime_server_cli_stops_its_workers_on_a_signal(signum):
    """`voxpipe realtime-server --processes 2`: a signal ends it with exit 0 and no worker left."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "realtime-server", "--port", "0",
                             "--processes", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert "local realtime server on ws://" in lines[0], lines
        assert "2 worker processes" in lines[1], lines
        workers = _children(proc.pid)
        assert len(workers) == 2, workers
        proc.send_signal(signum)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code in (0, 130) if signum == signal.SIGINT else code == 0, proc.stderr.read()[-2000:]
    assert wait_gone(workers), [p for p in workers if not gone(p)]


async def test_a_server_session_survives_its_recognition_worker_being_killed():
    """serve_local(processes=1): kill the worker between two turns; the second turn is heard as well."""
    import base64
    import json

    from websockets.asyncio.client import connect

    from pipeline.dsp.resample import resample
    from processors.realtime.server import serve_local

    x, rate = speech("what is the weather in paris")
    audio = base64.b64encode(resample(x, rate, 24000).astype("<i2").tobytes()).decode()

    async def transcript(ws) -> str:
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
        with anyio.fail_after(60):
            while True:
                event = json.loads(await ws.recv())
                if event["type"].startswith("conversation.item.input_audio_transcription."):
                    if event["type"] in ("conversation.item.input_audio_transcription.completed",
                                         "conversation.item.input_audio_transcription.failed"):
                        return event.get("transcript", "FAILED")

    async with serve_local(processes=1) as server:
        pool = server.resources._pool
        async with connect(server.url + "/realtime?model=gpt-realtime", max_size=None,
                           additional_headers={"Authorization": "Bearer sk-local"}) as ws:
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {
                "input": {"turn_detection": None, "transcription": {"model": "whisper-1"}}}}}))
            first = await transcript(ws)
            (victim,) = pool.pids
            os.kill(victim, signal.SIGKILL)
            second = await transcript(ws)
        assert first == second == "what is the weather in paris"
        assert server.resources.statistics()["restarts"] == 1 and pool.pids and pool.pids != [victim]
        assert gone(victim)  # reaped by the pool when the second turn found it dead


def test_a_negative_process_count_is_one_line_saying_what_to_give():
    """`voxpipe realtime-server --processes -1`: exit 2, one error line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "realtime-server", "--port", "0", "--processes", "-1"],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--processes" in proc.stderr and len(proc.stderr.splitlines()) == 1
