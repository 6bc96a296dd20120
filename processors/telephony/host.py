"""TelephonyHost: phone calls for ``voxpipe serve``: the voice webhooks and a graph per media stream.

Theory of operation
-------------------
The web server routes to the host every request under ``/telephony/`` (and every POST):

* ``POST /telephony/<provider>`` is the voice webhook. Its signature is verified
  (:mod:`.webhook`), then the provider's markup is returned, pointing the call's media
  stream at ``ws(s)://<public host>/telephony/<provider>/stream/<token>``. The public host
  is ``public_url`` when given, else the request's ``Host`` (and ``X-Forwarded-Proto``).
  Query parameters of the webhook URL and the call's ``From``/``To`` travel as custom
  parameters. A bad or missing signature is answered 403 and nothing is started.
* The upgrade to a stream URL is vetted before it is accepted: the token must be ours,
  unexpired and unused, and where the provider signs the upgrade (Twilio) the signature
  must verify; else 403, nothing started.
* Calls are sessions of the worker's :class:`~processors.serving.host.ServingHost`, beside
  the browser pages: admission is asked at the webhook (past ``--max-sessions``, over
  ``--max-cpu`` or while draining, the webhook is answered 503 with the reason, so the
  provider takes its fallback URL), and an admitted webhook reserves its slot until its
  stream opens (or ``reserve_s`` passes). A stream without a reservation is admitted
  again when it opens; refused, it is closed 1013 with the reason. A call holds its slot
  from its stream's opening to its end; it is counted in ``voxpipe_sessions_active`` and
  its outcome in ``voxpipe_sessions_ended_total``. A drain keeps live calls until they end;
  at the drain's deadline (or a forced stop) each is closed 1012 with the reason.
* The provider's messages reach the call from the socket's callback (:mod:`.inbox`,
  installed while the upgrade is vetted), not through a reader task; the host waits for
  ``start``, then for ``stop`` or the close.
* Each accepted stream is a session. The host waits for the provider's ``start``,
  copies the checked graph, runs it with a :class:`~pipeline.session.SessionContext` whose
  metadata is the call (provider, call id, stream id, from, to, custom parameters) and
  whose attachment ``phone_call`` is the :class:`~.call.PhoneCall`.
  The stream ending (``stop``, or a disconnect without it) cancels the graph (its
  ``stop()`` hooks get ``stop_timeout_s``); a tool's :meth:`~.call.PhoneCall.hangup`
  closes the stream once what was sent has been played; a graph that ends by itself closes
  the stream. Nothing of a call outlives its handler.

Verification can be turned off (``verify_signatures=False``) for local development only;
it is logged as a warning at start and for every call.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import anyio
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.http11 import Request, Response

from pipeline.graph import Graph
from pipeline.runner import Runner, RunResult
from pipeline.session import SessionContext

from processors.serving.admission import Phase, Refusal
from processors.serving.host import ServingHost

from .call import CALL, CallInfo, PhoneCall
from .http import PostRequest, text_response
from .inbox import Inbox, install
from .plivo import PlivoProtocol
from .serializer import MediaStreamProtocol, StreamStart, StreamStop
from .telnyx import TelnyxProtocol
from .transport import PhoneInput, PhoneOutput
from .twilio import TwilioProtocol
from .webhook import StreamTokens, plivo_xml, telnyx_texml, twiml, verify_plivo, verify_telnyx, verify_twilio

__all__ = ["PROVIDERS", "SECRET_ENV", "TelephonyHost", "has_phone_transports"]

log = logging.getLogger("voxpipe.telephony")

PREFIX = "/telephony/"
#: The key stream tokens are signed with; set the same value in every worker behind one balancer.
SECRET_ENV = "VOXPIPE_TELEPHONY_SECRET"
#: provider -> (serializer, markup, credential environment variable)
PROVIDERS: dict[str, tuple[type[MediaStreamProtocol], Callable[[str, dict[str, str]], str], str]] = {
    "twilio": (TwilioProtocol, twiml, "TWILIO_AUTH_TOKEN"),
    "telnyx": (TelnyxProtocol, telnyx_texml, "TELNYX_PUBLIC_KEY"),
    "plivo": (PlivoProtocol, plivo_xml, "PLIVO_AUTH_TOKEN"),
}
#: Webhook form fields passed on to the stream as custom parameters (provider spelling -> ours).
_FORWARDED = {"From": "from", "To": "to", "CallSid": "call_id", "CallUUID": "call_id", "AccountSid": "account_id",
              "CallControlId": "call_id"}


def has_phone_transports(graph: Graph) -> bool:
    """True when the graph has a ``transport.phone.input`` or ``.output``."""
    return any(isinstance(n.processor, (PhoneInput, PhoneOutput)) for n in graph.nodes.values())



async def send_batch(ws: ServerConnection, messages: list[str]) -> int:
    """Send text ``messages`` in order with one socket write; returns how many (ConnectionClosed if closed).

    ``Connection.send`` writes each message to the socket at once: one ``send()`` syscall
    per message, and on loopback the kernel delivers to the peer inside that call (about
    100-200 us each on the reference machine, the largest single cost of a call in the
    profile). A 200 ms audio delta is 10 media + 10 mark messages, so they are framed with
    the connection's own sans-I/O protocol (``ws.protocol.send_text``: websockets' framing
    and ordering) and written with one ``transport.write``, inside websockets'
    ``send_context`` (state checks, close handling, flow control). Without that API
    (another websockets version) it falls back to one ``send`` per message.
    """
    context = getattr(ws, "send_context", None)
    if context is None or not messages:
        for message in messages:
            await ws.send(message)
        return len(messages)
    async with context():
        protocol = ws.protocol
        for message in messages:
            protocol.send_text(message.encode())
        chunks = protocol.data_to_send()
        ws.transport.write(b"".join(chunks))
        if b"" in chunks and ws.transport.can_write_eof():  # a close was queued meanwhile: half-close as websockets does
            ws.transport.write_eof()
    return len(messages)

class TelephonyHost:
    """Answers voice webhooks and runs a copy of the graph per media stream.

    ``template`` returns the checked graph to copy per call. ``public_url`` (``https://...``)
    is where the providers reach this server; without it the request's Host is used.
    Credentials come from ``credentials`` or the environment (``TWILIO_AUTH_TOKEN``,
    ``TELNYX_PUBLIC_KEY``, ``PLIVO_AUTH_TOKEN``); a provider without one is refused (403)
    while ``verify_signatures`` is on. ``serving`` is the worker's serving host (admission,
    drain, metrics); without one the host makes its own, without metrics, for at most
    ``max_calls`` calls (64 by default). ``max_calls`` given beside ``serving`` is a further
    limit on calls alone.
    """

    def __init__(self, template: Callable[[], Graph], *, public_url: str | None = None,
                 verify_signatures: bool = True, credentials: dict[str, str] | None = None,
                 max_calls: int | None = None, stop_timeout_s: float = 2.0, start_timeout_s: float = 10.0,
                 drain_s: float = 10.0, tokens: StreamTokens | None = None, serving: ServingHost | None = None,
                 reserve_s: float = 30.0) -> None:
        self.template = template
        self.public_url = public_url.rstrip("/") if public_url else None
        if self.public_url and urlsplit(self.public_url).scheme not in ("http", "https"):
            raise ValueError(f"--public-url {public_url!r} must start with https:// (or http://)")
        self.verify = verify_signatures
        self.credentials = {p: (credentials or {}).get(p) or os.environ.get(env, "")
                            for p, (_, _, env) in PROVIDERS.items()}
        if serving is None:
            serving = ServingHost(max_sessions=max_calls or 64, metrics=False)
            max_calls = None
        self.serving = serving
        self.max_calls = max_calls
        self.reserve_s = reserve_s
        self._reserved: dict[str, float] = {}  # stream token -> when its reservation lapses (monotonic)
        self._starting = 0  # streams accepted whose `start` has not come yet
        self._drained: set[str] = set()
        self.stop_timeout_s = stop_timeout_s
        self.start_timeout_s = start_timeout_s
        self.drain_s = drain_s
        secret = os.environ.get(SECRET_ENV, "")
        self.tokens = tokens or StreamTokens(secret.encode() or None)
        self.calls: dict[str, PhoneCall] = {}
        self.results: dict[str, RunResult] = {}  # the last few calls' results (for logs and tests)
        self.refused = 0
        self.calls_total = 0
        self._ids = itertools.count(1)
        self._idle = anyio.Event()
        self._idle.set()
        if not self.verify:
            log.warning("telephony: signature verification is OFF (verify_signatures=False): anyone who can reach "
                        "this server can place calls into the pipeline; use this for local development only")

    # --- routing ----------------------------------------------------------------------------------

    @staticmethod
    def owns(request: Request) -> bool:
        """True for the requests this host answers: POSTs and everything under /telephony/."""
        return isinstance(request, PostRequest) or urlsplit(request.path).path.startswith(PREFIX)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer a webhook, refuse a bad upgrade, or accept a stream (None)."""
        canned = getattr(connection, "canned", None)
        if canned is not None:
            return canned
        parts = urlsplit(request.path).path[len(PREFIX):].strip("/").split("/")
        provider = parts[0] if parts else ""
        if provider not in PROVIDERS:
            return text_response(HTTPStatus.NOT_FOUND, f"nothing at {request.path}; voice webhooks are "
                                                       f"POST /telephony/{{{','.join(PROVIDERS)}}}\n")
        if isinstance(request, PostRequest):
            if len(parts) != 1:
                return text_response(HTTPStatus.NOT_FOUND, f"the voice webhook is POST /telephony/{provider}\n")
            return self._webhook(connection, provider, request)
        if len(parts) != 3 or parts[1] != "stream":
            return text_response(HTTPStatus.METHOD_NOT_ALLOWED, f"/telephony/{provider} takes the provider's POST\n")
        return self._vet_stream(connection, provider, parts[2], request)

    def _base(self, request: Request, *, websocket: bool) -> str:
        if self.public_url:
            base = self.public_url
        else:
            proto = (request.headers.get("X-Forwarded-Proto") or "http").split(",")[0].strip().lower()
            base = f"{'https' if proto == 'https' else 'http'}://{request.headers.get('Host', 'localhost')}"
        return ("ws" + base[4:]) if websocket else base  # http -> ws, https -> wss

    # --- admission --------------------------------------------------------------------------------

    def active(self) -> int:
        """Sessions that hold a slot: the serving host's live ones, calls starting, webhooks reserved."""
        now = time.monotonic()
        for token in [t for t, until in self._reserved.items() if until <= now]:
            del self._reserved[token]
        return len(self.serving.live) + self._starting + len(self._reserved)

    def refusal(self) -> Refusal | None:
        """None when a new call may start now; else why not (counted by the serving host)."""
        active = self.active()
        if self.max_calls is not None and len(self.calls) + len(self._reserved) >= self.max_calls:
            refused = Refusal("capacity", f"all {self.max_calls} call slots are in use; try again in a moment")
            self.serving.count_refusal(refused)
            return refused
        return self.serving.refusal(active)

    def _refuse(self, connection: ServerConnection, what: str) -> Response:
        self.refused += 1
        log.warning("telephony: refused %s from %s", what, _peer(connection))
        return text_response(HTTPStatus.FORBIDDEN, "forbidden: the request's signature does not verify\n")

    # --- webhook ----------------------------------------------------------------------------------

    def _webhook(self, connection: ServerConnection, provider: str, request: PostRequest) -> Response:
        url = self._base(request, websocket=False) + request.path
        ctype = request.headers.get("Content-Type", "")
        text = request.body.decode("utf-8", "replace")
        params = dict(parse_qsl(text, keep_blank_values=True)) if "json" not in ctype else {}
        if self.verify:
            ok, why = self._verified(provider, request, url, params)
            if not ok:
                return self._refuse(connection, f"a {provider} webhook ({why})")
        else:
            log.warning("telephony: %s webhook accepted WITHOUT signature verification (development mode)", provider)
        custom = {k: v for k, v in parse_qsl(urlsplit(request.path).query)}
        for field, ours in _FORWARDED.items():
            if params.get(field):
                custom.setdefault(ours, params[field])
        refused = self.refusal()
        if refused is not None:  # the provider plays its fallback (Twilio: the number's fallback URL)
            log.warning("telephony: refused a %s call %s from %s: %s", provider, custom.get("call_id", "?"),
                        custom.get("from", "?"), refused.reason)
            return text_response(HTTPStatus.SERVICE_UNAVAILABLE, f"{refused.reason}: {refused.message}\n")
        token = self.tokens.issue(provider, dict(custom))
        self._reserved[token] = time.monotonic() + self.reserve_s
        stream_url = f"{self._base(request, websocket=True)}{PREFIX}{provider}/stream/{token}"
        markup = PROVIDERS[provider][1](stream_url, custom)
        log.info("telephony: %s call %s from %s: streaming to %s%s/stream/...", provider,
                 custom.get("call_id", "?"), custom.get("from", "?"), PREFIX, provider)
        return text_response(HTTPStatus.OK, markup, "application/xml")

    def _verified(self, provider: str, request: PostRequest, url: str, params: dict[str, str]) -> tuple[bool, str]:
        secret = self.credentials[provider]
        if not secret:
            return False, f"{PROVIDERS[provider][2]} is not set, so it cannot be verified"
        h = request.headers
        if provider == "twilio":
            sig = h.get("X-Twilio-Signature")
            return verify_twilio(secret, url, params, sig), ("no X-Twilio-Signature" if not sig else "bad signature")
        if provider == "plivo":
            sig = h.get("X-Plivo-Signature-V3")
            return (verify_plivo(secret, url, params, h.get("X-Plivo-Signature-V3-Nonce"), sig),
                    "no X-Plivo-Signature-V3" if not sig else "bad signature")
        sig = h.get("telnyx-signature-ed25519")
        try:
            ok = verify_telnyx(secret, request.body, h.get("telnyx-timestamp"), sig)
        except RuntimeError as exc:
            return False, str(exc)
        return ok, "no telnyx-signature-ed25519" if not sig else "bad or stale signature"

    # --- stream upgrade ---------------------------------------------------------------------------

    def _vet_stream(self, connection: ServerConnection, provider: str, token: str, request: Request) -> Response | None:
        facts: dict[str, Any] | None = {}
        if self.verify:
            facts = self.tokens.redeem(provider, token)
            if facts is None:
                return self._refuse(connection, f"a {provider} stream with an invalid, expired or used token")
            url = self._base(request, websocket=True) + request.path
            secret = self.credentials[provider]
            if provider == "twilio" and not verify_twilio(secret, url, None, request.headers.get("X-Twilio-Signature")):
                return self._refuse(connection, "a twilio stream whose X-Twilio-Signature does not verify")
            nonce = request.headers.get("X-Plivo-Signature-V3-Nonce")
            if provider == "plivo" and nonce is not None and not verify_plivo(
                    secret, url, None, nonce, request.headers.get("X-Plivo-Signature-V3")):
                return self._refuse(connection, "a plivo stream whose X-Plivo-Signature-V3 does not verify")
        else:
            log.warning("telephony: %s stream accepted WITHOUT verification (development mode)", provider)
            facts = self.tokens.redeem(provider, token) or {}
        # the slot its webhook reserved goes with it (handle() admits a stream that has none)
        reserved = self._reserved.pop(token, 0.0) > time.monotonic()
        connection.voxpipe_call = (provider, facts, reserved)  # type: ignore[attr-defined]
        # before the handshake is answered, so before the provider can send a frame: every message
        # reaches the call from the socket's callback, in order (processors/telephony/inbox.py)
        connection.voxpipe_inbox = install(connection)  # type: ignore[attr-defined]
        return None

    # --- calls ------------------------------------------------------------------------------------

    async def wait_idle(self) -> None:
        """Return once no call is running."""
        await self._idle.wait()

    async def handle(self, ws: ServerConnection) -> None:
        """Run one media stream: read to ``start``, run the graph beside the reader, clean up."""
        provider, facts, reserved = ws.voxpipe_call  # type: ignore[attr-defined]
        refused = None
        if not reserved or self.serving.admission.phase is Phase.STOPPING:
            refused = self.refusal()  # after the handshake, so that the close frame can say why
        if refused is not None:
            log.warning("telephony: refused a %s stream from %s: %s", provider, _peer(ws), refused.reason)
            with anyio.move_on_after(2.0):
                await ws.close(1013, refused.message[:120])
            return

        async def send(message: str) -> bool:
            try:
                await ws.send(message)
                return True
            except ConnectionClosed:
                return False

        async def send_many(messages: list[str]) -> int:
            try:
                return await send_batch(ws, messages)
            except ConnectionClosed:
                return 0

        call = PhoneCall(PROVIDERS[provider][0](), send, send_many=send_many)
        inbox: Inbox | None = getattr(ws, "voxpipe_inbox", None)
        if inbox is not None:
            inbox.attach(call)  # what came before now goes to the call, and from now on all of it
        key = f"{provider}-{next(self._ids)}"
        self.calls[key] = call
        self._idle = anyio.Event()
        self.calls_total += 1
        self._starting += 1
        starting = True
        try:
            start = await self._read_start(ws, call, inbox)
            self._starting -= 1
            starting = False
            if start is None:
                return
            custom = {**{k: v for k, v in facts.items() if k not in ("call_id", "account_id")}, **start.custom}
            call.info = info = CallInfo(provider, start.call_id, start.stream_id, start.account_id or facts.get("account_id"),
                                        start.from_number or facts.get("from"), start.to_number or facts.get("to"), custom)
            await self._run_call(ws, call, info, key, inbox)
        finally:
            if starting:
                self._starting -= 1
            del self.calls[key]
            if not self.calls:
                self._idle.set()

    async def _read_start(self, ws: ServerConnection, call: PhoneCall, inbox: Inbox | None) -> StreamStart | None:
        with anyio.move_on_after(self.start_timeout_s):
            if inbox is not None:  # the messages reach the call by themselves: wait for `start` (or `stop`)
                if await _set_or_closed(inbox.settled, ws):
                    return call.protocol.start  # None when `stop` came first
                log.info("telephony: a %s stream closed before `start`", call.protocol.provider)
                return None
            try:
                async for message in ws:
                    event = call.receive(message)
                    if isinstance(event, StreamStart):
                        return event
                    if isinstance(event, StreamStop):
                        return None
            except ConnectionClosed:
                pass
            log.info("telephony: a %s stream closed before `start`", call.protocol.provider)
            return None
        log.warning("telephony: no `start` within %.0fs on a %s stream; closing it", self.start_timeout_s,
                    call.protocol.provider)
        await ws.close(1008, "no start")
        return None

    async def _run_call(self, ws: ServerConnection, call: PhoneCall, info: CallInfo, key: str,
                        inbox: Inbox | None = None) -> None:
        graph = self.template().copy()
        context = SessionContext(id=f"{info.provider}-{info.call_id}",
                                 metadata={**info.metadata(), "remote_address": _peer(ws)}, attachments={CALL: call})
        live = self.serving.open(key, graph, {"net.peer": _peer(ws), "voxpipe.telephony.provider": info.provider,
                                              "voxpipe.telephony.call_id": info.call_id})
        try:
            runner = Runner(graph, realtime=True, stop_timeout_s=self.stop_timeout_s, context=context)
        except Exception:  # the slot is given back, whatever failed
            self.serving.close(live, "error")
            raise
        live.runner = runner
        if not self.verify:
            log.warning("telephony: call %s runs WITHOUT verified signatures (development mode)", info.call_id)
        log.info("telephony: call %s (%s) from %s to %s: started", info.call_id, info.provider,
                 info.from_number, info.to_number)
        ended = anyio.Event()
        token = call.enter()  # tools see the call through current_call()
        caller_left = False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._run_graph, runner, call, ws, ended)
                tg.start_soon(self._watch_hangup, call, ws)
                tg.start_soon(self._watch_stopping, call, ws, key)
                reason = await self._read(ws, call, inbox)
                caller_left = call.open and not call.hangup_reason and key not in self._drained
                call.end(reason)
                runner.cancel()
                with anyio.move_on_after(self.stop_timeout_s + 1.0) as scope:
                    await ended.wait()
                if scope.cancelled_caught:
                    log.warning("telephony: call %s: graph still running %.1fs after the stream ended; cancelling it",
                                info.call_id, self.stop_timeout_s + 1.0)
                tg.cancel_scope.cancel()
            with anyio.move_on_after(2.0):
                await ws.close(1000, "call ended")
        finally:
            call.leave(token)
            result = self.results.get(info.call_id)
            outcome = ("drained" if key in self._drained else "end" if call.hangup_reason
                       else "client_closed" if caller_left else "cancel" if result is None
                       else result.ended if result.ok else "error")
            self._drained.discard(key)
            self.serving.close(live, outcome)
            log.info("telephony: call %s ended (%s; %s): %s", info.call_id, call.ended_reason, outcome,
                     call.statistics())

    async def _read(self, ws: ServerConnection, call: PhoneCall, inbox: Inbox | None) -> str:
        """Feed the provider's messages to the call until the stream ends; returns why it ended."""
        if inbox is not None:  # the inbox feeds the call: wait for `stop` or the close
            if await _set_or_closed(inbox.stopped, ws):
                return "the caller hung up (stop)"
            closed = getattr(ws.protocol, "close_exc", None)
            if closed is not None and not isinstance(closed, ConnectionClosedOK):
                return f"the provider disconnected without stop ({closed.rcvd.code if closed.rcvd else 'no close frame'})"
            return call.hangup_reason or "the provider closed the stream without stop"
        try:
            async for message in ws:
                if isinstance(call.receive(message), StreamStop):
                    return "the caller hung up (stop)"
        except ConnectionClosed as exc:
            return f"the provider disconnected without stop ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        return call.hangup_reason or "the provider closed the stream without stop"

    async def _run_graph(self, runner: Runner, call: PhoneCall, ws: ServerConnection, ended: anyio.Event) -> None:
        try:
            result = await runner.run()
        except Exception:  # a bug in the runner or a shell: keep it in this call
            log.exception("telephony: %s: the graph failed", call.name)
            result = RunResult(ok=False, ended="error")
        finally:
            ended.set()
        key = call.info.call_id if call.info else "?"
        self.results[key] = result
        while len(self.results) > 64:
            self.results.pop(next(iter(self.results)))
        if call.open:  # the graph ended by itself: end the call
            call.end("the pipeline ended" if result.ok else "the pipeline failed")
            with anyio.move_on_after(2.0):
                await ws.close(1000 if result.ok else 1011, "pipeline ended")

    async def _watch_stopping(self, call: PhoneCall, ws: ServerConnection, key: str) -> None:
        """The worker stops (a drain's deadline, a second SIGTERM, Ctrl-C): close the call with the reason."""
        serving = self.serving
        await serving.stopping.wait()
        deadline = serving.admission.drain_deadline
        why = "drain deadline passed" if deadline is not None and deadline <= time.monotonic() else "server stopping"
        self._drained.add(key)
        log.warning("telephony: %s: closing it: %s", call.name, why)
        call.end(why)
        with anyio.move_on_after(2.0):
            await ws.close(1012, f"{why}: the server is restarting")

    async def _watch_hangup(self, call: PhoneCall, ws: ServerConnection) -> None:
        await call.hangup_requested.wait()
        with anyio.move_on_after(self.drain_s):
            while call.open and call.ledger.pending:
                await anyio.sleep(0.02)
        log.info("telephony: %s: %s", call.name, call.hangup_reason)
        call.end(call.hangup_reason)
        with anyio.move_on_after(2.0):
            await ws.close(1000, "call ended")


async def _set_or_closed(event: anyio.Event, ws: ServerConnection) -> bool:
    """Wait for ``event`` or the connection's close, whichever comes first; True when ``event`` is set."""
    if not event.is_set():
        async with anyio.create_task_group() as tg:
            async def closed() -> None:
                await ws.wait_closed()
                tg.cancel_scope.cancel()

            tg.start_soon(closed)
            await event.wait()
            tg.cancel_scope.cancel()
    return event.is_set()


def _peer(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
        return f"{host}:{port}"
    except Exception:
        return "?"
