"""WebRTC signalling and sessions beside ``voxpipe serve``'s page (the WHIP shape, RFC 9725).

Theory of operation
-------------------
A peer POSTs its SDP offer (``Content-Type: application/sdp``) to :data:`OFFER_PATH` on the
serve port. The web server has applied its rules first (the ``Host`` guard, the token, the
``Origin``): this host checks the body (:func:`~.sdp.check_offer`), makes an aiortc
``RTCPeerConnection`` with the audio transceiver limited to Opus, gathers its host
candidates (vanilla ICE: the answer carries them all, so one request is the whole
signalling), and answers ``201 Created`` with the SDP answer and a ``Location``,
``/webrtc/session/<id>`` with an unguessable id: a ``DELETE`` of it (same token and Origin
rules) ends the session (``deleted``), as WHIP's teardown. The
session (:class:`~.session.PeerSession`) then runs its own copy of the pipeline's graph in
this host's task group until it ends, always with a reason:

* the connection fails (``ice_failed``, ``dtls_failed``) or never completes within
  ``connect_timeout_s`` (``not_connected``);
* the peer sends no audio for the input's ``media_timeout_s`` (``no_media``), or its audio
  stops for ``media_gap_s`` once it flowed (``peer_gone``: a tab closed without a goodbye);
* the page leaves: ``bye`` on the data channel, the channel or the connection closes, or
  consent freshness fails (``page_closed`` / ``ice_failed``); or DELETEs its session
  resource (``deleted``);
* the graph ends (``pipeline_ended`` / ``pipeline_failed``), or the server stops.

Ending cancels the graph (its ``stop()`` hooks get ``stop_timeout_s``) and closes the peer
connection (aiortc's decoder thread is joined there), each under a deadline with a log
line naming what was still busy.

ICE servers (STUN/TURN) come from ``$VOXPIPE_ICE_SERVERS``: a JSON list of RTCIceServer
objects, used by the server and handed to the page at :data:`ICE_PATH` (which also says
whether the pipeline takes the websocket page, so the page picks WebRTC by itself when not); none are needed on a
LAN or loopback (docs/webrtc.md).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import anyio
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from pipeline.errors import VoxpipeError
from pipeline.graph import Graph
from pipeline.runner import Runner, RunResult
from pipeline.session import SessionContext
from processors.telephony.http import DELETE_PREFIX, PostRequest, text_response
from processors.web.wire import error_event, ready_event

from .jitter import install as install_jitter
from .sdp import SDP_TYPE, OfferError, check_offer
from .transport import WEBRTC_SESSION, WebRTCInput, WebRTCOutput

__all__ = ["ICE_ENV", "ICE_PATH", "OFFER_PATH", "SESSION_PREFIX", "Routes", "WebRTCHost", "has_webrtc_transports", "ice_servers", "no_webrtc_routes"]

log = logging.getLogger("voxpipe.webrtc")

#: Where peers POST their offer.
OFFER_PATH = "/webrtc/offer"
#: Where the page reads the ICE servers (JSON) before it makes its offer.
ICE_PATH = "/webrtc/ice"
#: Each session's resource (the answer's ``Location``): ``DELETE`` ends it.
SESSION_PREFIX = DELETE_PREFIX
#: JSON list of RTCIceServer objects: ``[{"urls": "turn:turn.example:3478", "username": ..., "credential": ...}]``.
ICE_ENV = "VOXPIPE_ICE_SERVERS"

Route = Callable[[ServerConnection, Request], Awaitable[Response] | Response]


class Routes(dict):
    """Exact paths, plus every path under ``prefix`` answered by ``under``.

    The web server asks ``path in routes`` and ``routes.get(path)``; a session resource
    (``/webrtc/session/<id>``) is one route for every id.
    """

    def __init__(self, exact: dict[str, Route], prefix: str, under: Route) -> None:
        super().__init__(exact)
        self.prefix, self.under = prefix, under

    def __contains__(self, path: object) -> bool:
        return dict.__contains__(self, path) or (isinstance(path, str) and path.startswith(self.prefix))

    def get(self, path: str, default: Route | None = None) -> Route | None:  # type: ignore[override]
        if dict.__contains__(self, path):
            return self[path]
        return self.under if isinstance(path, str) and path.startswith(self.prefix) else default


def has_webrtc_transports(graph: Graph) -> bool:
    """True when the graph has a ``transport.webrtc`` input or output."""
    return any(isinstance(node.processor, (WebRTCInput, WebRTCOutput)) for node in graph.nodes.values())


def ice_servers(text: str | None = None) -> list[dict[str, Any]]:
    """The ICE servers of ``$VOXPIPE_ICE_SERVERS`` (or ``text``), checked; ``[]`` when unset."""
    text = os.environ.get(ICE_ENV, "") if text is None else text
    if not text.strip():
        return []
    try:
        servers = json.loads(text)
    except ValueError:
        raise VoxpipeError(f"${ICE_ENV} is not JSON; set it to a list like "
                           '[{"urls": "turn:turn.example.com:3478", "username": "u", "credential": "p"}]') from None
    if not isinstance(servers, list) or not all(isinstance(s, dict) and "urls" in s for s in servers):
        raise VoxpipeError(f"${ICE_ENV} must be a JSON list of objects with `urls` (and `username`/`credential` "
                           "for TURN)")
    return servers


def no_webrtc_routes() -> dict[str, Route]:
    """The one route of a server whose pipeline has no WebRTC transport: ``GET /webrtc/ice`` says so.

    The page asks it before choosing a transport; a 200 keeps the browser's console clean.
    """
    def answer(connection: ServerConnection, request: Request) -> Response:
        return text_response(HTTPStatus.OK, json.dumps({"iceServers": [], "websocket": True, "webrtc": False}),
                             "application/json")
    return {ICE_PATH: answer}


def _sdp_response(status: HTTPStatus, sdp: str, location: str) -> Response:
    data = sdp.encode()
    headers = Headers([("Content-Type", SDP_TYPE), ("Content-Length", str(len(data))), ("Location", location),
                       ("Cache-Control", "no-store"), ("Connection", "close")])
    return Response(status.value, status.phrase, headers, data)


def _peer(connection: ServerConnection) -> str:
    try:
        host, port = connection.remote_address[:2]
        return f"{host}:{port}"
    except Exception:
        return "?"


class WebRTCHost:
    """Answers WebRTC offers on the serve port and runs a graph per peer (see the module doc).

    ``template`` returns the checked graph to copy per session. Start with :meth:`start` and
    stop with :meth:`aclose` from the same task (the sessions live in a task group the host
    owns).
    """

    def __init__(self, template: Callable[[], Graph], *, max_sessions: int = 16, stop_timeout_s: float = 2.0,
                 connect_timeout_s: float = 15.0, input_rate: int = 48000, websocket: bool = False) -> None:
        self.template = template
        self.websocket = websocket  # the pipeline also takes the websocket page
        self.max_sessions = max_sessions
        self.stop_timeout_s = stop_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.input_rate = input_rate
        self.ice = ice_servers()
        self.sessions: dict[str, Any] = {}
        self.resources: dict[str, Any] = {}  # the Location id -> its session
        self.sessions_total = 0
        self.results: dict[str, RunResult] = {}
        self.reasons: dict[str, str] = {}  # the last sessions' end reasons (for logs and tests)
        self._ids = itertools.count(1)
        self._tg: Any = None  # the supervisor's inbox
        self._supervisor: Any = None
        self._idle = anyio.Event()
        self._idle.set()

    def routes(self) -> Routes:
        """The paths this host answers on the serve port (every session resource is one route)."""
        return Routes({OFFER_PATH: self.offer, ICE_PATH: self.ice_config}, SESSION_PREFIX, self.session_resource)

    async def start(self) -> None:
        """Start the supervisor task that owns the sessions' task group."""
        if importlib.util.find_spec("aiortc") is None:  # fail now, with the fix, not at the first offer
            raise VoxpipeError("transport.webrtc needs aiortc, which is not installed: "
                               "pip install 'voxpipe[webrtc]'")

        send, receive = anyio.create_memory_object_stream[Any](self.max_sessions)
        self._tg = send
        started = anyio.Event()
        # one task owns every session, in one task group; aclose() ends it (a task group cannot
        # span start() and aclose(): they run under different cancel scopes of the caller)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(receive, started))
        await started.wait()

    async def _supervise(self, receive: Any, started: anyio.Event) -> None:
        async with anyio.create_task_group() as tg, receive:
            started.set()
            async for session in receive:
                tg.start_soon(self._run, session)

    async def aclose(self) -> None:
        """End every session (``server_stopping``) and wait for them, under a deadline."""
        send, self._tg = self._tg, None
        if send is None:
            return
        for session in list(self.sessions.values()):
            session.end("server_stopping", "the server is stopping")
        send.close()
        supervisor = self._supervisor
        with anyio.move_on_after(self.stop_timeout_s + 4.0) as scope:
            await self._idle.wait()
        if scope.cancelled_caught:
            log.warning("webrtc: sessions %s still open %.1fs after the stop; cancelling them",
                        ", ".join(self.sessions), self.stop_timeout_s + 4.0)
            supervisor.cancel()
        await asyncio.wait({supervisor}, timeout=2.0)  # its inbox is closed: it ends with its last session
        if not supervisor.done():
            log.warning("webrtc: the session supervisor did not stop within 2 s; cancelling it")
            supervisor.cancel()
            await asyncio.wait({supervisor}, timeout=2.0)

    async def wait_idle(self) -> None:
        """Return once no session is open."""
        await self._idle.wait()

    # --- signalling -------------------------------------------------------------------------------

    def ice_config(self, connection: ServerConnection, request: Request) -> Response:
        """``GET /webrtc/ice``: the ICE servers the page should use, and whether websockets work too (JSON)."""
        body = {"iceServers": self.ice, "websocket": self.websocket, "webrtc": True}
        return text_response(HTTPStatus.OK, json.dumps(body), "application/json")

    async def offer(self, connection: ServerConnection, request: Request) -> Response:
        """``POST /webrtc/offer``: the SDP answer (201), or an error that says what to change."""
        if not isinstance(request, PostRequest) or request.method != "POST":
            return text_response(HTTPStatus.METHOD_NOT_ALLOWED, f"POST an SDP offer ({SDP_TYPE}) to {OFFER_PATH}\n")
        try:
            text = check_offer(request.body, request.headers.get("Content-Type"))
        except OfferError as exc:
            log.warning("webrtc: refused an offer from %s: %s", _peer(connection), exc)
            return text_response(exc.status, f"{exc}\n")
        if self._tg is None:
            return text_response(HTTPStatus.SERVICE_UNAVAILABLE, "the server is stopping\n")
        if len(self.sessions) >= self.max_sessions:
            return text_response(HTTPStatus.SERVICE_UNAVAILABLE,
                                 f"all {self.max_sessions} sessions are in use; try again later\n")
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        from .session import PeerSession

        config = RTCConfiguration(iceServers=[RTCIceServer(**{k: s[k] for k in ("urls", "username", "credential")
                                                                 if k in s}) for s in self.ice])
        pc = RTCPeerConnection(config)
        sid = f"w{next(self._ids)}"
        session = PeerSession(sid, pc, remote=_peer(connection))
        pc.on("track", session.on_track)
        pc.on("datachannel", session.on_channel)
        pc.on("connectionstatechange", session.on_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(text, "offer"))
            audio = [t for t in pc.getTransceivers() if t.kind == "audio"]
            opus = [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"]
            audio[0].setCodecPreferences(opus)
            session.sender = pc.addTrack(session.track)
            session.jitter = install_jitter(audio[0].receiver)  # step over lost packets (jitter.py)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:  # aiortc's parser and negotiation raise many kinds
            await pc.close()
            log.warning("webrtc: refused an offer from %s: %s", _peer(connection), exc)
            why = str(exc) or type(exc).__name__
            return text_response(HTTPStatus.BAD_REQUEST, f"the offer cannot be answered: {why}; send the SDP of a "
                                                         "browser's createOffer() with an Opus audio section\n")
        if "opus/48000" not in pc.localDescription.sdp.lower():
            await pc.close()
            return text_response(HTTPStatus.BAD_REQUEST, "the offer's audio section has no Opus codec; this server "
                                                         "speaks Opus (every browser offers it)\n")
        session.resource = secrets.token_urlsafe(18)  # a capability: whoever knows it may end the session
        self.sessions[sid] = session
        self.resources[session.resource] = session
        self.sessions_total += 1
        self._idle = anyio.Event()
        self._tg.send_nowait(session)
        log.info("webrtc session %s: answered an offer from %s", sid, session.remote)
        return _sdp_response(HTTPStatus.CREATED, pc.localDescription.sdp, SESSION_PREFIX + session.resource)

    def session_resource(self, connection: ServerConnection, request: Request) -> Response:
        """``DELETE /webrtc/session/<id>``: end that session (``deleted``); 404 unknown, 405 another method."""
        rid = request.path.split("?", 1)[0][len(SESSION_PREFIX):]
        if not (isinstance(request, PostRequest) and request.method == "DELETE"):
            response = text_response(HTTPStatus.METHOD_NOT_ALLOWED, "a WebRTC session resource takes only DELETE "
                                                                    "(to end the session)\n")
            response.headers["Allow"] = "DELETE"
            return response
        session = self.resources.get(rid)
        if session is None or not session.open:
            return text_response(HTTPStatus.NOT_FOUND, "no such WebRTC session (it ended, or never was)\n")
        log.info("webrtc session %s: DELETE from %s", session.id, _peer(connection))
        session.end("deleted", "the peer deleted its session resource (WHIP teardown)")
        return text_response(HTTPStatus.OK, "session ended\n")

    # --- sessions ---------------------------------------------------------------------------------

    async def _run(self, session: Any) -> None:
        sid = session.id
        ended = anyio.Event()
        try:
            try:
                graph = self.template().copy()
            except Exception as exc:  # a processor whose clone() fails: keep it in this session
                log.error("webrtc session %s: cannot build the graph: %s", sid, exc)
                session.send_event(error_event("pipeline_error", f"cannot build the pipeline: {exc}", fatal=True))
                session.end("pipeline_failed", f"cannot build the pipeline: {exc}")
                return
            context = SessionContext(id=sid, metadata={"remote_address": session.remote, "transport": "webrtc"},
                                     attachments={WEBRTC_SESSION: session})
            runner = Runner(graph, realtime=True, stop_timeout_s=self.stop_timeout_s, context=context)
            session.send_event({**ready_event(sid, input_rate=self.input_rate, frame_ms=20.0, max_audio=0),
                                "transport": "webrtc"})
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._run_graph, runner, session, ended)
                with anyio.move_on_after(self.connect_timeout_s):
                    await session.connected.wait()
                if session.open and session.connected_at is None:
                    session.end("not_connected", f"no connection within {self.connect_timeout_s:.0f} s (ICE and "
                                                 "DTLS did not complete; behind NAT? add a TURN server)")
                await session.ended.wait()
                runner.cancel()
                with anyio.move_on_after(self.stop_timeout_s + 1.0) as scope:
                    await ended.wait()
                if scope.cancelled_caught:
                    log.warning("webrtc session %s: graph still running %.1fs after the end; cancelling it",
                                sid, self.stop_timeout_s + 1.0)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                with anyio.move_on_after(self.stop_timeout_s) as scope:
                    if session.channel is not None and session.channel.readyState == "open":
                        await anyio.sleep(0.1)  # let SCTP carry `session.end` (the reason) to the page
                    await session.pc.close()
                if scope.cancelled_caught:
                    log.warning("webrtc session %s: closing the peer connection passed %.1fs", sid,
                                self.stop_timeout_s)
            session.transition("freed")
            self.reasons[sid] = session.reason or "?"
            while len(self.reasons) > 64:
                self.reasons.pop(next(iter(self.reasons)))
            del self.sessions[sid]
            self.resources.pop(getattr(session, "resource", ""), None)
            if not self.sessions:
                self._idle.set()
            log.info("webrtc session %s: closed (%s)", sid, session.statistics())

    async def _run_graph(self, runner: Runner, session: Any, ended: anyio.Event) -> None:
        try:
            result = await runner.run()
        except Exception as exc:  # a bug in the runner or a processor's shell: keep it in this session
            log.exception("webrtc session %s: the graph failed", session.id)
            result = RunResult(ok=False, ended="error")
            session.send_event(error_event("internal_error", f"the pipeline failed: {exc}", fatal=True))
        finally:
            ended.set()
        self.results[session.id] = result
        while len(self.results) > 32:
            self.results.pop(next(iter(self.results)))
        if session.open:
            for err in result.errors:
                session.send_event(error_event(err.code or "processor_error", err.message, fatal=err.fatal,
                                               processor=err.processor))
            if result.ok:
                session.end("pipeline_ended", "the pipeline ended")
            else:
                session.end("pipeline_failed", "the pipeline failed; the server's log says why")
