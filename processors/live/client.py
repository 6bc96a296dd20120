"""OpenAILive: the ``live.openai`` processor, a thin websocket shell around LiveProtocol.

Theory of operation
-------------------
All protocol decisions are made by :class:`~.protocol.LiveProtocol`; this shell moves
bytes and frames. The connect loop, retry, ordered flush and pusher are
:class:`processors.realtime.client.shell.ModelSocketClient`'s, shared with
``realtime.openai``; this class adds the Live hooks (the session is online once ACTIVE and
over once CLOSED, a flush right after connecting, the timer below). Three tasks run on the
graph's task group:

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

from typing import Any

import anyio

from pipeline.frames import (
    AudioFormat,
    AudioFrame,
    Direction,
    Frame,
    PlaybackProgressFrame,
    TextFrame,
    ToolCallFrame,
    ToolResultFrame,
    ToolsAvailableFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from processors.realtime.client.session import MissingApiKey
from processors.realtime.client.shell import ModelSocketClient

from .params import LiveParams
from .protocol import LiveProtocol
from .state import Phase

__all__ = ["LiveError", "OpenAILive"]

_DOWN = Direction.DOWNSTREAM
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


class OpenAILive(ModelSocketClient):
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
    error_class = LiveError
    type_name = "live.openai"
    stats_prefix = "live_"
    flush_on_connect = True
    _local_server = staticmethod(run_local_server)

    def __init__(self, params: LiveParams | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        p: LiveParams = self.params  # type: ignore[assignment]
        self.input_format = AudioFormat(p.rate, 1, "int16")
        self.core = LiveProtocol(p, name=self.name)
        self._init_shell()
        self._deadlines: dict[str, float] = {}

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat | None:
        return AudioFormat(self.params.rate, 1, "int16")

    # --- lifecycle ------------------------------------------------------------------------

    def preflight(self) -> None:
        """Fail before anything runs when there is no API key (one line, never the key)."""
        self._resolve_key()

    def _resolve_key(self) -> str:
        try:
            return super()._resolve_key()
        except MissingApiKey:
            raise MissingApiKey(f"processor {self.name!r}: live.openai: no API key: set the OPENAI_API_KEY "
                                "environment variable (or params.api_key), or use `url: local` for the offline "
                                "local server") from None

    def _spawn_helpers(self) -> None:
        self._wake = anyio.Event()
        self.spawn(self._timer)

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
        await self._close_socket()
        self._wake.set()
        await self._end_pusher()

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

    def _queued(self, frame: Frame) -> None:
        if type(frame) is ToolCallFrame:
            self._deadlines[frame.call_id] = anyio.current_time() + self.params.delegation.timeout_s
            self._wake.set()

    def _after_flush(self) -> None:
        if self.core.watching:
            self._wake.set()

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

    # --- the connection: the shell's hooks ----------------------------------------------

    def _online(self) -> bool:
        return self.core.phase is Phase.ACTIVE

    def _finished(self) -> bool:
        return self.core.phase is Phase.CLOSED
