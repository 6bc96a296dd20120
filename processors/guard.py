"""What both websocket servers check before a request reaches them (issue 13, items 8 and 9).

``voxpipe serve`` and ``voxpipe realtime-server`` listen on 127.0.0.1 by default, where any
web page the user visits can reach them. Three checks run before the servers' own:

* **Overlong lines.** websockets drops a request whose request line or a header line passes
  8,192 bytes without a word. :class:`GuardedConnection` answers ``414 URI Too Long`` (the
  request line) or ``431 Request Header Fields Too Large`` (a header line) and closes.
* **Duplicate headers.** A second ``Origin`` or ``Host`` makes the request ambiguous:
  :func:`single_header` refuses it with ``400`` (websockets' ``headers[...]`` raises, which the
  servers turned into a 500 with a traceback).
* **DNS rebinding.** A page served as ``evil.example`` whose name is then pointed at 127.0.0.1
  sends ``Host: evil.example``; its ``Origin`` matches that Host, so an Origin check alone
  lets it in. :class:`HostCheck` accepts only loopback names (``localhost``, ``*.localhost``,
  127.0.0.0/8, ``::1``), the configured host, and, when the server binds every interface
  (``0.0.0.0``, ``::``), IP literals (a rebinding page always uses a name). Names a reverse
  proxy or tunnel forwards under (``voice.example.com``) are added with ``--allow-host NAME``
  (repeatable; ``*.example.com`` takes every subdomain) or :data:`ALLOW_HOSTS_ENV`
  (comma-separated), on ``voxpipe serve`` and ``voxpipe realtime-server`` alike.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers, MultipleValuesError
from websockets.http11 import MAX_LINE_LENGTH, Response

from pipeline.errors import VoxpipeError

__all__ = ["ALLOW_HOSTS_ENV", "GuardedConnection", "HeaderError", "HostCheck", "host_name", "plain_response",
           "single_header"]

#: More Host names to answer, comma-separated (added to ``--allow-host``).
ALLOW_HOSTS_ENV = "VOXPIPE_ALLOW_HOSTS"

log = logging.getLogger("voxpipe.guard")

_HEAD_LIMIT = 64 * 1024  # bytes of request head examined for overlong lines


def plain_response(status: HTTPStatus, body: str) -> Response:
    """A ``text/plain`` HTTP response (a refusal before the websocket handshake)."""
    data = body.encode()
    headers = Headers([("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(data)))])
    return Response(status.value, status.phrase, headers, data)


class HeaderError(Exception):
    """A request header the servers cannot act on (sent twice); ``response`` refuses it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"more than one {name} header")
        self.name = name
        self.response = plain_response(HTTPStatus.BAD_REQUEST, f"send the {name} header once\n")


def single_header(headers: Headers, name: str) -> str | None:
    """The one value of header ``name``, None if absent; HeaderError if it is sent twice."""
    try:
        return headers.get(name)
    except MultipleValuesError:
        raise HeaderError(name) from None


def _is_loopback_name(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def host_name(value: str) -> str:
    """The host part of a ``Host`` header value, lower-case, without port or brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class HostCheck:
    """Which ``Host`` headers a server answers (see the module docstring).

    ``configured`` is the host the server was asked to listen on; ``extra`` adds names
    (a reverse proxy's public name, say; ``*.example.com`` matches its subdomains), and so
    does :data:`ALLOW_HOSTS_ENV` in the environment. VoxpipeError names a malformed one.
    """

    def __init__(self, configured: str, extra: tuple[str, ...] | list[str] = ()) -> None:
        bound = host_name(configured) if configured else ""
        self.any_interface = bound in ("0.0.0.0", "::", "")
        env = [h for h in os.environ.get(ALLOW_HOSTS_ENV, "").replace(",", " ").split() if h]
        self.names: set[str] = {bound} if bound else set()
        self.suffixes: set[str] = set()
        for raw in (*extra, *env):
            name = _allowed_name(raw)
            if name.startswith("*."):
                self.suffixes.add(name[1:])  # ".example.com"
            else:
                self.names.add(name)

    def allows(self, host_header: str | None) -> bool:
        """True when the request's ``Host`` names this server (HTTP/1.1 requires a Host)."""
        if not host_header:
            return False
        host = host_name(host_header)
        return (host in self.names or _is_loopback_name(host) or (self.any_interface and _is_ip(host))
                or any(host.endswith(s) and len(host) > len(s) for s in self.suffixes))

    def refusal(self, host_header: str | None) -> Response:
        """The 403 that refuses a request for another host."""
        return plain_response(HTTPStatus.FORBIDDEN, f"this server does not answer for host {host_header!r}: open "
                              "it as localhost or 127.0.0.1, or start it with --allow-host NAME (or "
                              f"{ALLOW_HOSTS_ENV}=NAME) for a reverse proxy's name (DNS rebinding protection)\n")


def _allowed_name(raw: str) -> str:
    """An ``--allow-host`` value as a bare lower-case name (``Host``-style ports and brackets are dropped)."""
    value = raw.strip()
    if "://" in value or "/" in value or not value or any(c.isspace() for c in value):
        raise VoxpipeError(f"--allow-host {raw!r}: give a host name such as voice.example.com (or *.example.com), "
                         "not a URL")
    name = host_name(value)
    if name.startswith("*.") and len(name) > 2 and "*" not in name[2:]:
        return name
    if "*" in name:
        raise VoxpipeError(f"--allow-host {raw!r}: a wildcard is allowed only as the first label (*.example.com)")
    return name


class GuardedConnection(ServerConnection):
    """A websockets server connection that answers overlong request lines instead of dropping them.

    Pass as ``create_connection=`` to ``websockets.asyncio.server.serve``. It watches the
    request head only (at most 64 KiB); once the head is complete it is out of the way.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head: bytearray | None = bytearray()

    def data_received(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            head += data[:_HEAD_LIMIT]
            status = _overlong(head)
            if status is not None:
                self._refuse(status, head)
                return
            if b"\r\n\r\n" in head or len(head) >= _HEAD_LIMIT:
                self._head = None
        super().data_received(data)

    def _refuse(self, status: HTTPStatus, head: bytearray) -> None:
        self._head = None
        what = "request line (the path)" if status is HTTPStatus.REQUEST_URI_TOO_LONG else "header line"
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        log.warning("refused a request from %s: %s over %d bytes (%d)", _peer(peer), what, MAX_LINE_LENGTH,
                    status.value)
        # the sans-I/O protocol never saw these bytes; its rejection path sends the response,
        # then EOF, and discards the rest, so the handshake ends without a request (and
        # without a second, misleading log line)
        self.protocol.send_response(plain_response(status, f"the {what} is longer than {MAX_LINE_LENGTH} bytes\n"))
        self.send_data()
        self.transport.close()


def _overlong(head: bytearray) -> HTTPStatus | None:
    end = head.find(b"\r\n\r\n")
    lines = bytes(head if end < 0 else head[:end]).split(b"\r\n")
    for i, line in enumerate(lines):
        complete = i < len(lines) - 1 or end >= 0
        if len(line) > MAX_LINE_LENGTH or (not complete and len(line) >= MAX_LINE_LENGTH):
            return HTTPStatus.REQUEST_URI_TOO_LONG if i == 0 else HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
    return None


def _peer(peer: Any) -> str:
    try:
        return f"{peer[0]}:{peer[1]}"
    except (TypeError, IndexError):
        return "?"
