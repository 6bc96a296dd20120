"""SessionContext: what one run of a graph (a call, a browser tab, a connection) knows about itself.

A checked graph is a template; each session runs its own ``graph.copy()`` with a context::

    template = load("pipelines/agent.yaml")          # parse and check once
    ctx = SessionContext(metadata={"call_id": call.id, "caller": call.number},
                         secrets={"api_key": key}, attachments={"call": call})
    await Runner(template.copy(), context=ctx).run()

Every processor reads it as ``self.context`` from ``start()`` on. ``metadata`` holds plain
transport facts (loggable), ``secrets`` values that must never be logged (the repr hides
them), ``attachments`` live objects a host hands to the processors at the graph's edge (a
websocket connection, a call handle).
"""

from __future__ import annotations

import secrets as _secrets
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SessionContext"]


def _new_id() -> str:
    return _secrets.token_hex(4)


class _Hidden(dict):
    """A dict whose repr names its keys, never its values."""

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: '***'" for k in self) + "}"


@dataclass
class SessionContext:
    """One session's identity and transport facts, secrets and live attachments.

    ``id`` defaults to a short random hex string. ``metadata``: call id, caller, remote
    address and such. ``secrets``: API keys and tokens (``repr`` shows only their names).
    ``attachments``: live objects for edge processors (a connection, a call handle).
    """

    id: str = field(default_factory=_new_id)
    metadata: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)
    attachments: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.secrets, _Hidden):
            self.secrets = _Hidden(self.secrets)

    def __repr__(self) -> str:
        return (f"SessionContext(id={self.id!r}, metadata={self.metadata!r}, secrets={self.secrets!r}, "
                f"attachments={sorted(self.attachments)!r})")


#: The context of a processor outside any session (read-only by convention).
EMPTY_CONTEXT = SessionContext(id="")
