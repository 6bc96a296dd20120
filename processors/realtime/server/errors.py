"""Protocol errors of the local realtime server, with the real API's codes and messages.

A :class:`ClientEventError` is raised inside the server core when a client event cannot be
applied; the core turns it into one ``error`` event (reference §3.5) and keeps the
connection. The constructors below produce the codes and sentences seen from the real API
(marked ⚠️ in the reference where only field reports back them), so that a client tested
against this server classifies errors the way it will in production.

Codes used::

    invalid_event                          malformed JSON, no ``type``, unknown ``type``
    missing_required_parameter             a required field is absent (``session.type`` in GA)
    invalid_type                           a field has the wrong JSON type
    invalid_value                          a value out of range or not allowed
    unknown_parameter                      a field of the other dialect (beta field sent to GA)
    item_not_found                         an unknown ``item_id`` / ``previous_item_id``
    input_audio_buffer_commit_empty        commit with less than 100 ms buffered
    conversation_already_has_active_response   a second response.create while one runs
    response_cancel_not_active             response.cancel with nothing running (benign)
    cannot_update_voice                    voice change after assistant audio
    string_above_max_length                an ``event_id`` over 512 characters
    array_above_max_length                 more than 128 tools
"""

from __future__ import annotations

from typing import Any

from ..wire import MIN_COMMIT_MS

__all__ = [
    "ClientEventError",
    "active_response",
    "array_too_long",
    "cancel_not_active",
    "cannot_update_voice",
    "commit_empty",
    "invalid_type",
    "invalid_value",
    "item_not_found",
    "json_type_name",
    "missing_parameter",
    "shorten",
    "string_too_long",
    "unknown_parameter",
]


class ClientEventError(Exception):
    """A client event the server refuses; becomes one ``error`` event, the session lives on."""

    def __init__(self, code: str | None, message: str, param: str | None = None,
                 type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.type = type

    def payload(self, client_event_id: str | None) -> dict[str, Any]:
        """The ``error`` object of the event (reference §3.5)."""
        return {"type": self.type, "code": self.code, "message": self.message,
                "param": self.param, "event_id": client_event_id}


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "an integer", float: "a number", type(None): "null"}


def json_type_name(value: Any) -> str:
    """'a string', 'an integer', ... as the API words it."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def missing_parameter(param: str) -> ClientEventError:
    return ClientEventError("missing_required_parameter", f"Missing required parameter: '{param}'.", param)


def invalid_type(param: str, expected: str, value: Any) -> ClientEventError:
    return ClientEventError("invalid_type", f"Invalid type for '{param}': expected {expected}, "
                            f"but got {json_type_name(value)} instead.", param)


def invalid_value(param: str, message: str) -> ClientEventError:
    return ClientEventError("invalid_value", message, param)


def unknown_parameter(param: str) -> ClientEventError:
    return ClientEventError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def shorten(text: str, limit: int = 64) -> str:
    """``text`` cut to ``limit`` characters for an error message (a client's 10 MiB id is not echoed)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def item_not_found(param: str, item_id: str, what: str = "item") -> ClientEventError:
    return ClientEventError("item_not_found", f"The {what} with id '{shorten(item_id)}' does not exist "
                            "in the conversation.", param)


def string_too_long(param: str, limit: int, length: int) -> ClientEventError:
    # the wording of the OpenAI API's validation errors
    return ClientEventError("string_above_max_length", f"Invalid '{param}': string too long. Expected a string "
                            f"with maximum length {limit}, but got a string with length {length} instead.", param)


def array_too_long(param: str, limit: int, length: int) -> ClientEventError:
    return ClientEventError("array_above_max_length", f"Invalid '{param}': array too long. Expected an array "
                            f"with maximum length {limit}, but got an array with length {length} instead.", param)


def commit_empty(buffered_ms: float) -> ClientEventError:
    return ClientEventError("input_audio_buffer_commit_empty",
                            "Error committing input audio buffer: buffer too small. Expected at least "
                            f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.")


def active_response(response_id: str) -> ClientEventError:
    return ClientEventError("conversation_already_has_active_response",
                            f"Conversation already has an active response in progress: {response_id}. "
                            "Wait until the response is finished before creating a new one.")


def cancel_not_active() -> ClientEventError:
    return ClientEventError("response_cancel_not_active", "Cancellation failed: no active response found")


def cannot_update_voice(param: str = "session.audio.output.voice") -> ClientEventError:
    return ClientEventError("cannot_update_voice",
                            "Cannot update a conversation's voice if assistant audio is present.", param)
