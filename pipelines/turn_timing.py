"""Turn timing: where a turn's time goes, split into the VAD's wait, the model's time and voxpipe's share.

A sans-I/O core (``voxpipe bench PIPELINE.yaml`` and ``voxpipe demo`` feed it; tests feed it
by hand): probes note what they saw and when, in seconds on the session's media clock
(``clock.elapsed()``, which in a real-time run is wall time since media time 0), and
:func:`split_turns` / :func:`split_barge_ins` cut the notes into records.

What a turn is made of (ms), for a reply to the user's speech::

    speech end ─vad_wait─> decided ─framework_in─> at model ─model─> first delta ─framework_out─> at sink

==============  =========================================================================  ==========
part            from -> to                                                                 whose
==============  =========================================================================  ==========
vad_wait        the end of speech the VAD found (its stop frame's ``pts``, media time) ->   the VAD's
                the end of the audio frame on which it decided (media time): the            setting
                ``silence_duration_ms`` a user chose, not a cost
framework_in    -> the stop frame enters the model processor's ``process()``: capture       voxpipe
                pacing, the VAD's and every other processor's work, queues and hops
model           -> the first audio delta of the answer, as the model client measures it     the model
                (``ttfb_ms``: the socket both ways, the server's recognition, thinking
                and synthesis; against a remote model: the network and the provider)
framework_out   -> the first audio frame of the answer enters the sink's ``process()``      voxpipe
                (the playback node: the one that reports playback progress): decoding
                the delta, the processors after the model (console, tools router, ...),
                their queues and hops
==============  =========================================================================  ==========

**The framework's share** is ``framework_in + framework_out``: the time the turn's frames
spend in voxpipe's processors, queues and hops on both sides of the model, which is
``total - vad_wait - model``. ``total`` is speech end -> first audio at the sink.

A reply that follows a tool result has no speech end; its ``model`` is ``response.created``
-> first delta (``first_audio_ms``) and only ``framework_out`` is voxpipe's. The first
delta's time is the model client's stamp moved onto the media clock (the stop's or the
response's arrival plus the client's figure), and never later than the reply's first
audio frame leaving the model. When the server's
VAD decides (no VAD in the graph), the stop frame comes *out* of the model: ``vad_wait``
and ``framework_in`` are unknown, ``model`` runs from the speech end to the first delta
(the server's VAD wait included) and the framework's share is ``framework_out``.

A barge-in (speech over a reply that is playing at the sink)::

    onset ─vad_detection─> decided ─framework─> the interruption reaches the sink (silence)

``vad_detection`` is the VAD's (the onset it found -> the end of the deciding frame);
``framework`` is voxpipe's: the model turning the start frame into an interruption, and the
interruption's way to the sink, which drops what it holds at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["BargeIn", "SpeechEvent", "TurnNotes", "split_barge_ins", "split_turns"]

#: A sink that received audio this long before an interruption and has not played it all was playing.
_MATCH_S = 1.0  # an interruption this soon after a start decision is that start's


@dataclass
class SpeechEvent:
    """A VAD start or stop: where the VAD put it (``pts_s``), when it decided and when the model got it."""

    started: bool
    pts_s: float
    decided_s: float = math.nan  # end of the audio frame being processed when the VAD pushed it (media)
    at_model_s: float = math.nan  # entered the model's process() (nan: it came out of the model)
    out_of_model_s: float = math.nan  # left the model (the server's VAD)


@dataclass
class BargeIn:
    """An interruption reaching the sink: when, and whether the sink was playing."""

    at_sink_s: float
    turn: int
    playing: bool


@dataclass
class TurnNotes:
    """Everything the probes of one run noted (seconds on the media clock)."""

    events: list[SpeechEvent] = field(default_factory=list)
    responses: dict[int, float] = field(default_factory=dict)  # turn -> its ResponseStartFrame left the model
    left_model: dict[int, float] = field(default_factory=dict)  # turn -> its first audio frame left the model
    at_sink: dict[int, float] = field(default_factory=dict)  # turn -> its first audio frame entered the sink
    metrics: dict[int, dict] = field(default_factory=dict)  # turn -> the model's realtime.turn values
    interruptions: list[BargeIn] = field(default_factory=list)
    _play_end: float = 0.0  # when the sink's audio runs out, modelled as a sound card's queue

    def sink_audio(self, turn: int, duration_s: float, now: float) -> None:
        """An assistant audio frame of ``turn`` entered the sink at ``now``."""
        self.at_sink.setdefault(turn, now)
        self._play_end = max(self._play_end, now) + duration_s

    def sink_interrupted(self, turn: int, now: float) -> None:
        """An interruption (new ``turn``) entered the sink: it drops what it holds."""
        self.interruptions.append(BargeIn(now, turn, playing=self._play_end > now))
        self._play_end = now


def _ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


def split_turns(notes: TurnNotes) -> list[dict]:
    """One record per response with audio at the sink (ms), in turn order; see the module docstring."""
    stops = [e for e in notes.events if not e.started]
    used: set[int] = set()
    out = []
    for turn in sorted(notes.responses):
        created = notes.responses[turn]
        values = notes.metrics.get(turn, {})
        at_sink = notes.at_sink.get(turn)
        if at_sink is None:
            continue  # no audio (a tool call) or never reached the sink (cut before it played)
        record: dict = {"turn": turn}
        left = notes.left_model.get(turn, math.inf)  # the delta came before its frame left the model
        stop = None
        if "ttfb_ms" in values:  # the model timed it from a speech stop: the latest one before this response
            seen = [(i, e) for i, e in enumerate(stops) if i not in used and _seen(e) <= created]
            if seen:
                i, stop = seen[-1]
                used.add(i)
        if stop is not None:
            first_delta = min(_seen(stop) + values["ttfb_ms"] / 1000, left)
            record.update(speech_end_s=round(stop.pts_s, 3), total_ms=_ms(at_sink - stop.pts_s), model_ms=values["ttfb_ms"],
                          framework_out_ms=_ms(at_sink - first_delta))
            if math.isfinite(stop.at_model_s):
                vad_wait = stop.decided_s - stop.pts_s if math.isfinite(stop.decided_s) else math.nan
                record.update(vad="graph", vad_wait_ms=_ms(vad_wait),
                              framework_in_ms=_ms(stop.at_model_s - (stop.decided_s if math.isfinite(stop.decided_s)
                                                                      else stop.pts_s)))
                record["framework_ms"] = round(record["framework_in_ms"] + record["framework_out_ms"], 2)
            else:  # the server's VAD: its wait is the model's time, from the speech end on
                record.update(vad="model", model_ms=_ms(first_delta - stop.pts_s), framework_ms=record["framework_out_ms"])
        elif "first_audio_ms" in values:
            first_delta = min(created + values["first_audio_ms"] / 1000, left)
            record.update(model_ms=values["first_audio_ms"], framework_out_ms=_ms(at_sink - first_delta),
                          created_to_sink_ms=_ms(at_sink - created))
            record["framework_ms"] = record["framework_out_ms"]
        else:
            continue
        if math.isfinite(left):
            record["model_to_sink_ms"] = _ms(at_sink - left)  # the audio frame's own way: model -> sink
        out.append(record)
    return out


def _seen(e: SpeechEvent) -> float:
    return e.at_model_s if math.isfinite(e.at_model_s) else e.out_of_model_s


def split_barge_ins(notes: TurnNotes) -> list[dict]:
    """One record per interruption that silenced a playing sink (ms), matched to the start that caused it."""
    starts = [e for e in notes.events if e.started and math.isfinite(_seen(e))]
    out = []
    for cut in notes.interruptions:
        if not cut.playing:
            continue
        before = [e for e in starts if 0 <= cut.at_sink_s - _seen(e) <= _MATCH_S]
        if not before:
            continue
        e = before[-1]
        record = {"turn": cut.turn, "onset_s": round(e.pts_s, 3), "total_ms": _ms(cut.at_sink_s - e.pts_s)}
        if math.isfinite(e.decided_s):
            record.update(vad_detection_ms=_ms(e.decided_s - e.pts_s), framework_ms=_ms(cut.at_sink_s - e.decided_s))
        out.append(record)
    return out
