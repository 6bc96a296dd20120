"""ModelSocketClient: the websocket shell shared by ``realtime.openai`` and ``live.openai``.

Theory of operation
-------------------
A model client is a sans-I/O protocol core (``self.core``) plus this shell, which moves
bytes and frames with tasks on the graph's task group:

* the **connection** task (:meth:`_connection`) resolves the URL (``url: local`` first
  starts the offline local server as a task of its own, on an ephemeral 127.0.0.1 port,
  and connects to the URL it reports), opens the websocket (``websockets`` asyncio client,
  bearer key in a header the debug log masks, ``max_size=None`` inbound), feeds every
  server message to the core and, after a transient failure, reconnects with
  :class:`~.backoff.Backoff`; the core restores its session and replays the user audio it
  kept meanwhile. A fatal condition (bad key, refused session, retries used up) raises the
  subclass's :attr:`error_class` from this task: the runner reports it once;
* the **pusher** task (:meth:`_pusher`) pushes the core's in-order frames downstream from a
  bounded :class:`~pipeline.queue.FrameQueue` with the block policy, so the reader never
  waits for playback; the frame types in :attr:`at_once` skip the queue, and an
  interruption purges the queued frames of older turns (:meth:`_purge`).

:meth:`_flush` drains the core: frames to the pusher, client events to the socket under
one lock, so they leave in the core's order whichever task caused them.

Why hand-written: ``websockets`` is the library and does the protocol; what is ours is the
policy around it (when to retry, what a failure tells the user, what is replayed and in
which order), and that policy is the same for both APIs, so it lives here once. The hooks
are what differs: :attr:`error_class`, :attr:`type_name` (user agent and hints),
:attr:`stats_prefix`, :meth:`_extra_headers`, :meth:`_connect_url`, :meth:`_online`, :meth:`_finished`,
:meth:`_queued`, :meth:`_after_flush`, :meth:`_spawn_helpers` and :attr:`flush_on_connect`.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, ClassVar

import anyio
import anyio.lowlevel
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pipeline.frames import Direction, EndFrame, ErrorFrame, Frame, InterruptionFrame
from pipeline.processor import Processor
from pipeline.queue import FrameQueue

from .backoff import Backoff, retry_after_close, retry_after_handshake
from .session import resolve_api_key

__all__ = ["ModelSocketClient"]

_DOWN = Direction.DOWNSTREAM
#: One compact JSON encoder for every client event (``json.dumps(separators=...)`` builds a new one per call).
_compact = json.JSONEncoder(separators=(",", ":")).encode
#: Frames of the core waiting for the pusher; a 200 ms audio delta is one frame, so this is
#: minutes of a response: only a downstream that stopped taking frames fills it.
PUSH_QUEUE_SIZE = 4096


class ModelSocketClient(Processor):
    """Base of the model clients: connect loop, retry, ordered flush and pusher around ``self.core``.

    A subclass sets ``self.core`` before calling :meth:`_init_shell` from its ``__init__``,
    defines ``_local_server`` (``url: local``'s server task), and overrides the hooks where
    its API differs (the key's error message, what "online" means, ...).
    """

    #: Raised from the connection task when the session cannot go on.
    error_class: ClassVar[type[Exception]] = RuntimeError
    #: The processor's YAML type: in the user agent and in the hints of failed handshakes.
    type_name: ClassVar[str] = "model"
    #: Prefix of the core's counters in ``statistics()``.
    stats_prefix: ClassVar[str] = "model_"
    #: Frame types that overtake the queued ones (an interruption also purges older turns).
    at_once: ClassVar[tuple[type[Frame], ...]] = (InterruptionFrame,)
    #: Drain the core once right after a socket opens (before the server's first message).
    flush_on_connect: ClassVar[bool] = False
    core: Any
    _local_server: Any  # run_local_server(params, started, stop) of the subclass's module

    def _init_shell(self) -> None:
        self.url: str | None = None  # the URL connected to (resolved at start)
        self.connections = 0  # sockets opened so far
        self._ws: Any = None
        self._closing = False
        self._conn_done = False
        self._push_queue = FrameQueue(PUSH_QUEUE_SIZE)
        self._end_marker = EndFrame()  # put after the last frame: the pusher stops at it
        self._unpushed = 0

    def _resolve_key(self) -> str:
        """The API key from params or ``$OPENAI_API_KEY`` (any token for ``url: local``)."""
        return resolve_api_key(self.params, local=self.params.url == "local")

    def statistics(self) -> dict[str, Any]:
        """Queue figures plus connections and what the protocol core counted (skipped, dropped, barge-ins)."""
        out = super().statistics()
        out["connections"] = self.connections
        q = self._push_queue.statistics()
        out["push_queue"] = {"queued": q.size, "max_size": q.max_size, "dropped": q.dropped, "stale": q.stale}
        out.update({f"{self.stats_prefix}{k}": v for k, v in self.core.stats.items()})
        return out

    # --- hooks ----------------------------------------------------------------------------

    def _extra_headers(self) -> dict[str, str]:
        return {}

    def _connect_url(self, url: str) -> str:
        return url

    def _online(self) -> bool:
        """The session is up: a reconnect afterwards starts the backoff afresh."""
        return bool(self.core.online)

    def _finished(self) -> bool:
        """The session has ended for good: the reader stops and does not reconnect."""
        return False

    def _queued(self, frame: Frame) -> None:
        """Called for each frame handed to the pusher."""

    def _after_flush(self) -> None:
        """Called at the end of every flush."""

    def _spawn_helpers(self) -> None:
        """Spawn the subclass's own tasks (between the pusher and the connection)."""

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self.core.name = self.name
        self._key = self._resolve_key()
        # fast_acquire: a free lock is taken without a checkpoint (an extra loop iteration per
        # client event otherwise: each input_audio_buffer.append, 17 a second); the flush
        # awaits the socket right after, so the task still yields where it used to
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._changed = anyio.Event()
        self._stop_local = anyio.Event()
        self._pushed_all = anyio.Event()
        self._pushed_all.set()
        self.spawn(self._pusher)
        self._spawn_helpers()
        self.spawn(self._connection)

    async def _close_socket(self) -> None:
        """Close the socket with code 1000 and stop the local server (the core is closed already)."""
        ws = self._ws
        if ws is not None:
            with anyio.move_on_after(2.0):
                await ws.close(1000, "pipeline ended")
        self._stop_local.set()

    async def _end_pusher(self) -> None:
        """Everything in order reaches downstream before the end."""
        await self._push_queue.put(self._end_marker, _DOWN)
        await self._pushed_all.wait()

    # --- the core's output ----------------------------------------------------------------

    async def _flush(self) -> None:
        """Push the core's frames and send its events, in order."""
        core = self.core
        if core.has_output:
            for frame in core.frames_out():
                if isinstance(frame, ErrorFrame) and frame.fatal:
                    continue  # raised by the connection task: the runner reports it once
                if type(frame) in self.at_once:
                    if type(frame) is InterruptionFrame:
                        self._purge(frame.turn)
                    await self.push(frame)
                    continue
                self._queued(frame)
                self._unpushed += 1
                if self._pushed_all.is_set():
                    self._pushed_all = anyio.Event()
                if not self._push_queue.put_nowait(frame, _DOWN):
                    await self._push_queue.put(frame, _DOWN)
            async with self._send_lock:  # drained under the lock: events leave in the core's order
                ws = self._ws
                for event in core.events_to_send():
                    if ws is None:
                        continue  # the socket is being replaced: the core resends what must survive
                    try:
                        await ws.send(_compact(event))
                    except ConnectionClosed:
                        ws = None  # the connection task sees the close and reconnects
        self._after_flush()
        self._changed.set()

    def _purge(self, turn: int) -> None:
        """Drop queued data frames of turns before ``turn`` (an interruption announced it)."""
        self._unpushed -= self._push_queue.purge_stale(turn)
        if self._unpushed == 0:
            self._pushed_all.set()

    async def _pusher(self) -> None:
        queue = self._push_queue
        while True:
            frame = (await queue.get())[0]
            if frame is self._end_marker:
                break
            await self.push(frame)
            self._unpushed -= 1
            if self._unpushed == 0:
                self._pushed_all.set()
            # let downstream take each frame before the next: a system frame (metrics) pushed
            # right behind a queued control frame (response end) would overtake it there
            await anyio.lowlevel.checkpoint()
        self._unpushed = 0
        self._pushed_all.set()

    # --- the connection -------------------------------------------------------------------

    async def _connection(self) -> None:
        try:
            await self._connect_loop()
        finally:
            self._conn_done = True
            self._changed.set()

    async def _resolve_url(self) -> str:
        p = self.params
        if p.url != "local":  # type: ignore[attr-defined]
            return self._connect_url(p.url)  # type: ignore[attr-defined]
        found: list[str] = []
        ready = anyio.Event()

        def started(url: str) -> None:
            found.append(url)
            ready.set()

        self.spawn(self._local_server, p, started, self._stop_local)
        await ready.wait()
        return self._connect_url(found[0])

    async def _connect_loop(self) -> None:
        p: Any = self.params
        error = self.error_class
        r = p.reconnect
        backoff = Backoff(r.initial_delay_s, r.max_delay_s, r.factor, r.jitter, r.max_attempts, r.seed)
        self.url = url = await self._resolve_url()
        headers = {"Authorization": f"Bearer {self._key}", **self._extra_headers()}
        # websockets logs request headers at DEBUG: give it a logger that masks the key
        ws_log = logging.getLogger(f"voxpipe.{self.name}.websockets")
        if not any(isinstance(f, _RedactSecret) for f in ws_log.filters):
            ws_log.addFilter(_RedactSecret())
        while not self._closing:
            try:
                ws = await connect(url, additional_headers=headers, max_size=None, compression=None,
                                   open_timeout=p.connect_timeout_s, close_timeout=2,
                                   user_agent_header=f"voxpipe ({self.type_name})", logger=ws_log)
            except Exception as exc:
                if self._closing:
                    return
                what = _describe(exc)
                if not (r.enabled and retry_after_handshake(exc)):
                    hint = _handshake_hint(exc, self.type_name)
                    raise error(f"{self.name}: cannot connect to {url}: {what}{hint}") from None
                await self._retry(backoff, f"cannot connect to {url}: {what}")
                continue
            if self._closing:  # stopped while the handshake ran
                with anyio.move_on_after(2.0):
                    await ws.close(1000)
                return
            self._ws = ws
            self.connections += 1
            self.core.connection_made()
            if self.flush_on_connect:
                await self._flush()
            self.log.info("%s: connected to %s", self.name, url)
            try:
                async for message in ws:
                    self.core.receive_message(message)
                    if self._online():
                        backoff.reset()
                    await self._flush()
                    if self.core.fatal is not None:
                        raise error(f"{self.name}: {self.core.fatal.message}")
                    if self._finished():
                        break
            except error:
                self._closing = True
                with anyio.move_on_after(2.0):
                    await ws.close(1000)
                raise
            except ConnectionClosed as exc:  # the connection broke (no close frame, or an error code)
                self.log.debug("%s: connection error: %s", self.name, _describe(exc))
            finally:
                self._ws = None
            code, reason = ws.close_code, ws.close_reason
            self.core.connection_lost(f"close code {code} {reason or ''}".strip())
            await self._flush()
            if self._closing or self._finished():
                return
            if not (r.enabled and retry_after_close(code)):
                raise error(f"{self.name}: the server closed the connection (code {code}: {reason or 'no reason'})"
                            "; not retried" + ("" if r.enabled else " because reconnect.enabled is false"))
            await self._retry(backoff, f"connection lost (code {code}{': ' + reason if reason else ''})")

    async def _retry(self, backoff: Backoff, what: str) -> None:
        delay = backoff.next_delay()
        if delay is None:
            raise self.error_class(f"{self.name}: {what}; gave up after {backoff.max_attempts} attempts "
                                   "(raise reconnect.max_attempts to keep trying)")
        text = f"{what}; reconnecting in {delay:.1f}s (attempt {backoff.attempts} of {backoff.max_attempts})"
        self.log.warning("%s: %s", self.name, text)
        await self.push(ErrorFrame(text, processor=self.name, code="connection_lost"))
        await anyio.sleep(delay)


class _RedactSecret(logging.Filter):
    """Masks credentials in the websockets library's debug log of the handshake headers.

    Any bearer token is masked, not one particular key: several processors (or runs)
    share a logger name, each with its own key.
    """

    _SECRET = re.compile(r"(Bearer |openai-insecure-api-key\.)[^\s,]+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(self._SECRET.sub(r"\1***", a) if isinstance(a, str) else a for a in args)
        if isinstance(record.msg, str) and "Bearer" in record.msg:
            record.msg = self._SECRET.sub(r"\1***", record.msg)
        return True


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _handshake_hint(exc: BaseException, type_name: str) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return f" (check OPENAI_API_KEY or params.api_key of {type_name})"
    if status == 404:
        return f" (check `url` and `model` of {type_name})"
    return ""
