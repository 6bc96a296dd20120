"""Fairness between the connections of one server: recognition workers taken in turns, and the loop.

:class:`LoopShare` shares the event loop: each connection's work on it is charged to the
connection, and a heavy one waits for lighter ones before its next message is read. When a
lighter connection starts work, a heavier one's recognition already running (in a worker
process or a thread) is pre-empted (stopped at its next 100 ms block) and run again after the
lighter one's turn, so the CPU is the lighter one's at once.

The server's recognisers are a pool (worker processes, or ``workers`` threads) shared by
every connection (:mod:`.engine`); a recognition holds one for as long as it runs. :class:`SegmentedRecognition`
is each connection's view of the shared resources: it cuts long audio at quiet points
(:func:`quiet_cuts`) and recognises the pieces one after another, each queueing for a worker
anew, so one client's long commit delays another client's turn by one piece at most.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from processors.speech.sphinx import Heard

__all__ = ["MAX_PIECE_S", "PREEMPT_WINDOW_S", "Account", "LoopShare", "SegmentedRecognition", "quiet_cuts"]

log = logging.getLogger("voxpipe.realtime_server")

#: Longest piece of audio one recognition holds a shared worker for.
MAX_PIECE_S = 20.0
_SEARCH_S = 4.0  # a cut is looked for in the last seconds of each piece
_FRAME_S = 0.02
#: How long after it first starts a heavy connection's recognition piece may be pre-empted (then it runs to its end).
PREEMPT_WINDOW_S = 1.0


def _takes_stop(resources: Any) -> bool:
    """Whether ``resources.recognize`` can be stopped from another thread (a ``stop`` event)."""
    try:
        return "stop" in inspect.signature(resources.recognize).parameters
    except (TypeError, ValueError):
        return False


def quiet_cuts(samples: np.ndarray, rate: int, max_piece_s: float = MAX_PIECE_S) -> list[int]:
    """Sample positions that cut ``samples`` into pieces of at most ``max_piece_s``.

    Each cut is at the quietest 20 ms frame of the piece's last few seconds, so a word is
    seldom split. Empty for audio no longer than one piece.
    """
    piece, frame = int(max_piece_s * rate), max(1, int(_FRAME_S * rate))
    search = min(int(_SEARCH_S * rate), piece // 2)
    cuts, start, n = [], 0, samples.shape[0]
    while n - start > piece:
        lo = start + piece - search
        window = samples[lo:start + piece].astype(np.float32)
        frames = window[: window.shape[0] // frame * frame].reshape(-1, frame)
        quietest = int(np.argmin(np.einsum("ij,ij->i", frames, frames))) if frames.size else 0
        start = lo + quietest * frame + frame // 2
        cuts.append(start)
    return cuts


class SegmentedRecognition:
    """One connection's view of the shared speech resources: long audio is recognised in pieces.

    The server's recognisers are a pool (worker processes, or ``workers`` threads) shared by
    every connection; a recognition holds one for as long as it runs. A six-minute commit would hold a worker
    for seconds and, with a single worker, every other connection's turn would wait for it.
    Cut into pieces of at most :data:`MAX_PIECE_S`, each piece queues for a worker anew
    (the pool's limiter is first come, first served), so another connection's turn waits
    for one piece at most. Each connection's graph recognises one segment at a time, so a
    flooding client holds at most one worker. Everything else is the shared resources'.

    With the connection's ``account`` (:class:`Account`), each piece is *pre-emptible*: if a connection of less than half this one's usage starts
    work while the piece is being decoded, the piece is cancelled (a worker process, or the
    thread in threads mode, stops at its next 100 ms block and is free at once), waits for
    the lighter turn and is recognised again from its start. That holds for :data:`PREEMPT_WINDOW_S`
    after the piece first started; then it runs to its end whatever comes, so a heavy
    connection's recognition is late by that much at most, never starved. The words are the
    same (each recognition starts from the decoder's initial state); only the heavier
    connection pays, in decoding done twice. In threads (``processes`` 0) the thread is
    stopped by a :class:`threading.Event` it looks at between blocks (``recognize(stop=)``);
    resources whose ``recognize`` takes no ``stop`` are not pre-empted in threads.
    """

    def __init__(self, resources: Any, account: "Account | None" = None) -> None:
        self._resources = resources
        self._account = account

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resources, name)

    async def recognize(self, samples: np.ndarray, rate: int, *options: Any) -> str:
        """The words in ``samples`` (int16 at ``rate``), piece by piece past :data:`MAX_PIECE_S`.

        ``options`` (the session's grammar and tools) go to every piece's recognition.
        """
        cuts = quiet_cuts(samples, rate)
        if not cuts:
            return await self._piece(samples, rate, options)
        bounds = [0, *cuts, samples.shape[0]]
        pieces = []
        for a, b in zip(bounds, bounds[1:]):
            text = await self._piece(samples[a:b], rate, options)
            if text:
                pieces.append(text)
        log.debug("recognised %.1f s in %d pieces", samples.shape[0] / rate, len(bounds) - 1)
        return joined_pieces(pieces)

    async def _piece(self, samples: np.ndarray, rate: int, options: tuple) -> str:
        account, resources = self._account, self._resources
        in_threads = not getattr(resources, "processes", 0)
        if account is None or (in_threads and not _takes_stop(resources)):
            return await resources.recognize(samples, rate, *options)
        window_end = time.perf_counter() + PREEMPT_WINDOW_S
        while True:
            stop = threading.Event() if in_threads else None
            with account.preemptible(time.perf_counter() < window_end, stop):
                if stop is None:
                    return await resources.recognize(samples, rate, *options)
                text = await resources.recognize(samples, rate, *options, stop=stop)
                if text is not None:
                    return text
            # pre-empted by a lighter connection's work: let its turn run, then decode again
            await account.give_way(max(0.0, window_end - time.perf_counter()))


def joined_pieces(pieces: list[str]) -> str:
    """One transcript from an utterance's pieces, keeping how they were heard.

    A plain ``" ".join`` would drop the :class:`~processors.speech.sphinx.Heard` flags: an
    utterance longer than :data:`MAX_PIECE_S` whose pieces the general model heard (speech
    outside the grammar) must still be answered as out-of-grammar. It is when any piece was
    (one out-of-grammar piece makes the sentence one the rules do not know); its score is the
    pieces' lowest.
    """
    text = " ".join(pieces)
    flagged = [p for p in pieces if isinstance(p, Heard)]
    if not flagged:
        return text
    scores = [p.score for p in flagged if p.score is not None]
    return Heard(text, any(p.fallback for p in flagged), min(scores) if scores else None)


class LoopShare:
    """The server's event loop shared between its connections: the heaviest waits for the lighter.

    Everything a connection makes the server do on the event loop is charged to its
    :class:`Account`: reading and parsing its messages (with server VAD), the protocol
    events its responses produce (audio base64-encoded into deltas), synthesis, and encoding
    and sending those events. Usage decays with a time constant of ``tau_s``, so it is a
    recent rate. Before the server reads a connection's next message,
    :meth:`Account.wait_turn` holds it back while a *lighter* connection (less than half its
    usage) has work in flight (or did some in the last ``hold_s``: the hand-offs between the
    stages of one turn), for at most ``max_defer_s`` per message; its recognitions and
    synthesis give way the same (:meth:`Account.give_way`). A client sending
    audio at full speed is thus read at most one message per ``max_defer_s`` while another
    client's turn is being heard and answered; TCP pushes back on it and its own turns, and
    their synthesis and events, come at that pace too. Connections of similar weight (many
    sessions speaking at once) never wait for one another.

    Two things make the *first* turn after a flood starts as fair as the later ones:

    * **Work already running is pre-empted, not waited for.** Giving way acts before a piece
      of work starts; a heavy connection's recognition that is already decoding (in a worker
      process, or in a thread holding the GIL) when another client's turn begins would
      otherwise share the CPU with that turn to its end (on two cores, the flooder's decoding, the other turn's decoding and
      the event loop: the other turn took 2-4x its idle time). When a lighter connection
      starts work (:meth:`Account.work`), every heavier connection's running recognition
      registered with :meth:`Account.preemptible` is cancelled; it is recognised again
      after the lighter turn (:class:`SegmentedRecognition`).
    * **A young connection's usage is a rate from its first message.** The decayed usage of
      a connection that started flooding a moment ago is still small (it builds up over
      ``tau_s``), so for a while the flooder would count as the *lighter* one and the other
      client would give way to it. :meth:`Account.usage` divides by the share of the decay
      window the connection has lived (at least ``min_age_s``), which estimates the usage it
      would have at its present rate: a flooder is heavy after its first few messages, and
      accounts of one age compare exactly as before. Not seeded with a fixed heavy value:
      every other client's turn opens a new connection too, and must start light.

    Why this and not a quota: a fixed rate limit either throttles honest batch uploads or
    lets a flood through; charging actual loop time keeps a lone heavy client at full speed
    and slows it only when someone else needs the loop.
    """

    def __init__(self, *, tau_s: float = 1.0, max_defer_s: float = 0.02, hold_s: float = 0.05,
                 min_age_s: float = 0.25) -> None:
        self.tau_s = tau_s
        self.max_defer_s = max_defer_s
        self.hold_s = hold_s
        self.min_age_s = min_age_s
        #: Pre-empt heavier connections' running recognitions (False: they only give way before starting).
        self.preempt = True
        self._accounts: list[Account] = []
        self._running: dict[Account, Any] = {}  # account -> (cancel scope, stop event) of its pre-emptible work

    def open(self) -> "Account":
        """A new connection's account (close it with :meth:`Account.close`)."""
        account = Account(self)
        self._accounts.append(account)
        return account

    @property
    def accounts(self) -> list["Account"]:
        """The open accounts."""
        return list(self._accounts)

    def _preempt_for(self, lighter: "Account") -> None:
        now = time.perf_counter()
        threshold = 2.0 * lighter.usage(now)
        for account, (scope, stop) in list(self._running.items()):
            if account is not lighter and account.usage(now) > threshold:
                del self._running[account]
                account.preempted += 1
                if stop is not None:
                    stop.set()  # a thread stops at its next block; the cancel lands when it returns
                scope.cancel()


class Account:
    """One connection's use of the server's event loop (see :class:`LoopShare`)."""

    __slots__ = ("_share", "_used", "_stamp", "_last", "_born", "working", "messages", "deferred", "deferred_s",
                 "charged_s", "preempted")

    def __init__(self, share: LoopShare) -> None:
        self._share = share
        self._used = 0.0
        self._stamp = self._last = self._born = time.perf_counter()
        self.working = 0  # pieces of work in flight (a recognition, a response, a synthesis)
        self.messages = 0  # client messages read
        self.deferred = 0  # of which waited for a lighter connection
        self.deferred_s = 0.0
        self.charged_s = 0.0
        self.preempted = 0  # running recognitions cancelled for a lighter connection (and run again)

    def usage(self, now: float | None = None) -> float:
        """Recently charged loop time, in seconds (decayed with ``tau_s``), as a rate from the start.

        For a connection younger than a few ``tau_s`` the decayed sum is divided by
        ``1 - exp(-age / tau_s)`` (age at least ``min_age_s``): the usage it would have if it
        had always worked at its present rate. For an old connection the divisor is 1.
        """
        now = time.perf_counter() if now is None else now
        tau = self._share.tau_s
        used = self._used * math.exp(-(now - self._stamp) / tau)
        age = max(now - self._born, self._share.min_age_s)
        return used / -math.expm1(-age / tau) if age < 20 * tau else used

    def charge(self, seconds: float) -> None:
        """Add ``seconds`` of work done for this connection."""
        now = time.perf_counter()
        self._used = self._used * math.exp(-(now - self._stamp) / self._share.tau_s) + seconds
        self._stamp = self._last = now
        self.charged_s += seconds

    @contextmanager
    def timed(self) -> Iterator[None]:
        """Charge the time the block takes (synchronous work on the loop)."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.charge(time.perf_counter() - t)

    @contextmanager
    def work(self) -> Iterator[None]:
        """Mark work in flight for the block (it may await): heavier connections give way meanwhile.

        Entering it also pre-empts the running :meth:`preemptible` work of every connection
        of over twice this one's usage.
        """
        if self._share._running and self._share.preempt:
            self._share._preempt_for(self)
        self.working += 1
        try:
            yield
        finally:
            self.working -= 1
            self._last = time.perf_counter()

    @contextmanager
    def preemptible(self, enabled: bool = True, stop: threading.Event | None = None) -> Iterator[None]:
        """Run the block (one recognition) so that a lighter connection's work can cancel it.

        A pre-emption sets ``stop`` (if given: a thread doing the work looks at it) and
        cancels the block; the cancellation is swallowed here, the code after the ``with``
        runs (it retries), and :attr:`preempted` counts it. A cancellation from elsewhere
        propagates as usual. With ``enabled`` False the block just runs.
        """
        import anyio

        if not enabled:
            yield
            return
        running = self._share._running
        with anyio.CancelScope() as scope:
            entry = running[self] = (scope, stop)
            try:
                yield
            finally:
                if running.get(self) is entry:
                    del running[self]

    def _lighter_is_working(self) -> bool:
        now = time.perf_counter()
        mine, recent = self.usage(now), now - self._share.hold_s
        return any(a is not self and (a.working or a._last > recent) and a.usage(now) < 0.5 * mine
                   for a in self._share._accounts)

    async def wait_turn(self) -> None:
        """Before reading the next message: give way to lighter connections with work in flight."""
        self.messages += 1
        await self.give_way()

    async def give_way(self, max_s: float | None = None) -> None:
        """Wait while a lighter connection has work in flight, at most ``max_s`` (default ``max_defer_s``).

        Called before each piece of this connection's work starts (a message read, a
        recognition, a synthesis pull); returns at once when no lighter connection is working.
        """
        import anyio

        if not self._lighter_is_working():
            return
        t0 = time.perf_counter()
        deadline = t0 + (self._share.max_defer_s if max_s is None else max_s)
        while True:
            await anyio.sleep(min(0.002, max(0.0, deadline - time.perf_counter())))
            if time.perf_counter() >= deadline or not self._lighter_is_working():
                break
        self.deferred += 1
        self.deferred_s += time.perf_counter() - t0

    def close(self) -> None:
        """The connection ended."""
        self._share._running.pop(self, None)
        try:
            self._share._accounts.remove(self)
        except ValueError:
            pass
