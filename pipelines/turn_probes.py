"""The turn timing's probes: put into one graph copy, they note what :mod:`pipelines.turn_timing` splits.

``voxpipe bench PIPELINE.yaml`` (and so ``voxpipe demo``) calls :func:`attach_probes` on
each run's copy of the graph. Nothing here changes, holds or reorders a frame.
"""

from __future__ import annotations

import io
import math
from typing import Any

__all__ = ["attach_probes", "insert_after_model"]


def _observer_class():
    from pipeline.frames import (
        AudioFrame,
        InterruptionFrame,
        MetricsFrame,
        PlaybackProgressFrame,
        ResponseStartFrame,
        UserStartedSpeakingFrame,
        UserStoppedSpeakingFrame,
    )
    from processors.debug.console import ConsolePrinter

    class TurnObserver(ConsolePrinter):
        """A silent console right after the model: notes what leaves the model for the turn
        timing (``probes.notes``), and records a timeline on the media clock: the user's
        speech (from the VAD's frames), when the VAD decided, each reply's first audio and
        its playback."""

        def __init__(self, *args, on_turn=None, probes=None, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.on_turn = on_turn
            self.probes = probes
            self.timeline: list[dict] = []
            self._speech_start: float | None = None
            self._first: dict[str, float] = {}
            self._cut = False

        def clone(self):
            return type(self)(self.params.model_copy(deep=True), name=self.name, stream=self.stream,
                              on_turn=self.on_turn, probes=self.probes)

        async def process(self, frame, direction) -> None:
            if type(frame) is AudioFrame and frame.item_id is not None and frame.item_id not in self._first:
                self._first[frame.item_id] = now = self.clock.elapsed()
                self.timeline.append({"kind": "first_audio", "at": now, "item": frame.item_id,
                                      "turn": frame.turn})
                if self.probes is not None:
                    self.probes.notes.left_model.setdefault(frame.turn, now)
            await super().process(frame, direction)

        def _observe(self, frame) -> None:
            probes = self.probes  # None: the timeline only (voxpipe serve's session observer)
            notes = probes.notes if probes is not None else None
            if probes is not None and isinstance(frame, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame)) \
                    and frame.sample_rate:
                probes.out_of_model(frame, self.clock.elapsed())
            if isinstance(frame, UserStartedSpeakingFrame) and frame.sample_rate:
                self._speech_start = frame.pts / frame.sample_rate
            elif isinstance(frame, UserStoppedSpeakingFrame) and frame.sample_rate:
                end = frame.pts / frame.sample_rate
                self.timeline.append({"kind": "user_speech", "start": self._speech_start or end,
                                      "end": end, "decided": self.clock.elapsed()})
            elif isinstance(frame, ResponseStartFrame):
                if notes is not None:
                    notes.responses.setdefault(frame.turn, self.clock.elapsed())
            elif isinstance(frame, InterruptionFrame):
                self._cut = True
            elif isinstance(frame, MetricsFrame) and frame.name == "realtime.turn" and notes is not None:
                notes.metrics[int(frame.values.get("turn", frame.turn))] = dict(frame.values)
            elif isinstance(frame, PlaybackProgressFrame) and frame.done and frame.item_id in self._first:
                turn = next((e["turn"] for e in self.timeline if e.get("item") == frame.item_id), None)
                start = probes.chosen_sink_notes().at_sink.get(turn) if turn is not None and probes is not None else None
                first = self._first.pop(frame.item_id)
                self.timeline.append({"kind": "playback", "item": frame.item_id,
                                      "start": start if start is not None else first,
                                      "end": self.clock.elapsed(), "played_ms": frame.played_ms,
                                      "interrupted": self._cut})
                self._cut = False
            n_before = len(self.metrics)
            super()._observe(frame)
            if len(self.metrics) > n_before and self.on_turn is not None:
                self.on_turn(self.metrics[-1])

    return TurnObserver


class _Probes:
    """The turn timing's probes in one graph copy (see :mod:`pipelines.turn_timing`).

    Three kinds, none of which changes a frame or holds one: the processors before the model
    get their ``process`` and ``push`` wrapped (per instance, in this copy only) so that a
    VAD's start or stop frame is stamped with the end of the audio frame the VAD was
    processing when it pushed it; the model's ``process`` stamps when such a frame enters
    it; the sinks after the model stamp each reply's first audio frame and each
    interruption as they enter ``process``. An observer right after the model (a silent
    console) notes what leaves the model. A wrapper adds one Python call per frame to the
    processor's measured ``process()`` time (well under a microsecond).
    """

    def __init__(self, graph, model: str) -> None:
        from .turn_timing import TurnNotes

        self.graph, self.model = graph, model
        self.notes = TurnNotes()
        self._seen: dict[int, tuple[Any, Any]] = {}  # id(frame) -> (frame, SpeechEvent): the frame is kept alive
        ancestors, todo = set(), [model]
        while todo:
            for up in graph.inputs(todo.pop()):
                if up not in ancestors:
                    ancestors.add(up)
                    todo.append(up)
        descendants, todo = [], [model]
        while todo:
            for down in graph.outputs(todo.pop()):
                if down not in descendants:
                    descendants.append(down)
                    todo.append(down)
        order = graph.topological()
        self.sinks = [n for n in order if n in descendants and not graph.outputs(n)]
        self.sink_notes = {n: TurnNotes() for n in self.sinks}
        self.reports_progress: list[str] = []
        for nid in ancestors:
            self._wrap_upstream(graph.nodes[nid].processor)
        self._wrap_model(graph.nodes[model].processor)
        for nid in self.sinks:
            self._wrap_sink(nid, graph.nodes[nid].processor)

    def chosen_sink(self) -> str | None:
        """The sink whose arrivals count: the one that reported playback progress, else the first playback."""
        if self.reports_progress:
            return self.reports_progress[0]
        types = {n: str(self.graph.nodes[n].type) for n in self.sinks}
        playing = [n for n in self.sinks if types[n].startswith("playback.") and types[n] != "playback.wav"]
        heard = [n for n in self.sinks if self.sink_notes[n].at_sink]
        return (playing or heard or self.sinks or [None])[0]

    def chosen_sink_notes(self):
        sink = self.chosen_sink()
        return self.sink_notes[sink] if sink is not None else self.notes

    def result(self):
        """The notes with the chosen sink's arrivals."""
        sink = self.sink_notes.get(self.chosen_sink())
        if sink is not None:
            self.notes.at_sink, self.notes.interruptions = sink.at_sink, sink.interruptions
        return self.notes

    def out_of_model(self, frame, now: float) -> None:
        if id(frame) not in self._seen:  # a new frame: the model's (server VAD), not one it passed on
            from .turn_timing import SpeechEvent

            event = SpeechEvent(type(frame).__name__ == "UserStartedSpeakingFrame", frame.pts / frame.sample_rate,
                                out_of_model_s=now)
            self._seen[id(frame)] = (frame, event)
            self.notes.events.append(event)

    def _wrap_upstream(self, proc) -> None:
        from pipeline.frames import AudioFrame, Direction, UserStartedSpeakingFrame, UserStoppedSpeakingFrame

        from .turn_timing import SpeechEvent

        down, process, push, current = Direction.DOWNSTREAM, proc.process, proc.push, [None]
        seen, events = self._seen, self.notes.events

        async def probed_process(frame, direction, *link):
            if type(frame) is AudioFrame and direction is down:
                current[0] = frame
            await process(frame, direction, *link)

        async def probed_push(frame, direction=down):
            kind = type(frame)
            if (kind is UserStoppedSpeakingFrame or kind is UserStartedSpeakingFrame) and direction is down \
                    and id(frame) not in seen and frame.sample_rate:
                at = current[0]
                decided = (at.pts + at.samples.shape[0]) / at.sample_rate if at is not None else math.nan
                event = SpeechEvent(kind is UserStartedSpeakingFrame, frame.pts / frame.sample_rate, decided_s=decided)
                seen[id(frame)] = (frame, event)
                events.append(event)
            await push(frame, direction)

        _set(proc, probed_process, probed_push)

    def _wrap_model(self, proc) -> None:
        from pipeline.frames import Direction, UserStartedSpeakingFrame, UserStoppedSpeakingFrame

        from .turn_timing import SpeechEvent

        down, process, seen, events = Direction.DOWNSTREAM, proc.process, self._seen, self.notes.events

        async def probed_process(frame, direction, *link):
            kind = type(frame)
            if (kind is UserStoppedSpeakingFrame or kind is UserStartedSpeakingFrame) and direction is down \
                    and frame.sample_rate:
                entry = seen.get(id(frame))
                if entry is None:  # a VAD the push probes missed: no decision time
                    entry = seen[id(frame)] = (frame, SpeechEvent(kind is UserStartedSpeakingFrame,
                                                                  frame.pts / frame.sample_rate))
                    events.append(entry[1])
                if math.isnan(entry[1].at_model_s):
                    entry[1].at_model_s = proc.clock.elapsed()
            await process(frame, direction, *link)

        _set(proc, probed_process, None)

    def _wrap_sink(self, nid: str, proc) -> None:
        from pipeline.frames import AudioFrame, Direction, InterruptionFrame, PlaybackProgressFrame

        down, process, push, notes = Direction.DOWNSTREAM, proc.process, proc.push, self.sink_notes[nid]
        reports = self.reports_progress

        async def probed_process(frame, direction, *link):
            kind = type(frame)
            if kind is AudioFrame and frame.item_id is not None and direction is down:
                notes.sink_audio(frame.turn, frame.samples.shape[0] / frame.sample_rate, proc.clock.elapsed())
            elif kind is InterruptionFrame:
                notes.sink_interrupted(frame.turn, proc.clock.elapsed())
            await process(frame, direction, *link)

        async def probed_push(frame, direction=down):
            if type(frame) is PlaybackProgressFrame and nid not in reports:
                reports.append(nid)
            await push(frame, direction)

        _set(proc, probed_process, probed_push)


def _set(proc, process, push) -> None:
    """Shadow a processor's ``process`` / ``push`` with a probe on this instance (the class is untouched)."""
    try:
        proc.process = process
        if push is not None:
            proc.push = push
    except AttributeError:  # a processor with __slots__ cannot be probed: its turns lose that stamp
        pass


def model_node(graph) -> str | None:
    """The graph's realtime (or Live) model node, None when it has none."""
    return next((nid for nid, n in graph.nodes.items() if str(n.type).startswith(("realtime.", "live."))), None)


def insert_after_model(graph, name: str, observer) -> Any:
    """Put ``observer`` right after the model (before its first output); None when there is no model.

    ``voxpipe bench`` puts its probes' observer there, ``voxpipe serve`` its session observer
    (:mod:`processors.serving.observer`).
    """
    model = model_node(graph)
    if model is None:
        return None
    outputs = graph.outputs(model)
    if outputs:
        graph.insert(name, observer, between=(model, outputs[0]), type="debug.console")
    else:
        graph.add(name, observer, type="debug.console")
        graph.link(model, name)
        graph.check()
    return observer


def attach_probes(graph, on_turn=None):
    """Put the probes and a silent observer after the realtime model; None when the graph has none."""
    model = model_node(graph)
    if model is None:
        return None
    probes = _Probes(graph, model)
    observer = _observer_class()({"latency": False}, name="bench_observer", stream=io.StringIO(), on_turn=on_turn,
                                 probes=probes)
    return insert_after_model(graph, "bench_observer", observer)
