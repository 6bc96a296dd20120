"""Strict validation of Live events against the official SDK's unions (openai.types.live).

Every event the client emits and every event the local server emits must parse as a member
of ``ClientEvent`` / ``ServerEvent`` with no field the SDK does not define, at any depth.
"""

from __future__ import annotations

from typing import Annotated, Any, Union, get_args

from realtime_canonical import _extras  # the same check at any depth: fields the SDK does not define

_ADAPTERS: dict[str, Any] = {}


def strict_adapter(which: str):
    """TypeAdapter over the SDK's Live ``client`` or ``server`` union."""
    if which not in _ADAPTERS:
        from pydantic import Field, TypeAdapter

        if which == "client":
            from openai.types.live.client_event import ClientEvent as union
        else:
            from openai.types.live.server_event import ServerEvent as union
        members = get_args(get_args(union)[0])
        _ADAPTERS[which] = TypeAdapter(Annotated[Union[members], Field(discriminator="type")])
    return _ADAPTERS[which]


def _validate(which: str, event: dict[str, Any]):
    model = strict_adapter(which).validate_python(event, strict=True)
    extras = _extras(model, event.get("type", "?"))
    if extras:
        raise AssertionError(f"fields unknown to the SDK's Live {which} union: {', '.join(extras)}")
    return model


def validate_client_event(event: dict[str, Any]):
    """Validate a Live client event strictly (unknown fields rejected at any depth)."""
    return _validate("client", event)


def validate_server_event(event: dict[str, Any]):
    """Validate a Live server event strictly (unknown fields rejected at any depth)."""
    return _validate("server", event)


def validate_responses_event(event: dict[str, Any]):
    """Validate a nested Responses stream event (the ``event`` of ``response.event``) against its SDK type."""
    from openai.types.responses import ResponseStreamEvent

    if "responses" not in _ADAPTERS:
        members = get_args(get_args(ResponseStreamEvent)[0])
        _ADAPTERS["responses"] = {get_args(m.model_fields["type"].annotation)[0]: m for m in members}
    model = _ADAPTERS["responses"][event["type"]].model_validate(event, strict=True)
    extras = _extras(model, event["type"])
    if extras:
        raise AssertionError(f"fields unknown to the SDK's Responses stream events: {', '.join(extras)}")
    return model
