"""The local realtime server: the OpenAI Realtime protocol (GA and beta), offline.

Any Realtime client (ours, the official ``openai`` SDK, other frameworks') can talk to it
on 127.0.0.1 with no network and no key: it hears with pocketsphinx, answers from YAML
rules (and calls the session's tools), and speaks with eSpeak NG.

* :func:`serve_local` runs one in-process (``async with serve_local() as server:`` then
  ``AsyncOpenAI(api_key="x", websocket_base_url=server.url)``);
* :func:`main` is ``voxpipe realtime-server``;
* :class:`ServerConversation` is the sans-I/O protocol core, usable without sockets;
* :func:`~.conformance.strict_validator` and :class:`~.conformance.InvariantChecker` check
  any server's events against the SDK's types and the protocol's cross-event rules.

Modules: :mod:`.conversation` (core), :mod:`.session`, :mod:`.items`, :mod:`.responses`,
:mod:`.input_buffer`, :mod:`.turns` (server VAD), :mod:`.errors`, :mod:`.commands`; each
connection's graph (``pipelines/realtime_server.yaml``): :mod:`.connection_graph`,
:mod:`.graph_io` (the protocol's input and output processors), :mod:`.stages` (recognition,
responder, synthesis), :mod:`.engine` (the speech resources they share); :mod:`.server`
(websocket shell), :mod:`.conformance`.
"""

from .conformance import ConformanceError, InvariantChecker, strict_validator
from .conversation import ServerConversation
from .server import RealtimeServer, main, serve_local
from .session import Dialect

__all__ = [
    "ConformanceError",
    "Dialect",
    "InvariantChecker",
    "RealtimeServer",
    "ServerConversation",
    "main",
    "serve_local",
    "strict_validator",
]
