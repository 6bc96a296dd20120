"""The session of the local realtime server: full default config, ``session.update`` merging.

Theory of operation
-------------------
The session is held once, in the GA shape (reference §5, the real ``session.created`` of the
GA trace), whatever the connection's dialect. A beta ``session.update`` is read field by
field into the same state, and :meth:`Session.render` writes the state back out in the
connection's dialect. So both dialects share one merge and one set of checks, and error
``param`` names use the dialect the client wrote.

Merging follows the real API (reference §2 and §9):

* only the fields present change (a tools-only update keeps turn detection);
* ``null`` clears a nullable field (``turn_detection``, ``transcription``,
  ``noise_reduction``, ``tracing``, ``prompt``, ``include``) and is ignored elsewhere;
* a turn detection object of the same ``type`` is merged into the current one, a new
  ``type`` starts from that type's defaults;
* unknown fields are tolerated, except the other dialect's field names, which the real API
  refuses with ``unknown_parameter`` (a beta field sent to GA is a client bug worth
  catching before production);
* GA requires ``session.type`` (``missing_required_parameter``);
* any error rejects the whole update: the new state is built on a copy and swapped in only
  when every field is valid.
"""

from __future__ import annotations

import copy
import enum
import json
from typing import Any

from ..wire import FORMAT_TYPES, FORMATS, PCM_RATE, format_name, ga_format
from .errors import (
    array_too_long,
    cannot_update_voice,
    invalid_type,
    invalid_value,
    missing_parameter,
    unknown_parameter,
)

__all__ = ["DEFAULT_INSTRUCTIONS", "Dialect", "MAX_SESSION_BYTES", "MAX_TOOLS", "Session"]

#: Tools per session: the OpenAI API's own limit for function tools.
MAX_TOOLS = 128
#: The largest session a ``session.update`` may leave (its JSON): ``session.updated`` carries
#: it whole and must stay under the 1 MiB that SDK <= 2.x clients accept (reference §7.13).
MAX_SESSION_BYTES = 768 * 1024


class Dialect(enum.Enum):
    """Which event names and shapes a connection speaks; chosen once, at the handshake."""

    GA = "ga"
    BETA = "beta"


DEFAULT_INSTRUCTIONS = (
    "You are the voxpipe local realtime server: a scripted responder (rules from a YAML file) "
    "that hears through pocketsphinx and speaks through eSpeak NG. No network is used."
)

_BETA_MODELS = {
    "gpt-realtime", "gpt-realtime-2025-08-28", "gpt-4o-realtime-preview", "gpt-4o-realtime-preview-2024-10-01",
    "gpt-4o-realtime-preview-2024-12-17", "gpt-4o-realtime-preview-2025-06-03", "gpt-4o-mini-realtime-preview",
    "gpt-4o-mini-realtime-preview-2024-12-17",
}
# Field names of one dialect that the other refuses (reference §5).
_BETA_ONLY = ("modalities", "voice", "input_audio_format", "output_audio_format", "input_audio_transcription",
              "turn_detection", "input_audio_noise_reduction", "temperature", "max_response_output_tokens", "speed")
_GA_ONLY = ("audio", "output_modalities", "max_output_tokens", "truncation", "prompt", "reasoning")
_VAD_DEFAULTS = {
    "server_vad": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 200,
                   "idle_timeout_ms": None, "create_response": True, "interrupt_response": True},
    "semantic_vad": {"type": "semantic_vad", "eagerness": "auto", "create_response": True,
                     "interrupt_response": True},
}
_TRANSCRIBE_MODEL = "whisper-1"


def _default_config(kind: str, session_id: str, model: str, expires_at: int) -> dict[str, Any]:
    turn = dict(_VAD_DEFAULTS["server_vad"])
    audio_in = {"format": ga_format("pcm16"), "transcription": None, "noise_reduction": None, "turn_detection": turn}
    if kind == "transcription":
        audio_in["transcription"] = {"model": _TRANSCRIBE_MODEL, "language": None, "prompt": ""}
        return {"type": "transcription", "object": "realtime.transcription_session", "id": session_id,
                "expires_at": expires_at, "audio": {"input": audio_in}, "include": None}
    return {
        "type": "realtime", "object": "realtime.session", "id": session_id, "model": model,
        "output_modalities": ["audio"], "instructions": DEFAULT_INSTRUCTIONS, "tools": [], "tool_choice": "auto",
        "max_output_tokens": "inf", "tracing": None, "truncation": "auto", "prompt": None, "expires_at": expires_at,
        "audio": {"input": audio_in, "output": {"format": ga_format("pcm16"), "voice": "alloy", "speed": 1.0}},
        "include": None,
    }


# --- field checks (each takes the param name to report, so beta errors use beta names) ---------


def _check_dict(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_type(param, "an object", value)
    return value


def _check_number(value: Any, param: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid_type(param, "a number", value)
    if not lo <= value <= hi:
        raise invalid_value(param, f"Invalid '{param}': expected a value between {lo} and {hi}, but got "
                            f"{value} instead.")
    return value


def _check_int(value: Any, param: str, lo: int = 0, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid_type(param, "an integer", value)
    if value < lo or (hi is not None and value > hi):
        bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
        raise invalid_value(param, f"Invalid '{param}': expected an integer {bound}, but got {value} instead.")
    return value


def _check_bool(value: Any, param: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_type(param, "a boolean", value)
    return value


def _check_str(value: Any, param: str) -> str:
    if not isinstance(value, str):
        raise invalid_type(param, "a string", value)
    return value


def _check_enum(value: Any, param: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        listed = ", ".join(f"'{a}'" for a in allowed)
        raise invalid_value(param, f"Invalid value: '{value}'. Supported values are: {listed}.")
    return value


def _ga_format(value: Any, param: str) -> dict[str, Any]:
    fmt = _check_dict(value, param)
    kind = _check_enum(fmt.get("type"), f"{param}.type", tuple(FORMAT_TYPES.values()))
    rate = fmt.get("rate", PCM_RATE) if kind == FORMAT_TYPES["pcm16"] else PCM_RATE
    if rate != PCM_RATE:
        raise invalid_value(f"{param}.rate", f"Invalid value: {rate!r}. Supported values are: {PCM_RATE}.")
    return ga_format(format_name({"type": kind}))


def _beta_format(value: Any, param: str) -> dict[str, Any]:
    return ga_format(_check_enum(value, param, FORMATS))


def _turn_detection(current: dict[str, Any] | None, value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    patch = _check_dict(value, param)
    kind = patch.get("type", current["type"] if current else "server_vad")
    _check_enum(kind, f"{param}.type", tuple(_VAD_DEFAULTS))
    merged = dict(current) if current and current["type"] == kind else dict(_VAD_DEFAULTS[kind])
    for key, val in patch.items():
        p = f"{param}.{key}"
        if key == "type":
            continue
        if key not in _VAD_DEFAULTS[kind]:
            continue  # tolerated: e.g. eagerness sent with server_vad
        if val is None and key != "idle_timeout_ms":
            continue
        if key == "threshold":
            _check_number(val, p, 0.0, 1.0)
        elif key in ("prefix_padding_ms", "silence_duration_ms"):
            _check_int(val, p, 0, 10_000)
        elif key == "idle_timeout_ms" and val is not None:
            _check_int(val, p, 0)
        elif key in ("create_response", "interrupt_response"):
            _check_bool(val, p)
        elif key == "eagerness":
            _check_enum(val, p, ("low", "medium", "high", "auto"))
        merged[key] = val
    return merged


def _transcription(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    cfg = dict(_check_dict(value, param))
    if cfg.get("model") is None:
        cfg["model"] = _TRANSCRIBE_MODEL
    _check_str(cfg["model"], f"{param}.model")
    cfg.setdefault("language", None)
    cfg.setdefault("prompt", "")
    return cfg


def _noise_reduction(value: Any, param: str) -> dict[str, Any] | None:
    if value is None:
        return None
    cfg = dict(_check_dict(value, param))
    _check_enum(cfg.get("type"), f"{param}.type", ("near_field", "far_field"))
    return cfg


def _voice(value: Any, param: str) -> str | dict[str, str]:
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return {"id": value["id"]}
    return _check_str(value, param)


def _tools(value: Any, param: str) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise invalid_type(param, "an array", value)
    if len(value) > MAX_TOOLS:
        raise array_too_long(param, MAX_TOOLS, len(value))
    tools = []
    for i, tool in enumerate(value):
        p = f"{param}[{i}]"
        tool = dict(_check_dict(tool, p))
        kind = tool.setdefault("type", "function")
        _check_enum(kind, f"{p}.type", ("function", "mcp"))
        if kind == "function":
            if "name" not in tool:
                raise missing_parameter(f"{p}.name")
            _check_str(tool["name"], f"{p}.name")
            if tool.get("parameters") is not None:
                _check_dict(tool["parameters"], f"{p}.parameters")
        elif "server_label" not in tool:
            raise missing_parameter(f"{p}.server_label")
        tools.append(tool)
    return tools


def _tool_choice(value: Any, param: str) -> str | dict[str, Any]:
    if isinstance(value, str):
        return _check_enum(value, param, ("none", "auto", "required"))
    choice = _check_dict(value, param)
    _check_enum(choice.get("type"), f"{param}.type", ("function", "mcp"))
    if choice["type"] == "function" and not isinstance(choice.get("name"), str):
        raise missing_parameter(f"{param}.name")
    return dict(choice)


def _max_tokens(value: Any, param: str) -> int | str:
    if value == "inf":
        return "inf"
    return _check_int(value, param, 1, 4096)


def _ga_modalities(value: Any, param: str) -> list[str]:
    if value not in (["audio"], ["text"]):
        raise invalid_value(param, f"Invalid value: {value!r}. Supported combinations are: ['text'] and ['audio'].")
    return list(value)


def _beta_modalities(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not value or not set(value) <= {"text", "audio"}:
        raise invalid_value(param, f"Invalid value: {value!r}. Supported combinations are: ['text'] and "
                            "['text', 'audio'].")
    return ["audio"] if "audio" in value else ["text"]


class Session:
    """The effective session config of one connection; updated by ``session.update``.

    ``kind`` is ``"realtime"`` (a model session) or ``"transcription"`` (``?intent=
    transcription``: VAD and transcription only, no responses).
    """

    def __init__(self, dialect: Dialect, *, session_id: str, model: str, expires_at: int,
                 kind: str = "realtime") -> None:
        self.dialect = dialect
        self.kind = kind
        self.config = _default_config(kind, session_id, model, expires_at)
        self.temperature = 0.8  # beta only; GA removed it

    # --- reading ------------------------------------------------------------------------------

    @property
    def audio_in(self) -> dict[str, Any]:
        return self.config["audio"]["input"]

    @property
    def turn_detection(self) -> dict[str, Any] | None:
        return self.audio_in["turn_detection"]

    @property
    def transcription(self) -> dict[str, Any] | None:
        return self.audio_in["transcription"]

    @property
    def input_format(self) -> str:
        return format_name(self.audio_in["format"])

    @property
    def output_format(self) -> str:
        out = self.config["audio"].get("output")
        return format_name(out["format"]) if out else "pcm16"

    @property
    def voice(self) -> str | dict[str, str]:
        out = self.config["audio"].get("output")
        return out["voice"] if out else "alloy"

    @property
    def output_modalities(self) -> list[str]:
        return list(self.config.get("output_modalities", ["audio"]))

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.config.get("tools", []))

    @property
    def tool_choice(self) -> str | dict[str, Any]:
        return self.config.get("tool_choice", "auto")

    def render(self) -> dict[str, Any]:
        """The whole effective session in the connection's dialect (for created / updated)."""
        if self.dialect is Dialect.GA:
            return copy.deepcopy(self.config)
        c = self.config
        audio_in = c["audio"]["input"]
        out = c["audio"].get("output", {"format": ga_format("pcm16"), "voice": "alloy", "speed": 1.0})
        turn = audio_in["turn_detection"]
        if turn is not None:
            turn = {k: v for k, v in turn.items() if k != "idle_timeout_ms"}
        choice = c.get("tool_choice", "auto")
        transcription = audio_in["transcription"]
        if transcription is not None:
            transcription = {k: transcription.get(k) for k in ("model", "language", "prompt")}
        beta = {
            "id": c["id"], "object": "realtime.session", "expires_at": c["expires_at"],
            "modalities": ["text", "audio"] if self.output_modalities == ["audio"] else ["text"],
            "instructions": c.get("instructions", ""),
            "voice": out["voice"] if isinstance(out["voice"], str) else out["voice"]["id"],
            "input_audio_format": format_name(audio_in["format"]),
            "output_audio_format": format_name(out["format"]),
            "input_audio_transcription": transcription,
            "turn_detection": turn,
            "input_audio_noise_reduction": audio_in["noise_reduction"],
            "tools": copy.deepcopy(c.get("tools", [])),
            "tool_choice": choice if isinstance(choice, str) else "required",  # beta has string choices only
            "temperature": self.temperature,
            "max_response_output_tokens": c.get("max_output_tokens", "inf"),
            "speed": out["speed"],
            "tracing": c.get("tracing"),
        }
        if c.get("model") in _BETA_MODELS:
            beta["model"] = c["model"]
        return beta

    # --- updating -----------------------------------------------------------------------------

    def update(self, patch: Any, *, voice_locked: bool = False) -> None:
        """Apply a client ``session`` object; raises ClientEventError and changes nothing on error.

        ``voice_locked`` is True once the assistant produced audio: a voice change is then
        refused with ``cannot_update_voice`` and the rest of the update is dropped too.
        """
        if not isinstance(patch, dict):
            raise invalid_type("session", "an object", patch)
        new = copy.deepcopy(self.config)
        temperature = self.temperature
        if self.dialect is Dialect.GA:
            self._apply_ga(new, patch)
        else:
            temperature = self._apply_beta(new, patch)
        if voice_locked and self.kind == "realtime" and new["audio"]["output"]["voice"] != self.voice:
            raise cannot_update_voice("session.audio.output.voice" if self.dialect is Dialect.GA else "session.voice")
        size = len(json.dumps(new, separators=(",", ":")))
        if size > MAX_SESSION_BYTES:
            raise invalid_value("session", f"The session would be {size} bytes of JSON, over the {MAX_SESSION_BYTES} "
                                "this server accepts (session.updated carries it whole); shorten the instructions "
                                "or the tools' descriptions and schemas.")
        self.config = new
        self.temperature = temperature

    def _apply_ga(self, new: dict[str, Any], patch: dict[str, Any]) -> None:
        if "type" not in patch or patch["type"] is None:
            raise missing_parameter("session.type")
        _check_enum(patch["type"], "session.type", ("realtime", "transcription"))
        if patch["type"] != self.kind:
            raise invalid_value("session.type", f"Cannot change the session type from '{self.kind}' to "
                                f"'{patch['type']}'; open a new connection (with ?intent=transcription "
                                "for a transcription session).")
        for key in _BETA_ONLY:
            if key in patch:
                raise unknown_parameter(f"session.{key}")
        for key, value in patch.items():
            p = f"session.{key}"
            if key == "audio":
                if value is not None:
                    self._apply_ga_audio(new, _check_dict(value, p))
            elif self.kind == "transcription" and key != "include":
                continue  # a transcription session has only audio.input and include
            elif value is None and key not in ("tracing", "prompt", "include", "reasoning"):
                continue  # explicit null on a non-nullable field: nothing to change
            elif key == "instructions":
                new[key] = _check_str(value, p)
            elif key == "output_modalities":
                new[key] = _ga_modalities(value, p)
            elif key == "tools":
                new[key] = _tools(value, p)
            elif key == "tool_choice":
                new[key] = _tool_choice(value, p)
            elif key == "max_output_tokens":
                new[key] = _max_tokens(value, p)
            elif key == "model":
                new[key] = _check_str(value, p)
            elif key in ("tracing", "truncation", "prompt", "include", "parallel_tool_calls", "reasoning"):
                new[key] = copy.deepcopy(value)
            # anything else (object, id, expires_at, fields of newer models) is tolerated

    def _apply_ga_audio(self, new: dict[str, Any], audio: dict[str, Any]) -> None:
        if audio.get("input") is not None:
            inp = _check_dict(audio["input"], "session.audio.input")
            target = new["audio"]["input"]
            p = "session.audio.input"
            if inp.get("format") is not None:
                target["format"] = _ga_format(inp["format"], f"{p}.format")
            if "turn_detection" in inp:
                target["turn_detection"] = _turn_detection(target["turn_detection"], inp["turn_detection"],
                                                           f"{p}.turn_detection")
            if "transcription" in inp:
                target["transcription"] = _transcription(inp["transcription"], f"{p}.transcription")
            if "noise_reduction" in inp:
                target["noise_reduction"] = _noise_reduction(inp["noise_reduction"], f"{p}.noise_reduction")
        if audio.get("output") is not None and "output" in new["audio"]:
            out = _check_dict(audio["output"], "session.audio.output")
            target = new["audio"]["output"]
            p = "session.audio.output"
            if out.get("format") is not None:
                target["format"] = _ga_format(out["format"], f"{p}.format")
            if out.get("voice") is not None:
                target["voice"] = _voice(out["voice"], f"{p}.voice")
            if out.get("speed") is not None:
                target["speed"] = _check_number(out["speed"], f"{p}.speed", 0.25, 1.5)

    def _apply_beta(self, new: dict[str, Any], patch: dict[str, Any]) -> float:
        for key in _GA_ONLY:
            if key in patch:
                raise unknown_parameter(f"session.{key}")
        temperature = self.temperature
        audio_in, out = new["audio"]["input"], new["audio"].get("output")
        for key, value in patch.items():
            p = f"session.{key}"
            if key == "turn_detection":
                audio_in["turn_detection"] = _turn_detection(audio_in["turn_detection"], value, p)
            elif key == "input_audio_transcription":
                audio_in["transcription"] = _transcription(value, p)
            elif key == "input_audio_noise_reduction":
                audio_in["noise_reduction"] = _noise_reduction(value, p)
            elif value is None and key not in ("tracing",):
                continue
            elif key == "input_audio_format":
                audio_in["format"] = _beta_format(value, p)
            elif out is None:
                continue
            elif key == "output_audio_format":
                out["format"] = _beta_format(value, p)
            elif key == "voice":
                out["voice"] = _check_str(value, p)
            elif key == "speed":
                out["speed"] = _check_number(value, p, 0.25, 1.5)
            elif key == "modalities":
                new["output_modalities"] = _beta_modalities(value, p)
            elif key == "instructions":
                new["instructions"] = _check_str(value, p)
            elif key == "tools":
                new["tools"] = _tools(value, p)
            elif key == "tool_choice":
                new["tool_choice"] = _check_str(value, p)
            elif key == "max_response_output_tokens":
                new["max_output_tokens"] = _max_tokens(value, p)
            elif key == "temperature":
                temperature = float(_check_number(value, p, 0.6, 1.2))
            elif key == "model":
                new["model"] = _check_str(value, p)
            elif key == "tracing":
                new["tracing"] = copy.deepcopy(value)
        return temperature

