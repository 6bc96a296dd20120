"""Tools for phone agents: what a tool needs to know about the call, and hanging up.

Register them beside your own::

    tools: {type: tools.router, params: {modules: [processors.telephony.tools]}}

They read the call with :func:`~.call.current_call`, which works in any tool of a graph
that ``voxpipe serve`` runs for a call (async tools and the threads of plain ones alike).
"""

from __future__ import annotations

from processors.tools.schema import tool

from .call import current_call

__all__ = ["call_details", "end_call"]


@tool
async def end_call(reason: str = "the conversation is over") -> dict:
    """Hang up the phone call once the caller has heard what was already said.

    Args:
        reason: Why the call ends (kept in the server's log).
    """
    call = current_call()
    call.hangup(f"hung up by the agent: {reason}")
    return {"ended": True}


@tool
async def call_details() -> dict:
    """The caller's number, the number they called and the call's custom parameters."""
    info = current_call().info
    assert info is not None
    return {"from": info.from_number, "to": info.to_number, "provider": info.provider, "custom": info.custom}
