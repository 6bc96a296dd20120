"""``voxpipe serve``: one HTTP + websocket server, a graph per browser connection.

Theory of operation
-------------------
One ``websockets`` server (asyncio) listens on ``host:port``. Its ``process_request``
hook answers plain HTTP GETs with the page (``/``, ``/app.js``, ``/worklet.js``) and
vets websocket upgrades to ``/ws``: the token (when one is set), the ``Origin`` (same host,
or one of ``origins``) and the number of open sessions. Everything else is a 404. Before
that, every request's ``Host`` must be a loopback name or the listening host (DNS
rebinding), ``Host`` and ``Origin`` must come once, and an overlong line gets a 414 or 431
(:mod:`processors.guard`).

Each accepted websocket is a session. Its handler copies the pipeline's graph (loaded and
checked once, at start: ``Graph.copy()`` per session, no re-parse), hands the
``transport.websocket`` processors the browser connection through the run's
:class:`~pipeline.session.SessionContext` (``attachments["web_session"]``), and runs it with :class:`~pipeline.runner.Runner` in a task
group of its own, beside the reader task that decodes the page's messages (a malformed
message gets an ``error`` event; too many close the connection with 1008; a message over
``max_message_bytes`` is closed with 1009 by ``websockets`` itself). When the page leaves,
the graph is cancelled (its ``stop()`` hooks get ``stop_timeout_s``); when the graph ends
or fails, the page is told why and the socket is closed. A session's failure stays in its
handler: other sessions never see it.

When the pipeline uses ``realtime.openai`` with ``url: local``, the server starts one
offline realtime server for all sessions (the speech models load once, before the first
page connects) and points each session's model at it.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import logging
import math
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from pipeline.errors import PipelineError, Problem, VoxpipeError
from pipeline.graph import Graph
from pipeline.loader import load_text
from pipeline.logs import quiet_handshakes
from pipeline.logs import session_id
from pipeline.runner import Runner, RunResult
from pipeline.session import SessionContext
from processors.telephony.host import TelephonyHost, has_phone_transports
from processors.telephony.http import PostAwareConnection
from processors.guard import GuardedConnection, HeaderError, HostCheck, single_header
from processors.webrtc.host import WebRTCHost, has_webrtc_transports, no_webrtc_routes
from processors.serving.host import ServingHost
from processors.telephony.http import PostRequest

from .session import WebSession
from .transport import WEB_SESSION, WebsocketInput, WebsocketOutput
from .wire import (
    ClientAudio,
    ClientHello,
    ClientPlayed,
    ClientText,
    WireError,
    error_event,
    max_audio_bytes,
    parse_client_message,
    ready_event,
)

__all__ = ["DEFAULT_IDLE_TIMEOUT_S", "STATIC_DIR", "TOKEN_ENV", "WebServer", "serve", "web_server"]

log = logging.getLogger("voxpipe.web")

STATIC_DIR = Path(str(files(__package__).joinpath("static")))
TOKEN_ENV = "VOXPIPE_TOKEN"
WS_PATH = "/ws"
#: Malformed messages tolerated per session before it is closed as abusive.
MAX_BAD_MESSAGES = 20
#: Seconds a page may send nothing (no audio, no report) before its session is closed.
DEFAULT_IDLE_TIMEOUT_S = 120.0

_PAGES = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js", "/worklet.js": "worklet.js",
          "/webrtc.js": "webrtc.js"}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self' ws: wss:; img-src 'self' data:")


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Transports:
    inputs: list[WebsocketInput]
    outputs: list[WebsocketOutput]


def _transports(graph: Graph) -> _Transports:
    procs = [node.processor for node in graph.nodes.values()]
    return _Transports([p for p in procs if isinstance(p, WebsocketInput)],
                       [p for p in procs if isinstance(p, WebsocketOutput)])


class _PhoneConnection(GuardedConnection, PostAwareConnection):
    """Guarded request heads (see :mod:`processors.guard`) and the phone webhooks' HTTP POSTs."""


class WebServer:
    """Serves a pipeline to browsers: the page over HTTP, one graph per websocket session.

    ``token`` (default: ``$VOXPIPE_TOKEN``) must then be given as ``?token=`` by every
    websocket client; it is required when ``host`` is not a loopback address. ``origins``
    lists the page origins allowed besides the server's own. A session whose page sends
    nothing for ``idle_timeout_s`` (None or 0: never) is closed (1008, with a reason the page
    shows), so idle tabs cannot hold every one of the ``max_sessions`` slots. Start with :meth:`start`
    (or :func:`web_server`), stop with :meth:`aclose`.
    """

    def __init__(
        self,
        pipeline_path: str | os.PathLike,
        *,
        token: str | None = None,
        origins: Sequence[str] = (),
        max_sessions: int = 16,
        max_message_bytes: int = 256 * 1024,
        stop_timeout_s: float = 2.0,
        share_local_realtime: bool = True,
        public_url: str | None = None,
        verify_signatures: bool = True,
        idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S,
        allow_hosts: Sequence[str] = (),
        serving: ServingHost | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.allow_hosts = tuple(allow_hosts)  # Host names besides loopback and the listening host (processors.guard)
        self.path = Path(pipeline_path)
        try:
            self.text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PipelineError(Problem(f"no such pipeline file: {self.path}",
                                        hint="check the path (shipped pipelines live in pipelines/)")) from None
        env_token = os.environ.get(TOKEN_ENV) or None
        self.token = token if token is not None else env_token
        self.origins = set(origins)
        self.max_sessions = max_sessions
        self.max_message_bytes = max_message_bytes
        self.stop_timeout_s = stop_timeout_s
        self.idle_timeout_s = idle_timeout_s or None
        self.share_local_realtime = share_local_realtime
        # probes, metrics, traces, admission and drain (processors/serving); reuse_port: --workers
        self.serving = serving if serving is not None else ServingHost(max_sessions=max_sessions,
                                                                       pipeline=str(self.path))
        self.serving.token = self.token
        self.reuse_port = reuse_port
        self._sockets: dict[str, ServerConnection] = {}
        self._drained: set[str] = set()
        self._sampler: asyncio.Task | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.sessions: dict[str, WebSession] = {}
        self.sessions_total = 0
        self.results: dict[str, RunResult] = {}  # the last few sessions' results (for logs and tests)
        self._overrides: list[str] = []
        self._ids = itertools.count(1)
        self._idle = anyio.Event()
        self._idle.set()
        self._server: Server | None = None
        self._hosts = HostCheck(self.host, self.allow_hosts)
        self._local: Any = None  # the shared local realtime server
        self._static = {path: (STATIC_DIR / name).read_bytes() for path, name in _PAGES.items()}
        self.template = graph = self._graph()  # load and check once, before anything listens
        found = _transports(graph)
        # phone calls (processors/telephony): webhooks and media streams beside the page
        self.telephony = TelephonyHost(lambda: self.template, public_url=public_url, verify_signatures=verify_signatures,
                                       stop_timeout_s=stop_timeout_s, serving=self.serving) \
            if has_phone_transports(graph) else None
        # WebRTC peers (processors/webrtc): the SDP offer route beside the page
        self.webrtc = WebRTCHost(lambda: self.template, max_sessions=max_sessions, stop_timeout_s=stop_timeout_s,
                                 websocket=bool(found.inputs or found.outputs)) if has_webrtc_transports(graph) else None
        self.routes = self.webrtc.routes() if self.webrtc is not None else no_webrtc_routes()
        self._phone_only = not found.inputs and not found.outputs and self.webrtc is None  # no page to serve
        if self._phone_only and self.telephony is None:
            raise PipelineError(Problem(
                "this pipeline has no transport.websocket.input nor transport.websocket.output, so a browser "
                "has nothing to connect to", str(self.path), None,
                "add `{type: transport.websocket.input}` as the source and `{type: transport.websocket.output}` "
                "where the answer comes out"))
        if len(found.inputs) > 1 or len(found.outputs) > 1:
            raise PipelineError(Problem("a pipeline served to browsers takes at most one transport.websocket.input "
                                        "and one transport.websocket.output", str(self.path)))
        self._input_rate = found.inputs[0].params.sample_rate if found.inputs else None
        self._frame_ms = found.inputs[0].params.frame_ms if found.inputs else 20.0
        # audio messages are checked against the highest rate a page may declare (hello)
        self._max_audio = max_audio_bytes(48000, found.inputs[0].params.max_message_ms if found.inputs else 200)
        self._local_models = [n for n, node in graph.nodes.items()
                              if getattr(node.processor.params, "url", None) == "local"
                              and type(node.processor).__name__ == "OpenAIRealtime"]
        self._local_rules = {graph.nodes[n].processor.params.local_rules for n in self._local_models}
        self._keyless = [n for n in self._local_models if graph.nodes[n].processor.params.api_key is None]
        for node in graph.nodes.values():  # a missing API key is one line now, not a failure per session
            check = getattr(node.processor, "preflight", None)
            if check is not None:
                check()

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The page's URL."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    @property
    def ws_url(self) -> str:
        """The websocket endpoint (add ``?token=`` when a token is set)."""
        return self.url.replace("http://", "ws://", 1) + WS_PATH.lstrip("/")

    async def start(self, host: str = "127.0.0.1", port: int = 8080) -> None:
        """Start the shared local realtime server when needed, then listen on ``host:port``."""
        if not is_loopback(host) and not self.token:
            raise VoxpipeError(f"refusing to serve on {host} without a token: anyone who can reach it could use "
                               f"the pipeline; pass --token SECRET (or set {TOKEN_ENV}), or bind 127.0.0.1")
        if self.webrtc is not None:
            await self.webrtc.start()
        if self._local_models and self.share_local_realtime and len(self._local_rules) == 1:
            from processors.realtime.server import RealtimeServer  # heavy: speech models

            local = RealtimeServer(rules=next(iter(self._local_rules)))
            await local.start("127.0.0.1", 0)
            self._local = local
            self._overrides = [f"{n}.url={local.url}/realtime" for n in self._local_models]
            self._overrides += [f"{n}.api_key=local" for n in self._keyless]
            self.template = self._graph()  # once more, pointed at the shared server
        try:
            self._hosts = HostCheck(host, self.allow_hosts)
            self._server = await ws_serve(
                self._handle, host, port, process_request=self._process_request, max_size=self.max_message_bytes,
                create_connection=_PhoneConnection, reuse_port=self.reuse_port or None,
                compression=None, close_timeout=2, logger=quiet_handshakes(logging.getLogger("voxpipe.web.websockets")))
        except OSError as exc:
            await self.aclose()
            raise VoxpipeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; pick another --port "
                               "(or stop what uses it)") from None
        sock = self._server.sockets[0].getsockname() if self._server.sockets else (host, port)
        self.host, self.port = host, int(sock[1])
        self._sampler = asyncio.get_running_loop().create_task(self.serving.sample())
        log.info("serving %s on %s", self.path, self.url)

    async def aclose(self) -> None:
        """Close every session (1001), stop listening and stop the shared local server."""
        server, self._server = self._server, None
        if server is not None:
            server.close(close_connections=True)
            with anyio.move_on_after(self.stop_timeout_s + 3.0) as scope:
                await server.wait_closed()
            if scope.cancelled_caught:
                log.warning("web server close passed %.1fs with sessions %s still open",
                            self.stop_timeout_s + 3.0, ", ".join(self.sessions) or "none")
        if self.webrtc is not None:
            await self.webrtc.aclose()
        local, self._local = self._local, None
        if local is not None:
            await local.aclose()
        sampler, self._sampler = self._sampler, None
        if sampler is not None:
            sampler.cancel()
            with anyio.move_on_after(1.0):
                await asyncio.gather(sampler, return_exceptions=True)

    async def close_sessions(self, code: int, reason: str) -> None:
        """Close every live session with ``code`` and ``reason`` (a drain's end); each graph gets its stop deadline."""
        sids = list(self._sockets)
        self._drained.update(sids)
        for sid in sids:
            ws = self._sockets.get(sid)
            if ws is not None:
                await ws.close(code, reason)
        with anyio.move_on_after(self.stop_timeout_s + 2.0):
            await self.wait_idle()

    async def wait_idle(self) -> None:
        """Return once no session is open (every graph has ended and been freed)."""
        await self._idle.wait()

    # --- HTTP -----------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            host = single_header(request.headers, "Host")
            origin = single_header(request.headers, "Origin")
        except HeaderError as exc:
            log.warning("refused a request from %s: %s", _peer(connection), exc)
            return exc.response
        canned = getattr(connection, "canned", None)  # a POST refused before this hook
        if canned is not None:
            return canned
        answer = self.serving.http(connection, request)  # /healthz, /readyz, /metrics, POST /drain
        if answer is not None:
            return answer
        # phone providers reach us under the public URL's name and sign what they send:
        # their routes check signatures, not the browser's Host allow-list
        if self.telephony is not None and (self.telephony.owns(request) or self._phone_only) \
                and urlsplit(request.path).path not in self.routes:
            return self.telephony.process_request(connection, request)
        if not self._hosts.allows(host):  # DNS rebinding: a page's own name, pointed at this machine
            log.warning("refused a request from %s for host %r", _peer(connection), host)
            return self._hosts.refusal(host)
        url = urlsplit(request.path)
        if isinstance(request, PostRequest) and url.path not in self.routes:
            return _text(HTTPStatus.METHOD_NOT_ALLOWED, f"nothing takes a POST at {url.path}\n")
        if url.path != WS_PATH and url.path not in self.routes:
            if url.path == "/favicon.ico":
                return Response(HTTPStatus.NO_CONTENT.value, "No Content", Headers([("Content-Length", "0")]), b"")
            body = self._static.get(url.path)
            if body is None:
                return _text(HTTPStatus.NOT_FOUND, f"nothing at {url.path}; the page is at /\n")
            headers = Headers([("Content-Type", _TYPES[Path(_PAGES[url.path]).suffix]),
                               ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"),
                               ("X-Content-Type-Options", "nosniff"), ("Content-Security-Policy", _CSP)])
            return Response(HTTPStatus.OK.value, "OK", headers, body)
        if self.token:
            given = parse_qs(url.query).get("token", [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                log.warning("refused a websocket from %s: %s token", _peer(connection), "wrong" if given else "no")
                return _text(HTTPStatus.UNAUTHORIZED, "a token is required: open the page as /?token=SECRET\n")
        if origin is not None and not self._origin_ok(origin, host or ""):
            log.warning("refused a websocket from %s: origin %s", _peer(connection), origin)
            return _text(HTTPStatus.FORBIDDEN, f"origin {origin} is not allowed; open the page from this server "
                                               "or add the origin to the server's allowed origins\n")
        route = self.routes.get(url.path)  # the token and Origin rules above apply to every route
        if route is not None:
            return route(connection, request)
        return None  # at capacity or draining: the handler closes with a reason the page shows (1013)

    def _origin_ok(self, origin: str, host: str) -> bool:
        if origin in self.origins:
            return True
        return urlsplit(origin).netloc.lower() == host.lower() and host != ""

    # --- sessions -------------------------------------------------------------------------------

    def _graph(self) -> Graph:
        return load_text(self.text, file=str(self.path), overrides=self._overrides, base_dir=self.path.parent)

    async def _send(self, ws: ServerConnection, message: str | bytes) -> bool:
        try:
            await ws.send(message)
            return True
        except ConnectionClosed:
            return False

    async def _handle(self, ws: ServerConnection) -> None:
        if self.telephony is not None and hasattr(ws, "voxpipe_call"):
            return await self.telephony.handle(ws)
        sid = f"s{next(self._ids)}"
        refused = self.serving.refusal(len(self.sessions))
        if refused is not None:  # after the handshake, so the page can show why (an HTTP 503 reaches it as 1006)
            log.warning("refused a session from %s: %s", _peer(ws), refused.reason)
            await ws.close(1013, refused.message[:120])
            return
        session_id.set(sid)  # every line logged for this session says so (pipeline/logs.py)

        async def send(message: str | bytes) -> bool:
            return await self._send(ws, message)

        session = WebSession(sid, send)
        try:
            graph = self.template.copy()
        except Exception as exc:  # a processor whose clone() fails: keep it in this session
            log.error("session %s: cannot build the graph: %s", sid, exc)
            await session.send_event(error_event("pipeline_error", f"cannot build the pipeline: {exc}", fatal=True))
            await ws.close(1011, "pipeline error")
            return
        context = SessionContext(id=sid, metadata={"remote_address": _peer(ws)}, attachments={WEB_SESSION: session})
        live = self.serving.open(sid, graph, {"net.peer": _peer(ws)})
        runner = Runner(graph, realtime=True, stop_timeout_s=self.stop_timeout_s, context=context)
        live.runner, live.page = runner, session
        self._sockets[sid] = ws
        page_left = False
        self.sessions[sid] = session
        self.sessions_total += 1
        self._idle = anyio.Event()
        log.info("session %s: opened from %s", sid, _peer(ws))
        ended = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._run_graph, runner, session, ws, ended)
                session.transition("started")
                await session.send_event(ready_event(sid, input_rate=self._input_rate, frame_ms=self._frame_ms,
                                                     max_audio=self._max_audio))
                await self._read(ws, session)
                page_left = session.transition("client_closed")
                runner.cancel()
                with anyio.move_on_after(self.stop_timeout_s + 1.0) as scope:
                    await ended.wait()
                if scope.cancelled_caught:
                    log.warning("session %s: graph still running %.1fs after the page left; cancelling it",
                                sid, self.stop_timeout_s + 1.0)
                tg.cancel_scope.cancel()
        finally:
            session.transition("freed")
            del self.sessions[sid]
            self._sockets.pop(sid, None)
            result = self.results.get(sid)
            outcome = ("drained" if sid in self._drained else "error" if result is None or not result.ok
                       else "client_closed" if page_left else result.ended)
            self._drained.discard(sid)
            self.serving.close(live, outcome)
            if not self.sessions:
                self._idle.set()
            log.info("session %s: closed (%s)", sid, session.statistics())

    async def _run_graph(self, runner: Runner, session: WebSession, ws: ServerConnection, ended: anyio.Event) -> None:
        try:
            result = await runner.run()
        except Exception as exc:  # a bug in the runner or a processor's shell: keep it in this session
            log.exception("session %s: the graph failed", session.id)
            result = RunResult(ok=False, ended="error")
            await session.send_event(error_event("internal_error", f"the pipeline failed: {exc}", fatal=True))
        finally:
            ended.set()
        self.results[session.id] = result
        log.info("session %s: the pipeline ended: %s%s", session.id, result.ended,
                 "".join(f"; {e.processor}: {e.message}" for e in result.errors))
        while len(self.results) > 32:
            self.results.pop(next(iter(self.results)))
        if session.transition("graph_ended"):  # the page is still there: tell it why, then close
            for err in result.errors:
                await session.send_event(error_event(err.code or "processor_error", err.message,
                                                     fatal=err.fatal, processor=err.processor))
            code, reason = (1000, "pipeline ended") if result.ok else (1011, "pipeline failed")
            await ws.close(code, reason)

    async def _read(self, ws: ServerConnection, session: WebSession) -> None:
        """Decode the page's messages until it leaves (or the session is closed)."""
        rate = self._input_rate
        idle = self.idle_timeout_s if self.idle_timeout_s is not None else math.inf
        try:
            while True:
                with anyio.move_on_after(idle) as scope:
                    message = await ws.recv()  # cancelling recv() loses nothing (websockets >= 13)
                if scope.cancelled_caught:
                    log.info("session %s: nothing from the page for %.0f s; closing it", session.id, idle)
                    await ws.close(1008, f"idle: nothing received for {idle:.0f} s (voxpipe serve --idle-timeout)")
                    return
                try:
                    msg = parse_client_message(message, max_audio=self._max_audio)
                    if isinstance(msg, ClientAudio):
                        if rate is None:
                            raise WireError("no_input", "this pipeline takes no microphone audio")
                        session.put_audio(msg.samples, session.client_rate or rate)
                    elif isinstance(msg, ClientPlayed):
                        if msg.underruns is not None:
                            session.underruns = max(session.underruns, msg.underruns)
                        session.report_played(msg.item_id, msg.ms, msg.done)
                    elif isinstance(msg, ClientHello):
                        session.client_rate = msg.sample_rate
                    elif isinstance(msg, ClientText):
                        session.put_text(msg.text)
                except WireError as exc:
                    session.bad_messages += 1
                    await session.send_event(exc.event())
                    if session.bad_messages >= MAX_BAD_MESSAGES:
                        log.warning("session %s: %d malformed messages; closing it", session.id, session.bad_messages)
                        await ws.close(1008, "too many malformed messages")
                        return
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code not in (1000, 1001):
                log.info("session %s: the page closed with %s", session.id, exc.rcvd)
            elif exc.sent is not None and exc.sent.code == 1009:
                log.warning("session %s: closed for a message over %d bytes", session.id, self.max_message_bytes)


def _text(status: HTTPStatus, body: str) -> Response:
    data = body.encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return Response(status.value, status.phrase, headers, data)


def _peer(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
        return f"{host}:{port}"
    except Exception:
        return "?"


@asynccontextmanager
async def web_server(pipeline_path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 0,
                     **options: Any) -> AsyncIterator[WebServer]:
    """Serve ``pipeline_path`` for the ``async with`` block (``port=0``: any free port).

    ``options`` go to :class:`WebServer` (``token``, ``origins``, ``max_sessions``,
    ``max_message_bytes``, ``stop_timeout_s``). Every session is closed on exit.
    """
    server = WebServer(pipeline_path, **options)
    await server.start(host, port)
    try:
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            await server.aclose()


async def serve(pipeline_path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8080,
                token: str | None = None, public_url: str | None = None, verify_signatures: bool = True,
                idle_timeout_s: float | None = DEFAULT_IDLE_TIMEOUT_S, max_sessions: int = 16,
                max_cpu: float | None = None, drain_timeout_s: float = 3600.0, otel: bool = False,
                reuse_port: bool = False, ready_fd: int | None = None, allow_hosts: Sequence[str] = ()) -> None:
    """``voxpipe serve``: serve the page and a graph per browser connection (or phone call) until stopped.

    SIGTERM (or ``POST /drain``) drains: no new sessions, /readyz 503, live ones go on
    until they end or ``drain_timeout_s`` passes; a second SIGTERM, or the deadline, closes
    the rest (1012, with the reason). SIGINT (Ctrl-C) closes every session now. Either way
    the process exits 0. ``otel``: OpenTelemetry traces (``OTEL_*`` configure the exporter).
    ``ready_fd``: a pipe to write the port to once listening (``--workers``' supervisor).
    """
    from processors.serving.workers import watch_signals

    provider = None
    if otel:
        from processors.serving.tracing import tracer_provider

        provider = tracer_provider()
    serving = ServingHost(max_sessions=max_sessions, max_cpu=max_cpu, drain_timeout_s=drain_timeout_s,
                          tracer_provider=provider, pipeline=str(pipeline_path))
    try:
        async with web_server(pipeline_path, host=host, port=port, token=token, public_url=public_url,
                              verify_signatures=verify_signatures, idle_timeout_s=idle_timeout_s,
                              max_sessions=max_sessions, serving=serving, reuse_port=reuse_port,
                              allow_hosts=allow_hosts) as server:
            if ready_fd is not None:
                os.write(ready_fd, f"{server.port}\n".encode())
                os.close(ready_fd)
            else:
                query = "?token=..." if server.token else ""
                print(f"voxpipe: serving {server.path} on {server.url}{query}  (Ctrl-C to stop)", flush=True)
            async with anyio.create_task_group() as tg:
                tg.start_soon(watch_signals, serving)
                await serving.stopping.wait()
                tg.cancel_scope.cancel()
            if server.sessions:
                why = ("drain deadline passed" if serving.admission.drain_deadline is not None
                       and serving.admission.drain_deadline <= _now() else "server stopping")
                log.warning("closing %d live sessions: %s", len(server.sessions), why)
                await server.close_sessions(1012, f"{why}: the server is restarting; reconnect")
    finally:
        if provider is not None:
            provider.shutdown()  # flush the last spans


def _now() -> float:
    import time

    return time.monotonic()
