"""The local server's per-connection queues are bounded FrameQueues: a peer that cannot keep up is closed."""

from __future__ import annotations

from pipeline.frames import EndFrame
from processors.realtime.server.conversation import ServerConversation
from processors.realtime.server.graph_io import (COMMAND_QUEUE_SIZE, EVENT_QUEUE_SIZE, ConnectionContext,
                                                 EventFrame)


def _context(reasons: list[str]) -> ConnectionContext:
    return ConnectionContext(ServerConversation(), resources=None, flush=lambda: None, on_overflow=reasons.append)


def test_events_past_the_bound_close_the_connection_once():
    """A client that reads nothing: event 8193 closes the connection; nothing is dropped silently."""
    reasons: list[str] = []
    ctx = _context(reasons)
    for i in range(EVENT_QUEUE_SIZE):
        assert ctx.send_event({"type": "response.output_audio.delta", "n": i})
    assert not reasons and ctx.events.statistics().size == EVENT_QUEUE_SIZE
    assert not ctx.send_event({"type": "one.too.many"})
    assert reasons == [f"more than {EVENT_QUEUE_SIZE} server events wait for the client to read them"] and ctx.closed
    assert not ctx.send_event({"type": "after.close"}) and len(reasons) == 1
    first = ctx.events.get_nowait()[0]
    assert type(first) is EndFrame  # the writer stops at once, without sending the backlog
    assert ctx.events.statistics().dropped == 0


def test_commands_are_queued_in_order_and_bounded():
    """Commands reach the graph's input in order; the queue's bound is the documented one."""
    reasons: list[str] = []
    ctx = _context(reasons)
    ctx.core.receive_text('{"type": "input_audio_buffer.clear"}')
    ctx.dispatch()
    assert ctx.commands.max_size == COMMAND_QUEUE_SIZE and not reasons
    ctx.send_event({"type": "x"})
    assert type(ctx.events.get_nowait()[0]) is EventFrame
    ctx.close()
    assert type(ctx.commands.get_nowait()[0]) is EndFrame and type(ctx.events.get_nowait()[0]) is EndFrame
