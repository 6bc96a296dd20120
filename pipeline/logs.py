"""Logging that a user can read: no secret in any line, no traceback for a peer's mistake.

Redaction
---------
Secrets never reach a log line or an error message: redaction at the logging layer.

Keys and tokens travel through voxpipe in headers (``Authorization: Bearer ...``), websocket
subprotocols (``openai-insecure-api-key.<key>``), query strings (``/ws?token=...``) and, by
mistake, in params a user put a ``${OPENAI_API_KEY}`` into. Rather than trust every log call
(ours, ``websockets``', a user's processor) to leave them out, :func:`install` puts one
filter on the root handlers that rewrites every record, whatever logger it came from, and
:func:`redact` is applied to every message the CLI prints.

Two things are hidden: the *values* known to be secret (environment variables whose names
say key, token, secret or password, and values registered with :func:`add_secret`, such as
a param named ``api_key``), wherever they appear; and anything in the *shapes* secrets take
on the wire (bearer credentials, ``sk-`` keys, ``token=`` query values, the API-key
subprotocol), even when the value itself was never registered.

Sessions
--------
A server runs many sessions in one process. :data:`session_id` (a context variable) names
the session the current task works for: the web server sets it once at the top of a
session's handler, and every task the session starts (its graph's nodes, its tool calls)
inherits it, so each record logged on its behalf, by any logger, carries ``record.session``
(the CLI prints it as ``[s3]`` in text and ``"session": "s3"`` in JSON). :func:`install`
puts the filter that stamps it on the root handlers.

Handshake noise
---------------
A port scanner, a health check's bare TCP connect or a browser's odd request makes the
``websockets`` server log "opening handshake failed" with three chained tracebacks.
:func:`quiet_handshakes` turns each into one INFO line naming the cause.
"""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar

__all__ = ["SECRET_NAME", "SessionFilter", "add_secret", "install", "quiet_handshakes", "redact", "session_id"]

#: The id of the session the current task works for (None outside any session).
session_id: ContextVar[str | None] = ContextVar("voxpipe_session_id", default=None)

#: A variable or param name that holds a secret.
SECRET_NAME = re.compile(r"(?i)(api[_-]?key|token|secret|password|passwd|auth)")
_MASK = "[redacted]"
_SHAPES = [
    (re.compile(r"(?i)(authorization:?\s*['\"]?\s*(?:bearer|basic)\s+)[^\s'\",;]+"), r"\1" + _MASK),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-+/=]{8,}"), r"\1" + _MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), "sk-" + _MASK),
    (re.compile(r"(?i)([?&](?:token|key|api_key|access_token)=)[^&\s'\"]+"), r"\1" + _MASK),
    (re.compile(r"(openai-insecure-api-key\.)[^\s,'\"]+"), r"\1" + _MASK),
]
_values: set[str] = set()
_pattern: re.Pattern | None = None


def add_secret(value: object) -> None:
    """Hide ``value`` wherever it appears from now on (values under 6 characters are not hidden)."""
    global _pattern
    if isinstance(value, str) and len(value) >= 6 and value not in _values:
        _values.add(value)
        _pattern = re.compile("|".join(re.escape(v) for v in sorted(_values, key=len, reverse=True)))


def _secrets_from_environment() -> None:
    for name, value in os.environ.items():
        if SECRET_NAME.search(name):
            add_secret(value)


def redact(text: str) -> str:
    """``text`` with every known secret value and every secret-shaped credential masked."""
    if _pattern is not None:
        text = _pattern.sub(_MASK, text)
    for shape, replacement in _SHAPES:
        text = shape.sub(replacement, text)
    return text


class _RedactingFilter(logging.Filter):
    """Rewrites a record's message (and traceback text) with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it for logging to report
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class SessionFilter(logging.Filter):
    """Stamps each record with ``session`` (the current :data:`session_id`, or "") and
    ``session_tag`` (`` [s3]``, or "" outside a session) for a format string to use."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "session"):
            sid = session_id.get()
            record.session = sid or ""
            record.session_tag = f" [{sid}]" if sid else ""
        return True


def install() -> None:
    """Redact every record that reaches the root logger's handlers, and stamp its session; read secrets from the environment."""
    _secrets_from_environment()
    root = logging.getLogger()
    for handler in root.handlers:
        if not any(isinstance(f, _RedactingFilter) for f in handler.filters):
            handler.addFilter(_RedactingFilter())
        if not any(isinstance(f, SessionFilter) for f in handler.filters):
            handler.addFilter(SessionFilter())


class _OneLineHandshakes(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.msg == "opening handshake failed":
            exc = record.exc_info[1]
            causes = []
            while exc is not None and len(causes) < 4:
                causes.append(str(exc) or type(exc).__name__)
                exc = exc.__cause__
            record.msg, record.args = "opening handshake failed: %s", ("; ".join(dict.fromkeys(causes)),)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_handshakes(logger: logging.Logger) -> logging.Logger:
    """``logger`` (a websockets server's) with failed handshakes logged as one INFO line."""
    if not any(isinstance(f, _OneLineHandshakes) for f in logger.filters):
        logger.addFilter(_OneLineHandshakes())
    return logger
