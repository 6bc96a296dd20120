"""ConsolePrinter: prints the conversation as it happens (demos, debugging, ``voxpipe run``'s live view).

What is printed is what the user heard: an assistant reply is printed once its playback
has ended (or at the end of its response when nothing reports playback), and a reply the
user interrupted is printed up to where playback stopped, with the cut marked. Each
assistant text segment is placed on the reply's audio timeline by the audio received
before it, so the cut falls within a clause of the real position.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.frames import (
    AudioFrame,
    Direction,
    ErrorFrame,
    Frame,
    InterruptionFrame,
    MetricsFrame,
    PlaybackProgressFrame,
    ResponseEndFrame,
    ResponseStartFrame,
    TextFrame,
    ToolCallFrame,
    ToolResultFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipeline.processor import Processor

__all__ = ["ConsolePrinter", "heard_text"]


def heard_text(segments: list[tuple[float, str]], audio_ms: float, played_ms: float) -> tuple[str, str]:
    """Split a reply's text into what was heard and what was not.

    ``segments`` are ``(audio_ms_before_it, text)`` in order: where each text segment's
    speech starts on the reply's audio. A segment under way when playback stopped is cut
    in proportion to its share of audio, at a word boundary.
    """
    heard, rest = [], []
    for i, (start, text) in enumerate(segments):
        end = segments[i + 1][0] if i + 1 < len(segments) else audio_ms
        if end <= played_ms or (start >= end and start <= played_ms):
            heard.append(text)
        elif start >= played_ms:
            rest.append(text)
        else:
            share = (played_ms - start) / max(end - start, 1e-9)
            words = text.split()
            n = int(round(share * len(words)))
            heard.append(" ".join(words[:n]))
            rest.append(" ".join(words[n:]))
    return "".join(heard).strip() if len(heard) <= 1 else " ".join(h.strip() for h in heard if h.strip()), \
        " ".join(r.strip() for r in rest if r.strip())


class _Reply:
    """One assistant item: its text on its audio timeline, and how its playback went."""

    __slots__ = ("turn", "segments", "audio_ms", "ended", "played_ms", "interrupted", "printed")

    def __init__(self, turn: int) -> None:
        self.turn = turn
        self.segments: list[tuple[float, str]] = []
        self.audio_ms = 0.0
        self.ended = False
        self.played_ms: float | None = None
        self.interrupted = False
        self.printed = False


class ConsolePrinter(Processor):
    """Print user and assistant words, tool calls and results, barge-ins, latency, errors; pass every frame on.

    Put it on a fan-out branch (``model -> console``) or inline in a chain after the model:
    it never changes or holds a frame. An assistant reply is printed as it was heard (the
    part before a barge-in, and the cut). Partial transcripts are skipped unless
    ``partial`` is set. ``format: json`` prints one JSON object per event instead.
    """

    inline: ClassVar[bool] = True
    accepts_g711: ClassVar[bool] = True  # audio is only measured (its duration), never read

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        partial: bool = Field(False, description="also print partial transcripts")
        speaking: bool = Field(False, description="also print VAD start/stop events")
        metrics: bool = Field(False, description="also print every MetricsFrame")
        latency: bool = Field(True, description="print each turn's latency (speech end -> first audio) when it ends")
        format: Literal["text", "json"] = Field("text", description="text for people, json: one object per line")

    def __init__(self, params=None, *, name=None, stream=None) -> None:
        super().__init__(params, name=name)
        self.stream = stream or sys.stdout
        self._replies: dict[str, _Reply] = {}
        self._progress_seen = False
        self._t0: float | None = None
        self._response_turn = 0
        self._last_user: str | None = None
        self._user_used = True
        self._tool_result: str | None = None
        self._open_turns: set[int] = set()  # responses started and not yet ended
        self._delegated = False  # a tool call came with no response open (the Live API's delegation)
        self._waiting: int | None = None  # a response whose user transcript has not arrived yet
        #: every MetricsFrame seen, as (name, values): the demo's latency table reads it
        self.metrics: list[tuple[str, dict]] = []
        #: per response turn: ``utterance`` (the user's words it answers), ``after_tool``,
        #: ``tool_calls``, ``interrupted``, ``heard_ms``; the demo labels its table with it
        self.turns: dict[int, dict[str, Any]] = {}

    def clone(self) -> ConsolePrinter:
        """A fresh printer with the same params, writing to the same stream."""
        return type(self)(self.params.model_copy(deep=True), name=self.name, stream=self.stream)

    # --- output -------------------------------------------------------------------------------

    def _emit(self, event: str, line: str, /, **fields: Any) -> None:
        if self.params.format == "json":
            t = 0.0 if self._t0 is None else time.monotonic() - self._t0
            record = {"t": round(t, 3), "event": event, **fields}
            print(json.dumps(record, default=str), file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def _say(self, text: str) -> None:
        self._emit("text", text, text=text)

    async def start(self) -> None:
        self._t0 = time.monotonic()

    async def stop(self) -> None:
        for item_id, reply in list(self._replies.items()):  # what never reported its playback's end
            self._print_reply(item_id, reply)

    # --- frames -------------------------------------------------------------------------------

    async def process(self, frame: Frame, direction: Direction) -> None:
        if type(frame) is AudioFrame:  # the hot path: audio is only measured
            if frame.item_id is not None and direction is Direction.DOWNSTREAM:
                reply = self._replies.get(frame.item_id)
                if reply is None:
                    reply = self._replies[frame.item_id] = _Reply(frame.turn)
                reply.audio_ms += frame.duration_ms
            await self.push(frame, direction)
            return
        self._observe(frame)
        await self.push(frame, direction)

    def _observe(self, frame: Frame) -> None:
        p = self.params
        if isinstance(frame, TranscriptionFrame) and (frame.final or p.partial):
            if frame.role == "user":
                self._emit("user", f"  user      : {frame.text}", text=frame.text, final=frame.final)
                if frame.final:
                    self._user_heard(frame.text)
            else:
                self._emit(frame.role, f"  {frame.role:<10}: {frame.text}", text=frame.text)
        elif isinstance(frame, TextFrame) and frame.role == "assistant":
            reply = self._replies.get(frame.item_id or "")
            if reply is None:
                reply = self._replies[frame.item_id or ""] = _Reply(frame.turn)
            reply.segments.append((reply.audio_ms, frame.text))
        elif isinstance(frame, ResponseStartFrame):
            if not self._progress_seen:  # no sink reports playback: print what ended as it was sent
                for item_id, reply in list(self._replies.items()):
                    if reply.ended:
                        self._print_reply(item_id, reply)
            self._response_turn = frame.turn
            self._open_turns.add(frame.turn)
            delegated, self._delegated = self._delegated, False
            info = self.turns.setdefault(frame.turn, {"turn": frame.turn, "tool_calls": [], "interrupted": False})
            self._waiting = None
            if self._tool_result is not None and delegated and not self._user_used:
                # a delegation's answer is the only reply to the words that asked for it
                info["utterance"], self._user_used, self._tool_result = self._last_user, True, None
            elif self._tool_result is not None:
                info["after_tool"], self._tool_result = self._tool_result, None
            elif not self._user_used:
                info["utterance"], self._user_used = self._last_user, True
            else:
                self._waiting = frame.turn
        elif isinstance(frame, ResponseEndFrame):
            self._open_turns.discard(frame.turn)
            for item_id, reply in list(self._replies.items()):
                if reply.turn == frame.turn or not reply.turn:
                    reply.ended = True
                    if frame.status not in ("completed", "") and reply.played_ms is None:
                        reply.interrupted = reply.interrupted or frame.status in ("cancelled", "incomplete")
                    if not reply.audio_ms:  # text only: nothing to wait for
                        self._print_reply(item_id, reply, status=frame.status)
                    # with audio, wait for its playback to end: the first reply of a run may
                    # end before the sink's first progress report
        elif isinstance(frame, ToolCallFrame):
            self._delegated = not self._open_turns
            self.turns.setdefault(frame.turn, {"turn": frame.turn, "tool_calls": [], "interrupted": False})["tool_calls"].append(frame.name)
            self._emit("tool_call", f"  tool call : {frame.name}({frame.arguments})", name=frame.name,
                       arguments=frame.arguments, call_id=frame.call_id)
        elif isinstance(frame, ToolResultFrame):
            # a result the running response takes in (the Live API speaks it in the same turn) is
            # not answered by a reply of its own: only a result after its response ended is
            if frame.turn not in self._open_turns:
                self._tool_result = frame.name
            self._emit("tool_result", f"  tool {'error' if frame.is_error else 'result'}: {frame.name} -> {frame.output}",
                       name=frame.name, output=frame.output, is_error=frame.is_error, call_id=frame.call_id)
        elif isinstance(frame, InterruptionFrame):
            playing = [r for r in self._replies.values() if not r.printed and r.audio_ms and r.turn < frame.turn]
            for reply in playing:
                reply.interrupted = True
                self.turns.setdefault(reply.turn, {"turn": reply.turn, "tool_calls": []})["interrupted"] = True
            self._emit("barge_in", "  (the user barged in: playback flushed)", turn=frame.turn)
        elif isinstance(frame, PlaybackProgressFrame):
            self._progress_seen = True
            reply = self._replies.get(frame.item_id)
            if reply is not None:
                reply.played_ms = frame.played_ms
                if frame.done:
                    self._print_reply(frame.item_id, reply)
        elif isinstance(frame, ErrorFrame):
            self._emit("error", f"  error     : {frame.processor}: {frame.message}", processor=frame.processor,
                       message=frame.message)
        elif p.speaking and isinstance(frame, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame)):
            what = "started" if isinstance(frame, UserStartedSpeakingFrame) else "stopped"
            at = frame.pts / frame.sample_rate if frame.sample_rate else 0.0
            self._emit(f"user_{what}_speaking", f"  (user {what} speaking at {at:.2f} s)", media_s=round(at, 3))
        elif isinstance(frame, MetricsFrame):
            self.metrics.append((frame.name, dict(frame.values)))
            if frame.name == "realtime.turn" and p.latency:
                self._latency(frame.values)
            if p.metrics:
                self._emit("metrics", f"  metrics   : {frame.name} {frame.values}", name=frame.name, values=frame.values)

    def _user_heard(self, text: str) -> None:
        self._last_user = text
        if self._waiting is not None:  # recognition finished after the response it started
            self.turns[self._waiting]["utterance"] = text
            self._waiting, self._user_used = None, True
        else:
            self._user_used = False

    def _latency(self, values: dict[str, Any]) -> None:
        turn = values.get("turn")
        if "ttfb_ms" in values:
            text = f"speech end -> first audio {values['ttfb_ms']:.0f} ms"
        elif "first_audio_ms" in values:
            text = f"response created -> first audio {values['first_audio_ms']:.0f} ms"
        else:
            return  # a tool call: no audio
        self._emit("latency", f"  latency   : turn {turn}: {text}", turn=turn,
                   **{k: values[k] for k in ("ttfb_ms", "first_audio_ms", "response_ms") if k in values})

    def _print_reply(self, item_id: str, reply: _Reply, status: str = "completed") -> None:
        if reply.printed:
            return
        reply.printed = True
        self._replies.pop(item_id, None)
        full = "".join(t for _, t in reply.segments).strip()
        if not full:
            return
        info = self.turns.setdefault(reply.turn, {"turn": reply.turn, "tool_calls": []})
        if reply.interrupted and reply.played_ms is not None:
            heard, rest = heard_text(reply.segments, reply.audio_ms, reply.played_ms)
            info["interrupted"], info["heard_ms"] = True, reply.played_ms
            shown = (heard + " ") if heard else ""
            self._emit("assistant", f"  assistant : {shown}[cut: the user barged in after {reply.played_ms / 1000:.1f} s; "
                       f"{len(rest.split())} words not heard]", text=heard, interrupted=True,
                       heard_ms=reply.played_ms, not_heard=rest, turn=reply.turn)
        else:
            mark = "" if status in ("completed", "") and not reply.interrupted else f"  [{status if status not in ('completed', '') else 'interrupted'}]"
            self._emit("assistant", f"  assistant : {full}{mark}", text=full, interrupted=reply.interrupted, turn=reply.turn)
