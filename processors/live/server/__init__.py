"""The Live side of the local server: ``ws://HOST:PORT/v1/live/sessions``, full duplex, offline.

The local server (:mod:`processors.realtime.server`) routes that path here: each websocket
gets a :class:`LiveConnection` (the shell: recognition, the rules brain and eSpeak NG from
the server's shared engine) around a :class:`LiveServerSession` (the sans-I/O protocol
core with its phase table). See ``docs/live.md``.
"""

from .connection import LiveConnection
from .core import LiveServerSession, ServerPhase

__all__ = ["LiveConnection", "LiveServerSession", "ServerPhase"]
