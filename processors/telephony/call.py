"""PhoneCall: one call's media stream, as the host's reader and the graph's phone transports share it.

Theory of operation
-------------------
The host owns the websocket. Its reader hands every provider message to
:meth:`PhoneCall.receive`, which runs it through the provider's serializer: the caller's
audio and key presses join the inbound queue that :class:`~.transport.PhoneInput` drains;
echoed marks go to the :class:`~.playback.PlaybackLedger`, whose proven positions are
coalesced (latest per item) for :class:`~.transport.PhoneOutput` to push upstream as
playback progress. A malformed message is logged once per kind of fault, counted and
skipped (:attr:`PhoneCall.bad_input`); the call goes on.

The output sends through :meth:`send_audio` (a ``media`` and a ``mark`` per chunk) and
:meth:`clear`; once the socket is gone these do nothing, so a graph being cancelled never
fails on a closed socket. The inbound queue is bounded in media time (oldest dropped).

A tool ends the call with :meth:`hangup`; the host closes the stream once the audio
already sent has been played (or after ``drain_s``). :func:`current_call` gives tools the
call they run in.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from .playback import PlaybackLedger
from .serializer import (
    ENCODINGS,
    MediaStreamProtocol,
    StreamCleared,
    StreamConnected,
    StreamDtmf,
    StreamError,
    StreamEvent,
    StreamMark,
    StreamMedia,
    StreamNotice,
    StreamStart,
    StreamStop,
)

__all__ = ["CALL", "CallInfo", "PhoneCall", "current_call"]

log = logging.getLogger("voxpipe.telephony")

#: The key of a call's :class:`PhoneCall` in the session context's ``attachments``.
CALL = "phone_call"

_CURRENT: contextvars.ContextVar[PhoneCall | None] = contextvars.ContextVar("voxpipe_phone_call", default=None)


def current_call() -> PhoneCall:
    """The call the calling code runs in (for tools: ``current_call().hangup()``).

    Raises LookupError outside a phone session (the host sets it for the session's tasks,
    tool threads included).
    """
    call = _CURRENT.get()
    if call is None:
        raise LookupError("not inside a phone call: current_call() works in processors and tools of a "
                          "graph that `voxpipe serve` runs for a call")
    return call


@dataclass(frozen=True, slots=True)
class CallInfo:
    """What tools may know about a call: provider, ids, parties and custom parameters."""

    provider: str
    call_id: str
    stream_id: str
    account_id: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    custom: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """The call as ``SessionContext.metadata`` entries."""
        return {"provider": self.provider, "call_id": self.call_id, "stream_id": self.stream_id,
                "account_id": self.account_id, "from": self.from_number, "to": self.to_number,
                "custom_parameters": dict(self.custom)}


def _wake(waiter: asyncio.Future[None] | None) -> None:
    """Wake the transport task waiting on ``waiter`` (if any).

    A bare future, not an ``anyio.Event``: no new Event object, backend look-up and
    checkpoint per wait, which happens up to 50 times a second per call. The runner is
    asyncio's (pipeline/node.py waits the same way).
    """
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


Send = Callable[[str], Awaitable[bool]]
#: Sends several messages in order at once (one socket write); returns how many went out.
SendMany = Callable[[list[str]], Awaitable[int]]


class PhoneCall:
    """The state one call shares between the host's socket reader and the graph's phone transports."""

    def __init__(self, protocol: MediaStreamProtocol, send: Send, *, max_backlog_ms: int = 1000,
                 clock: Callable[[], float] = time.perf_counter, send_many: SendMany | None = None) -> None:
        self.protocol = protocol
        self._send_many = send_many
        self.info: CallInfo | None = None
        self.max_backlog_ms = max_backlog_ms
        self.clock = clock
        self.ledger = PlaybackLedger(8000)
        self._send = send
        self._inbound: deque[tuple[str, Any]] = deque()  # ("audio", bytes) | ("dtmf", StreamDtmf)
        self._backlog = 0  # bytes of audio queued
        self._dtmf_queued = 0  # key presses queued
        #: audio the input takes at a time: the transport is woken once this much has arrived
        #: (or a key press, or the end), and gets it as one entry (0: every message on its own)
        self.frame_bytes = 0
        self._inbound_waiter: asyncio.Future[None] | None = None  # next_inbound() waits on it
        self._reports: dict[str | None, int] = {}
        self._reports_waiter: asyncio.Future[None] | None = None  # next_reports() waits on it
        self._open = True
        self.hangup_requested = anyio.Event()
        self.hangup_reason = ""
        self.ended_reason = ""
        # figures for the log, the tests and the benchmark
        self.bad_input: Counter[str] = Counter()
        self.media_in = 0
        self.dropped_in = 0
        self.media_out = 0
        self.marks_out = 0
        self.clears = 0
        self.dtmf_in = 0
        self.last_clear_at: float | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def open(self) -> bool:
        """True until the stream stopped or the socket closed."""
        return self._open

    def end(self, reason: str) -> None:
        """The stream is over: wake the transports so they return."""
        if self._open:
            self._open = False
            self.ended_reason = reason
            _wake(self._inbound_waiter)
            _wake(self._reports_waiter)

    def hangup(self, reason: str = "hung up by the agent") -> None:
        """End the call once the audio already sent has been played (the host closes the stream)."""
        self.hangup_reason = reason
        self.hangup_requested.set()

    def enter(self) -> contextvars.Token:
        """Make this the :func:`current_call` of the calling task and the tasks it starts."""
        return _CURRENT.set(self)

    @staticmethod
    def leave(token: contextvars.Token) -> None:
        _CURRENT.reset(token)

    # --- provider -> graph (the host's reader) -----------------------------------------------------

    def receive(self, message: str | bytes) -> StreamEvent | None:
        """Handle one provider message; returns its event, or None when it was malformed (counted)."""
        try:
            event = self.protocol.receive(message)
        except StreamError as exc:
            self.bad(exc.code, exc.message)
            return None
        if isinstance(event, StreamMedia):
            self._put_audio(event.payload)
        elif isinstance(event, StreamMark):
            for item, ms in self.ledger.echo(event.name, self.clock()):
                self._reports[item] = ms
            _wake(self._reports_waiter)
        elif isinstance(event, StreamDtmf):
            self.dtmf_in += 1
            self._dtmf_queued += 1
            self._inbound.append(("dtmf", event))
            _wake(self._inbound_waiter)
        elif isinstance(event, StreamStart):
            self.ledger.rate = event.sample_rate
        elif isinstance(event, StreamNotice):
            log.warning("%s: %s", self.name, event.text)
        elif isinstance(event, (StreamStop, StreamConnected, StreamCleared)):
            pass
        return event

    def bad(self, code: str, message: str) -> None:
        """Count a malformed message of kind ``code``; the first of each kind is logged with what was wrong."""
        self.bad_input[code] += 1
        if self.bad_input[code] == 1:
            log.warning("%s: skipped a bad %s message (%s): %s; further ones of this kind are only counted",
                        self.name, self.protocol.provider, code, message)

    @property
    def name(self) -> str:
        return f"call {self.info.call_id}" if self.info else f"{self.protocol.provider} stream"

    def _put_audio(self, payload: bytes) -> None:
        self.media_in += 1
        self._inbound.append(("audio", payload))
        self._backlog += len(payload)
        limit = self.max_backlog_ms * self.protocol.sample_rate * ENCODINGS[self.protocol.encoding] // 1000
        while self._backlog > limit:
            for i, (kind, data) in enumerate(self._inbound):
                if kind == "audio":
                    del self._inbound[i]
                    self._backlog -= len(data)
                    self.dropped_in += 1
                    break
            else:
                self._backlog = 0
        if self._backlog >= self.frame_bytes:
            _wake(self._inbound_waiter)

    # --- graph side (the transports) ---------------------------------------------------------------

    async def next_inbound(self) -> tuple[str, Any] | None:
        """The next ``("audio", bytes)`` or ``("dtmf", StreamDtmf)``; None once the stream is over.

        Audio comes ``frame_bytes`` at a time (the caller's messages joined), or less before a
        key press and at the end of the stream, so that the order of audio and keys holds.
        """
        inbound = self._inbound
        while not inbound or (self._open and self._backlog < self.frame_bytes and not self._dtmf_queued):
            if not self._open:
                return None
            self._inbound_waiter = waiter = asyncio.get_running_loop().create_future()
            await waiter
        kind, payload = inbound.popleft()
        if kind != "audio":
            self._dtmf_queued -= 1
            return kind, payload
        n, want = len(payload), self.frame_bytes
        if n < want and inbound and inbound[0][0] == "audio":
            parts = [payload]
            while n < want and inbound and inbound[0][0] == "audio":
                more = inbound.popleft()[1]
                parts.append(more)
                n += len(more)
            payload = b"".join(parts)
        self._backlog -= n
        return kind, payload

    async def next_reports(self) -> dict[str | None, int] | None:
        """Heard positions proven since the last call, ``item_id -> ms``; None once the stream is over."""
        while not self._reports:
            if not self._open:
                return None
            self._reports_waiter = waiter = asyncio.get_running_loop().create_future()
            await waiter
        reports, self._reports = self._reports, {}
        return reports

    async def send_audio(self, payload: bytes, *, item_id: str | None, turn: int, chunk_bytes: int) -> None:
        """Send assistant audio in chunks of ``chunk_bytes``, each followed by a mark."""
        width = ENCODINGS[self.protocol.encoding]
        if not self._open:
            return
        if self._send_many is not None:  # the whole delta in one socket write
            protocol, ledger, now = self.protocol, self.ledger, self.clock()
            messages = []
            for i in range(0, len(payload), chunk_bytes):
                chunk = payload[i:i + chunk_bytes]
                messages.append(protocol.media(chunk))
                messages.append(protocol.mark(ledger.sent(item_id, turn, len(chunk) // width, now)))
            if await self._send_many(messages) == len(messages):
                self.media_out += len(messages) // 2
                self.marks_out += len(messages) // 2
            return
        for i in range(0, len(payload), chunk_bytes):
            chunk = payload[i:i + chunk_bytes]
            if not self._open:
                return
            name = self.ledger.sent(item_id, turn, len(chunk) // width, self.clock())
            if await self._send(self.protocol.media(chunk)):
                self.media_out += 1
            if await self._send(self.protocol.mark(name)):
                self.marks_out += 1

    async def clear(self) -> list[tuple[str | None, int, int]]:
        """Drop the provider's buffer now; returns ``(item_id, turn, heard_ms)`` of the items cut short."""
        if not self._open:
            return []
        sent = await self._send(self.protocol.clear())
        now = self.clock()
        self.last_clear_at = now
        if sent:
            self.clears += 1
        self._reports.clear()
        return self.ledger.clear(now)

    def statistics(self) -> dict[str, Any]:
        """Messages in and out, audio dropped, marks, clears, key presses and bad input by kind."""
        return {"media_in": self.media_in, "dropped_in": self.dropped_in, "media_out": self.media_out,
                "marks_out": self.marks_out, "marks_echoed": self.ledger.echoed, "clears": self.clears,
                "dtmf_in": self.dtmf_in, "bad_input": dict(self.bad_input)}
