"""Inbox: a media stream's messages handed to its call as the socket delivers them, without a reader task.

Theory of operation
-------------------
``websockets``' asyncio connection parses what the socket delivers in ``data_received``
and puts each data frame in an assembler, from which one task (the host's reader) takes
the next message: a task wake-up, a future, a loop iteration and the assembler's own
bookkeeping for every message. A call's stream has 50 ``media`` messages a second from
the caller, and 50 ``mark`` echoes more while the caller listens; at one call that
wake-up was the largest single cost of the host's reading.

An :class:`Inbox` is installed on the connection while its opening handshake is vetted
(before the handshake is answered, so before the provider can send a frame). From then
on it sees every frame as ``data_received`` parses it: each whole text message goes to
the call's :meth:`~.call.PhoneCall.receive` at once, in the socket's order, in the same
callback (messages that arrive before the call exists wait in a bounded buffer and are
handed over, in order, when it attaches). Fragmented messages are put together here
(providers send one frame per message, but the protocol allows fragments). Control
frames (ping, pong, close) go to ``websockets`` as before: the handshake, keepalive and
closing handshake are untouched. After ``stop`` further data frames are dropped. The
host then waits for :attr:`settled` (``start`` or ``stop`` seen), :attr:`stopped`, or the
connection's close, instead of reading.

An exception from the call is logged once and counted (``bad_input["internal"]``): it must
not escape into the transport's callback, which would drop the connection.

:func:`install` returns None where the connection does not have the ``websockets`` 13-15
``process_event`` hook; the host then reads with ``async for`` as before.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import anyio

from .serializer import MAX_MESSAGE_CHARS, StreamStart, StreamStop

if TYPE_CHECKING:
    from .call import PhoneCall

try:  # websockets' sans-I/O frame type; another layout means no inbox (the reader task instead)
    from websockets.frames import Frame, Opcode
except ImportError:  # pragma: no cover
    Frame = Opcode = None  # type: ignore[assignment,misc]

__all__ = ["MAX_EARLY_MESSAGES", "Inbox", "install"]

log = logging.getLogger("voxpipe.telephony")

#: Messages kept for a call that has not attached yet (a refused stream is closed within 2 s).
MAX_EARLY_MESSAGES = 500


class Inbox:
    """Delivers a connection's data frames to its :class:`~.call.PhoneCall` from ``data_received``."""

    __slots__ = ("call", "settled", "stopped", "_early", "_parts", "_parts_len", "_text", "_orig", "_failed")

    def __init__(self, orig: Any) -> None:
        self.call: PhoneCall | None = None
        self.settled = anyio.Event()  # the call has seen ``start`` or ``stop``
        self.stopped = anyio.Event()  # the call has seen ``stop``
        self._early: deque[tuple[bytes, bool]] = deque()  # (data, is text) before the call attaches
        self._parts: list[bytes] = []  # a fragmented message so far
        self._parts_len = 0
        self._text = True
        self._orig = orig  # the connection's own process_event
        self._failed = False

    def process_event(self, event: Any) -> None:
        """The connection's ``process_event``: data frames here, everything else to ``websockets``."""
        if type(event) is not Frame:
            self._orig(event)
            return
        op = event.opcode
        if op is Opcode.TEXT or op is Opcode.BINARY:
            if event.fin:
                self._deliver(event.data, op is Opcode.TEXT)
                return
            self._parts, self._parts_len, self._text = [bytes(event.data)], len(event.data), op is Opcode.TEXT
        elif op is Opcode.CONT:
            if self._parts_len <= 4 * MAX_MESSAGE_CHARS:  # past that it is refused whole, below
                self._parts.append(bytes(event.data))
            self._parts_len += len(event.data)
            if event.fin:
                data, self._parts = b"".join(self._parts), []
                if self._parts_len > 4 * MAX_MESSAGE_CHARS:
                    data = b" " * (MAX_MESSAGE_CHARS + 1)  # receive() counts it as message_too_large
                self._deliver(data, self._text)
        else:
            self._orig(event)

    def _deliver(self, data: Any, text: bool) -> None:
        if self.stopped.is_set():
            return  # the stream is over: what follows `stop` is not read
        call = self.call
        if call is None:
            if len(self._early) < MAX_EARLY_MESSAGES:
                self._early.append((bytes(data), text))
            return
        self._receive(call, data, text)

    def _receive(self, call: PhoneCall, data: Any, text: bool) -> None:
        try:
            if text:
                try:
                    message: str | bytes = str(data, "utf-8")
                except UnicodeDecodeError as exc:
                    call.bad("bad_utf8", f"text message is not UTF-8 ({exc.reason} at byte {exc.start})")
                    return
            else:
                message = bytes(data)
            event = call.receive(message)
        except Exception:  # a bug must not reach the transport's callback (it would drop the connection)
            call.bad_input["internal"] += 1
            if not self._failed:
                self._failed = True
                log.exception("%s: a message could not be handled; further failures are only counted", call.name)
            return
        if type(event) is StreamStart:
            self.settled.set()
        elif type(event) is StreamStop:
            self.settled.set()
            self.stopped.set()

    def attach(self, call: PhoneCall) -> None:
        """From now on messages go to ``call``; those that came before are handed over first, in order."""
        early = self._early
        while early and not self.stopped.is_set():
            self._receive(call, *early.popleft())
        early.clear()
        self.call = call


def install(connection: Any) -> Inbox | None:
    """Put an :class:`Inbox` in front of ``connection``'s data frames; None where that hook is missing."""
    orig = getattr(connection, "process_event", None)
    if Frame is None or orig is None or not hasattr(connection, "protocol"):
        return None
    inbox = Inbox(orig)
    connection.process_event = inbox.process_event  # data_received calls self.process_event(event)
    return inbox
