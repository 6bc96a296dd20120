"""Tools for phone agents: what a tool needs to know about the call, and hanging up.

Register them beside your own::

    tools: {type: tools.router, params: {modules: [processors.telephony.tools]}}

A tool reaches its call through a parameter annotated ``SessionContext``: the router passes
the session's context there, and leaves the parameter out of the schema the model sees.
The context's ``metadata`` has ``provider``, ``call_id``, ``stream_id``, ``from``, ``to`` and
``custom_parameters``; ``attachments[CALL]`` is the live :class:`~.call.PhoneCall` (to hang
up). Called without a context (from a processor, a test), these tools fall back to
:func:`~.call.current_call`, which works in any task or tool thread of a call's graph.
"""

from __future__ import annotations

from pipeline.session import SessionContext
from processors.tools.schema import tool

from .call import CALL, PhoneCall, current_call

__all__ = ["call_details", "end_call"]


def _call(ctx: SessionContext | None) -> PhoneCall:
    call = ctx.attachments.get(CALL) if ctx is not None else None
    return call if call is not None else current_call()


@tool
async def end_call(reason: str = "the conversation is over", ctx: SessionContext | None = None) -> dict:
    """Hang up the phone call once the caller has heard what was already said.

    Args:
        reason: Why the call ends (kept in the server's log).
    """
    _call(ctx).hangup(f"hung up by the agent: {reason}")
    return {"ended": True}


@tool
async def call_details(ctx: SessionContext | None = None) -> dict:
    """The caller's number, the number they called and the call's custom parameters."""
    if ctx is not None and ctx.metadata.get("call_id"):
        m = ctx.metadata
        return {"from": m.get("from"), "to": m.get("to"), "provider": m.get("provider"),
                "custom": m.get("custom_parameters", {})}
    info = current_call().info
    assert info is not None
    return {"from": info.from_number, "to": info.to_number, "provider": info.provider, "custom": info.custom}
