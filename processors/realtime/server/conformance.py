"""Conformance checks for server events: strict SDK types plus cross-event invariants.

The official SDK does not validate what it receives (reference §6.2), so these checks do:

* :func:`strict_validator` builds a pydantic ``TypeAdapter`` over the SDK's own
  discriminated union of server events (GA or beta), as OpenAI's Agents SDK does
  (reference §6.3). It rejects wrong names (GA vs beta), missing required fields, wrong
  enum values and malformed items.
* :class:`InvariantChecker` follows a stream of server events and checks what a type
  cannot: unique ``event_id``; ``session.created`` first; ``response.created`` before its
  items; exactly one ``response.done`` per ``response.created``; every delta's coordinates
  match an announced item; ``output_index`` / ``content_index`` consistent; every
  ``*.done`` text equal to the concatenated deltas; ``response.done`` output matching the
  items; no event of the other dialect. It raises :class:`ConformanceError` naming the
  event and the rule.

Used by this package's tests and usable against any Realtime server. The ``openai``
package is imported only when a validator is built.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from ..wire import BETA_TO_GA, GA_TO_BETA, NOT_IN_BETA
from .session import Dialect

__all__ = ["ConformanceError", "InvariantChecker", "strict_validator"]


class ConformanceError(AssertionError):
    """A server event broke a protocol rule; the message names the event and the rule."""


def strict_validator(dialect: Dialect = Dialect.GA) -> Callable[[Any], Any]:
    """A function that validates one server event (dict, str or bytes) against the SDK union.

    Raises ``pydantic.ValidationError`` on any drift; returns the parsed SDK model.
    """
    from typing import Annotated, Union, get_args

    from pydantic import Field, TypeAdapter

    if dialect is Dialect.GA:
        from openai.types.realtime import RealtimeServerEvent
    else:
        from openai.types.beta.realtime import RealtimeServerEvent
    members = get_args(get_args(RealtimeServerEvent)[0])
    adapter = TypeAdapter(Annotated[Union[members], Field(discriminator="type")])  # type: ignore[valid-type]

    def validate(event: Any) -> Any:
        if isinstance(event, (str, bytes, bytearray)):
            return adapter.validate_json(event)
        return adapter.validate_python(event)

    return validate


# Names of one dialect that must not appear on a connection of the other (reference §3.1);
# `conversation.item.created` is still in the GA schema, so a GA stream may not be faulted for it.
_GA_ONLY = set(GA_TO_BETA) | NOT_IN_BETA
_BETA_ONLY = set(BETA_TO_GA) - {"conversation.item.created"}
_DELTA_DONE = {  # delta type -> (done type, done field)
    "response.output_audio_transcript.delta": ("response.output_audio_transcript.done", "transcript"),
    "response.output_text.delta": ("response.output_text.done", "text"),
    "response.audio_transcript.delta": ("response.audio_transcript.done", "transcript"),
    "response.text.delta": ("response.text.done", "text"),
    "response.function_call_arguments.delta": ("response.function_call_arguments.done", "arguments"),
}
_DONE_TO_DELTA = {done: delta for delta, (done, _) in _DELTA_DONE.items()}


class InvariantChecker:
    """Follows one connection's server events and checks the cross-event rules.

    Feed every event, in order, to :meth:`check`; call :meth:`finish` at the end to assert
    that no response was left open (skip it if the connection was cut on purpose).
    """

    def __init__(self, dialect: Dialect = Dialect.GA) -> None:
        self.dialect = dialect
        self.seen_ids: set[str] = set()
        self.count = 0
        self.open_responses: dict[str, dict[str, Any]] = {}
        self.done_responses: set[str] = set()
        self.deltas: dict[tuple, list[str]] = {}
        self.audio_bytes: dict[str, int] = {}

    def _fail(self, event: dict[str, Any], rule: str) -> None:
        raise ConformanceError(f"event #{self.count} {event.get('type')!r} ({event.get('event_id')}): {rule}")

    def check(self, event: dict[str, Any] | str | bytes) -> dict[str, Any]:
        """Check one event (dict or JSON text); returns it as a dict."""
        if not isinstance(event, dict):
            event = json.loads(event)
        assert isinstance(event, dict)
        self.count += 1
        etype = event.get("type", "")
        eid = event.get("event_id")
        if etype != "input_audio_buffer.dtmf_event_received":
            if not eid:
                self._fail(event, "every server event carries an event_id")
            if eid in self.seen_ids:
                self._fail(event, f"event_id {eid} was already used")
            self.seen_ids.add(eid)
        if self.count == 1 and etype != "session.created":
            self._fail(event, "the first server event must be session.created")
        other = _BETA_ONLY if self.dialect is Dialect.GA else _GA_ONLY
        if etype in other or (self.dialect is Dialect.GA and etype == "conversation.item.created"):
            self._fail(event, f"{etype} belongs to the other dialect")
        handler = getattr(self, "_on_" + etype.replace(".", "_"), None)
        if handler is not None:
            handler(event)
        elif etype in _DELTA_DONE:
            self._delta(event)
        elif etype in _DONE_TO_DELTA:
            self._done(event)
        elif etype.startswith("response.") and "delta" in etype:
            self._coords(event)
        return event

    def finish(self) -> None:
        """Assert every response.created got its response.done."""
        if self.open_responses:
            raise ConformanceError(f"responses without response.done: {sorted(self.open_responses)}")

    # --- per event ---------------------------------------------------------------------------

    def _on_response_created(self, event: dict[str, Any]) -> None:
        rid = event["response"]["id"]
        if rid in self.open_responses or rid in self.done_responses:
            self._fail(event, f"response {rid} created twice")
        self.open_responses[rid] = {"items": {}, "order": []}

    def _on_response_done(self, event: dict[str, Any]) -> None:
        response = event["response"]
        rid = response["id"]
        state = self.open_responses.pop(rid, None)
        if state is None:
            self._fail(event, f"response.done for {rid} without response.created (or a second one)")
        self.done_responses.add(rid)
        if response.get("status") == "in_progress":
            self._fail(event, "response.done must carry a final status")
        got = [o.get("id") for o in response.get("output") or []]
        if got != state["order"]:
            self._fail(event, f"response.done output {got} differs from the announced items {state['order']}")
        for out in response.get("output") or []:
            for part in out.get("content") or []:
                if part.get("audio"):
                    self._fail(event, "response.done must not carry audio")

    def _on_response_output_item_added(self, event: dict[str, Any]) -> None:
        rid = event["response_id"]
        state = self.open_responses.get(rid)
        if state is None:
            self._fail(event, f"output item for {rid}, which is not in progress")
        if event["output_index"] != len(state["order"]):
            self._fail(event, f"output_index {event['output_index']} but {len(state['order'])} items so far")
        item = event["item"]
        state["items"][item["id"]] = {"index": event["output_index"], "item": item, "done": False}
        state["order"].append(item["id"])

    def _on_response_output_item_done(self, event: dict[str, Any]) -> None:
        info = self._item(event, event["item"]["id"])
        if info["index"] != event["output_index"]:
            self._fail(event, "output_index differs from the one announced")
        info["done"] = True
        item = event["item"]
        if item.get("type") == "function_call":
            args = "".join(self.deltas.get(("args", item["id"]), []))
            if item.get("arguments") != args:
                self._fail(event, f"function call arguments {item.get('arguments')!r} != deltas {args!r}")

    def _item(self, event: dict[str, Any], item_id: str) -> dict[str, Any]:
        state = self.open_responses.get(event.get("response_id", ""))
        if state is None or item_id not in state["items"]:
            self._fail(event, f"item {item_id} of response {event.get('response_id')} was not announced")
        return state["items"][item_id]

    def _coords(self, event: dict[str, Any]) -> dict[str, Any]:
        info = self._item(event, event["item_id"])
        if info["done"]:
            self._fail(event, f"item {event['item_id']} is already done")
        if event.get("output_index") != info["index"]:
            self._fail(event, f"output_index {event.get('output_index')} but the item is at {info['index']}")
        if "content_index" in event and event["content_index"] != 0:
            self._fail(event, "content_index must be 0 (one part per message)")
        return info

    def _key(self, event: dict[str, Any]) -> tuple:
        if event["type"].startswith("response.function_call_arguments"):
            return ("args", event["item_id"])
        return ("text", event["item_id"])

    def _delta(self, event: dict[str, Any]) -> None:
        self._coords(event)
        self.deltas.setdefault(self._key(event), []).append(event["delta"])

    def _done(self, event: dict[str, Any]) -> None:
        self._coords(event)
        field = _DELTA_DONE[_DONE_TO_DELTA[event["type"]]][1]
        sent = "".join(self.deltas.get(self._key(event), []))
        if event[field] != sent:
            self._fail(event, f"{field} {event[field]!r} is not the concatenated deltas {sent!r}")

    def _on_response_content_part_done(self, event: dict[str, Any]) -> None:
        self._coords(event)
        part = event["part"]
        sent = "".join(self.deltas.get(("text", event["item_id"]), []))
        text = part.get("transcript") if part.get("type") == "audio" else part.get("text")
        if text != sent:
            self._fail(event, f"content part text {text!r} is not the concatenated deltas {sent!r}")

    def _on_response_output_audio_delta(self, event: dict[str, Any]) -> None:
        self._coords(event)
        self.audio_bytes[event["item_id"]] = self.audio_bytes.get(event["item_id"], 0) + len(event["delta"])

    _on_response_audio_delta = _on_response_output_audio_delta
