"""Plain HTTP POSTs on the ``websockets`` server's port: the providers' voice webhooks.

``websockets`` speaks just enough HTTP for an opening handshake: a GET without a body.
A provider's voice webhook is a form POST. :class:`PostAwareConnection` (pass it to
``websockets.asyncio.server.serve(create_connection=...)``) looks at the first bytes of a
connection: a GET goes to ``websockets`` untouched; a POST is read here (head up to
:data:`MAX_HEAD_BYTES`, a ``Content-Length`` body up to :data:`MAX_BODY_BYTES`) and handed
to the server's ``process_request`` as a :class:`PostRequest`, whose answer goes back as
the HTTP response, after which the connection is closed. A DELETE under
:data:`DELETE_PREFIX` (ending a WebRTC session) is handed on the same way, with no body. A POST whose head or body is too
large or has no length is answered 413 / 411 without calling ``process_request``.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

__all__ = ["DELETE_PREFIX", "MAX_BODY_BYTES", "MAX_HEAD_BYTES", "PostAwareConnection", "PostRequest", "text_response"]

#: Largest request line plus headers of a POST.
MAX_HEAD_BYTES = 16 * 1024
#: Largest POST body (a voice webhook is about 1 KiB of form fields).
MAX_BODY_BYTES = 64 * 1024
#: The one place a DELETE is read (as a ``PostRequest`` with ``method="DELETE"``): WebRTC sessions (WHIP).
DELETE_PREFIX = "/webrtc/session/"


@dataclass
class PostRequest(Request):
    """An HTTP POST: ``path`` (with query), ``headers`` and the raw ``body``."""

    body: bytes = b""
    method: str = "POST"


def text_response(status: HTTPStatus, body: str, content_type: str = "text/plain; charset=utf-8") -> Response:
    """A complete response that closes the connection."""
    data = body.encode()
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(data))), ("Connection", "close")])
    return Response(status.value, status.phrase, headers, data)


class PostAwareConnection(ServerConnection):
    """A ``websockets`` server connection that also reads one HTTP POST (see the module doc)."""

    _sniffed = False
    _post: bytearray | None = None
    #: the answer to a POST refused before ``process_request`` (it must return this)
    canned: Response | None = None

    def data_received(self, data: bytes) -> None:
        if self._sniffed:
            if self._post is None:
                super().data_received(data)
            else:
                self._more_post(data)
            return
        self._post = bytearray(data) if self._post is None else self._post + data
        if len(self._post) < 7:
            return
        self._sniffed = True
        if not self._post.startswith((b"POST ", b"DELETE ")):  # DELETE: only a WebRTC session's (WHIP)
            buffered, self._post = bytes(self._post), None
            super().data_received(buffered)
            return
        self._more_post(b"")

    def _more_post(self, data: bytes) -> None:
        assert self._post is not None
        self._post += data
        if self.request is not None:
            return  # answered already; ignore the rest
        end = self._post.find(b"\r\n\r\n")
        if end < 0:
            if len(self._post) > MAX_HEAD_BYTES:
                self._answer(text_response(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large\n"))
            return
        head = bytes(self._post[:end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        headers = Headers()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip()] = value.strip()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._answer(text_response(HTTPStatus.BAD_REQUEST, "malformed request line\n"))
            return
        if parts[0] == "DELETE":
            if not parts[1].startswith(DELETE_PREFIX):
                self._answer(text_response(HTTPStatus.METHOD_NOT_ALLOWED, f"nothing takes a DELETE at {parts[1]}\n"))
            else:
                self.process_event(PostRequest(parts[1], headers, body=b"", method="DELETE"))
            return
        length_text = headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self._answer(text_response(HTTPStatus.LENGTH_REQUIRED, "a POST needs Content-Length\n"))
            return
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            self._answer(text_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes\n"))
            return
        body = bytes(self._post[end + 4:end + 4 + length])
        if len(body) < length:
            return
        self.process_event(PostRequest(parts[1], headers, body=body))

    def _answer(self, response: Response) -> None:
        """Answer without consulting ``process_request`` (the request is not worth it)."""
        self.canned = response
        self.process_event(PostRequest("/", Headers(), body=b"", method="INVALID"))

