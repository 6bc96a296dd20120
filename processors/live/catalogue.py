"""The tool catalogue: how live.openai tells the Live model what the pipeline's tools can do.

A client delegation carries no tool name (docs/live-protocol.md): the model must know what
the application can do to decide to delegate, so the client appends, as developer
instructions, a line that starts with :data:`CATALOGUE_PREFIX` and holds each tool's name,
description and JSON Schema as JSON, in pieces under the 500-token limit of one append.
The local server reads the same lines (:func:`parse_catalogue`) as the session's tools. The
answer to a delegation is speakable context in one of two shapes (:func:`result_commentary`).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["CATALOGUE_PREFIX", "catalogue_messages", "parse_catalogue", "result_commentary"]

#: How a catalogue line starts; the JSON list of tools follows it.
CATALOGUE_PREFIX = "Tasks this application can do when you delegate them (JSON): "
_CATALOGUE_CHARS = 1800  # each append is at most 500 tokens: about 1800 characters of JSON


def catalogue_messages(tools: list[dict[str, Any]]) -> list[str]:
    """The tool catalogue as ``session.instructions.append`` texts of at most ~500 tokens each."""
    entries = [{"name": t.get("name"), "description": t.get("description", ""),
                "parameters": t.get("parameters") or {"type": "object", "properties": {}}}
               for t in tools if isinstance(t, dict) and t.get("name")]
    out: list[str] = []
    chunk: list[dict[str, Any]] = []
    for entry in entries:
        if chunk and len(json.dumps(chunk + [entry])) > _CATALOGUE_CHARS:
            out.append(CATALOGUE_PREFIX + json.dumps(chunk, separators=(",", ":")))
            chunk = []
        chunk.append(entry)
    if chunk:
        out.append(CATALOGUE_PREFIX + json.dumps(chunk, separators=(",", ":")))
    return out


def result_commentary(name: str, arguments: dict[str, Any], output: str, is_error: bool) -> str:
    """The speakable context that answers a client delegation (``session.commentary.append``)."""
    args = json.dumps(arguments, separators=(",", ":"), sort_keys=True)
    if is_error:
        return f"The task {name}({args}) failed: {output}"
    return f"Result of {name}({args}): {output}"


def parse_catalogue(text: str) -> list[dict[str, Any]]:
    """Tools described in an appended instruction (``... (JSON): [{name, description, parameters}]``)."""
    at = text.find(CATALOGUE_PREFIX)
    if at < 0:
        return []
    try:
        entries = json.loads(text[at + len(CATALOGUE_PREFIX):])
    except ValueError:
        return []
    if not isinstance(entries, list):
        return []
    return [{"type": "function", "name": e["name"], "description": str(e.get("description") or ""),
             "parameters": e.get("parameters") if isinstance(e.get("parameters"), dict) else
             {"type": "object", "properties": {}}}
            for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]
