"""live.openai: the OpenAI Live API (full duplex, delegations) as a voxpipe processor.

* :class:`OpenAILive` is the processor (``type: live.openai`` in YAML); its params are
  :class:`LiveParams`.
* :class:`LiveProtocol` is its sans-I/O protocol core: server events and commands in,
  client events and frames out; :mod:`.state` holds its phase table, :mod:`.segments` what
  it keeps of the model's speech and of delegated work, :mod:`.catalogue` how tools are
  described to the model and results given back, :mod:`.params` the params.
* :mod:`.server` is the Live side of the offline local server (``/v1/live/sessions``).

The wire facts this package relies on are in ``docs/live-protocol.md``; how to use it is in
``docs/live.md``.
"""

from .client import LiveError, OpenAILive
from .params import LiveParams
from .protocol import LiveProtocol, LiveProtocolError
from .state import Phase

__all__ = ["LiveError", "LiveParams", "LiveProtocol", "LiveProtocolError", "OpenAILive", "Phase"]
