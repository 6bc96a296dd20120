"""OpenAIRealtime: the ``realtime.openai`` processor, a thin websocket shell around RealtimeProtocol.

Theory of operation
-------------------
All protocol decisions are made by :class:`~.protocol.RealtimeProtocol`; this shell moves
bytes and frames. The connect loop, retry, ordered flush and pusher are
:class:`~.shell.ModelSocketClient`'s, shared with ``live.openai``; this class adds the
Realtime hooks (beta header, the model in the URL, truncations settled after a barge-in).
It owns three tasks, all spawned on the graph's task group:

* the **connection** task opens the websocket (``websockets`` asyncio client, bearer key,
  ``max_size=None`` inbound), feeds every server message to the core and reconnects with
  :class:`~.backoff.Backoff` after a transient failure; the core restores the session and
  replays the user audio it kept meanwhile;
* the **pusher** task pushes the core's in-order frames (audio, text, tool calls, response
  start/end, metrics, errors) downstream. The reader never waits for playback: the
  server sends audio faster than real time, and a barge-in must be seen at once.
  The frames wait in a bounded :class:`~pipeline.queue.FrameQueue` (``push_queue`` in
  ``statistics()``) of :data:`.shell.PUSH_QUEUE_SIZE` with the block policy: what is queued is a
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

from typing import Any

import anyio

from pipeline.frames import (
    AudioFormat,
    AudioFrame,
    Direction,
    Frame,
    InterruptionFrame,
    PlaybackProgressFrame,
    TextFrame,
    ToolResultFrame,
    ToolsAvailableFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from ..wire import CODEC, PCM_RATE
from .errors import RealtimeError
from .protocol import RealtimeProtocol
from .session import MissingApiKey, RealtimeParams, connect_url
from .shell import ModelSocketClient
from .state import Phase

__all__ = ["OpenAIRealtime", "run_local_server"]

_DOWN = Direction.DOWNSTREAM
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


class OpenAIRealtime(ModelSocketClient):
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
    error_class = RealtimeError
    type_name = "realtime.openai"
    stats_prefix = "realtime_"
    at_once = _AT_ONCE
    _local_server = staticmethod(run_local_server)

    def __init__(self, params: RealtimeParams | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        p: RealtimeParams = self.params  # type: ignore[assignment]
        # G.711 in: codes (a phone's own bytes) or PCM, both taken as they come; G.711 out:
        # the model's codes, so the graph check decodes them only where a processor needs PCM.
        coded_in = CODEC[p.input_audio_format] is not None
        self.input_format = AudioFormat(p.input_rate, 1, None if coded_in else "int16")
        self._out_codec = CODEC[p.output_audio_format]
        self.core = RealtimeProtocol(p, name=self.name, g711_frames=True)
        self._init_shell()
        self._settling = False

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat | None:
        return AudioFormat(self.params.output_rate, 1, self._out_codec or "int16")

    # --- lifecycle ------------------------------------------------------------------------

    def preflight(self) -> None:
        """Fail now, before anything runs, if the node has no API key (MissingApiKey: one line)."""
        try:
            self._resolve_key()
        except MissingApiKey as exc:
            raise MissingApiKey(f"processor {self.name!r}: {exc}") from None

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
        await self._close_socket()
        await self._end_pusher()

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
                if core.has_output:  # a batch filled up (one frame in three at 20 ms frames and append_ms 60)
                    await self._flush()
                return  # else nothing changed that a flush would send, settle or wake
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

    def _after_flush(self) -> None:
        """Interrupted items wait a little for playback's final report, then truncate."""
        if self.core.truncations_pending and not self._settling:
            self._settling = True
            self.spawn(self._settle_later)

    async def _settle_later(self) -> None:
        await anyio.sleep(SETTLE_TRUNCATE_S)
        self._settling = False
        if self.core.settle_truncations():
            await self._flush()

    # --- the connection: the shell's hooks ----------------------------------------------

    def _extra_headers(self) -> dict[str, str]:
        return {"OpenAI-Beta": "realtime=v1"} if self.params.dialect == "beta" else {}

    def _connect_url(self, url: str) -> str:
        return connect_url(url, self.params.model)
