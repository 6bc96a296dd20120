"""SessionObserver: what one served session did, told to the worker's metrics and traces.

It is ``voxpipe bench``'s turn observer (:func:`pipelines.turn_probes._observer_class`,
itself the ``voxpipe run`` live view's console with the output thrown away), inserted after
the realtime model the same way (:func:`pipelines.turn_probes.insert_after_model`): one
inline node per session that sees the model's frames going down and the tool results and
playback reports coming back up. An audio frame costs it one dictionary look-up (is this a
reply's first audio?) and the push: the console's per-reply text bookkeeping, which only
its printout needs, is skipped. Every other event goes to each :class:`SessionSink` (Prometheus counters,
OpenTelemetry spans) as plain calls with media-clock times (seconds since the session's
start).
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["SessionSink", "attach_session_observer"]

NAME = "serving_observer"


class SessionSink(Protocol):
    """Receives one session's events; every method is optional to act on (times in media seconds)."""

    def response_start(self, turn: int, response_id: str, at: float) -> None: ...
    def response_end(self, turn: int, status: str, at: float) -> None: ...
    def turn_metrics(self, values: dict[str, Any], at: float) -> None: ...
    def user_speech(self, start: float, end: float, decided: float) -> None: ...
    def first_audio(self, item: str, turn: int, at: float) -> None: ...
    def playback(self, item: str, start: float, end: float, played_ms: int, interrupted: bool) -> None: ...
    def barge_in(self, turn: int, at: float) -> None: ...
    def tool_call(self, name: str, call_id: str, at: float) -> None: ...
    def tool_result(self, name: str, call_id: str, is_error: bool, at: float) -> None: ...


class _Null:
    """A stream that keeps nothing (the console's text is not wanted; a StringIO would grow)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


_CLASS: Any = None


def _session_observer_class() -> type:
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    from pipeline.frames import (
        AudioFrame,
        InterruptionFrame,
        ResponseEndFrame,
        ResponseStartFrame,
        ToolCallFrame,
        ToolResultFrame,
    )
    from pipelines.turn_probes import _observer_class

    class SessionObserver(_observer_class()):
        """The bench's turn observer, telling each sink what happened instead of keeping it."""

        def __init__(self, *args: Any, sinks: tuple = (), **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.sinks = sinks

        def clone(self) -> Any:
            return type(self)(self.params.model_copy(deep=True), name=self.name, stream=self.stream, sinks=self.sinks)

        def _now(self) -> float:
            return self.clock.elapsed() if self.clock is not None else 0.0

        def _tell(self, method: str, *args: Any) -> None:
            for sink in self.sinks:
                getattr(sink, method)(*args)

        def _observe(self, frame: Any) -> None:
            super()._observe(frame)
            at = None
            if isinstance(frame, ResponseStartFrame):
                self._tell("response_start", frame.turn, frame.response_id, at := self._now())
            elif isinstance(frame, ResponseEndFrame):
                self._tell("response_end", frame.turn, frame.status, at := self._now())
            elif isinstance(frame, ToolCallFrame):
                self._tell("tool_call", frame.name, frame.call_id, at := self._now())
            elif isinstance(frame, ToolResultFrame):
                self._tell("tool_result", frame.name, frame.call_id, frame.is_error, at := self._now())
            elif isinstance(frame, InterruptionFrame):
                self._tell("barge_in", frame.turn, at := self._now())
            for name, values in self.metrics:  # MetricsFrames the console kept
                if name == "realtime.turn":
                    self._tell("turn_metrics", values, at if at is not None else self._now())
            self.metrics.clear()
            self._drain_timeline()
            while len(self.turns) > 8:  # the console's per-turn notes: the recent ones are enough
                self.turns.pop(next(iter(self.turns)))

        async def process(self, frame: Any, direction: Any) -> None:
            if type(frame) is AudioFrame:  # the hot path: only a reply's first audio matters here
                item = frame.item_id
                if item is not None and item not in self._first:
                    self._first[item] = at = self._now()
                    self._tell("first_audio", item, frame.turn, at)
                await self.push(frame, direction)
                return
            await super().process(frame, direction)
            if self.timeline:
                self._drain_timeline()

        def _drain_timeline(self) -> None:
            for entry in self.timeline:
                kind = entry["kind"]
                if kind == "user_speech":
                    self._tell("user_speech", entry["start"], entry["end"], entry["decided"])
                elif kind == "first_audio":
                    self._tell("first_audio", entry["item"], entry["turn"], entry["at"])
                elif kind == "playback":
                    self._tell("playback", entry["item"], entry["start"], entry["end"], entry["played_ms"],
                               entry["interrupted"])
            self.timeline.clear()

        async def stop(self) -> None:
            await super().stop()
            self._drain_timeline()

    _CLASS = SessionObserver
    return SessionObserver


def attach_session_observer(graph: Any, sinks: tuple) -> Any:
    """Insert a session observer after the graph's realtime model; None when it has none."""
    from pipelines.turn_probes import insert_after_model

    observer = _session_observer_class()({"latency": False}, name=NAME, stream=_Null(), sinks=tuple(sinks))
    return insert_after_model(graph, NAME, observer)
