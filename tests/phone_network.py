"""A simulated phone network, written from the providers' documentation, for tests and benchmarks.

It does what Twilio (or Telnyx, Plivo) does for one call: POSTs the voice webhook (signed
like the provider), reads the stream URL and parameters from the markup, opens the
websocket (signed where the provider signs it), sends ``connected`` and ``start``, then
streams the caller's line as 20 ms mu-law frames on its own clock (speech when the caller
talks, quiet noise otherwise; faster than real time with ``speed``), plays what it receives
at real time on a second clock, echoes each mark when its playback reaches it, honours
``clear`` (drops its buffer; Twilio also echoes every pending mark at once), sends DTMF,
and ends with ``stop`` or a bare disconnect.

What the caller actually heard is recorded: every played sample, with the time the
first one played, and at each ``clear`` the exact position (in samples) playback had
reached.
"""

from __future__ import annotations

import base64
import functools
import json
import time
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

import anyio
import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from pipeline.dsp.g711 import ulaw_decode, ulaw_encode
from processors.telephony.webhook import plivo_signature, twilio_signature

FRAME = 160  # 20 ms at 8 kHz
UNDERRUN_GAP_S = 0.5  # a shorter silence between two played frames of one answer is an underrun
TOKENS = {"twilio": "twilio-test-token", "plivo": "plivo-test-token"}


@functools.lru_cache(maxsize=None)
def speech(text: str) -> np.ndarray:
    """eSpeak NG saying ``text``, int16 at 8 kHz."""
    from pipeline.dsp.resample import resample
    from processors.speech.espeak import synthesize

    x, rate = synthesize(text)
    return resample(x, rate, 8000).astype(np.int16)


async def http_request(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
                       ) -> tuple[int, str]:
    """A plain HTTP/1.1 request over a fresh TCP connection; returns status and body text."""
    u = urlsplit(url)
    head = f"{method} {u.path}{'?' + u.query if u.query else ''} HTTP/1.1\r\nHost: {u.netloc}\r\n"
    fields = {**(headers or {}), "Content-Length": str(len(body))} if method != "GET" else {"Connection": "close"}
    head += "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    async with await anyio.connect_tcp(u.hostname, u.port) as stream:
        await stream.send(head.encode() + b"\r\n" + body)
        data = b""
        with anyio.fail_after(10):
            try:
                while True:
                    data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError):
                pass
    head_text, _, rest = data.partition(b"\r\n\r\n")
    return int(head_text.split(b" ")[1]), rest.decode()


async def http_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """POST ``body`` (see :func:`http_request`)."""
    return await http_request("POST", url, body, headers)


async def http_get(url: str) -> tuple[int, str]:
    """GET ``url`` (see :func:`http_request`)."""
    return await http_request("GET", url)


@dataclass
class Heard:
    """What the simulated caller's ear did."""

    samples: list[np.ndarray] = field(default_factory=list)
    played: int = 0  # samples played so far
    first_played_at: float | None = None
    first_received_at: float | None = None
    clears: list[tuple[float, int]] = field(default_factory=list)  # (time, played position)
    marks_echoed: int = 0
    media_received: int = 0
    messages: list[dict] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)  # every media byte received, as it came
    # underruns: the ear ran dry in the middle of an answer (a gap shorter than UNDERRUN_GAP_S
    # between two played frames, with no clear in between); each one is a click or a stutter
    underruns: int = 0
    underrun_ms: float = 0.0

    def audio(self) -> np.ndarray:
        return np.concatenate(self.samples) if self.samples else np.zeros(0, np.int16)


class SimulatedCall:
    """One call from the simulated network into a voxpipe server (see the module doc)."""

    def __init__(self, base_url: str, provider: str = "twilio", *, speed: float = 1.0, from_number: str = "+15550001111",
                 to_number: str = "+15550002222", query: dict[str, str] | None = None, sign: bool = True,
                 telnyx_key=None, seed: int = 1) -> None:
        self.base = base_url.rstrip("/")
        self.provider = provider
        self.speed = speed
        self.from_number, self.to_number = from_number, to_number
        self.query = query or {}
        self.sign = sign
        self.telnyx_key = telnyx_key
        self.rng = np.random.default_rng(seed)
        self.heard = Heard()
        self.stream_id = f"MZ{seed:030d}"
        self.call_id = f"CA{seed:030d}"
        self.markup = ""
        self.stream_url = ""
        self.parameters: dict[str, str] = {}
        self.closed = anyio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.webhook_body = ""  # the webhook's answer (the markup, or why it was refused)
        self.speech_ended_at: float | None = None  # when the last queued speech frame was sent
        self.speech_started_at: float | None = None
        self.sent_at: list[float] = []  # send time of every 20 ms frame of the caller's line
        self.received: list[tuple[float, int]] = []  # (time, bytes received so far) per media message
        self._talk: deque[np.ndarray] = deque()
        self._buffer = bytearray()
        self.sent_bytes = bytearray()  # every media byte the caller sent, in order
        self._marks: deque[tuple[int, str]] = deque()  # (received position, name)
        self._received = 0
        self._ws = None
        self._stop = anyio.Event()

    # --- the webhook --------------------------------------------------------------------------

    def _webhook_request(self) -> tuple[str, bytes, dict[str, str]]:
        url = f"{self.base}/telephony/{self.provider}" + (f"?{urlencode(self.query)}" if self.query else "")
        if self.provider == "plivo":
            form = {"CallUUID": self.call_id, "From": self.from_number, "To": self.to_number, "Direction": "inbound"}
        else:
            form = {"CallSid": self.call_id, "AccountSid": "AC" + "0" * 32, "From": self.from_number,
                    "To": self.to_number, "CallStatus": "ringing", "Direction": "inbound"}
        body = urlencode(form).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.sign and self.provider == "twilio":
            headers["X-Twilio-Signature"] = twilio_signature(TOKENS["twilio"], url, form)
        elif self.sign and self.provider == "plivo":
            headers["X-Plivo-Signature-V3-Nonce"] = "12345678901234567890"
            headers["X-Plivo-Signature-V3"] = plivo_signature(TOKENS["plivo"], url, "12345678901234567890", form)
        elif self.sign and self.provider == "telnyx":
            ts = str(int(time.time()))
            headers["telnyx-timestamp"] = ts
            headers["telnyx-signature-ed25519"] = base64.b64encode(self.telnyx_key.sign(f"{ts}|".encode() + body)).decode()
        return url, body, headers

    async def fetch_webhook(self) -> int:
        """POST the voice webhook; on 200 read the stream URL and parameters from the markup."""
        url, body, headers = self._webhook_request()
        status, text = await http_post(url, body, headers)
        self.webhook_body = text
        if status != 200:
            return status
        self.markup = text
        root = ET.fromstring(text)
        stream = root.find(".//Stream")
        self.stream_url = stream.get("url") or (stream.text or "").strip()
        self.parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
        return status

    # --- the stream ---------------------------------------------------------------------------

    def _ws_headers(self) -> dict[str, str]:
        if self.sign and self.provider == "twilio":
            return {"X-Twilio-Signature": twilio_signature(TOKENS["twilio"], self.stream_url)}
        if self.sign and self.provider == "plivo":
            return {"X-Plivo-Signature-V3-Nonce": "n1",
                    "X-Plivo-Signature-V3": plivo_signature(TOKENS["plivo"], self.stream_url, "n1")}
        return {}

    def _start_message(self) -> dict:
        if self.provider == "twilio":
            return {"event": "start", "sequenceNumber": "1", "streamSid": self.stream_id, "start": {
                "accountSid": "AC" + "0" * 32, "streamSid": self.stream_id, "callSid": self.call_id,
                "tracks": ["inbound"], "customParameters": self.parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
        if self.provider == "telnyx":
            return {"event": "start", "sequence_number": "1", "stream_id": self.stream_id, "start": {
                "user_id": "u1", "call_control_id": self.call_id, "call_session_id": "s1", "from": self.from_number,
                "to": self.to_number, "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}}
        return {"event": "start", "sequenceNumber": 0, "start": {
            "callId": self.call_id, "streamId": self.stream_id, "accountId": "MA1", "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}}, "extra_headers": ""}

    def _media_message(self, payload: bytes, chunk: int) -> str:
        b64 = base64.b64encode(payload).decode()
        if self.provider == "twilio":
            return json.dumps({"event": "media", "sequenceNumber": str(chunk + 2), "streamSid": self.stream_id,
                               "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20),
                                         "payload": b64}})
        if self.provider == "telnyx":
            return json.dumps({"event": "media", "sequence_number": str(chunk + 2), "stream_id": self.stream_id,
                               "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20),
                                         "payload": b64}})
        return json.dumps({"event": "media", "sequenceNumber": chunk + 1, "streamId": self.stream_id,
                           "media": {"track": "inbound", "timestamp": str(chunk * 20), "chunk": chunk, "payload": b64}})

    def _stream_key(self) -> dict:
        return {"twilio": {"streamSid": self.stream_id}, "telnyx": {"stream_id": self.stream_id},
                "plivo": {"streamId": self.stream_id}}[self.provider]

    def _mark_echo(self, name: str) -> str:
        if self.provider == "plivo":
            return json.dumps({"event": "playedStream", "streamId": self.stream_id, "name": name})
        return json.dumps({"event": "mark", **self._stream_key(), "mark": {"name": name}})

    async def send_raw(self, message: str | bytes) -> None:
        """Send anything (tests of bad input)."""
        await self._ws.send(message)

    async def run(self, task_status=anyio.TASK_STATUS_IGNORED, *, connected: bool = True) -> None:
        """Open the stream, send connected + start, then talk and listen until hung up."""
        async with connect(self.stream_url, additional_headers=self._ws_headers(), compression=None) as ws:
            self._ws = ws
            try:
                if connected and self.provider != "plivo":
                    await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
                await ws.send(json.dumps(self._start_message()))
            except ConnectionClosed:  # the server refused the stream at once (closed with a reason)
                self.close_code, self.close_reason = ws.close_code, ws.close_reason or ""
                self.closed.set()
                task_status.started()
                return
            task_status.started()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._until_closed, self._talker, ws)
                tg.start_soon(self._until_closed, self._ear, ws)
                try:
                    async for raw in ws:
                        self._on_message(json.loads(raw))
                except ConnectionClosed:
                    pass
                self.close_code, self.close_reason = ws.close_code, ws.close_reason or ""
                self.closed.set()
                tg.cancel_scope.cancel()
        self.closed.set()

    @staticmethod
    async def _until_closed(fn, ws) -> None:
        """Run a sending loop until the socket closes (hanging up races with the next frame)."""
        try:
            await fn(ws)
        except ConnectionClosed:
            pass

    def _on_message(self, msg: dict) -> None:
        h = self.heard
        kind = msg.get("event")
        if kind in ("media", "playAudio"):
            data = base64.b64decode(msg["media"]["payload"])
            if h.first_received_at is None:
                h.first_received_at = time.perf_counter()
            h.media_received += 1
            h.raw += data
            self._buffer += data
            self._received += len(data)
            self._received_total += len(data)
            self.received.append((time.perf_counter(), self._received_total))
        elif kind in ("mark", "checkpoint"):
            name = msg["mark"]["name"] if kind == "mark" else msg["name"]
            self._marks.append((self._received, name))
        elif kind in ("clear", "clearAudio"):
            now = time.perf_counter()
            h.clears.append((now, self._position(now)))
            self._dry_ticks = None
            self._buffer.clear()
            self._played_frame_at = None
            pending = [name for _, name in self._marks]
            self._marks.clear()
            self._received = self.heard.played
            if self.provider == "twilio":  # Twilio echoes every pending mark when it clears
                for name in pending:
                    self._send_soon(self._mark_echo(name))
            elif self.provider == "plivo":
                self._send_soon(json.dumps({"event": "clearedAudio", "streamId": self.stream_id}))
        h.messages.append({k: v for k, v in msg.items() if k != "media"})

    _received_total = 0
    _dry_ticks: int | None = None  # ticks since the ear last played (None: nothing to resume)
    _played_frame_at: float | None = None
    _played_frame_len = 0

    def _position(self, now: float) -> int:
        """Samples heard at ``now``: the frames played, less what the frame in progress has not played yet."""
        h = self.heard
        if self._played_frame_at is None:
            return h.played
        unplayed = self._played_frame_len - int((now - self._played_frame_at) * 8000)
        return h.played - max(0, min(self._played_frame_len, unplayed))

    def _send_soon(self, message: str) -> None:
        self._outbox.append(message)

    _outbox: deque

    async def _ear(self, ws) -> None:
        """Play the buffer at real time, 20 ms per tick on this clock; echo marks as playback passes them."""
        self._outbox = deque()
        h = self.heard
        t0 = time.perf_counter()
        k = 0
        while True:
            k += 1
            await anyio.sleep(max(0.0, t0 + k * 0.02 - time.perf_counter()))
            while self._outbox:
                await ws.send(self._outbox.popleft())
            # the frame started on the previous tick has finished playing now
            self._played_frame_at = None
            while self._marks and self._marks[0][0] <= h.played:
                await ws.send(self._mark_echo(self._marks.popleft()[1]))
                h.marks_echoed += 1
            if not self._buffer and self._dry_ticks is not None:
                self._dry_ticks += 1
            if self._buffer:
                dry = self._dry_ticks
                if dry and dry * 0.02 < UNDERRUN_GAP_S:
                    h.underruns += 1
                    h.underrun_ms += dry * 20.0
                self._dry_ticks = 0
                n = min(FRAME, len(self._buffer))
                frame = bytes(self._buffer[:n])
                del self._buffer[:n]
                now = time.perf_counter()
                if h.first_played_at is None:
                    h.first_played_at = now
                h.samples.append(ulaw_decode(np.frombuffer(frame, np.uint8)))
                h.played += n
                self._played_frame_at, self._played_frame_len = now, n

    async def _talker(self, ws) -> None:
        """Send the caller's line: queued speech, else quiet noise, 20 ms per tick (``speed`` x faster)."""
        due = time.perf_counter()
        k = 0
        while True:
            if self._talk:
                x = self._talk.popleft()
                if not self._talk:
                    self.speech_ended_at = time.perf_counter()
            else:
                x = self.rng.normal(0, 20, FRAME).astype(np.int16)
            payload = ulaw_encode(x).tobytes()
            self.sent_bytes += payload
            await ws.send(self._media_message(payload, k))
            self.sent_at.append(time.perf_counter())
            k += 1
            due += 0.02 / self.speed  # per frame, so that a change of speed applies from now on
            await anyio.sleep(max(0.0, due - time.perf_counter()))

    # --- what a test does with the call ---------------------------------------------------------

    def say(self, text_or_samples: str | np.ndarray) -> float:
        """Queue speech on the line; returns its duration in seconds."""
        x = speech(text_or_samples) if isinstance(text_or_samples, str) else text_or_samples
        n = x.shape[0] // FRAME * FRAME
        for i in range(0, n, FRAME):
            self._talk.append(x[i:i + FRAME])
        self.speech_started_at = time.perf_counter()
        self.speech_ended_at = None
        return n / 8000

    async def press(self, digit: str) -> None:
        if self.provider == "twilio":
            msg = {"event": "dtmf", "streamSid": self.stream_id, "sequenceNumber": "9",
                   "dtmf": {"track": "inbound_track", "digit": digit}}
        elif self.provider == "telnyx":
            msg = {"event": "dtmf", "stream_id": self.stream_id, "dtmf": {"digit": digit}}
        else:
            msg = {"event": "dtmf", "streamId": self.stream_id, "dtmf": {"digit": digit, "track": "inbound"}}
        await self._ws.send(json.dumps(msg))

    async def hang_up(self) -> None:
        """The caller hangs up: ``stop``, then the provider closes the socket."""
        stop = {"event": "stop", **self._stream_key(), "stop": {"callSid": self.call_id}}
        with anyio.move_on_after(2):
            await self._ws.send(json.dumps(stop))
            await self._ws.close()

    async def drop(self) -> None:
        """The provider's connection breaks: no ``stop``, no close handshake."""
        self._ws.transport.abort()

    async def wait_heard(self, seconds: float, timeout: float = 30.0) -> None:
        """Wait until the caller has heard ``seconds`` of audio."""
        with anyio.fail_after(timeout):
            while self.heard.played < seconds * 8000:
                await anyio.sleep(0.01)

    async def wait_quiet(self, ms: float = 600, timeout: float = 30.0) -> None:
        """Wait until something was heard and then nothing new arrived for ``ms``."""
        with anyio.fail_after(timeout):
            while True:
                before = self.heard.media_received
                await anyio.sleep(ms / 1000)
                if self.heard.media_received == before and self.heard.played and not self._buffer:
                    return


async def ask_and_listen(base_url: str, question: str, *, seed: int = 1, speed: float = 2.0) -> SimulatedCall:
    """One Twilio call: say ``question``, hear at least 1 s of answer until 600 ms of quiet, hang up."""
    call = SimulatedCall(base_url, "twilio", speed=speed, seed=seed)
    assert await call.fetch_webhook() == 200
    async with anyio.create_task_group() as tg:
        await tg.start(call.run)
        call.say(question)
        await call.wait_heard(1.0, timeout=30)
        await call.wait_quiet(600)
        await call.hang_up()
        tg.cancel_scope.cancel()
    return call
