"""realtime.openai: the OpenAI Realtime API (GA, or the beta dialect) as a voxpipe processor.

* :class:`OpenAIRealtime` is the processor (``type: realtime.openai`` in YAML); its params
  are :class:`RealtimeParams`.
* :class:`RealtimeProtocol` is its sans-I/O protocol core: server events and commands in,
  client events and frames out; usable and testable without a socket.

Modules: :mod:`.client` (the websocket shell), :mod:`.protocol` (the core), and the core's
parts: :mod:`.state` (phases, transition table), :mod:`.events` (dialect name map),
:mod:`.user_audio` (batched appends, audio kept offline), :mod:`.assistant_audio` (heard
versus received, barge-in cuts), :mod:`.tool_calls`, :mod:`.responses` (turns, metrics),
:mod:`.errors`; :mod:`.session` (params and both dialects' ``session.update``),
:mod:`.codec` (pcm16 / G.711 on the wire), :mod:`.backoff` (retry policy).
"""

from .client import OpenAIRealtime
from .errors import RealtimeError, RealtimeProtocolError
from .protocol import RealtimeProtocol
from .session import RealtimeParams
from .state import Phase

__all__ = ["OpenAIRealtime", "Phase", "RealtimeError", "RealtimeParams", "RealtimeProtocol", "RealtimeProtocolError"]
