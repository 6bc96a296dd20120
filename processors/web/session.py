"""WebSession: one browser connection, as the websocket transports of its graph see it.

Theory of operation
-------------------
The server owns the socket. Its reader task decodes each message from the page
(:mod:`.wire`) and hands it to the session: microphone audio and typed text go into the
inbound queue that :class:`~.transport.WebsocketInput` drains; playback reports are
checked against the items :class:`~.transport.WebsocketOutput` has sent and coalesced
(latest position per item) for the output to push upstream. The transports send through
:meth:`WebSession.send_event` / :meth:`WebSession.send_audio`; once the socket is gone
those become no-ops, so a graph that is being cancelled never fails on a closed socket.

The inbound queue is bounded in media time (``max_backlog_ms``): live audio that the
graph cannot take in time is dropped oldest first and counted, never buffered without
end. Reports are bounded by the items kept (``MAX_ITEMS``).

Lifecycle (one table, :data:`TRANSITIONS`)::

    OPEN --started--> RUNNING --client_closed | graph_ended--> CLOSING --freed--> CLOSED
    OPEN --client_closed | graph_ended--> CLOSING
"""

from __future__ import annotations

import enum
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import numpy as np

from .wire import WireError, audio_event, encode

__all__ = ["MAX_ITEMS", "TRANSITIONS", "PlayedItems", "SentItem", "SessionState", "WebSession"]

log = logging.getLogger("voxpipe.web")

#: Assistant items remembered per session for playback reports (oldest forgotten first).
MAX_ITEMS = 64
#: Typed messages queued before the oldest is dropped.
MAX_TEXTS = 16


class SessionState(enum.Enum):
    """Where a browser session stands."""

    OPEN = "open"  # connected; the graph is starting
    RUNNING = "running"  # the graph runs; the page was told `ready`
    CLOSING = "closing"  # the page left or the graph ended: the graph is being stopped
    CLOSED = "closed"  # everything the session held is freed


TRANSITIONS: dict[tuple[SessionState, str], SessionState] = {
    (SessionState.OPEN, "started"): SessionState.RUNNING,
    (SessionState.OPEN, "client_closed"): SessionState.CLOSING,
    (SessionState.OPEN, "graph_ended"): SessionState.CLOSING,
    (SessionState.RUNNING, "client_closed"): SessionState.CLOSING,
    (SessionState.RUNNING, "graph_ended"): SessionState.CLOSING,
    (SessionState.CLOSING, "freed"): SessionState.CLOSED,
}


@dataclass(slots=True)
class SentItem:
    """One assistant item a session sent: its turn, rate and samples sent (plus what a transport needs)."""

    turn: int
    rate: int
    samples: int = 0  # sent so far (after a barge-in: what really went out)
    start: int = 0  # WebRTC: its first sample's position on the outbound stream
    produced: int = 0  # WebRTC: samples the model produced (a flush drops the unsent rest)
    done: bool = False  # WebRTC: `audio.done` was sent


class PlayedItems:
    """The items a session sent and the page's ``played`` reports of them, coalesced per item.

    Both browser transports keep one (:class:`WebSession`, and
    :class:`processors.webrtc.session.PeerSession`). A report is checked against what was
    sent: an unknown item raises :class:`~.wire.WireError`, a position past what was sent
    is cut to it, and positions only move forward. At most ``max_items`` are remembered
    (the oldest is forgotten with its pending report). :meth:`next_reports` waits for
    reports; :meth:`wake` (at the session's end) releases it.
    """

    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self.max_items = max_items
        self.items: OrderedDict[str, SentItem] = OrderedDict()
        self._reports: dict[str, tuple[int, bool]] = {}
        self._wake = anyio.Event()

    def get(self, item_id: str) -> SentItem | None:
        """The item, or None if it was never sent or is forgotten."""
        return self.items.get(item_id)

    def add(self, item_id: str, turn: int, rate: int) -> SentItem:
        """Remember a new item (the oldest past ``max_items`` is forgotten)."""
        item = self.items[item_id] = SentItem(turn, rate)
        while len(self.items) > self.max_items:
            old, _ = self.items.popitem(last=False)
            self._reports.pop(old, None)
        return item

    def turn(self, item_id: str) -> int:
        """The turn of an item (0 when unknown or forgotten)."""
        item = self.items.get(item_id)
        return item.turn if item is not None else 0

    def report(self, item_id: str, ms: int, done: bool) -> None:
        """Record the page's playback position of an item; raises WireError for an unknown item."""
        item = self.items.get(item_id)
        if item is None:
            raise WireError("unknown_item", f"`played` names item {item_id!r}, which this session did not send")
        sent_ms = item.samples * 1000 // item.rate
        old_ms, old_done = self._reports.get(item_id, (0, False))
        self._reports[item_id] = (max(old_ms, min(ms, sent_ms)), old_done or done)
        self._wake.set()

    async def next_reports(self, is_open: Callable[[], bool]) -> dict[str, tuple[int, bool]] | None:
        """Positions reported since the last call, ``item_id -> (ms, done)``; None once ``is_open()`` is False."""
        while not self._reports:
            if not is_open():
                return None
            self._wake = anyio.Event()
            await self._wake.wait()
        reports, self._reports = self._reports, {}
        return reports

    def wake(self) -> None:
        """Release a waiting :meth:`next_reports` (the session is ending)."""
        self._wake.set()


Send = Callable[[str | bytes], Awaitable[bool]]


class WebSession:
    """The state one browser connection shares with the transports of its graph.

    ``send`` delivers one websocket message and returns False once the socket is closed.
    ``input_rate`` is the rate the graph's input expects (the page is told it in ``ready``);
    the page may declare another with ``hello`` (:attr:`client_rate`).
    """

    def __init__(self, session_id: str, send: Send, *, max_backlog_ms: int = 1000) -> None:
        self.id = session_id
        self.state = SessionState.OPEN
        self.client_rate: int | None = None
        self.max_backlog_ms = max_backlog_ms
        self._send = send
        self._inbound: deque[tuple[str, Any, int]] = deque()  # ("audio", samples, rate) | ("text", str, 0)
        self._backlog_ms = 0.0
        self._texts = 0
        self._inbound_wake = anyio.Event()
        self.played = PlayedItems()
        self._announced: tuple[str | None, int, int] | None = None
        # figures for the log and the tests
        self.audio_in_ms = 0.0
        self.audio_out_ms = 0.0
        self.dropped_ms = 0.0
        self.bad_messages = 0
        self.underruns = 0  # playback underruns the page reported (cumulative; /metrics counts them)
        self.sent_messages = 0
        self.responses = 0  # the turns the model answered (for the session's log line)

    # --- lifecycle ----------------------------------------------------------------------------

    def transition(self, trigger: str) -> bool:
        """Apply ``trigger``; False (and no change) when it does not apply in the current state."""
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            return False
        log.debug("session %s: %s -> %s (%s)", self.id, self.state.value, new.value, trigger)
        self.state = new
        if new is SessionState.CLOSING:
            self._inbound_wake.set()
            self.played.wake()
        return True

    @property
    def open(self) -> bool:
        """True until the page left or the graph ended."""
        return self.state in (SessionState.OPEN, SessionState.RUNNING)

    # --- page -> graph (called by the server's reader) ----------------------------------------

    def put_audio(self, samples: np.ndarray, rate: int) -> None:
        """Queue microphone audio; past ``max_backlog_ms`` the oldest queued audio is dropped."""
        ms = 1000.0 * samples.shape[0] / rate
        self.audio_in_ms += ms
        self._inbound.append(("audio", samples, rate))
        self._backlog_ms += ms
        while self._backlog_ms > self.max_backlog_ms:
            self._drop_oldest_audio()
        self._inbound_wake.set()

    def _drop_oldest_audio(self) -> None:
        for i, (kind, samples, rate) in enumerate(self._inbound):
            if kind == "audio":
                del self._inbound[i]
                ms = 1000.0 * samples.shape[0] / rate
                self._backlog_ms -= ms
                self.dropped_ms += ms
                return
        self._backlog_ms = 0.0

    def put_text(self, text: str) -> None:
        """Queue a typed user message (the oldest is dropped past ``MAX_TEXTS``)."""
        if self._texts >= MAX_TEXTS:
            for i, (kind, _, _) in enumerate(self._inbound):
                if kind == "text":
                    del self._inbound[i]
                    self._texts -= 1
                    break
        self._inbound.append(("text", text, 0))
        self._texts += 1
        self._inbound_wake.set()

    def report_played(self, item_id: str, ms: int, done: bool) -> None:
        """Record the page's playback position of an item; raises WireError for an unknown item."""
        self.played.report(item_id, ms, done)

    # --- graph side (called by the transports) ------------------------------------------------

    async def next_inbound(self) -> tuple[str, Any, int] | None:
        """The next queued ``(kind, payload, rate)``; None once the session is closing."""
        while not self._inbound:
            if not self.open:
                return None
            self._inbound_wake = anyio.Event()
            await self._inbound_wake.wait()
        entry = self._inbound.popleft()
        if entry[0] == "audio":
            self._backlog_ms -= 1000.0 * entry[1].shape[0] / entry[2]
        else:
            self._texts -= 1
        return entry

    async def next_reports(self) -> dict[str, tuple[int, bool]] | None:
        """Playback positions reported since the last call, ``item_id -> (ms, done)``; None once closing."""
        return await self.played.next_reports(lambda: self.open)

    def item_turn(self, item_id: str) -> int:
        """The turn of an item this session sent (0 when forgotten)."""
        return self.played.turn(item_id)

    async def send_event(self, event: dict[str, Any]) -> None:
        """Send one JSON event to the page (nothing happens once the socket is closed)."""
        if await self._send(encode(event)):
            self.sent_messages += 1
            if event.get("type") == "response.start":
                self.responses += 1

    async def send_audio(self, pcm: bytes, *, item_id: str | None, turn: int, rate: int, samples: int) -> None:
        """Send assistant audio, announcing it with an ``audio`` event when item, turn or rate change."""
        key = (item_id, turn, rate)
        if key != self._announced:
            self._announced = key
            await self.send_event(audio_event(item_id, turn, rate))
        if item_id is not None:
            item = self.played.get(item_id) or self.played.add(item_id, turn, rate)
            item.samples += samples
        self.audio_out_ms += 1000.0 * samples / rate
        if await self._send(pcm):
            self.sent_messages += 1

    def statistics(self) -> dict[str, Any]:
        """Audio received, dropped and sent (ms), bad messages, messages sent, items tracked, responses."""
        return {"audio_in_ms": round(self.audio_in_ms, 1), "dropped_ms": round(self.dropped_ms, 1),
                "audio_out_ms": round(self.audio_out_ms, 1),
                "bad_messages": self.bad_messages, "sent_messages": self.sent_messages, "items": len(self.played.items),
                "responses": self.responses}
