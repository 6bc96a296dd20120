"""A plain Python WebRTC client of ``voxpipe serve`` (aiortc): for tests, benchmarks and your own tools.

It does what the page does, without a browser: sends a microphone track (audio you queue
with :meth:`PeerClient.say`, silence otherwise, paced at real time), opens the ``events``
data channel, POSTs its offer to ``/webrtc/offer`` and applies the answer. It records the
server's events and the audio it receives (48 kHz mono int16), and can report playback
positions like the page (``played``). ``loss`` drops that fraction of its outgoing RTP
packets (seeded), to test the server's concealment on a lossy link::

    async with PeerClient.connect(server.url + "webrtc/offer") as peer:
        peer.say(speech_48k)
        await peer.wait_event("response.end", timeout=30)
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import anyio
import numpy as np

from pipeline.dsp import to_int16

from .jitter import install as install_jitter
from .playout import Playout
from .sdp import SDP_TYPE

__all__ = ["PeerClient", "SignallingError", "delete_session", "post_offer"]


class SignallingError(Exception):
    """The server refused the offer: ``status`` and its explanation."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body.strip()}")
        self.status = status
        self.body = body


async def post_offer(url: str, sdp: str | bytes, *, content_type: str = SDP_TYPE, origin: str | None = None,
                     timeout_s: float = 15.0) -> tuple[int, dict[str, str], str]:
    """POST an offer over plain HTTP/1.1; returns ``(status, headers, body)``."""
    body = sdp.encode() if isinstance(sdp, str) else sdp
    return await _http("POST", url, body, [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"],
                       origin=origin, timeout_s=timeout_s)


async def delete_session(offer_url: str, location: str, *, origin: str | None = None,
                         timeout_s: float = 15.0) -> tuple[int, dict[str, str], str]:
    """DELETE the session resource ``location`` (the answer's) of the server at ``offer_url`` (its ``?token=`` too)."""
    parts = urlsplit(offer_url)
    url = f"{parts.scheme}://{parts.netloc}{urlsplit(location).path}" + (f"?{parts.query}" if parts.query else "")
    return await _http("DELETE", url, b"", [], origin=origin, timeout_s=timeout_s)


async def _http(method: str, url: str, body: bytes, fields: list[str], *, origin: str | None,
                timeout_s: float) -> tuple[int, dict[str, str], str]:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    head = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}", *fields, "Connection: close"]
    if origin:
        head.append(f"Origin: {origin}")
    with anyio.fail_after(timeout_s):
        stream = await anyio.connect_tcp(parts.hostname or "127.0.0.1", parts.port or 80)
        async with stream:
            await stream.send(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            data = b""
            try:
                while chunk := await stream.receive():
                    data += chunk
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                pass
    raw_head, _, raw_body = data.partition(b"\r\n\r\n")
    lines = raw_head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and len(lines[0].split(" ")) > 1 else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, raw_body.decode("utf-8", "replace")


class PeerClient:
    """One WebRTC peer of a voxpipe server (see the module doc); make it with :meth:`connect`."""

    def __init__(self, *, loss: float = 0.0, seed: int = 0) -> None:
        from aiortc import RTCPeerConnection

        from .session import OutboundTrack

        self.pc = RTCPeerConnection()
        self.mic = Playout()
        self.mic_track = OutboundTrack(self.mic)
        self.loss = loss
        self._rng = random.Random(seed)
        self.rtp_sent = 0
        self.rtp_dropped = 0
        self._lossy_on = False  # the sender's RTP goes through the lossy link
        self.events: list[dict[str, Any]] = []
        self._event_wake = anyio.Event()
        self.received: list[np.ndarray] = []  # every frame received
        self.received_samples = 0
        # when the first voiced sample after `mark()` would play if each frame played on arrival:
        # the frame's perf_counter plus the sample's offset in it
        self.first_voice_at: float | None = None
        self._voice_threshold = 300
        self.channel: Any = None
        self._remote: Any = None
        self._remote_ready = anyio.Event()
        self.session_id: str | None = None
        self.offer_url = ""
        self.location: str | None = None  # the session's resource (the answer's Location): delete() ends it

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str, *, loss: float = 0.0, seed: int = 0, origin: str | None = None,
                      timeout_s: float = 20.0) -> AsyncIterator[PeerClient]:
        """Connect to the offer ``url`` (``http://host:port/webrtc/offer[?token=]``); closes on exit."""
        from aiortc import RTCSessionDescription

        peer = cls(loss=loss, seed=seed)
        pc = peer.pc
        try:
            sender = pc.addTrack(peer.mic_track)
            install_jitter(next(t for t in pc.getTransceivers() if t.sender is sender).receiver)
            peer.channel = pc.createDataChannel("events")
            peer.channel.on("message", peer._on_message)
            pc.on("track", peer._on_track)
            await pc.setLocalDescription(await pc.createOffer())
            status, headers, body = await post_offer(url, pc.localDescription.sdp, origin=origin,
                                                     timeout_s=timeout_s)
            if status != 201:
                raise SignallingError(status, body)
            peer.offer_url, peer.location = url, headers.get("location")
            await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))
            if loss:
                peer._lossy(sender)
            async with anyio.create_task_group() as tg:
                tg.start_soon(peer._read_audio)
                try:
                    yield peer
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await peer.bye()
                await pc.close()

    # --- sending ----------------------------------------------------------------------------------

    def say(self, samples: np.ndarray) -> None:
        """Queue 48 kHz mono audio (int16, or float32 in [-1, 1]) on the microphone track (sent at real time)."""
        self.mic.write(np.ascontiguousarray(to_int16(samples)))

    @property
    def speaking(self) -> bool:
        """True while queued microphone audio is still being sent."""
        return self.mic.queued > 0

    def send(self, event: dict[str, Any]) -> None:
        """Send one JSON message on the data channel (``played``, ``text``)."""
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(json.dumps(event))

    async def bye(self, timeout_s: float = 2.0) -> None:
        """Tell the server this peer is leaving (what the page does when its tab closes).

        Waits (up to ``timeout_s``) until the server's SCTP has acknowledged every message sent,
        so that closing the connection next cannot drop the goodbye. A fixed 50 ms pause did not
        do: under load the goodbye was still queued, the server never heard it and ended the
        session as ``peer_gone`` 2 s later. aiortc has no public "acknowledged" signal; this reads
        its association's send queues (falling back to the pause when they are not there).
        """
        if self.channel is None or self.channel.readyState != "open":
            return
        self.channel.send(json.dumps({"type": "bye"}))
        sctp, channel = self.pc.sctp, self.channel
        if sctp is None or not hasattr(sctp, "_sent_queue"):
            await anyio.sleep(0.05)
            return
        with anyio.move_on_after(timeout_s):
            while channel.readyState == "open" and (channel.bufferedAmount or sctp._outbound_queue or sctp._sent_queue):
                await anyio.sleep(0.01)

    async def delete(self, *, origin: str | None = None) -> int:
        """End the session the WHIP way: ``DELETE`` its resource (the answer's ``Location``); returns the status."""
        if not self.location:
            raise SignallingError(0, "no session resource: the answer had no Location")
        status, _, _ = await delete_session(self.offer_url, self.location, origin=origin)
        return status

    def vanish(self) -> None:
        """Stop sending anything, as a killed tab does: no RTP, no goodbye, no close."""
        self.loss = 1.0
        self.channel = None
        for t in self.pc.getTransceivers():
            if t.sender is not None and t.sender.track is self.mic_track and not self._lossy_on:
                self._lossy(t.sender)

    def _lossy(self, sender: Any) -> None:
        self._lossy_on = True
        from aiortc.rtp import is_rtcp

        dtls = sender.transport
        send_rtp = dtls._send_rtp

        async def lossy(data: bytes) -> None:
            if not is_rtcp(data):
                if self._rng.random() < self.loss:
                    self.rtp_dropped += 1
                    return
                self.rtp_sent += 1
            await send_rtp(data)

        dtls._send_rtp = lossy  # the test's lossy link: RTP only, RTCP and the data channel pass

    # --- receiving --------------------------------------------------------------------------------

    def _on_message(self, message: str | bytes) -> None:
        if isinstance(message, str):
            event = json.loads(message)
            if event.get("type") == "ready":
                self.session_id = event.get("session")
            self.events.append(event)
            self._event_wake.set()

    def _on_track(self, track: Any) -> None:
        if track.kind == "audio":
            self._remote = track
            self._remote_ready.set()

    def mark(self) -> None:
        """Start watching for the next voice sample (``first_voice_at``)."""
        self.first_voice_at = None

    async def _read_audio(self) -> None:
        from aiortc.mediastreams import MediaStreamError

        await self._remote_ready.wait()
        while True:
            try:
                frame = await self._remote.recv()
            except MediaStreamError:
                return
            x = frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0].copy()
            self.received.append(x)
            self.received_samples += x.shape[0]
            if self.first_voice_at is None:
                loud = np.flatnonzero(np.abs(x) > self._voice_threshold)
                if loud.size:
                    self.first_voice_at = time.perf_counter() + loud[0] / frame.sample_rate
            del self.received[:-30000]  # 10 minutes

    def audio(self) -> np.ndarray:
        """Everything received so far, 48 kHz mono int16."""
        return np.concatenate(self.received) if self.received else np.zeros(0, np.int16)

    async def wait_event(self, kind: str | Callable[[dict[str, Any]], bool], *, timeout: float = 30.0,
                         after: int = 0) -> dict[str, Any]:
        """The first event (from index ``after``) of type ``kind`` (or matching a predicate); TimeoutError after ``timeout``."""
        match = (lambda e: e.get("type") == kind) if isinstance(kind, str) else kind
        with anyio.fail_after(timeout):
            while True:
                for event in self.events[after:]:
                    if match(event):
                        return event
                self._event_wake = anyio.Event()
                await self._event_wake.wait()


