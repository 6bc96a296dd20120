"""The websocket shell of the local realtime server (websockets 15, asyncio).

It serves ``ws://HOST:PORT/v1/realtime?model=...`` like the real API (reference §1, §8):

* the handshake needs ``Authorization: Bearer <anything non-empty>`` or, for browsers, the
  ``openai-insecure-api-key.<key>`` subprotocol; the ``realtime`` subprotocol is selected
  only when the client offers it; a client that offers none is accepted too;
* the dialect is chosen once per connection: beta when the client sends
  ``OpenAI-Beta: realtime=v1`` or offers the ``openai-beta.realtime-v1`` subprotocol, GA
  otherwise; ``?intent=transcription`` opens a transcription session;
* permessage-deflate is declined (clients that offer it still connect): base64 audio hardly
  compresses and deflating it was the largest CPU cost under load;
* inbound messages may be up to 32 MiB (a 15 MiB append is 20 MiB of base64); outbound
  messages stay far below 1 MiB (audio deltas of at most 200 ms), which older SDKs need;
* bad input never closes the connection: the core answers with an ``error`` event;
* who may connect: the ``Host`` must name this server and browser pages (an ``Origin``
  header) are refused unless ``--allow-origin`` lists them (:mod:`processors.guard`).

Each connection gets its own :class:`~.conversation.ServerConversation` (the protocol
state) and its own voxpipe graph, built from ``pipelines/realtime_server.yaml`` (loaded and
checked once per server, see :mod:`.connection_graph`): protocol in -> speech recognition
-> responder -> speech synthesis -> protocol out (:mod:`.graph_io`, :mod:`.stages`), with
server VAD inside the core. A reader task feeds client messages to the core and hands the
core's commands to the graph; a writer task sends the core's events in order; the graph's
runner runs beside them. Everything a connection started ends with it: on close the graph
is cancelled (its ``stop()`` hooks get ``close_timeout_s``). Closing the server closes every
connection (code 1001) and waits at most ``close_timeout_s``.

Use :func:`serve_local` in-process (tests, ``url: local`` in the client processor) and
:func:`main` for ``voxpipe realtime-server``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import weakref
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.lowlevel
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from pipeline.frames import EndFrame
from pipeline.logs import quiet_handshakes
from pipeline.runner import Runner
from processors.guard import GuardedConnection, HeaderError, HostCheck, single_header

from .connection_graph import ConnectionGraphTemplate
from .conversation import ServerConversation
from .engine import SpeechResources
from .fairness import LoopShare, SegmentedRecognition
from .graph_io import ConnectionContext
from .session import Dialect

__all__ = ["MAX_INBOUND_BYTES", "MAX_OUTBOUND_BYTES", "Handshake", "RealtimeServer", "main", "read_handshake",
           "serve_local"]

log = logging.getLogger("voxpipe.realtime_server")

#: Largest client message accepted: a 15 MiB append is 20 MiB once base64-encoded.
MAX_INBOUND_BYTES = 32 * 1024 * 1024
#: Every server message stays below this (SDK <= 2.x clients keep websockets' 1 MiB limit).
MAX_OUTBOUND_BYTES = 1024 * 1024
_KEY_PROTOCOL = "openai-insecure-api-key."
_BETA_PROTOCOL = "openai-beta.realtime-v1"


@dataclass(frozen=True)
class Handshake:
    """What the opening request asked for: dialect, model, session kind."""

    dialect: Dialect
    model: str
    kind: str


def _offered_protocols(headers: Headers) -> list[str]:
    return [p.strip() for value in headers.get_all("Sec-WebSocket-Protocol") for p in value.split(",") if p.strip()]


def _json_error(status: HTTPStatus, message: str, code: str | None = None) -> Response:
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "code": code,
                                 "param": None}}).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)


def read_handshake(request: Request) -> Handshake | Response:
    """The connection's settings, or the HTTP error response that refuses it."""
    url = urlsplit(request.path)
    live = url.path.rstrip("/").endswith("/live/sessions")  # the Live API (processors/live/server)
    if not (live or url.path.rstrip("/").endswith("/realtime")):
        return _json_error(HTTPStatus.NOT_FOUND, f"No route for {url.path!r}: the local realtime server serves "
                           "/v1/realtime?model=... and /v1/live/sessions (set websocket_base_url='ws://HOST:PORT/v1').")
    offered = _offered_protocols(request.headers)
    auth = request.headers.get("Authorization", "")
    has_bearer = auth.startswith("Bearer ") and auth[7:].strip() != ""
    has_key = any(p.startswith(_KEY_PROTOCOL) and len(p) > len(_KEY_PROTOCOL) for p in offered)
    if not (has_bearer or has_key):
        return _json_error(HTTPStatus.UNAUTHORIZED, "You didn't provide an API key. Send 'Authorization: Bearer "
                           "<any key>' (the local server accepts any non-empty key) or offer the "
                           "'openai-insecure-api-key.<key>' subprotocol.", "missing_api_key")
    if live:
        return Handshake(Dialect.GA, "", "live")
    query = parse_qs(url.query)
    if "call_id" in query:
        return _json_error(HTTPStatus.BAD_REQUEST, "call_id (sideband control of a WebRTC or SIP call) is not "
                           "supported by the local realtime server; connect with ?model=... instead.")
    kind = "transcription" if query.get("intent", [""])[0] == "transcription" else "realtime"
    model = query.get("model", ["gpt-realtime"])[0] or "gpt-realtime"
    beta = "realtime=v1" in request.headers.get("OpenAI-Beta", "") or _BETA_PROTOCOL in offered
    return Handshake(Dialect.BETA if beta else Dialect.GA, model, kind)


def _select_subprotocol(connection: ServerConnection, offered: Any) -> Any:
    # select `realtime` only when offered (browsers fail if offered protocols get no echo)
    return "realtime" if "realtime" in offered else None


class RealtimeServer:
    """The local realtime server: OpenAI Realtime protocol over websockets, offline.

    ``rules`` is the responder's YAML file (default: the shipped demo rules);
    ``model_delay_ms`` holds back each response's first audio (emulated model latency);
    ``voice`` is the eSpeak NG voice; ``processes`` > 0 recognises speech in that many worker
processes (one per core uses every core; ``voxpipe realtime-server`` does), 0 (the default)
in threads of this process, at most ``workers`` at once (see :mod:`.engine`);
    ``output_pace`` > 0 streams response audio at most that many times faster than real
    time (0: as fast as it is synthesised); ``pipeline`` is the graph each connection runs
    (default ``pipelines/realtime_server.yaml``); ``allow_origins`` are the browser page
    origins allowed to connect (``*``: any; by default a request with an ``Origin`` header is
    refused, so that no web page the user visits can drive the server). Requests whose
    ``Host`` is not a loopback name, the listening host or one of ``allow_hosts`` are refused
    (DNS rebinding).
    ``general_fallback`` is how out-of-grammar speech is heard (``"gated"``, the default: the
    general English model, loaded at the first utterance the grammar pass is unsure of, hears
    only those; ``"always"``; ``"off"``; docs/local-model.md).
    Start it with :meth:`start` (or use :func:`serve_local`), stop it with :meth:`aclose`.
    """

    def __init__(self, *, rules: str | Path | None = None, model_delay_ms: float = 0.0,
                 voice: str = "en-us+klatt", workers: int = 2, close_timeout_s: float = 5.0,
                 max_delta_ms: int = 200, output_pace: float = 0.0,
                 pipeline: str | Path | None = None, allow_origins: tuple[str, ...] | list[str] = (),
                 general_fallback: bool | str = "gated", allow_hosts: tuple[str, ...] | list[str] = (),
                 processes: int = 0) -> None:
        # general_fallback: out-of-grammar speech is heard by the general English model.
        # "gated" (the default): only utterances the grammar pass is unsure of are decoded
        # again, and the model loads at the first of them (start stays ~0.2 s); "always"
        # decodes every utterance twice (6-20x the grammar's cost); "off": the nearest phrase.
        # See docs/local-model.md.
        self.resources = SpeechResources(rules, voice=voice, workers=workers, fallback=general_fallback,
                                         processes=processes)
        self.graph_template = ConnectionGraphTemplate(pipeline)
        self.model_delay_ms = model_delay_ms
        self.close_timeout_s = close_timeout_s
        self.max_delta_ms = max_delta_ms
        self.output_pace = output_pace
        self.host = "127.0.0.1"
        self.port = 0
        self.connections = 0  # open now
        self.connections_total = 0
        self.allow_origins = set(allow_origins)
        self.allow_hosts = tuple(allow_hosts)  # Host names besides loopback and the listening host (--allow-host)
        #: How the connections share the event loop (each connection's work is charged to it).
        self.loop_share = LoopShare()
        self._hosts = HostCheck(self.host, self.allow_hosts)
        self._server: Server | None = None

    @property
    def url(self) -> str:
        """The base URL for clients: ``ws://HOST:PORT/v1`` (the SDK appends ``/realtime``)."""
        return f"ws://{self.host}:{self.port}/v1"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Load the speech models, then listen on ``host:port`` (0: any free port)."""
        await self.resources.warm_up()
        self._hosts = HostCheck(host, self.allow_hosts)
        try:
            self._server = await serve(
                self._handle, host, port, process_request=self._process_request, create_connection=GuardedConnection,
                select_subprotocol=_select_subprotocol, max_size=MAX_INBOUND_BYTES, close_timeout=2,
                compression=None,  # base64 audio barely compresses; deflate cost 1 s of CPU at 50 sessions
                logger=quiet_handshakes(logging.getLogger("voxpipe.realtime_server.websockets")))
        except BaseException:
            await self.resources.aclose()  # e.g. the port is taken: no worker process is left behind
            raise
        sockname = self._server.sockets[0].getsockname() if self._server.sockets else (host, port)
        self.host, self.port = host, int(sockname[1])
        log.info("local realtime server listening on %s", self.url)

    async def aclose(self) -> None:
        """Close every connection (1001) and stop listening, within ``close_timeout_s``."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=True)
        with anyio.move_on_after(self.close_timeout_s) as scope:
            await server.wait_closed()
        if scope.cancelled_caught:
            log.warning("realtime server close passed %.1fs with %d connection(s) still open",
                        self.close_timeout_s, self.connections)
        await self.resources.aclose()  # the recognition worker processes, each within its deadline

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            host = single_header(request.headers, "Host")
            origin = single_header(request.headers, "Origin")
        except HeaderError as exc:
            log.warning("refused a request from %s: %s", _peer(connection), exc)
            return _json_error(HTTPStatus.BAD_REQUEST, f"Send the {exc.name} header once.")
        if not self._hosts.allows(host):
            log.warning("refused a request from %s for host %r (DNS rebinding protection)", _peer(connection), host)
            return _json_error(HTTPStatus.FORBIDDEN, f"This server does not answer for host {host!r}; connect to "
                               "localhost or 127.0.0.1, or start it with --allow-host NAME for a proxy's name.")
        if origin is not None and not ({"*", origin} & self.allow_origins):
            # a browser page: any site the user visits could otherwise drive this server
            log.warning("refused a websocket from %s: browser origin %s", _peer(connection), origin)
            return _json_error(HTTPStatus.FORBIDDEN, f"Browser pages may not connect (origin {origin}); start the "
                               f"server with --allow-origin {origin} to allow this one.", "origin_not_allowed")
        found = read_handshake(request)
        return found if isinstance(found, Response) else None

    async def _handle(self, ws: ServerConnection) -> None:
        handshake = read_handshake(ws.request)  # type: ignore[arg-type]
        assert isinstance(handshake, Handshake)  # refused requests never reach here
        self.connections += 1
        self.connections_total += 1
        try:
            if handshake.kind == "live":
                from processors.live.server import LiveConnection

                await LiveConnection(self, ws).run()
                return
            await _Connection(self, ws, handshake).run()
        finally:
            self.connections -= 1


class _Connection:
    """One websocket: reader, writer and the connection's graph in one task group."""

    def __init__(self, server: RealtimeServer, ws: ServerConnection, handshake: Handshake) -> None:
        self.ws = ws
        self.server = server
        self.core = ServerConversation(dialect=handshake.dialect, model=handshake.model, kind=handshake.kind,
                                       max_delta_ms=server.max_delta_ms, max_event_bytes=MAX_OUTBOUND_BYTES)
        self.account = server.loop_share.open()  # this connection's share of the event loop
        self.context = ConnectionContext(self.core, SegmentedRecognition(server.resources, self.account),
                                         model_delay_s=max(0.0, server.model_delay_ms) / 1000.0,
                                         output_pace=server.output_pace, account=self.account)
        self.graph = server.graph_template.build()
        # The graph is a web of cycles (nodes, runner, bound methods) that only the collector
        # frees; its processors keep the context they are handed. A weak proxy keeps the
        # context, the core and its audio out of that web: they go with this connection.
        self.session = server.graph_template.session(weakref.proxy(self.context),
                                                     remote_address=getattr(ws, "remote_address", None))
        self._closing = False

    async def run(self) -> None:
        runner = Runner(self.graph, realtime=False, stop_timeout_s=self.server.close_timeout_s, context=self.session)
        try:
            await self._serve(runner)
        finally:
            self.core.close()  # the audio goes now, whatever still refers to the core
            self.session.attachments.clear()
            self.account.close()

    async def _serve(self, runner: Runner) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._writer, tg.cancel_scope)
            tg.start_soon(self._run_graph, runner)
            self.context.send_core_events()
            try:
                account = self.account
                async for message in self.ws:
                    with account.timed():
                        self.core.receive_text(message)
                        self.context.after_core_call()
                    # websockets hands over buffered messages without yielding: a client that
                    # floods would keep the event loop from every other connection; and a
                    # heavy one waits while a lighter one's turn is under way (fairness.LoopShare)
                    await anyio.lowlevel.checkpoint()
                    await account.wait_turn()
            except ConnectionClosed:
                pass
            finally:
                self._closing = True
                self.context.close()
                runner.cancel()  # the graph's stop() hooks get their deadline, then it is cancelled

    async def _run_graph(self, runner: Runner) -> None:
        result = await runner.run()
        if not (self._closing or self.context.closed):  # the graph failed (on_error: stop) while the client is still there
            log.error("connection graph %r ended (%s%s): closing the connection", self.graph.name, result.ended,
                      "".join(f"; {e.processor}: {e.message}" for e in result.errors))
            await self.ws.close(1011, "the local realtime server's connection graph failed; see the server log")

    async def _writer(self, scope: anyio.CancelScope) -> None:
        events, account = self.context.events, self.account
        try:
            while True:
                frame = (await events.get())[0]
                if type(frame) is EndFrame:
                    if self.context.overflowed is not None:
                        await self.ws.close(1008, "the client is not reading events fast enough")
                    return
                event = frame.event
                with account.timed():
                    text = json.dumps(event, separators=(",", ":"))
                if len(text) >= MAX_OUTBOUND_BYTES:
                    log.warning("%s event of %d bytes exceeds %d: older clients will close the connection",
                                event.get("type"), len(text), MAX_OUTBOUND_BYTES)
                with account.work(), account.timed():
                    await self.ws.send(text)
        except ConnectionClosed:
            scope.cancel()


def _recognition_mode(processes: int) -> str:
    if processes:
        return f"{processes} worker process{'es' if processes > 1 else ''} (--processes)"
    return "in this process (--processes 0)"


def default_processes() -> int:
    """One recognition worker process per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _peer(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
        return f"{host}:{port}"
    except Exception:
        return "?"


@asynccontextmanager
async def serve_local(host: str = "127.0.0.1", port: int = 0, *, rules: str | Path | None = None,
                      model_delay_ms: float = 0.0, voice: str = "en-us+klatt",
                      **options: Any) -> AsyncIterator[RealtimeServer]:
    """Run a local realtime server in this process for the ``async with`` block.

    Yields the :class:`RealtimeServer`; point a client at ``server.url``
    (``ws://127.0.0.1:PORT/v1``). ``options`` go to :class:`RealtimeServer` (``workers``,
    ``output_pace``, ``max_delta_ms``, ``close_timeout_s``, ``pipeline``). The server is closed,
    connections included, on exit.
    """
    server = RealtimeServer(rules=rules, model_delay_ms=model_delay_ms, voice=voice, **options)
    await server.start(host, port)
    try:
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            await server.aclose()


async def main(host: str = "127.0.0.1", port: int = 8765, rules: str | Path | None = None,
               model_delay_ms: float = 0.0, *, allow_origins: tuple[str, ...] | list[str] = (),
               allow_hosts: tuple[str, ...] | list[str] = (),
               processes: int | None = None, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
    """``voxpipe realtime-server``: serve until interrupted (Ctrl-C, SIGTERM) or cancelled.

    ``allow_origins`` lists the browser page origins allowed to connect (``*``: any); by
    default none is. ``processes`` recognition worker processes (None: one per core; 0: in
    threads of this process). Under ``task_group.start(main, ...)`` it reports the server's
    base URL once listening.
    """
    if processes is None:
        processes = default_processes()
    # the handlers go in before anything is printed: a supervisor may signal as soon as it
    # reads the URL (a SIGTERM before them killed the process, and its workers with it)
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with serve_local(host, port, rules=rules, model_delay_ms=model_delay_ms,
                               allow_origins=tuple(allow_origins), allow_hosts=tuple(allow_hosts),
                               processes=processes) as server:
            print(f"voxpipe local realtime server on {server.url}/realtime  (rules: {server.resources.rules_path})",
                  flush=True)
            print(f"  speech recognition: {_recognition_mode(processes)}", flush=True)
            print(f"  python: AsyncOpenAI(api_key='local', websocket_base_url='{server.url}')", flush=True)
            print(f"  the Live API: {server.url}/live/sessions  (client.live.connect(); docs/live.md)", flush=True)
            task_status.started(server.url)
            async for signum in signals:
                log.warning("%s: closing every connection, then exiting", signal.Signals(signum).name)
                break
