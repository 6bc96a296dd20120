"""PeerSession: one WebRTC peer (a browser tab or a client), as its graph's transports see it.

Theory of operation
-------------------
:class:`~.host.WebRTCHost` answers the peer's offer with an aiortc ``RTCPeerConnection`` and
makes a session around it. The peer's microphone arrives as the connection's remote audio
track (Opus, decoded by aiortc on its decoder thread); :class:`~.transport.WebRTCInput`
reads it. The server's voice leaves on :class:`OutboundTrack`, a paced 48 kHz track fed by
a :class:`~.playout.Playout`; :class:`~.transport.WebRTCOutput` writes to it. Everything
else travels on the peer's data channel as the JSON events of the websocket page
(:mod:`processors.web.wire`): the server's transcripts, tool cards, latency rows and
interruptions one way; the page's ``played`` reports and typed ``text`` the other. A
``played`` report is checked against what this session sent and coalesced per item by the
same :class:`~processors.web.session.PlayedItems` as the websocket session's.

The page learns where each assistant item sits in the RTP stream from the ``audio`` event's
``rtp`` field (RTP timestamp of the item's first sample); comparing it with the timestamp
of the audio its receiver last played out gives the played position, so a barge-in
truncates at what the person heard, not at what was sent.

Lifecycle (one table, :data:`TRANSITIONS`; every end carries a reason code)::

    NEW --connected--> CONNECTED --ended--> CLOSING --freed--> CLOSED
    NEW --ended--> CLOSING

Reasons: ``ice_failed``, ``dtls_failed``, ``not_connected`` (no connection within the
deadline), ``no_media`` (connected, but no audio), ``peer_gone`` (the audio stopped: a tab
closed without its goodbye), ``page_closed`` (``bye``, the data
channel or the connection closed), ``deleted`` (a ``DELETE`` of the session's resource), ``pipeline_ended`` / ``pipeline_failed``,
``server_stopping``, ``too_many_bad_messages``.
"""

from __future__ import annotations

import asyncio
import enum
import fractions
import json
import logging
import time
from typing import Any

import anyio
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from processors.web.session import PlayedItems, SentItem
from processors.web.wire import ClientPlayed, ClientText, WireError, error_event, parse_client_message

from .playout import FRAME, RATE, Playout

__all__ = ["TRANSITIONS", "OutboundTrack", "PeerSession", "PeerState", "rtp_origin"]

log = logging.getLogger("voxpipe.webrtc")

#: Malformed data channel messages tolerated before the session is ended.
MAX_BAD_MESSAGES = 20
#: Events queued for a data channel that is not open yet (oldest dropped).
MAX_PENDING_EVENTS = 256
#: Typed messages queued for the graph.
MAX_TEXTS = 16


class PeerState(enum.Enum):
    """Where a WebRTC session stands."""

    NEW = "new"  # answered; ICE and DTLS are being set up
    CONNECTED = "connected"  # media can flow
    CLOSING = "closing"  # ended (with a reason): the graph and the connection are being stopped
    CLOSED = "closed"  # everything freed


TRANSITIONS: dict[tuple[PeerState, str], PeerState] = {
    (PeerState.NEW, "connected"): PeerState.CONNECTED,
    (PeerState.NEW, "ended"): PeerState.CLOSING,
    (PeerState.CONNECTED, "ended"): PeerState.CLOSING,
    (PeerState.CLOSING, "freed"): PeerState.CLOSED,
}

_TIME_BASE = fractions.Fraction(1, RATE)


def rtp_origin(sender: Any) -> int | None:
    """The RTP timestamp of stream position 0 of ``sender``'s track, once a packet went out.

    aiortc (1.16) stamps packet ``k`` of a continuous track ``origin + 960 k`` with a random
    ``origin`` it keeps to itself; it does record the last timestamp and the packet count,
    which give the origin back. Returns None before the first packet (or if aiortc's
    internals changed: the test suite checks the mapping end to end).
    """
    ts = getattr(sender, "_RTCRtpSender__rtp_timestamp", None)
    count = getattr(sender, "_RTCRtpSender__packet_count", 0)
    if ts is None or not count:
        return None
    return (ts - FRAME * (count - 1)) & 0xFFFFFFFF


class OutboundTrack(MediaStreamTrack):
    """The server's audio track: one 20 ms Opus packet of the :class:`~.playout.Playout` every 20 ms.

    aiortc pulls with ``recv()`` as fast as it is answered; pacing is the track's job (as
    aiortc's own ``AudioStreamTrack``). The pace follows the event loop's clock; after a
    stall of more than ``max_lag_s`` it restarts from now instead of bursting to catch up.

    The track encodes the Opus itself, on the loop, and hands aiortc the packet (aiortc
    sends a ``Packet`` as it is). Given a raw frame, aiortc would encode it on the loop's
    thread pool (a hand-off each way: 0.6 ms median, 12 ms at worst under load in
    ``benchmarks/webrtc.py``'s trace), after resampling it to stereo and computing its RFC
    6465 audio level in a pure Python loop (58 us a frame, holding the GIL). Here: one
    mono libopus encode (the settings of aiortc's encoder otherwise), about 0.1 ms. The
    packet's ``pts`` is the stream position, so the RTP timestamps are aiortc's origin plus
    it, exactly as before (:func:`rtp_origin`). The connection must use Opus (the host sets
    it as the only codec); ``encode=False`` hands out raw frames instead.
    """

    kind = "audio"
    #: The default of ``encode`` (benchmarks/webrtc.py's ``--ab-encode`` compares both).
    ENCODE = True

    def __init__(self, playout: Playout, *, max_lag_s: float = 0.2, encode: bool | None = None) -> None:
        super().__init__()
        self.playout = playout
        self.max_lag_s = max_lag_s
        self.encode = self.ENCODE if encode is None else encode
        self._codec: Any = None
        self._t0: float | None = None
        self._frames = 0
        self.resyncs = 0

    async def recv(self) -> av.AudioFrame | av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._frames * FRAME / RATE
        if now - due > self.max_lag_s:
            self.resyncs += 1
            self._t0, self._frames, due = now, 0, now
        if due > now:
            await asyncio.sleep(due - now)
        self._frames += 1
        pos = self.playout.position
        samples = self.playout.read()
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = pos
        frame.time_base = _TIME_BASE
        if not self.encode:
            return frame
        if self._codec is None:
            self._codec = _opus_encoder()
        packets = self._codec.encode(frame)  # libopus gives one packet per 20 ms frame, from the first
        packet = packets[-1]
        packet.pts = pos  # the encoder counts from its pre-skip (-312); RTP time is the stream position
        packet.time_base = _TIME_BASE
        return packet


def _opus_encoder() -> Any:
    """A libopus encoder with aiortc's settings (96 kb/s, VoIP), for mono 20 ms frames at 48 kHz."""
    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate = 96000
    codec.format = "s16"
    codec.layout = "mono"
    codec.options = {"application": "voip"}
    codec.sample_rate = RATE
    codec.time_base = _TIME_BASE
    return codec


class PeerSession:
    """The state one WebRTC peer shares with the transports of its graph (see the module doc)."""

    def __init__(self, session_id: str, pc: RTCPeerConnection, *, remote: str = "?") -> None:
        self.id = session_id
        self.resource = ""  # the id in the answer's Location, /webrtc/session/<resource> (set by the host)
        self.pc = pc
        self.remote = remote
        self.state = PeerState.NEW
        self.reason: str | None = None
        self.reason_message = ""
        self.ended = anyio.Event()
        self.connected = anyio.Event()  # set when media can flow, and when the session ends
        self.playout = Playout()
        self.track = OutboundTrack(self.playout)
        self.sender: Any = None
        self.inbound: MediaStreamTrack | None = None
        self._inbound_ready = anyio.Event()
        self.channel: Any = None
        self._pending: list[str] = []
        self._texts: list[str] = []
        self._texts_wake = anyio.Event()
        self.played = PlayedItems()  # the items sent and the page's reports of them
        self.connected_at: float | None = None
        self.bad_messages = 0
        self.sent_events = 0
        self.media_frames = 0
        self.concealment: dict[str, float] = {}
        self.jitter: Any = None  # the receiver's AudioJitterBuffer

    # --- lifecycle ------------------------------------------------------------------------------

    def transition(self, trigger: str) -> bool:
        """Apply ``trigger``; False (and no change) when it does not apply in the current state."""
        new = TRANSITIONS.get((self.state, trigger))
        if new is None:
            return False
        log.debug("webrtc session %s: %s -> %s (%s)", self.id, self.state.value, new.value, trigger)
        self.state = new
        return True

    @property
    def open(self) -> bool:
        """True until the session ended."""
        return self.state in (PeerState.NEW, PeerState.CONNECTED)

    def end(self, reason: str, message: str) -> None:
        """End the session with a reason code and words for the log and the page (first call wins)."""
        if not self.transition("ended"):
            return
        self.reason, self.reason_message = reason, message
        log.info("webrtc session %s: ending (%s: %s)", self.id, reason, message)
        self.send_event({"type": "session.end", "reason": reason, "message": message})
        self.ended.set()
        self.connected.set()
        self._texts_wake.set()
        self.played.wake()
        self._inbound_ready.set()

    # --- aiortc callbacks (wired by the host) -------------------------------------------------------

    def on_track(self, track: MediaStreamTrack) -> None:
        """The peer's track: its audio is the graph's input."""
        if track.kind == "audio" and self.inbound is None:
            self.inbound = track
            self._inbound_ready.set()

    def on_channel(self, channel: Any) -> None:
        """The peer's data channel: events out, reports and text in."""
        if self.channel is not None:
            return
        self.channel = channel
        channel.on("message", self._on_message)
        channel.on("open", self._flush_pending)
        channel.on("close", lambda: self.end("page_closed", "the page closed its data channel"))
        if channel.readyState == "open":
            self._flush_pending()

    def on_state(self) -> None:
        """The peer connection's state changed: connected, or failed/closed with a reason."""
        pc = self.pc
        state = pc.connectionState
        if state == "connected" and self.transition("connected"):
            self.connected_at = time.perf_counter()
            self.connected.set()
            log.info("webrtc session %s: connected (%s)", self.id, self.remote)
        elif state == "failed":
            if pc.iceConnectionState == "failed":
                self.end("ice_failed", "ICE failed: no network path to the peer works (behind NAT? add a TURN "
                                       "server, docs/webrtc.md)")
            else:
                self.end("dtls_failed", "DTLS failed: the encrypted handshake with the peer did not complete "
                                        "(fingerprint mismatch or a broken peer)")
        elif state == "closed":
            self.end("page_closed", "the peer closed the connection")

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, []
        for text in pending:
            self._send_text(text)

    def _on_message(self, message: str | bytes) -> None:
        try:
            if isinstance(message, (bytes, bytearray)):
                raise WireError("bad_message", "binary data channel messages are not used: audio travels on "
                                               "the audio track")
            if '"bye"' in message and json.loads(message).get("type") == "bye":
                self.end("page_closed", "the page said goodbye (tab closed or reloaded)")
                return
            msg = parse_client_message(message, max_audio=0)
            if isinstance(msg, ClientPlayed):
                self.report_played(msg.item_id, msg.ms, msg.done)
            elif isinstance(msg, ClientText):
                self.put_text(msg.text)
        except WireError as exc:
            self.bad_messages += 1
            self.send_event(exc.event())
            if self.bad_messages >= MAX_BAD_MESSAGES:
                self.end("too_many_bad_messages", f"{self.bad_messages} malformed data channel messages")
        except ValueError:
            self.bad_messages += 1
            self.send_event(error_event("bad_json", "text message is not JSON"))

    # --- page -> graph ----------------------------------------------------------------------------

    async def inbound_track(self, timeout_s: float) -> MediaStreamTrack | None:
        """The peer's audio track, once it is known (None if the session ends first or after ``timeout_s``)."""
        with anyio.move_on_after(timeout_s):
            await self._inbound_ready.wait()
        return self.inbound if self.open else None

    def put_text(self, text: str) -> None:
        """Queue a typed user message (the oldest is dropped past MAX_TEXTS)."""
        self._texts.append(text)
        del self._texts[:-MAX_TEXTS]
        self._texts_wake.set()

    async def next_text(self) -> str | None:
        """The next typed message; None once the session ended."""
        while not self._texts:
            if not self.open:
                return None
            self._texts_wake = anyio.Event()
            await self._texts_wake.wait()
        return self._texts.pop(0)

    def report_played(self, item_id: str, ms: int, done: bool) -> None:
        """Record the page's playback position of an item; raises WireError for an unknown item."""
        self.played.report(item_id, ms, done)

    async def next_reports(self) -> dict[str, tuple[int, bool]] | None:
        """Playback positions reported since the last call, ``item_id -> (ms, done)``; None once ended."""
        return await self.played.next_reports(lambda: self.open)

    def item_turn(self, item_id: str) -> int:
        """The turn of an item this session sent (0 when forgotten)."""
        return self.played.turn(item_id)

    # --- graph -> page ----------------------------------------------------------------------------

    def send_event(self, event: dict[str, Any]) -> None:
        """Send one JSON event on the data channel (queued until it opens; dropped once it closed)."""
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)
        channel = self.channel
        if channel is None or channel.readyState == "connecting":
            self._pending.append(text)
            del self._pending[:-MAX_PENDING_EVENTS]
        elif channel.readyState == "open":
            self._send_text(text)

    def _send_text(self, text: str) -> None:
        try:
            self.channel.send(text)
            self.sent_events += 1
        except Exception as exc:  # the SCTP association went away under us
            log.debug("webrtc session %s: data channel send failed: %s", self.id, exc)

    async def origin(self, timeout_s: float = 1.0) -> int | None:
        """The RTP timestamp origin of the outbound track (waits up to ``timeout_s`` for its first packet)."""
        with anyio.move_on_after(timeout_s):
            while self.open:
                value = rtp_origin(self.sender) if self.sender is not None else None
                if value is not None:
                    return value
                await anyio.sleep(0.02)  # the first packet leaves within one 20 ms frame of connecting
        return None

    async def play(self, samples: np.ndarray, *, item_id: str | None, turn: int) -> None:
        """Queue 48 kHz int16 assistant audio; a new item is announced with its RTP start first."""
        start = self.playout.write(samples)
        if item_id is None:
            return
        item = self.played.get(item_id)
        if item is None:
            item = self.played.add(item_id, turn, RATE)
            item.start = start
            origin = await self.origin()
            rtp = None if origin is None else (origin + start) & 0xFFFFFFFF
            self.send_event({"type": "audio", "item_id": item_id, "turn": turn, "rate": RATE, "rtp": rtp})
        item.samples += samples.shape[0]
        item.produced += samples.shape[0]

    def flush(self, turn: int) -> int:
        """Barge-in: stop sending queued audio now; the page is told with ``flush``. Returns samples dropped."""
        dropped = self.playout.clear()
        self.send_event({"type": "flush", "turn": turn})
        for item_id, item in self.played.items.items():  # what was dropped was never sent
            if not item.done:
                item.samples = max(0, min(item.samples, self.playout.position - item.start))
                self._item_done(item_id, item)
        return dropped

    def items_done(self) -> None:
        """A response ended: tell the page how long each of its items is (``audio.done``)."""
        for item_id, item in self.played.items.items():
            if not item.done:
                self._item_done(item_id, item)

    def _item_done(self, item_id: str, item: SentItem) -> None:
        item.done = True
        self.send_event({"type": "audio.done", "item_id": item_id, "samples": item.samples,
                         "ms": item.samples * 1000 // RATE, "produced_ms": item.produced * 1000 // RATE})

    def statistics(self) -> dict[str, Any]:
        """Figures for the log line at the end of the session."""
        return {"reason": self.reason, "media_frames": self.media_frames,
                "audio_out_ms": self.playout.sent_samples * 1000 // RATE,
                "flushed_ms": self.playout.cleared_samples * 1000 // RATE, "events": self.sent_events,
                "bad_messages": self.bad_messages, **self.concealment,
                **({"rtp_lost": self.jitter.skipped, "rtp_late": self.jitter.late} if self.jitter else {})}
