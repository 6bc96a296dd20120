"""Params of ``live.openai`` and the ``session.start`` config built from them.

Every field of :class:`LiveParams` is checked when the YAML is loaded (pydantic,
``extra="forbid"``), so a typo or an impossible combination (G.711 at 16 kHz, a Responses
delegation without a model) is a ``file:line`` error before anything runs. What the Live
API fixes at startup (model, instructions, voice, audio format, initial ``input`` items)
goes into ``session.start``; the delegation (client or Responses, with its model and tools)
goes there too. Wire facts (format objects, rates) come from :mod:`processors.realtime.wire`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from processors.realtime.client.session import Reconnect
from processors.realtime.wire import LIVE_PCM_RATES, SAMPLE_RATE, live_format

__all__ = ["ClientDelegationParams", "InputItem", "LiveParams", "ResponsesDelegationParams", "session_config"]

#: The Live websocket of the OpenAI API (the SDK's ``client.live.connect()`` opens the same).
API_URL = "wss://api.openai.com/v1/live/sessions"


class ClientDelegationParams(BaseModel):
    """``delegation: {type: client}``: the Live model hands tasks to this pipeline's tools.

    A delegated task becomes a :class:`~pipeline.frames.ToolCallFrame` that a
    ``tools.router`` (or your processor) answers. ``handler`` names one tool that gets every
    task as ``{"task": "<what the user asked>"}``; without it the task's words are matched
    to the router's tools by purpose and arguments. A task unanswered after ``timeout_s``
    is reported to the model as failed.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["client"] = "client"
    handler: str | None = Field(None, description="one tool that takes every task as {task: text}")
    timeout_s: float = Field(15.0, gt=0, description="a task unanswered this long is reported as failed")
    acknowledgement_delay_ms: int | None = Field(None, ge=0, description="wait before a spoken acknowledgement")


class ResponsesDelegationParams(BaseModel):
    """``delegation: {type: responses, model: ...}``: tasks go to a Responses model the session runs.

    Function calls of that model become :class:`~pipeline.frames.ToolCallFrame` s for the
    router; ``tools`` lists extra tool definitions (Responses shape) besides the router's.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["responses"]
    model: str = Field(..., min_length=1, description="the Responses model, e.g. gpt-5.4-mini")
    instructions: str | None = Field(None, description="the backend prompt (business rules, tool use)")
    tools: list[dict[str, Any]] = Field(default_factory=list, description="extra Responses tool definitions")
    timeout_s: float = Field(15.0, gt=0, description="a function call unanswered this long is reported as failed")
    acknowledgement_delay_ms: int | None = Field(None, ge=0, description="wait before a spoken acknowledgement")


class InputItem(BaseModel):
    """One message of the text history a session starts with (``input`` of ``session.start``)."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["developer", "user", "assistant"]
    text: str = Field(..., min_length=1)


class LiveParams(BaseModel):
    """Params of ``live.openai``: the connection and the startup configuration of the session."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(API_URL, description="the Live websocket URL, or 'local' for the offline local server")
    model: str = Field("gpt-live-1", min_length=1, description="the Live model (gpt-live-1, gpt-live-1.1)")
    api_key: SecretStr | None = Field(None, description="defaults to $OPENAI_API_KEY; never logged")
    connect_timeout_s: float = Field(10.0, gt=0, description="give up connecting after this many seconds")
    local_rules: str | None = Field(None, description="rules file of the local server's responder (url: local)")
    instructions: str | None = Field(None, description="frontend instructions: voice, manner, when to delegate")
    voice: str = Field("marin", min_length=1, description="a built-in voice name (marin, cedar, alloy, ...)")
    audio_format: Literal["pcm16", "g711_ulaw", "g711_alaw"] = Field(
        "pcm16", description="the audio both ways: pcm16 (16 or 24 kHz), G.711 mu-law or A-law (8 kHz)")
    sample_rate: int | None = Field(None, description="pcm16: 16000 or 24000 (default 24000); G.711 is 8000")
    delegation: ClientDelegationParams | ResponsesDelegationParams = Field(
        default_factory=ClientDelegationParams, discriminator="type",
        description="who does delegated tasks: client (this pipeline's tools) or responses (a backend model)")
    input: list[InputItem] = Field(default_factory=list, max_length=128, description="text history to start with")
    describe_tools: bool = Field(True, description="tell the model which tasks the pipeline's tools can do")
    append_ms: int = Field(40, ge=10, le=1000, description="user audio is sent in pieces of this length")
    reconnect: Reconnect = Field(default_factory=Reconnect, description="retry policy and user audio kept offline")
    end_timeout_s: float = Field(5.0, ge=0, description="on a graceful end, wait this long for pending tasks")

    @model_validator(mode="after")
    def _check_rate(self) -> LiveParams:
        if self.audio_format == "pcm16":
            if self.sample_rate is not None and self.sample_rate not in LIVE_PCM_RATES:
                raise ValueError(f"sample_rate {self.sample_rate} is not a Live pcm16 rate: use 16000 or 24000")
        elif self.sample_rate not in (None, SAMPLE_RATE[self.audio_format]):
            raise ValueError(f"{self.audio_format} runs at 8000 Hz: drop sample_rate or set it to 8000")
        return self

    @property
    def rate(self) -> int:
        """The sample rate of the session's audio, both ways."""
        if self.audio_format == "pcm16":
            return self.sample_rate or 24000
        return SAMPLE_RATE[self.audio_format]


def session_config(p: LiveParams, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The ``session`` object of ``session.start``; ``history`` (restored messages) follows ``p.input``."""
    session: dict[str, Any] = {
        "model": p.model,
        "audio": {"format": live_format(p.audio_format, p.rate), "output": {"voice": p.voice}},
    }
    if p.instructions:
        session["instructions"] = p.instructions
    d = p.delegation
    if d.type == "client":
        delegation: dict[str, Any] = {"type": "client"}
    else:
        responses: dict[str, Any] = {"model": d.model}
        if d.instructions:
            responses["instructions"] = d.instructions
        if d.tools:
            responses["tools"] = [dict(t) for t in d.tools]
        delegation = {"type": "responses", "responses": responses}
    if d.acknowledgement_delay_ms is not None:
        delegation["acknowledgement_delay_ms"] = d.acknowledgement_delay_ms
    session["delegation"] = delegation
    items = [message_item(i.role, i.text) for i in p.input] + list(history or [])
    if items:
        session["input"] = items[-128:]  # the API takes at most 128 messages
    return session


def message_item(role: str, text: str) -> dict[str, Any]:
    """An ``input`` history message (one text part; assistant text is ``output_text``)."""
    part = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "role": role, "content": [{"type": part, "text": text}]}
