"""OpenAILive: the ``live.openai`` processor, a thin websocket shell around LiveProtocol.

Theory of operation
-------------------
All protocol decisions are made by :class:`~.protocol.LiveProtocol`; this shell moves
bytes and frames, with three tasks on the graph's task group:

* the **connection** task opens the websocket (``websockets`` asyncio client, bearer key in
  a header that the debug log masks), feeds every server message to the core and, after a
  transient failure, reconnects with the Realtime client's retry policy
  (:class:`processors.realtime.client.backoff.Backoff`); the core starts the session again
  with its history and replays the user audio it kept meanwhile;
* the **pusher** task pushes the core's in-order frames downstream through a bounded
  :class:`~pipeline.queue.FrameQueue` (the reader never waits for playback); an
  interruption skips the queue and purges what is queued of older turns;
* the **timer** task wakes the core while a barge-in may be coming (:meth:`LiveProtocol.tick`,
  every ``TICK_S``) and at each delegated task's deadline (:meth:`LiveProtocol.task_timed_out`).

With ``url: local`` a fourth task runs the offline local server
(:mod:`processors.realtime.server`, which speaks Live on ``/v1/live/sessions``) on an
ephemeral 127.0.0.1 port. Client events are written under one lock that also drains the
core, so they leave in the core's order. A fatal condition (bad key, a session the server
refused to start, retries used up) raises :class:`LiveError` from the connection task.
"""

from __future__ import annotations

import json
import logging
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
    ToolCallFrame,
    ToolResultFrame,
    ToolsAvailableFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipeline.processor import Processor
from pipeline.queue import FrameQueue
from processors.realtime.client.backoff import Backoff, retry_after_close, retry_after_handshake
from processors.realtime.client.client import _describe, _handshake_hint, _RedactSecret
from processors.realtime.client.session import MissingApiKey, resolve_api_key

from .params import LiveParams
from .protocol import LiveProtocol
from .state import Phase

__all__ = ["LiveError", "OpenAILive"]

_DOWN = Direction.DOWNSTREAM
PUSH_QUEUE_SIZE = 4096
TICK_S = 0.05
#: On a graceful end, the model counts as done once it sent no audio for this long.
QUIET_S = 1.0


class LiveError(RuntimeError):
    """The Live session cannot go on (bad key, refused config, retries exhausted); the message says why."""


async def run_local_server(params: LiveParams, started: Any, stop: anyio.Event) -> None:
    """Run the offline local server until ``stop``; report its Live URL through ``started(url)``."""
    from processors.realtime.server import serve_local  # heavy: speech models

    async with serve_local(host="127.0.0.1", port=0, rules=params.local_rules) as server:
        started(f"{server.url}/live/sessions")
        await stop.wait()


class OpenAILive(Processor):
    """The OpenAI Live API (full duplex) as a processor: user audio in, speech, text and tool calls out.

    Downstream it takes the user's audio (int16 mono at the session rate: 24 or 16 kHz for
    pcm16, 8 kHz for G.711) and, optionally, a local VAD's speaking frames (barge-in evidence
    and latency figures). Upstream it takes playback progress (what the user heard), tool
    results and tool lists from a ``tools.router``. It pushes the model's audio (``item_id``
    per spoken segment), transcripts both ways, a :class:`ToolCallFrame` per delegated task
    or backend function call, interruptions, usage and latency metrics, and error frames.
    ``url: local`` talks to the offline local server instead of the API.
    """

    Params = LiveParams
    input_format = AudioFormat(24000, 1, "int16")

    def __init__(self, params: LiveParams | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        p: LiveParams = self.params  # type: ignore[assignment]
        self.input_format = AudioFormat(p.rate, 1, "int16")
        self.core = LiveProtocol(p, name=self.name)
        self.url: str | None = None
        self.connections = 0
        self._ws: Any = None
        self._closing = False
        self._conn_done = False
        self._push_queue = FrameQueue(PUSH_QUEUE_SIZE)
        self._end_marker = EndFrame()
        self._unpushed = 0
        self._deadlines: dict[str, float] = {}

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat | None:
        return AudioFormat(self.params.rate, 1, "int16")

    def statistics(self) -> dict[str, Any]:
        """Queue figures plus connections and what the protocol core counted (skipped events, barge-ins)."""
        out = super().statistics()
        out["connections"] = self.connections
        q = self._push_queue.statistics()
        out["push_queue"] = {"queued": q.size, "max_size": q.max_size, "dropped": q.dropped, "stale": q.stale}
        out.update({f"live_{k}": v for k, v in self.core.stats.items()})
        return out

    # --- lifecycle ------------------------------------------------------------------------

    def preflight(self) -> None:
        """Fail before anything runs when there is no API key (one line, never the key)."""
        self._resolve_key()

    def _resolve_key(self) -> str:
        p: LiveParams = self.params  # type: ignore[assignment]
        try:
            return resolve_api_key(p, local=p.url == "local")  # type: ignore[arg-type]
        except MissingApiKey:
            raise MissingApiKey(f"processor {self.name!r}: live.openai: no API key: set the OPENAI_API_KEY "
                                "environment variable (or params.api_key), or use `url: local` for the offline "
                                "local server") from None

    async def start(self) -> None:
        self.core.name = self.name
        self._key = self._resolve_key()
        self._send_lock = anyio.Lock()
        self._changed = anyio.Event()
        self._wake = anyio.Event()
        self._stop_local = anyio.Event()
        self._pushed_all = anyio.Event()
        self._pushed_all.set()
        self.spawn(self._pusher)
        self.spawn(self._timer)
        self.spawn(self._connection)

    async def stop(self) -> None:
        core = self.core
        if not self._conn_done and core.phase is not Phase.CLOSED:
            with anyio.move_on_after(self.params.end_timeout_s) as scope:
                while not self._conn_done and (core.pending_tasks or core.phase in (Phase.STARTING, Phase.DISCONNECTED)
                                               or anyio.current_time() - self._last_audio() < QUIET_S):
                    self._changed = changed = anyio.Event()
                    with anyio.move_on_after(0.1):
                        await changed.wait()
            if scope.cancelled_caught:
                self.log.warning("%s: ended after %.1fs with tasks still pending: %s", self.name,
                                 self.params.end_timeout_s, core.pending_tasks or "none (the model kept talking)")
            core.end_of_input()
            await self._flush()
            with anyio.move_on_after(2.0):  # session.closed carries the final usage
                while not self._conn_done and core.phase is Phase.CLOSING:
                    self._changed = changed = anyio.Event()
                    await changed.wait()
        self._closing = True
        core.close()
        ws = self._ws
        if ws is not None:
            with anyio.move_on_after(2.0):
                await ws.close(1000, "pipeline ended")
        self._stop_local.set()
        self._wake.set()
        await self._push_queue.put(self._end_marker, _DOWN)
        await self._pushed_all.wait()

    def _last_audio(self) -> float:
        seg = self.core._segment
        return seg.last_audio_at if seg is not None else float("-inf")

    # --- frames from the graph ------------------------------------------------------------

    async def process(self, frame: Frame, direction: Direction) -> None:
        core = self.core
        if self._closing:
            if not isinstance(frame, (AudioFrame, PlaybackProgressFrame, ToolResultFrame, ToolsAvailableFrame)):
                await self.push(frame, direction)
            return
        if direction is _DOWN:
            if isinstance(frame, AudioFrame):
                core.append_audio(frame.samples)
            elif isinstance(frame, UserStartedSpeakingFrame):
                await self.push(frame)
                core.user_started_speaking()
                self._wake.set()
            elif isinstance(frame, UserStoppedSpeakingFrame):
                await self.push(frame)
                core.user_stopped_speaking()
            elif isinstance(frame, TextFrame) and frame.role == "user":
                self.log.warning("%s: the Live API takes no typed user text; dropped %r", self.name, frame.text[:40])
            else:
                await self.push(frame, direction)
        elif isinstance(frame, PlaybackProgressFrame):
            core.on_playback_progress(frame.item_id, frame.played_ms, frame.done)
        elif isinstance(frame, ToolResultFrame):
            self._deadlines.pop(frame.call_id, None)
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
                if type(frame) is InterruptionFrame:
                    self._unpushed -= self._push_queue.purge_stale(frame.turn)
                    if self._unpushed == 0:
                        self._pushed_all.set()
                    await self.push(frame)
                    continue
                if type(frame) is ToolCallFrame:
                    self._deadlines[frame.call_id] = anyio.current_time() + self.params.delegation.timeout_s
                    self._wake.set()
                self._unpushed += 1
                if self._pushed_all.is_set():
                    self._pushed_all = anyio.Event()
                if not self._push_queue.put_nowait(frame, _DOWN):
                    await self._push_queue.put(frame, _DOWN)
            async with self._send_lock:
                ws = self._ws
                for event in core.events_to_send():
                    if ws is None:
                        continue  # the socket is being replaced: the core restores what matters
                    try:
                        await ws.send(json.dumps(event, separators=(",", ":")))
                    except ConnectionClosed:
                        ws = None
        if core.watching:
            self._wake.set()
        self._changed.set()

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
            await anyio.lowlevel.checkpoint()
        self._unpushed = 0
        self._pushed_all.set()

    async def _timer(self) -> None:
        """Barge-in ticks while the user speaks over the model; task deadlines."""
        while not self._closing:
            now = anyio.current_time()
            for call_id, due in list(self._deadlines.items()):
                if due <= now:
                    del self._deadlines[call_id]
                    self.core.task_timed_out(call_id)
            if self.core.watching:
                self.core.tick()
            await self._flush()
            waits = [due - now for due in self._deadlines.values()]
            if self.core.watching:
                waits.append(TICK_S)
            self._wake = wake = anyio.Event()
            with anyio.move_on_after(max(0.0, min(waits)) if waits else 3600.0):
                await wake.wait()

    # --- the connection -------------------------------------------------------------------

    async def _connection(self) -> None:
        try:
            await self._connect_loop()
        finally:
            self._conn_done = True
            self._changed.set()

    async def _resolve_url(self) -> str:
        p: LiveParams = self.params  # type: ignore[assignment]
        if p.url != "local":
            return p.url
        found: list[str] = []
        ready = anyio.Event()

        def started(url: str) -> None:
            found.append(url)
            ready.set()

        self.spawn(run_local_server, p, started, self._stop_local)
        await ready.wait()
        return found[0]

    async def _connect_loop(self) -> None:
        p: LiveParams = self.params  # type: ignore[assignment]
        r = p.reconnect
        backoff = Backoff(r.initial_delay_s, r.max_delay_s, r.factor, r.jitter, r.max_attempts, r.seed)
        self.url = url = await self._resolve_url()
        headers = {"Authorization": f"Bearer {self._key}"}
        ws_log = logging.getLogger(f"voxpipe.{self.name}.websockets")
        if not any(isinstance(f, _RedactSecret) for f in ws_log.filters):
            ws_log.addFilter(_RedactSecret())
        while not self._closing:
            try:
                ws = await connect(url, additional_headers=headers, max_size=None, compression=None,
                                   open_timeout=p.connect_timeout_s, close_timeout=2,
                                   user_agent_header="voxpipe (live.openai)", logger=ws_log)
            except Exception as exc:
                if self._closing:
                    return
                what = _describe(exc)
                if not (r.enabled and retry_after_handshake(exc)):
                    hint = _handshake_hint(exc).replace("realtime.openai", "live.openai")
                    raise LiveError(f"{self.name}: cannot connect to {url}: {what}{hint}") from None
                await self._retry(backoff, f"cannot connect to {url}: {what}")
                continue
            if self._closing:
                with anyio.move_on_after(2.0):
                    await ws.close(1000)
                return
            self._ws = ws
            self.connections += 1
            self.core.connection_made()
            await self._flush()
            self.log.info("%s: connected to %s", self.name, url)
            try:
                async for message in ws:
                    self.core.receive_message(message)
                    if self.core.phase is Phase.ACTIVE:
                        backoff.reset()
                    await self._flush()
                    if self.core.fatal is not None:
                        raise LiveError(f"{self.name}: {self.core.fatal.message}")
                    if self.core.phase is Phase.CLOSED:
                        break
            except LiveError:
                self._closing = True
                with anyio.move_on_after(2.0):
                    await ws.close(1000)
                raise
            except ConnectionClosed as exc:
                self.log.debug("%s: connection error: %s", self.name, _describe(exc))
            finally:
                self._ws = None
            code, reason = ws.close_code, ws.close_reason
            self.core.connection_lost(f"close code {code} {reason or ''}".strip())
            await self._flush()
            if self._closing or self.core.phase is Phase.CLOSED:
                return
            if not (r.enabled and retry_after_close(code)):
                raise LiveError(f"{self.name}: the server closed the connection (code {code}: {reason or 'no reason'})"
                                "; not retried" + ("" if r.enabled else " because reconnect.enabled is false"))
            await self._retry(backoff, f"connection lost (code {code}{': ' + reason if reason else ''})")

    async def _retry(self, backoff: Backoff, what: str) -> None:
        delay = backoff.next_delay()
        if delay is None:
            raise LiveError(f"{self.name}: {what}; gave up after {backoff.max_attempts} attempts "
                            "(raise reconnect.max_attempts to keep trying)")
        text = f"{what}; reconnecting in {delay:.1f}s (attempt {backoff.attempts} of {backoff.max_attempts})"
        self.log.warning("%s: %s", self.name, text)
        await self.push(ErrorFrame(text, processor=self.name, code="connection_lost"))
        await anyio.sleep(delay)
