"""The processor reference, generated from the registry and each type's ``Params`` model.

``voxpipe processors`` (:func:`types_table`), ``voxpipe processors NAME``
(:func:`type_text`) and ``docs/reference.md`` (:func:`reference_markdown`, written by
``voxpipe processors --markdown``; a test checks the committed file is current) all come
from here, so the reference cannot drift from the code: params with their types,
defaults, limits and descriptions, the audio formats each type accepts and produces, and
a YAML example that the test loads.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

__all__ = ["EXAMPLES", "GROUPS", "reference_markdown", "type_text", "types_table"]

#: The node each type's reference shows (the ``params`` of ``{type: NAME, params: ...}``);
#: ``{sample}`` is a shipped 16 kHz WAV. A test loads every example.
EXAMPLES: dict[str, dict[str, Any]] = {
    "audio.resample": {"rate": 24000},
    "audio.gain": {"db": -6},
    "audio.mix": {},
    "audio.g711": {"to": "int16"},
    "audio.aec": {"reference": "speaker"},
    "audio.denoise": {"level": "low"},
    "turn.semantic": {"threshold": 0.5, "pause_ms": 200},
    "vad.energy": {"threshold": 0.5, "silence_duration_ms": 500},
    "vad.silero": {"threshold": 0.5},
    "capture.wav": {"path": "{sample}", "realtime": False, "pad_ms": 500},
    "capture.tone": {"frequency": 440, "duration_s": 2, "sample_rate": 24000},
    "capture.noise": {"duration_s": 2},
    "capture.microphone": {"sample_rate": 24000, "frame_ms": 20},
    "playback.wav": {"path": "out/reply.wav"},
    "playback.null": {},
    "playback.speaker": {"sample_rate": 24000},
    "record": {"path": "out/conversation.wav"},
    "realtime.openai": {"url": "local", "voice": "alloy"},
    "live.openai": {"url": "local", "voice": "marin", "delegation": {"type": "client", "timeout_s": 10}},
    "tools.router": {"functions": {"get_weather": "processors.tools.examples:get_weather"}, "timeout_s": 5},
    "stt.pocketsphinx": {},
    "tts.espeak": {},
    "brain.scripted": {},
    "debug.console": {"speaking": True},
    "transport.websocket.input": {},
    "transport.websocket.output": {},
    "transport.phone.input": {},
    "transport.phone.output": {"chunk_ms": 20},
    "transport.webrtc.input": {"media_timeout_s": 10},
    "transport.webrtc.output": {},
    "realtime_server.input": {},
    "realtime_server.output": {},
    "realtime_server.stt": {},
    "realtime_server.responder": {},
    "realtime_server.tts": {},
}

#: Sections of the reference, in order: (title, type-name prefixes).
GROUPS: list[tuple[str, tuple[str, ...]]] = [
    ("Audio", ("audio.", "vad.", "turn.")),
    ("Sources", ("capture.",)),
    ("Sinks", ("playback.", "record")),
    ("Model and tools", ("realtime.", "live.", "tools.", "brain.")),
    ("Speech", ("stt.", "tts.")),
    ("Debugging", ("debug.",)),
    ("Transports (voxpipe serve: browser, WebRTC and phone)", ("transport.",)),
    ("The local realtime server's own graph", ("realtime_server.",)),
]


# --- text helpers -------------------------------------------------------------------------------


def plain(text: str, *, markdown: bool = False) -> str:
    """reStructuredText roles and literals as a reader sees them (backticks in markdown)."""
    tick = "`" if markdown else ""
    text = re.sub(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?([\w.]+)`",
                  lambda m: f"{tick}{m.group(1).rsplit('.', 1)[-1]}{tick}", text)
    text = re.sub(r"``(.+?)``", lambda m: f"{tick}{m.group(1)}{tick}", text)
    if not markdown:
        text = re.sub(r"(?<!`)`([^`\n]+)`(?!`)", r"\1", text)
    return text


def summary(cls: type) -> str:
    """The first line of a class's docstring, as plain text."""
    doc = inspect.getdoc(cls) or ""
    return plain(doc.split("\n\n", 1)[0].replace("\n", " ").strip())


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value if re.fullmatch(r"[A-Za-z0-9_./-]+", value) and value not in ("null", "true", "false") else repr(value)
    if isinstance(value, BaseModel):
        return _yaml_value(value.model_dump())
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if hasattr(value, "value") and not isinstance(value, (int, float)):  # an enum
        return _yaml_value(value.value)
    return repr(value)


def type_name(ann: Any) -> str:
    """A param's annotation in YAML terms: ``int``, ``"a" | "b"``, ``list[str]``, ``float | null``."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(_yaml_value(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [type_name(a) for a in args if a is not type(None)]
        return " | ".join(dict.fromkeys(parts)) + (" | null" if type(None) in args else "")
    if origin in (dict, typing.Dict):
        return f"mapping[{type_name(args[0])}, {type_name(args[1])}]" if args else "mapping"
    if origin in (list, tuple, set, frozenset):
        return f"list[{type_name(args[0])}]" if args else "list"
    if ann is typing.Any:
        return "any"
    if isinstance(ann, type):
        if issubclass(ann, BaseModel):
            return "mapping"
        if ann is dict:
            return "mapping"
        if ann is list:
            return "list"
        if ann.__name__ == "SecretStr":
            return "str (secret)"
        return ann.__name__
    return str(ann).replace("typing.", "")


def _limits(field: FieldInfo) -> str:
    words = []
    for m in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "length >="),
                           ("max_length", "length <=")):
            value = getattr(m, attr, None)
            if value is not None:
                words.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
    return ", ".join(words)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        try:
            return _yaml_value(field.default_factory())
        except TypeError:
            return "(computed)"
    return _yaml_value(field.default)


def params_rows(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(name, type, default, description with limits) for each param."""
    rows = []
    for name, field in model.model_fields.items():
        desc = plain(field.description or "")
        limits = _limits(field)
        if limits:
            desc = f"{desc} ({limits})" if desc else f"({limits})"
        rows.append((name, type_name(field.annotation), _default(field), desc))
    return rows


def formats(name: str) -> tuple[str, str]:
    """What audio the type takes and gives, with its example params (in words)."""
    from .frames import AudioFormat
    from .registry import resolve_type

    cls = resolve_type(name)
    try:
        proc = cls(example_params(name), name="x")
    except Exception as exc:  # a type that needs a live session or an extra not installed
        return (f"depends on its params ({type(exc).__name__})",) * 2
    is_source = cls.produce is not _base_produce()
    fmt_in = proc.input_format
    taken = "any audio" if fmt_in is None else str(fmt_in)
    if is_source:
        taken = "none (a source)"
    try:
        out = proc.output_format(None)
        given = ("frames with no declared audio format" if is_source else "the audio it receives (passed on)") if out is None else str(out)
        if out is None and not is_source:
            probe_in = AudioFormat(16000, 1, "int16")
            probe = proc.output_format(probe_in)
            if probe is not None and probe != probe_in:
                given = f"depends on its input ({probe_in} in gives {probe})"
    except Exception:
        given = "depends on its input"
    return taken, given


def _base_produce():
    from .processor import Processor

    return Processor.produce


def example_params(name: str) -> dict[str, Any]:
    from pipelines import shipped

    sample = str(shipped("samples/hello_16k.wav"))

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("{sample}", sample)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    return fill(EXAMPLES.get(name, {}))


def example_yaml(name: str) -> str:
    params = EXAMPLES.get(name, {})
    node = name.rsplit(".", 1)[-1].replace("-", "_")
    shown = {k: (v.replace("{sample}", "speech.wav") if isinstance(v, str) else v) for k, v in params.items()}
    body = f"{{type: {name}" + (f", params: {_yaml_value(shown)}" if shown else "") + "}"
    return f"{node}: {body}"


# --- the three views ----------------------------------------------------------------------------


def types_table() -> str:
    """``voxpipe processors``: every registered type and its summary, in aligned columns."""
    from .registry import ALIASES, available_types, resolve_type

    aliases = {v: k for k, v in ALIASES.items()}
    rows = []
    for name in sorted(available_types()):
        try:
            line = summary(resolve_type(name))
        except Exception as exc:  # an entry point whose package is broken, an extra not installed
            line = f"(unavailable: {exc})"
        if name in aliases:
            line += f" (alias: {aliases[name]})"
        rows.append((name, line))
    width = max(len(n) for n, _ in rows)
    lines = [f"{n:<{width}}  {line}" for n, line in rows]
    lines.append("")
    lines.append("voxpipe processors NAME prints a type's params, formats and an example.")
    return "\n".join(lines)


def type_text(name: str) -> str:
    """``voxpipe processors NAME``: one type's reference as plain text."""
    from .registry import ALIASES, resolve_type

    name = ALIASES.get(name, name)
    cls = resolve_type(name)
    doc = plain(inspect.getdoc(cls) or "(no description)")
    out = [name, "=" * len(name), "", doc, "", "params:"]
    rows = params_rows(cls.Params)
    if not rows:
        out.append("  (none)")
    else:
        w_name = max(len(r[0]) for r in rows)
        w_type = min(max(len(r[1]) for r in rows), 40)
        w_def = min(max(len(r[2]) for r in rows), 30)
        for pname, ptype, pdefault, desc in rows:
            out.append(f"  {pname:<{w_name}}  {ptype:<{w_type}}  {pdefault:<{w_def}}  {desc}".rstrip())
    if name in EXAMPLES:
        taken, given = formats(name)
        out += ["", f"takes: {taken}", f"gives: {given}"]
        out += ["", "example:", "  " + example_yaml(name)]
    return "\n".join(out) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def reference_markdown() -> str:
    """``docs/reference.md``: every built-in type, by group."""
    from .registry import ALIASES, BUILTINS, resolve_type

    aliases = {v: k for k, v in ALIASES.items()}
    out = [
        "# Processor reference",
        "",
        "Generated from the registry and each type's `Params` model by `voxpipe processors --markdown`",
        "(do not edit by hand; `tests/test_reference.py` fails when this file is out of date).",
        "`voxpipe processors NAME` prints the same for one type. Formats are what the graph check",
        "uses, with the example's params; \"any\" fields take what the upstream link carries.",
        "",
    ]
    placed: set[str] = set()
    sections = []
    for title, prefixes in GROUPS:
        names = [n for n in BUILTINS if n.startswith(prefixes) and n not in placed]
        placed.update(names)
        sections.append((title, names))
    rest = [n for n in BUILTINS if n not in placed]
    if rest:
        sections.append(("Other", rest))
    out.append("| type | what it does |")
    out.append("|---|---|")
    for _title, names in sections:
        for n in names:
            out.append(f"| [`{n}`](#{n.replace('.', '')}) | {_md_cell(plain(summary(resolve_type(n)), markdown=True))} |")
    out.append("")
    for title, names in sections:
        out += [f"## {title}", ""]
        for n in names:
            cls = resolve_type(n)
            out += [f"### {n}", ""]
            if n in aliases:
                out += [f"Alias: `{aliases[n]}`.", ""]
            out += [plain(inspect.getdoc(cls) or "", markdown=True), ""]
            out += [f"Class: `{BUILTINS[n]}`", ""]
            rows = params_rows(cls.Params)
            if rows:
                out += ["| param | type | default | description |", "|---|---|---|---|"]
                for pname, ptype, pdefault, desc in rows:
                    out.append(f"| `{pname}` | {_md_cell(ptype)} | `{_md_cell(pdefault)}` | {_md_cell(desc)} |")
            else:
                out.append("No params.")
            taken, given = formats(n)
            out += ["", f"Takes: {taken}. Gives: {given}.", "", "```yaml", example_yaml(n), "```", ""]
    return "\n".join(out).rstrip() + "\n"
