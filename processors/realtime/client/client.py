"""OpenAIRealtime: the ``realtime.openai`` processor, a thin websocket shell around RealtimeProtocol.

Theory of operation
-------------------
All protocol decisions are made by :class:`~.protocol.RealtimeProtocol`; this shell moves
bytes and frames. It owns three tasks, all spawned on the graph's task group:

* the **connection** task opens the websocket (``websockets`` asyncio client, bearer key,
  ``max_size=None`` inbound), feeds every server message to the core and reconnects with
  :class:`~.backoff.Backoff` after a transient failure; the core restores the session and
  replays the user audio it kept meanwhile;
* the **pusher** task pushes the core's in-order frames (audio, text, tool calls, response
  start/end, metrics, errors) downstream. The reader never waits for playback: the
  server sends audio faster than real time, and a barge-in must be seen at once.
  The frames wait in a bounded :class:`~pipeline.queue.FrameQueue` (``push_queue`` in
  ``statistics()``) of :data:`PUSH_QUEUE_SIZE` with the block policy: what is queued is a
  response (its audio, text, tool calls, start and end), none of which may be lost, and
  the bound is far above what a response queues, so a full queue means downstream is stuck.
  Interruption and speaking frames skip the pusher and go out immediately; an interruption
  purges the queued data frames of older turns (``FrameQueue.purge_stale``, the runner's
  own mechanism; the core itself stops producing frames of an interrupted response);
* with ``url: local``, the **local server** task runs the offline realtime server of
  :mod:`processors.realtime.server` on an ephemeral 127.0.0.1 port.

Client events are written under one lock that also drains the core, so they reach the
socket in the order the core produced them, whichever task caused them. A fatal condition
(bad key, rejected session config, retries exhausted) raises :class:`RealtimeError` from
the connection task: the runner reports it and, by policy, stops the pipeline.

On a graceful end the processor closes the user's open turn, waits up to
``end_timeout_s`` for the answer in progress, pushes it, then closes with code 1000.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import anyio
import anyio.lowlevel
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pipeline.frames import (
    AudioFormat,
    AudioFrame,
    Direction,
    EndFrame,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    PlaybackProgressFrame,
    TextFrame,
    ToolResultFrame,
    ToolsAvailableFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipeline.processor import Processor
from pipeline.queue import FrameQueue

from ..wire import CODEC, PCM_RATE
from .backoff import Backoff, retry_after_close, retry_after_handshake
from .errors import RealtimeError
from .protocol import RealtimeProtocol
from .session import MissingApiKey, RealtimeParams, connect_url, resolve_api_key
from .state import Phase

__all__ = ["OpenAIRealtime", "run_local_server"]

_DOWN = Direction.DOWNSTREAM
#: Frames of the core waiting for the pusher; a 200 ms audio delta is one frame, so this is
#: minutes of a response: only a downstream that stopped taking frames fills it.
PUSH_QUEUE_SIZE = 4096
#: Frames that overtake the in-order ones: a barge-in must reach playback at once.
_AT_ONCE = (InterruptionFrame, UserStartedSpeakingFrame, UserStoppedSpeakingFrame)
#: How long an interrupted item waits for playback's final report before truncating at the last one.
SETTLE_TRUNCATE_S = 0.5


async def run_local_server(params: RealtimeParams, started: Any, stop: anyio.Event) -> None:
    """Run the offline local realtime server until ``stop``; report its URL through ``started(url)``.

    This is all ``url: local`` means: the processor runs it as a task of the graph and
    connects to the URL it reports, like any other server.

    The server (:func:`processors.realtime.server.serve_local`) listens on an ephemeral
    127.0.0.1 port; ``params.local_rules`` is its responder's rules file.
    """
    from processors.realtime.server import serve_local  # heavy: speech models

    async with serve_local(host="127.0.0.1", port=0, rules=params.local_rules) as server:
        started(f"{server.url}/realtime")
        await stop.wait()


class OpenAIRealtime(Processor):
    """The OpenAI Realtime API as a processor: user audio in, the model's speech, text and tool calls out.

    Downstream it takes the user's audio (24 kHz int16 mono for pcm16, 8 kHz PCM or G.711
    codes for G.711; a G.711 model's audio leaves as codes, ``AudioFrame.codec`` set),
    and optionally speaking frames from a local VAD (``turn_detection: none``) and typed
    user text. Upstream it takes playback progress (for exact barge-in truncation), tool
    results and tool announcements from a ``tools.router``. It pushes the model's audio
    (``item_id`` set, turn = the response's turn), text, user transcriptions, tool calls,
    response start/end with usage, per-turn latency metrics and error frames.
    ``url: local`` talks to the offline local server instead of the API.
    """

    Params = RealtimeParams
    input_format = AudioFormat(PCM_RATE, 1, "int16")
    accepts_g711 = True  # a G.711 session takes the codes as they are (below)

    def __init__(self, params: RealtimeParams | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        p: RealtimeParams = self.params  # type: ignore[assignment]
        # G.711 in: codes (a phone's own bytes) or PCM, both taken as they come; G.711 out:
        # the model's codes, so the graph check decodes them only where a processor needs PCM.
        coded_in = CODEC[p.input_audio_format] is not None
        self.input_format = AudioFormat(p.input_rate, 1, None if coded_in else "int16")
        self._out_codec = CODEC[p.output_audio_format]
        self.core = RealtimeProtocol(p, name=self.name, g711_frames=True)
        self.url: str | None = None  # the URL connected to (resolved at start)
        self.connections = 0  # sockets opened so far
        self._ws: Any = None
        self._closing = False
        self._conn_done = False
        self._push_queue = FrameQueue(PUSH_QUEUE_SIZE)
        self._end_marker = EndFrame()  # put after the last frame: the pusher stops at it
        self._unpushed = 0
        self._settling = False

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat | None:
        return AudioFormat(self.params.output_rate, 1, self._out_codec or "int16")

    def statistics(self) -> dict[str, Any]:
        """Queue figures plus connections and what the protocol core skipped or dropped."""
        out = super().statistics()
        out["connections"] = self.connections
        q = self._push_queue.statistics()
        out["push_queue"] = {"queued": q.size, "max_size": q.max_size, "dropped": q.dropped, "stale": q.stale}
        out.update({f"realtime_{k}": v for k, v in self.core.stats.items()})
        return out

    # --- lifecycle ------------------------------------------------------------------------

    def preflight(self) -> None:
        """Fail now, before anything runs, if the node has no API key (MissingApiKey: one line)."""
        p: RealtimeParams = self.params  # type: ignore[assignment]
        try:
            resolve_api_key(p, local=p.url == "local")
        except MissingApiKey as exc:
            raise MissingApiKey(f"processor {self.name!r}: {exc}") from None

    async def start(self) -> None:
        p: RealtimeParams = self.params  # type: ignore[assignment]
        self.core.name = self.name
        self._key = resolve_api_key(p, local=p.url == "local")
        self._send_lock = anyio.Lock()
        self._changed = anyio.Event()
        self._stop_local = anyio.Event()
        self._pushed_all = anyio.Event()
        self._pushed_all.set()
        self.spawn(self._pusher)
        self.spawn(self._connection)

    async def stop(self) -> None:
        core = self.core
        if not self._conn_done and core.phase is not Phase.CLOSED:
            core.end_of_input()
            await self._flush()
            with anyio.move_on_after(self.params.end_timeout_s) as scope:
                while core.busy is not None and not self._conn_done:
                    self._changed = changed = anyio.Event()
                    await changed.wait()
            if scope.cancelled_caught:
                self.log.warning("%s: ended while still busy after %.1fs: %s", self.name,
                                 self.params.end_timeout_s, core.busy)
        self._closing = True
        if core.truncations_pending:
            core.settle_truncations()
            await self._flush()
        core.close()  # from here on the reader's last messages are ignored
        ws = self._ws
        if ws is not None:
            with anyio.move_on_after(2.0):
                await ws.close(1000, "pipeline ended")
        self._stop_local.set()
        await self._push_queue.put(self._end_marker, _DOWN)
        await self._pushed_all.wait()  # everything in order reaches downstream before the end

    # --- frames from the graph ------------------------------------------------------------

    async def process(self, frame: Frame, direction: Direction) -> None:
        core = self.core
        if self._closing:
            if not isinstance(frame, (AudioFrame, PlaybackProgressFrame, ToolResultFrame, ToolsAvailableFrame)):
                await self.push(frame, direction)
            return
        if direction is _DOWN:
            if isinstance(frame, AudioFrame):
                core.append_audio(frame.samples, frame.codec)
            elif isinstance(frame, UserStartedSpeakingFrame):
                await self.push(frame)
                core.user_started_speaking()
            elif isinstance(frame, UserStoppedSpeakingFrame):
                await self.push(frame)
                core.user_stopped_speaking()
            elif isinstance(frame, InterruptionFrame):
                core.sync_turn(frame.turn)
                self._purge(frame.turn)
                await self.push(frame)
                core.interrupt(announce=False)
            elif isinstance(frame, TextFrame) and frame.role == "user":
                core.send_user_text(frame.text)
            else:
                await self.push(frame, direction)
        elif isinstance(frame, PlaybackProgressFrame):
            core.on_playback_progress(frame.item_id, frame.played_ms, frame.done)
        elif isinstance(frame, ToolResultFrame):
            core.tool_result(frame.call_id, frame.output, frame.is_error)
        elif isinstance(frame, ToolsAvailableFrame):
            core.add_tools(frame.tools)
        else:
            await self.push(frame, direction)
        await self._flush()

    # --- the core's output ----------------------------------------------------------------

    async def _flush(self) -> None:
        """Push the core's frames and send its events, in order."""
        core = self.core
        if core.has_output:
            for frame in core.frames_out():
                if isinstance(frame, ErrorFrame) and frame.fatal:
                    continue  # raised by the connection task: the runner reports it once
                if type(frame) in _AT_ONCE:
                    if type(frame) is InterruptionFrame:
                        self._purge(frame.turn)
                    await self.push(frame)
                    continue
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
                        await ws.send(json.dumps(event, separators=(",", ":")))
                    except ConnectionClosed:
                        ws = None  # the connection task sees the close and reconnects
        if core.truncations_pending and not self._settling:
            self._settling = True
            self.spawn(self._settle_later)
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

    async def _settle_later(self) -> None:
        await anyio.sleep(SETTLE_TRUNCATE_S)
        self._settling = False
        if self.core.settle_truncations():
            await self._flush()

    # --- the connection -------------------------------------------------------------------

    async def _connection(self) -> None:
        try:
            await self._connect_loop()
        finally:
            self._conn_done = True
            self._changed.set()

    async def _resolve_url(self) -> str:
        p: RealtimeParams = self.params  # type: ignore[assignment]
        if p.url != "local":
            return connect_url(p.url, p.model)
        found: list[str] = []
        ready = anyio.Event()

        def started(url: str) -> None:
            found.append(url)
            ready.set()

        self.spawn(run_local_server, p, started, self._stop_local)
        await ready.wait()
        return connect_url(found[0], p.model)

    async def _connect_loop(self) -> None:
        p: RealtimeParams = self.params  # type: ignore[assignment]
        r = p.reconnect
        backoff = Backoff(r.initial_delay_s, r.max_delay_s, r.factor, r.jitter, r.max_attempts, r.seed)
        self.url = url = await self._resolve_url()
        headers = {"Authorization": f"Bearer {self._key}"}
        if p.dialect == "beta":
            headers["OpenAI-Beta"] = "realtime=v1"
        # websockets logs request headers at DEBUG: give it a logger that masks the key
        ws_log = logging.getLogger(f"voxpipe.{self.name}.websockets")
        if not any(isinstance(f, _RedactSecret) for f in ws_log.filters):
            ws_log.addFilter(_RedactSecret())
        while not self._closing:
            try:
                ws = await connect(url, additional_headers=headers, max_size=None, compression=None,
                                   open_timeout=p.connect_timeout_s, close_timeout=2,
                                   user_agent_header="voxpipe (realtime.openai)", logger=ws_log)
            except Exception as exc:
                if self._closing:
                    return
                what = _describe(exc)
                if not (r.enabled and retry_after_handshake(exc)):
                    raise RealtimeError(f"{self.name}: cannot connect to {url}: {what}{_handshake_hint(exc)}") from None
                await self._retry(backoff, f"cannot connect to {url}: {what}")
                continue
            if self._closing:  # stopped while the handshake ran
                with anyio.move_on_after(2.0):
                    await ws.close(1000)
                return
            self._ws = ws
            self.connections += 1
            self.core.connection_made()
            self.log.info("%s: connected to %s", self.name, url)
            try:
                async for message in ws:
                    self.core.receive_message(message)
                    if self.core.online:
                        backoff.reset()
                    await self._flush()
                    if self.core.fatal is not None:
                        raise RealtimeError(f"{self.name}: {self.core.fatal.message}")
            except RealtimeError:
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
            if self._closing:
                return
            if not (r.enabled and retry_after_close(code)):
                raise RealtimeError(f"{self.name}: the server closed the connection (code {code}: {reason or 'no reason'})"
                                    "; not retried" + ("" if r.enabled else " because reconnect.enabled is false"))
            await self._retry(backoff, f"connection lost (code {code}{': ' + reason if reason else ''})")

    async def _retry(self, backoff: Backoff, what: str) -> None:
        delay = backoff.next_delay()
        if delay is None:
            raise RealtimeError(f"{self.name}: {what}; gave up after {backoff.max_attempts} attempts "
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


def _handshake_hint(exc: BaseException) -> str:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return " (check OPENAI_API_KEY or params.api_key of realtime.openai)"
    if status == 404:
        return " (check `url` and `model` of realtime.openai)"
    return ""
