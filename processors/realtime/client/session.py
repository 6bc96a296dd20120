"""Session configuration of ``realtime.openai``: the processor's params and the ``session.update`` payloads.

Everything a YAML file can say about the session lives in :class:`RealtimeParams`. The
same params produce either dialect of ``session.update`` (reference §5):

* GA: ``{"type": "realtime", "output_modalities": [...], "audio": {"input": {format,
  transcription, turn_detection, noise_reduction}, "output": {format, voice, speed}},
  "tools", "tool_choice", "max_output_tokens", "instructions"}``;
* beta (``OpenAI-Beta: realtime=v1``): the flat shape (``modalities``, ``voice``,
  ``input_audio_format``, ``turn_detection``, ``max_response_output_tokens``, ...).

A field left unset (``None``) is omitted, so the server keeps its own default; the two
exceptions are explicit on purpose: ``turn_detection: none`` is sent as ``null`` (it turns
the server's VAD off), and ``create_response`` / ``interrupt_response`` are always sent,
because the client's barge-in logic depends on them (reference §4.3).
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from pipeline.errors import VoxpipeError

from ..wire import SAMPLE_RATE, AudioFormatName, ga_format

__all__ = [
    "MissingApiKey",
    "DEFAULT_URL",
    "InputTranscription",
    "RealtimeParams",
    "Reconnect",
    "TurnDetection",
    "beta_session",
    "check_tool",
    "connect_url",
    "ga_session",
    "resolve_api_key",
    "session_payload",
    "tools_update",
]

DEFAULT_URL = "wss://api.openai.com/v1/realtime"



class TurnDetection(BaseModel):
    """Who decides when the user's turn ends: the server's VAD, or nobody (a local VAD upstream).

    ``server_vad`` takes ``threshold``, ``prefix_padding_ms``, ``silence_duration_ms`` and
    ``idle_timeout_ms``; ``semantic_vad`` takes ``eagerness``; ``none`` turns the server's
    VAD off, and the processor commits the audio and asks for a response when a
    :class:`~pipeline.frames.UserStoppedSpeakingFrame` arrives from upstream.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad", "semantic_vad", "none"] = "server_vad"
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    prefix_padding_ms: int | None = Field(None, ge=0)
    silence_duration_ms: int | None = Field(None, ge=0)
    idle_timeout_ms: int | None = Field(None, ge=0)
    eagerness: Literal["low", "medium", "high", "auto"] | None = None
    create_response: bool = True
    interrupt_response: bool = True

    @model_validator(mode="after")
    def _fields_match_type(self) -> TurnDetection:
        server_only = [k for k in ("threshold", "prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms")
                       if getattr(self, k) is not None]
        if self.type != "server_vad" and server_only:
            raise ValueError(f"{', '.join(server_only)} only apply to `type: server_vad` (type is {self.type!r}); "
                             "remove them or set `type: server_vad`")
        if self.type != "semantic_vad" and self.eagerness is not None:
            raise ValueError(f"eagerness only applies to `type: semantic_vad` (type is {self.type!r}); "
                             "remove it or set `type: semantic_vad`")
        return self

    @property
    def enabled(self) -> bool:
        """True when the server runs VAD (and so emits speech_started / speech_stopped)."""
        return self.type != "none"


class InputTranscription(BaseModel):
    """Transcription of the user's audio by the server (off unless set)."""

    model_config = ConfigDict(extra="forbid")

    model: str = "gpt-4o-mini-transcribe"
    language: str | None = None
    prompt: str | None = None


class Reconnect(BaseModel):
    """How a dropped connection is retried, and how much user audio is kept meanwhile."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_attempts: int = Field(8, ge=0, description="consecutive failed attempts before giving up")
    initial_delay_s: float = Field(0.5, gt=0)
    max_delay_s: float = Field(15.0, gt=0)
    factor: float = Field(2.0, ge=1.0)
    jitter: float = Field(0.25, ge=0.0, le=1.0, description="each delay is scaled by 1 +- jitter")
    seed: int | None = Field(None, description="seed of the jitter RNG (for reproducible runs)")
    buffer_ms: int = Field(10_000, ge=0, description="user audio kept while disconnected (oldest dropped)")


class RealtimeParams(BaseModel):
    """Params of ``realtime.openai``: the connection and the whole session configuration."""

    model_config = ConfigDict(extra="forbid")

    # connection
    url: str = Field(DEFAULT_URL, description="websocket URL of the Realtime API, or `local` for the offline local server")
    model: str = Field("gpt-realtime", description="the Realtime model to talk to")
    api_key: SecretStr | None = Field(None, description="defaults to $OPENAI_API_KEY; never logged")
    dialect: Literal["ga", "beta"] = Field("ga", description="event shapes of the generally available API, or of the older beta")
    connect_timeout_s: float = Field(10.0, gt=0, description="give up connecting after this many seconds")
    reconnect: Reconnect = Field(default_factory=Reconnect, description="retries after a dropped connection")
    local_rules: str | None = Field(None, description="rules file of the local server's scripted responder (url: local)")
    # session
    instructions: str | None = Field(None, description="the system prompt of the session")
    voice: str | None = Field("alloy", description="the voice the model speaks with")
    output_modalities: list[Literal["audio", "text"]] = Field(default_factory=lambda: ["audio"], description="[audio] (speech and its transcript) or [text]")
    input_audio_format: AudioFormatName = Field("pcm16", description="wire format of the user's audio (pcm16 is 24 kHz)")
    output_audio_format: AudioFormatName = Field("pcm16", description="wire format of the model's audio")
    speed: float | None = Field(None, ge=0.25, le=1.5, description="speaking rate; null: the model's default")
    turn_detection: TurnDetection = Field(default_factory=TurnDetection, description="server-side VAD settings, or `none` to commit turns from a local VAD")
    input_transcription: InputTranscription | None = Field(None, description="transcribe the user's speech (a model name and options); null: off")
    noise_reduction: Literal["near_field", "far_field"] | None = Field(None, description="the server's input noise reduction; null: off")
    tools: list[dict[str, Any]] = Field(default_factory=list, description="extra tool definitions (tools.router announces its own)")
    tool_choice: str | dict[str, Any] = Field("auto", description="auto, none, required, or a function to force")
    max_output_tokens: int | Literal["inf"] | None = Field(None, description="cap on each response's tokens; null: the server's default")
    # client behaviour
    append_ms: int = Field(60, ge=10, le=1000, description="user audio batched into one input_audio_buffer.append")
    end_timeout_s: float = Field(10.0, ge=0, description="on a graceful end, wait this long for a response in progress")

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if v == "local":
            return v
        scheme = urlsplit(v).scheme
        if scheme in ("http", "https"):
            raise ValueError(f"url {v!r} is HTTP; the Realtime API is a websocket: use "
                             f"{'wss' if scheme == 'https' else 'ws'}://{v.split('://', 1)[1]}")
        if scheme not in ("ws", "wss"):
            raise ValueError(f"url {v!r} must start with wss:// (or ws:// for a local server), or be `local`")
        return v

    @field_validator("turn_detection", mode="before")
    @classmethod
    def _turn_detection_shorthand(cls, v: Any) -> Any:
        # `turn_detection: none` / `null` / `server_vad` in YAML
        if v is None or v is False:
            return {"type": "none"}
        if isinstance(v, str):
            return {"type": v}
        return v

    @field_validator("input_transcription", mode="before")
    @classmethod
    def _transcription_shorthand(cls, v: Any) -> Any:
        return {"model": v} if isinstance(v, str) else v

    @field_validator("output_modalities")
    @classmethod
    def _check_modalities(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("output_modalities is empty: use [audio] (speech, with its transcript) or [text]")
        # audio output always carries its transcript, so [text, audio] means audio (GA forbids both)
        return ["audio"] if "audio" in v else ["text"]

    @field_validator("tools")
    @classmethod
    def _check_tools(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, t in enumerate(v):
            check_tool(t, f"tools[{i}]")
        return v

    @field_validator("tool_choice")
    @classmethod
    def _check_tool_choice(cls, v: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(v, str) and v not in ("auto", "none", "required"):
            # a bare function name is the friendly spelling of {type: function, name: ...}
            return {"type": "function", "name": v}
        if isinstance(v, dict) and not (v.get("type") == "function" and isinstance(v.get("name"), str)):
            raise ValueError(f"tool_choice {v!r} must be auto, none, required, a function name, "
                             "or {type: function, name: <function>}")
        return v

    @field_validator("max_output_tokens")
    @classmethod
    def _check_max_tokens(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and not 1 <= v <= 4096:
            raise ValueError(f"max_output_tokens {v} is out of range: use 1..4096 or inf")
        return v

    @model_validator(mode="after")
    def _check_dialect(self) -> RealtimeParams:
        if self.dialect == "beta" and self.turn_detection.idle_timeout_ms is not None:
            raise ValueError("turn_detection.idle_timeout_ms is GA only: remove it or use `dialect: ga`")
        return self

    @property
    def input_rate(self) -> int:
        """Sample rate of the user audio on the wire (and of the processor's input)."""
        return SAMPLE_RATE[self.input_audio_format]

    @property
    def output_rate(self) -> int:
        """Sample rate of the model's audio (and of the processor's output)."""
        return SAMPLE_RATE[self.output_audio_format]

    @property
    def audio_out(self) -> bool:
        """True when the model answers with speech (so barge-in must truncate it)."""
        return self.output_modalities == ["audio"]


def check_tool(tool: Any, where: str) -> None:
    """Raise ValueError unless ``tool`` is a flat Realtime function tool (reference §2.1)."""
    if not isinstance(tool, dict):
        raise ValueError(f"{where} must be a mapping {{type: function, name, description, parameters}}")
    if "function" in tool:
        raise ValueError(f"{where} uses the Chat Completions nesting {{function: {{...}}}}; Realtime tools are "
                         "flat: {type: function, name, description, parameters}")
    if tool.get("type", "function") != "function" or not isinstance(tool.get("name"), str) or not tool["name"]:
        raise ValueError(f"{where} needs `type: function` and a `name` (found {sorted(tool)})")


class MissingApiKey(VoxpipeError, ValueError):
    """No API key for a realtime.openai node: its message is the one line that says what to set."""


def resolve_api_key(params: RealtimeParams, *, local: bool = False, env: dict[str, str] | None = None) -> str:
    """The API key from params or ``$OPENAI_API_KEY``; raises ValueError naming the fix.

    The message never contains the key. The local server accepts any non-empty token.
    """
    if params.api_key is not None and params.api_key.get_secret_value():
        return params.api_key.get_secret_value()
    key = (os.environ if env is None else env).get("OPENAI_API_KEY", "")
    if key:
        return key
    if local:
        return "sk-local"
    raise MissingApiKey("realtime.openai: no API key: set the OPENAI_API_KEY environment variable "
                        "(or params.api_key), or use `url: local` for the offline local server")


def connect_url(base: str, model: str) -> str:
    """``base`` with ``?model=`` added unless the URL already names a model or a call."""
    parts = urlsplit(base)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k in ("model", "call_id", "intent") for k, _ in query):
        query.append(("model", model))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _without_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _turn_detection(td: TurnDetection, *, ga: bool) -> dict[str, Any] | None:
    if not td.enabled:
        return None
    out = td.model_dump(exclude_none=True)
    if not ga:
        out.pop("idle_timeout_ms", None)
    return out


def _tools(params: RealtimeParams, extra_tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Explicit tools first, then the announced ones; a later tool of the same name wins."""
    merged: dict[str, dict[str, Any]] = {}
    for t in [*params.tools, *(extra_tools or [])]:
        merged[t["name"]] = {"type": "function", **{k: v for k, v in t.items() if k != "type"}}
    return list(merged.values())


def ga_session(params: RealtimeParams, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The GA ``session`` object of ``session.update`` (reference §5, GA column)."""
    audio_in = _without_none({
        "format": ga_format(params.input_audio_format),
        "transcription": params.input_transcription.model_dump(exclude_none=True) if params.input_transcription else None,
        "noise_reduction": {"type": params.noise_reduction} if params.noise_reduction else None,
    })
    audio_in["turn_detection"] = _turn_detection(params.turn_detection, ga=True)
    audio_out = _without_none({"format": ga_format(params.output_audio_format), "voice": params.voice,
                               "speed": params.speed})
    session = {
        "type": "realtime",
        "output_modalities": list(params.output_modalities),
        "instructions": params.instructions,
        "audio": {"input": audio_in, "output": audio_out},
        "tools": _tools(params, tools),
        "tool_choice": params.tool_choice,
        "max_output_tokens": params.max_output_tokens,
    }
    return _without_none(session)


def beta_session(params: RealtimeParams, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The beta ``session`` object of ``session.update`` (reference §5, beta column)."""
    tool_choice = params.tool_choice["name"] if isinstance(params.tool_choice, dict) else params.tool_choice
    session = _without_none({
        "modalities": ["text", "audio"] if params.audio_out else ["text"],
        "instructions": params.instructions,
        "voice": params.voice,
        "speed": params.speed,
        "input_audio_format": params.input_audio_format,
        "output_audio_format": params.output_audio_format,
        "input_audio_transcription": (params.input_transcription.model_dump(exclude_none=True)
                                      if params.input_transcription else None),
        "input_audio_noise_reduction": {"type": params.noise_reduction} if params.noise_reduction else None,
        "tools": _tools(params, tools),
        "tool_choice": tool_choice,
        "max_response_output_tokens": params.max_output_tokens,
    })
    session["turn_detection"] = _turn_detection(params.turn_detection, ga=False)
    return session


def session_payload(params: RealtimeParams, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The full ``session`` object for the params' dialect."""
    return (ga_session if params.dialect == "ga" else beta_session)(params, tools)


def tools_update(params: RealtimeParams, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A partial ``session`` changing only the tools (GA still needs ``type``, reference §2)."""
    tool_choice = params.tool_choice
    if params.dialect == "beta" and isinstance(tool_choice, dict):
        tool_choice = tool_choice["name"]
    session: dict[str, Any] = {"tools": _tools(params, tools), "tool_choice": tool_choice}
    if params.dialect == "ga":
        session = {"type": "realtime", **session}
    return session
