"""Speech recognition in worker processes: a pool of pocketsphinx recognisers on every core.

pocketsphinx holds the GIL while it decodes, so recognisers in threads share one core with
the event loop that serves every connection (20 sessions speaking at once waited 400 ms for
their first audio on the 2-core reference machine). :class:`RecognizerPool` runs ``processes``
worker processes, each with one :class:`~processors.speech.sphinx.Recognizer` built once
(its grammars cached by content, like a pooled decoder in a thread), and hands each
recognition to an idle one.

Why hand-written rather than :class:`concurrent.futures.ProcessPoolExecutor`: the executor
cannot stop a running job (a cancelled recognition would hold its process to the end), and
one dead process breaks the whole executor (``BrokenProcessPool``) until it is rebuilt with
every job in flight lost. Here each worker is a plain child process
(``python -m processors.speech.pool``) speaking length-prefixed pickles on its stdin/stdout,
awaited on the event loop (no thread per job), so that:

* **cancellation returns the worker at once**: the cancelled caller sends ``cancel`` and
  leaves; the worker stops decoding at its next 100 ms block and answers ``cancelled``, and
  the next caller that takes the worker reads and drops that answer first;
* **a crash is recovered**: a worker whose pipe ends (killed, segfault) is reaped and
  replaced by the caller that found it, which retries its job once on the new worker;
  the other workers go on untouched;
* **results are deterministic**: every worker builds the same recogniser and each utterance
  starts from the decoder's initial state (:class:`~processors.speech.sphinx.Recognizer`),
  so the same audio gives the same words whichever worker hears it and whatever it heard
  before;
* **shutdown has a deadline and leaves no process behind**: :meth:`RecognizerPool.aclose`
  closes each worker's stdin (it exits at its next read or block), waits ``stop_timeout_s``,
  then kills and reaps what is left. A worker also exits when its parent dies (stdin ends,
  and on Linux ``PR_SET_PDEATHSIG``), and ignores SIGINT and SIGTERM: a Ctrl-C in the
  terminal or a service manager signalling the whole group stops the server, which then
  stops its workers in order.

Callers queue first come, first served for a worker (:class:`anyio.CapacityLimiter`); a
server connection has at most one recognition in flight, so a flooding connection holds at
most one worker while the others take turns.
"""

from __future__ import annotations

import logging
import os
import pickle
import select
import signal
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RecognitionFailed", "RecognizerPool"]

log = logging.getLogger("voxpipe.speech.pool")

_HEADER = struct.Struct("!I")  # message length, then a pickle
_RATE = 16000  # the pocketsphinx model's rate
_BLOCK = _RATE // 10  # samples decoded between two looks for a cancel (100 ms)


class RecognitionFailed(RuntimeError):
    """A recognition could not be done: the worker failed on it, died twice, or the pool is closed."""


class _WorkerDied(Exception):
    pass


class _Worker:
    """One worker process and its pipe; used by one caller at a time (the pool sees to it)."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self._reader: Any = None
        self.pid = 0
        self.pending: int | None = None  # an abandoned job whose answer is still to be dropped

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def spawn(self, init: tuple, timeout_s: float) -> None:
        import anyio
        from anyio.streams.buffered import BufferedByteReceiveStream

        root = str(Path(__file__).resolve().parents[2])  # where `processors` is importable from
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        self.process = await anyio.open_process(
            [sys.executable, "-m", "processors.speech.pool", str(os.getpid())],
            stdin=-1, stdout=-1, stderr=None, env=env)
        self._reader = BufferedByteReceiveStream(self.process.stdout)
        self.pending = None
        with anyio.fail_after(timeout_s):
            await self.send(init)
            reply = await self.receive()
        if reply[0] != "ready":
            raise RecognitionFailed(f"recognition worker {self.index} failed to start: {reply[-1]}")
        self.pid = reply[1]

    async def send(self, message: tuple) -> None:
        import anyio

        data = pickle.dumps(message, protocol=5)
        try:
            await self.process.stdin.send(_HEADER.pack(len(data)) + data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise _WorkerDied(str(exc) or type(exc).__name__) from None

    async def receive(self) -> tuple:
        import anyio

        try:
            (size,) = _HEADER.unpack(await self._reader.receive_exactly(_HEADER.size))
            # the body follows the header at once; a cancel between the two would break the framing
            with anyio.CancelScope(shield=True), anyio.fail_after(10.0):
                return pickle.loads(await self._reader.receive_exactly(size))
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                anyio.ClosedResourceError, OSError) as exc:
            raise _WorkerDied(str(exc) or type(exc).__name__) from None

    async def run(self, job: int, message: tuple, timeout_s: float) -> tuple:
        """Send ``message`` (job ``job``) and return the worker's answer to it."""
        import anyio

        with anyio.fail_after(timeout_s):
            while self.pending is not None:  # the answer to an abandoned job comes first
                if (await self.receive())[1] == self.pending:
                    self.pending = None
            with anyio.CancelScope(shield=True):  # half a message would break the framing
                await self.send(message)
        self.pending = job
        try:
            with anyio.fail_after(timeout_s):
                while True:
                    reply = await self.receive()
                    if reply[1] == job:
                        self.pending = None
                        return reply
        except anyio.get_cancelled_exc_class():
            # the caller left: the worker stops at its next block; its answer is dropped later
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                try:
                    await self.send(("cancel", job))
                except _WorkerDied:
                    pass
            raise

    async def stop(self, timeout_s: float) -> None:
        """End the process: stdin closed (it exits), then killed past ``timeout_s``; always reaped."""
        import anyio

        process, self.process = self.process, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await process.stdin.aclose()
            except Exception:
                pass
            with anyio.move_on_after(timeout_s):
                await process.wait()
            if process.returncode is None:
                log.warning("recognition worker %d (pid %d) did not stop within %.1f s: killed", self.index,
                            self.pid, timeout_s)
                process.kill()
                with anyio.move_on_after(5.0):
                    await process.wait()
            await process.aclose()


class RecognizerPool:
    """``processes`` worker processes, each with one pocketsphinx recogniser; :meth:`recognize` in any.

    ``phrases`` and ``fallback`` (``"off"``, ``"gated"``, ``"always"``) build each worker's
    recogniser (as :class:`~processors.speech.sphinx.Recognizer`); a
    :class:`~processors.speech.sphinx.Grammar` per call selects what it expects. :meth:`start`
    starts every worker (each loads its model, about 0.2 s; with ``"gated"`` the general model
    loads at a worker's first unsure utterance); :meth:`aclose` stops them within ``stop_timeout_s``.
    Statistics: :meth:`statistics`.
    """

    def __init__(self, processes: int, phrases: list[str] | None = None, *, fallback: bool | str = False,
                 start_timeout_s: float = 60.0, stop_timeout_s: float = 5.0) -> None:
        if processes < 1:
            raise ValueError(f"RecognizerPool(processes={processes}): give at least 1 (or recognise in-process)")
        import anyio

        self.processes = processes
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._init = ("init", list(phrases or []), fallback)
        self._workers = [_Worker(i) for i in range(processes)]
        self._idle: list[_Worker] = []
        self._limiter = anyio.CapacityLimiter(processes)
        self._jobs = 0
        self.restarts = 0  # workers replaced after a crash
        self.cancelled = 0
        self._started = False
        self._closed = False

    @property
    def pids(self) -> list[int]:
        """The process ids of the live workers."""
        return [w.pid for w in self._workers if w.alive]

    def statistics(self) -> dict[str, int]:
        """Workers, live and idle ones, jobs done, cancelled jobs, workers replaced after a crash."""
        return {"processes": self.processes, "alive": len(self.pids), "idle": len(self._idle), "jobs": self._jobs,
                "cancelled": self.cancelled, "restarts": self.restarts}

    async def start(self) -> None:
        """Start every worker and wait until each has loaded its model (``start_timeout_s``)."""
        import anyio

        if self._started:
            return
        self._started = True
        try:
            async with anyio.create_task_group() as tg:
                for worker in self._workers:
                    tg.start_soon(worker.spawn, self._init, self.start_timeout_s)
        except BaseException:
            await self.aclose()
            raise
        self._idle = list(self._workers)
        log.info("recognition pool: %d worker processes (pids %s)", self.processes, self.pids)

    async def recognize(self, samples: np.ndarray, rate: int, grammar: Any = None, *,
                        narrowband: bool | None = None) -> str:
        """The words in ``samples`` (int16 mono at ``rate``), heard by an idle worker.

        A :class:`~processors.speech.sphinx.Heard` (a ``str``; ``fallback`` set when the
        words are the general model's).

        ``grammar`` (a :class:`~processors.speech.sphinx.Grammar`) is what to expect; None
        keeps the worker's current one. ``narrowband`` (default: ``rate <= 8000``) is
        telephone-band audio. Raises :class:`RecognitionFailed` when the worker fails on it or
        dies twice; a cancelled call returns its worker to the pool at once.
        """
        import anyio

        if self._closed or not self._started:
            raise RecognitionFailed("the recognition pool is " + ("closed" if self._closed else "not started; "
                                                                   "await pool.start() first"))
        samples = np.ascontiguousarray(samples if samples.ndim == 1 else samples[:, 0], dtype=np.int16)
        narrow = rate <= 8000 if narrowband is None else narrowband
        timeout_s = 30.0 + 2.0 * samples.shape[0] / max(rate, 1)  # a hung worker is killed past this
        async with self._limiter:
            worker = self._idle.pop()
            try:
                for attempt in (1, 2):
                    if self._closed:
                        raise RecognitionFailed("the recognition pool closed during the recognition")
                    try:
                        if not worker.alive:
                            await self._replace(worker)
                        self._jobs += 1
                        reply = await worker.run(self._jobs, ("recognize", self._jobs, samples, rate, grammar, narrow),
                                                 timeout_s)
                    except _WorkerDied as exc:
                        returncode = worker.process.returncode if worker.process is not None else None
                        log.warning("recognition worker %d (pid %d) died (%s, exit %s)%s", worker.index, worker.pid,
                                    exc, returncode, "; retrying on a new one" if attempt == 1 else "")
                        await worker.stop(0.0)
                        if attempt == 2:
                            raise RecognitionFailed("the recognition worker died twice on this audio") from None
                        continue
                    except TimeoutError:
                        log.warning("recognition worker %d (pid %d) did not answer within %.0f s: replaced",
                                    worker.index, worker.pid, timeout_s)
                        await worker.stop(0.0)
                        raise RecognitionFailed(f"recognition took longer than {timeout_s:.0f} s") from None
                    if reply[0] == "error":
                        raise RecognitionFailed(reply[2])
                    return reply[2]
            except anyio.get_cancelled_exc_class():
                self.cancelled += 1
                raise
            finally:
                self._idle.append(worker)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _replace(self, worker: _Worker) -> None:
        await worker.stop(0.0)
        self.restarts += 1
        await worker.spawn(self._init, self.start_timeout_s)
        log.info("recognition worker %d replaced (pid %d)", worker.index, worker.pid)

    async def aclose(self) -> None:
        """Stop every worker: each gets ``stop_timeout_s`` to exit, then is killed; all are reaped."""
        import anyio

        self._closed = True
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for worker in self._workers:
                    tg.start_soon(worker.stop, self.stop_timeout_s)


# --- the worker process ---------------------------------------------------------------------


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read(fd: int) -> tuple | None:
    """The next message from the parent, or None when the pipe has ended (the parent is gone)."""
    head = _read_exactly(fd, _HEADER.size)
    if head is None:
        return None
    body = _read_exactly(fd, _HEADER.unpack(head)[0])
    return None if body is None else pickle.loads(body)


def _write(fd: int, message: tuple) -> None:
    data = pickle.dumps(message, protocol=5)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


class _Stop(Exception):
    pass


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # it died before we asked
        raise SystemExit(0)


def _recognize(recognizer: Any, job: int, samples: np.ndarray, rate: int, grammar: Any, narrowband: bool,
               fd: int) -> tuple:
    from pipeline.dsp.resample import resample

    audio = resample(samples, rate, _RATE) if rate != _RATE and samples.size else samples
    if grammar is not None:
        recognizer.use_grammar(grammar)
    def cancelled() -> bool:
        if select.select([fd], [], [], 0)[0]:  # a message while decoding: a cancel, or the end
            message = _read(fd)
            if message is None or message[0] == "stop":
                raise _Stop
            return message[0] == "cancel" and message[1] == job
        return False

    recognizer.start_utterance()
    for start in range(0, audio.shape[0], _BLOCK):
        if cancelled():
            recognizer.cancel_utterance()  # the next job starts afresh
            return ("cancelled", job)
        recognizer.feed(audio[start:start + _BLOCK])
    heard = recognizer.end_utterance(narrowband=narrowband, stop=cancelled)  # the general pass looks too
    return ("cancelled", job) if heard is None else ("done", job, heard)


def _worker_main(parent: int) -> int:
    """A worker: build the recogniser the parent asks for, then answer its jobs until stdin ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us, in order
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with_parent(parent)
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    sys.stdout = sys.stderr  # a stray print must not corrupt the channel
    logging.basicConfig(level=logging.WARNING, format=f"voxpipe recognition worker {os.getpid()}: %(message)s")
    init = _read(fd_in)
    if init is None:
        return 0
    try:
        from processors.speech.sphinx import Recognizer

        recognizer = Recognizer(init[1] or None, fallback=init[2])
    except Exception as exc:
        _write(fd_out, ("error", 0, f"{type(exc).__name__}: {exc}"))
        return 1
    _write(fd_out, ("ready", os.getpid()))
    while (message := _read(fd_in)) is not None:
        kind = message[0]
        if kind == "stop":
            break
        if kind != "recognize":
            continue  # a cancel for a job already answered
        try:
            reply = _recognize(recognizer, *message[1:], fd=fd_in)
        except _Stop:
            break
        except Exception as exc:
            reply = ("error", message[1], f"{type(exc).__name__}: {exc}")
        _write(fd_out, reply)
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()))
