"""The browser voice agent: ``voxpipe serve``, its websocket transports and its page.

* :func:`~.server.serve` / :class:`~.server.WebServer` serve a page and a websocket; each
  browser connection runs its own graph of the pipeline;
* :class:`~.transport.WebsocketInput` (``transport.websocket.input``) and
  :class:`~.transport.WebsocketOutput` (``transport.websocket.output``) are that graph's
  microphone and speaker, bound to the connection;
* :mod:`.wire` is the wire format (``docs/web.md``), :mod:`.session` the per-connection
  state the transports share; ``static/`` holds the page (plain HTML and JavaScript).

The server module is imported on demand: ``import processors.web`` stays light.
"""

from .session import SessionState, WebSession
from .transport import WebsocketInput, WebsocketOutput

__all__ = ["SessionState", "WebSession", "WebsocketInput", "WebsocketOutput"]
