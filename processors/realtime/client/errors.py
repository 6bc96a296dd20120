"""Errors of realtime.openai, and how the server's ``error`` events are classified.

Hierarchy (both are :class:`~pipeline.errors.VoxpipeError`)::

    RealtimeProtocolError   the client core was used wrongly (a command after close())
    RealtimeError           the connection cannot go on: bad key, rejected session config,
                            retries exhausted (raised by the websocket shell; fatal)

Server ``error`` events are classified by ``code``, not by the often-null ``event_id``
(reference §3.5, §7.10): ``response_cancel_not_active`` is benign (a cancel racing a natural
end); authentication, quota, model and retired-dialect codes are fatal, and so is a
rejection of the session config before it was first accepted; the rest are reported and
the session goes on. Messages name what to change in the pipeline.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import VoxpipeError

__all__ = ["BENIGN_ERROR_CODES", "FATAL_ERROR_CODES", "RealtimeError", "RealtimeProtocolError", "describe_error"]

#: Error codes that are not errors for the user (reference §7.7).
BENIGN_ERROR_CODES = frozenset({"response_cancel_not_active"})
#: Error codes after which the session cannot usefully continue: the user must act.
FATAL_ERROR_CODES = frozenset({
    "invalid_api_key", "insufficient_quota", "beta_api_shape_disabled", "model_not_found",
    "invalid_model", "account_deactivated", "organization_deactivated",
})
_FATAL_TYPES = frozenset({"authentication_error", "permission_error"})
_HINTS = {
    "invalid_api_key": "check OPENAI_API_KEY (or params.api_key) of realtime.openai",
    "insufficient_quota": "the OpenAI account has no quota left: check billing",
    "beta_api_shape_disabled": "the beta dialect is retired: set `dialect: ga` on realtime.openai",
    "model_not_found": "check `model` of realtime.openai (e.g. gpt-realtime)",
    "invalid_model": "check `model` of realtime.openai (e.g. gpt-realtime)",
}
_SESSION_HINT = "the session config was rejected: fix the params of realtime.openai in the pipeline"


class RealtimeProtocolError(VoxpipeError):
    """The client core was used wrongly (a command in a phase that cannot take it)."""


class RealtimeError(VoxpipeError):
    """The realtime connection cannot go on; the message says why and what to change."""


def describe_error(error: dict[str, Any], *, session_level: bool = False, what: str = "realtime API error") -> tuple[str, bool]:
    """(message, fatal) for the ``error`` object of an ``error`` event or a failed response.

    ``session_level``: the error rejects the session config (it is then fatal).
    """
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = str(error.get("message") or "").strip()
    param = error.get("param") if isinstance(error.get("param"), str) else None
    fatal = code in FATAL_ERROR_CODES or error.get("type") in _FATAL_TYPES or session_level
    text = f"{what} {code or error.get('type') or 'without a code'}"
    if message:
        text += f": {message}"
    if param:
        text += f" (param {param})"
    hint = _HINTS.get(code or "") or (_SESSION_HINT if session_level else None)
    if hint:
        text += f"; {hint}"
    return text, fatal
