"""JSON Schema of pipeline files, with every registered processor's params.

Editors (VS Code's YAML extension, for one) complete and check pipelines against it:
``voxpipe schema > voxpipe.schema.json``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["pipeline_schema"]


def _node_schema(name: str, cls) -> dict[str, Any]:
    params = cls.Params.model_json_schema()
    defs = params.pop("$defs", {})
    node = {
        "type": "object",
        "description": (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else name,
        "properties": {
            "type": {"const": name},
            "params": params,
            "queue_size": {"type": "integer", "minimum": 1},
            "drop_oldest": {"type": "boolean"},
        },
        "required": ["type"],
        "additionalProperties": False,
    }
    return node, defs


def pipeline_schema() -> dict[str, Any]:
    """The schema: top-level keys, and one ``oneOf`` branch per processor type."""
    from .registry import available_types, resolve_type

    branches, all_defs, unavailable = [], {}, []
    for name in sorted(available_types()):
        try:
            cls = resolve_type(name)
        except Exception:  # optional extra missing: still allow the type name
            unavailable.append(name)
            continue
        node, defs = _node_schema(name, cls)
        all_defs.update(defs)
        branches.append(node)
    branches.append({
        "type": "object",
        "description": "a processor by import path (package.module:Class) or an unavailable built-in",
        "properties": {"type": {"anyOf": [{"type": "string", "pattern": "^[\\w.]+:[\\w.]+$"}, {"enum": unavailable}]},
                       "params": {"type": "object"}},
        "required": ["type"],
    })
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "voxpipe pipeline",
        "type": "object",
        "properties": {
            "voxpipe": {"const": 1, "description": "format version"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "auto_resample": {"type": "boolean", "description": "insert audio.resample where link formats differ"},
            "on_error": {"enum": ["stop", "continue"]},
            "processors": {"type": "object", "additionalProperties": {"oneOf": branches}},
            "links": {"type": "array", "items": {"type": "string", "pattern": "^\\s*[\\w-]+(\\s*->\\s*[\\w-]+)+\\s*$"}},
        },
        "required": ["voxpipe", "processors"],
        "additionalProperties": False,
        "$defs": all_defs,
    }
