"""One instrumented session of the demo graph against a local realtime server in another process.

Shared by ``benchmarks/turn.py`` (turn and barge-in latency) and ``benchmarks/sessions.py``
(concurrent sessions). It holds four things:

* :func:`make_conversation` and :func:`make_listener`: the caller's side, synthesised with
  eSpeak NG: cycles of "tell me a story" (a long reply starts), then "hello" while the
  reply plays (a barge-in; the short reply "Hi." follows); or a question and the whole
  answer listened to. Every utterance is trimmed to its audible part, so its onset and end
  in the WAV are the truth a VAD is measured against.
* :class:`LocalServerProcess`: ``python -m pipeline.cli realtime-server`` on a free
  127.0.0.1 port with the benchmark's responder rules and an artificial model delay.
  Another process, so that its recognition and synthesis (pocketsphinx holds the GIL)
  never steal the client's event loop.
* the probes, which timestamp frames at the graph's boundaries and change nothing:
  ``TapResample`` (the demo's ``audio.resample``, also noting which capture frame each
  output frame came from), ``InputTap`` (inline, between ``vad`` and ``model``),
  ``OutputTap`` (inline, between ``model`` and ``console``) and ``TimedPlayback`` (the
  demo's ``playback.null``, also noting when audio and interruptions reach it and
  modelling the sound card's queue to count underruns, see :data:`PLAYBACK_TICK_S`). All
  times are seconds on the session's media clock (``clock.elapsed()``), so media time and
  wall time compare directly.
* :func:`build_session`: ``pipelines/demo.yaml`` loaded with the loader (:func:`load_demo`,
  once), copied per session, pointed at the server and the conversation, with the probes
  put in.

Theory of the timestamps. The capture source pushes frame ``[pts, pts + n)`` when media
time reaches ``pts + n`` (its *due* time): that is when a sound card would deliver it.
The resampler withholds part of its input (soxr's block delay, ~21 ms on average at HQ),
so the frame that reaches the VAD ends earlier than the capture frame that released it;
``TapResample`` records that capture frame's due time for every frame it pushes, in order,
and ``InputTap`` pairs them with the frames that come out of the VAD. A VAD event is pushed
while the VAD processes a frame and before it pushes that frame on, so the next audio
frame ``InputTap`` sees is the one that decided the event.
"""

from __future__ import annotations

import io
import math
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.frames import (  # noqa: E402
    AudioFrame,
    Direction,
    Frame,
    InterruptionFrame,
    MetricsFrame,
    ResponseStartFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipeline.processor import Processor  # noqa: E402
from processors.audio import ResampleProcessor  # noqa: E402
from processors.files.playback import NullPlayback  # noqa: E402

__all__ = [
    "BENCH_RULES",
    "Conversation",
    "LocalServerProcess",
    "Recorder",
    "SpeechEvent",
    "Utterance",
    "build_session",
    "load_demo",
    "machine_busy_s",
    "make_conversation",
    "make_listener",
    "quantiles",
]

DEMO = ROOT / "pipelines" / "demo.yaml"
RATE = 16000  # the demo's capture rate
VOICE = "en-us+klatt"
_DOWN = Direction.DOWNSTREAM
#: A playback device takes audio a tick at a time (``playback.null``'s ``tick_ms``): audio that
#: left the model at least this long before it was needed and still came late was made late
#: by this process; audio with less margin was at the mercy of the server's streaming.
PLAYBACK_TICK_S = 0.020

#: The responder of the benchmark server: a one-word answer to "hello" (short turns, so
#: that many fit in a run), a 9.6 s story (something to barge in on) and a 4.7 s joke (a
#: whole answer to listen to).
BENCH_RULES = """\
fallback: "Sorry, I did not catch that. Say hello, or ask me for a story."
rules:
  - pattern: "^(hello|hi)$"
    examples: ["hello"]
    reply: "Hi."
  - pattern: "story"
    examples: ["tell me a story"]
    reply: >-
      Once upon a time, in a small town by the sea, there lived an old clockmaker.
      Every morning he opened his shop at seven and wound every clock on the wall.
  - pattern: "joke"
    examples: ["tell me a joke"]
    reply: "Why did the clock get a job? Because it had too much time on its hands."
"""
#: How long the answer to each question plays (eSpeak NG en-us+klatt, 160 words per minute).
REPLY_S = {"tell me a story": 9.6, "tell me a joke": 4.7, "hello": 0.4}

LEAD_S = 0.6  # silence before the first utterance (the VAD learns the noise floor)
BARGE_AFTER_S = (1.4, 2.0)  # story end -> barge-in onset: the reply has played 0.5-1.1 s by then
HELLO_GAP_S = (1.4, 1.7)  # barge-in end -> next story: "Hi." (0.4 s) has been played by then
TAIL_S = 2.5  # silence after the last utterance (its reply plays out)


# --- the caller's side --------------------------------------------------------------------


@dataclass(frozen=True)
class Utterance:
    """One thing the caller says: audible from ``onset_s`` to ``end_s`` (media time)."""

    text: str
    onset_s: float
    end_s: float
    barge_in: bool


@dataclass
class Conversation:
    """The caller's audio (int16 at ``rate``) and what is said when."""

    audio: np.ndarray
    rate: int
    utterances: list[Utterance]

    @property
    def duration_s(self) -> float:
        return self.audio.shape[0] / self.rate

    def write(self, path: Path) -> Path:
        from processors.files.wavfile import write_wav

        write_wav(path, self.audio, self.rate)
        return path


def _speech(text: str) -> np.ndarray:
    """``text`` synthesised at 16 kHz int16, trimmed to where it exceeds 1% of its peak."""
    import soxr

    from processors.speech.espeak import synthesize

    x, rate = synthesize(text, voice=VOICE)
    y = soxr.resample(x.astype(np.float32) / 32768.0, rate, RATE)
    loud = np.flatnonzero(np.abs(y) > 0.01 * np.abs(y).max())
    y = y[loud[0] : loud[-1] + 1]
    return np.clip(np.round(y * 32768.0), -32768, 32767).astype(np.int16)


def make_conversation(cycles: int, *, seed: int = 8) -> Conversation:
    """``cycles`` x ("tell me a story", then "hello" barging in), with seeded gaps.

    The gaps are drawn uniformly so that speech boundaries fall at every phase of the
    20 ms capture frames and of the resampler's blocks.
    """
    rng = np.random.default_rng(seed)
    story, hello = _speech("Tell me a story"), _speech("Hello")
    parts = [np.zeros(int(LEAD_S * RATE), np.int16)]
    at = parts[0].shape[0]
    said: list[Utterance] = []

    def say(x: np.ndarray, text: str, barge_in: bool, gap_s: float) -> None:
        nonlocal at
        said.append(Utterance(text, at / RATE, (at + x.shape[0]) / RATE, barge_in))
        gap = np.zeros(int(round(gap_s * RATE)), np.int16)
        parts.extend([x, gap])
        at += x.shape[0] + gap.shape[0]

    for i in range(cycles):
        say(story, "tell me a story", False, rng.uniform(*BARGE_AFTER_S))
        say(hello, "hello", True, rng.uniform(*HELLO_GAP_S) if i < cycles - 1 else TAIL_S)
    return Conversation(np.concatenate(parts), RATE, said)


def make_listener(text: str = "tell me a joke", *, cycles: int = 1, margin_s: float = 1.5) -> Conversation:
    """The caller asks ``text`` and listens to the whole answer (capture runs on, silent), ``cycles`` times.

    Audio flows both ways for most of the session while the server recognises and
    synthesises once per cycle: the load profile of a call, not of a recogniser.
    """
    x = _speech(text.capitalize())
    # the VAD's silence wait and the server (about 1 s), the answer, a margin
    listen = np.zeros(int(round((1.0 + REPLY_S[text] + margin_s) * RATE)), np.int16)
    parts = [np.zeros(int(LEAD_S * RATE), np.int16)]
    said = []
    at = parts[0].shape[0]
    for _ in range(cycles):
        said.append(Utterance(text, at / RATE, (at + x.shape[0]) / RATE, False))
        parts += [x, listen]
        at += x.shape[0] + listen.shape[0]
    return Conversation(np.concatenate(parts), RATE, said)


# --- the server in another process ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServerProcess:
    """``voxpipe realtime-server`` in a child process, for a ``with`` block.

    ``url`` is the websocket URL to give ``realtime.openai``. ``cpu_s()`` reads the child's
    CPU time (Linux ``/proc``; None elsewhere), so a benchmark can tell whether the server
    was the bottleneck.
    """

    def __init__(self, *, model_delay_ms: float = 200.0, rules: str = BENCH_RULES, start_timeout_s: float = 60.0,
                 processes: int | None = None) -> None:
        self.model_delay_ms = model_delay_ms
        self.processes = processes  # recognition worker processes (None: the CLI's default, one per core)
        self.rules = rules
        self.start_timeout_s = start_timeout_s
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="voxpipe-bench-server-")

    def __enter__(self) -> LocalServerProcess:
        rules = Path(self._dir.name) / "rules.yaml"
        rules.write_text(self.rules)
        self._stderr = open(Path(self._dir.name) / "stderr.txt", "w+b")
        cmd = [sys.executable, "-m", "pipeline.cli", "realtime-server", "--port", str(_free_port()),
               "--rules", str(rules), "--model-delay-ms", str(int(self.model_delay_ms))]
        if self.processes is not None:
            cmd += ["--processes", str(self.processes)]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        try:
            self.url = self._wait_for_url()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_for_url(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self.start_timeout_s
        seen = b""
        while time.monotonic() < deadline:
            if not sel.select(timeout=0.2):
                if self.proc.poll() is not None:
                    break
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            seen += line
            m = re.search(rb"(ws://\S+/realtime)", line)
            if m:
                return m.group(1).decode()
        self._stderr.seek(0)
        err = self._stderr.read().decode(errors="replace")[-2000:]
        raise RuntimeError(f"the local realtime server did not start within {self.start_timeout_s:.0f} s "
                           f"(`python -m pipeline.cli realtime-server` needs the `local` extra: espeakng-loader, "
                           f"pocketsphinx)\nstdout: {seen.decode(errors='replace')}\nstderr: {err}")

    def cpu_s(self) -> float | None:
        """User + system CPU seconds the server process and its recognition workers have used so far."""
        if self.proc is None:
            return None
        try:
            pids = [self.proc.pid] + [int(c) for t in Path(f"/proc/{self.proc.pid}/task").iterdir()
                                      for c in (t / "children").read_text().split()]
            ticks = 0
            for pid in pids:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])
        except OSError:
            return None
        return ticks / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # the CLI closes its connections and exits
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        self._stderr.close()
        self._dir.cleanup()


def machine_busy_s() -> float | None:
    """CPU seconds all processes and the kernel have used so far, over every core (Linux ``/proc/stat``).

    Compared with this process's and the server's own CPU time over a run, it tells how
    much other work (another test run, say) competed for the machine meanwhile.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    guest = sum(ticks[8:10]) if len(ticks) > 9 else 0  # already counted in user/nice
    return (sum(ticks) - idle - guest) / os.sysconf("SC_CLK_TCK")


# --- what the probes record -------------------------------------------------------------------


@dataclass
class SpeechEvent:
    """A VAD start or stop as seen between ``vad`` and ``model`` (seconds, media clock).

    ``pts_s``: where the VAD put the boundary; ``frame_end_s``: end of the frame on which it
    decided (media time); ``capture_due_s``: due time of the capture frame that released that
    frame (so ``capture_due_s - frame_end_s`` is the resampler's hold); ``seen_s``: when the
    event passed (wall time on the media clock).
    """

    started: bool
    pts_s: float
    seen_s: float
    frame_end_s: float = math.nan
    capture_due_s: float = math.nan


@dataclass
class Interruption:
    """An InterruptionFrame reaching playback: when, and whether audio was playing."""

    at_s: float
    turn: int
    playing: bool


@dataclass
class Recorder:
    """Everything the probes of one session saw."""

    dues: deque = field(default_factory=deque)  # capture due time per resampled frame, in order
    capture_latency: list[float] = field(default_factory=list)  # capture due -> taken by the resampler
    in_latency: list[float] = field(default_factory=list)  # capture due -> past the VAD
    events: list[SpeechEvent] = field(default_factory=list)
    responses: list[tuple[int, float]] = field(default_factory=list)  # (turn, when ResponseStart left the model)
    ttfb_ms: dict[int, float] = field(default_factory=dict)  # the client's own speech end -> first delta
    sent: dict[int, float] = field(default_factory=dict)  # assistant audio pts -> when it left the model
    out_latency: list[float] = field(default_factory=list)  # left the model -> handed to playback
    first_audio: dict[int, float] = field(default_factory=dict)  # turn -> first audio handed to playback
    interruptions: list[Interruption] = field(default_factory=list)
    underruns_client: int = 0  # playback ran dry mid-answer although the audio left the model a tick ahead
    underruns_server: int = 0  # ... the audio left the model late, or with less than a tick to spare
    underrun_log: list[dict] = field(default_factory=list)  # gap, how far into the answer, whose
    capture_at_vad: bool = False  # the VAD sees capture frames themselves (no resampler before it)
    _pending: list[SpeechEvent] = field(default_factory=list)
    _play_end: float = 0.0  # when the modelled playout queue runs dry
    _playing_item: str | None = None
    _item_s: float = 0.0  # audio of the playing item queued so far (s)

    def on_input_audio(self, frame: AudioFrame, now: float) -> None:
        end = (frame.pts + frame.samples.shape[0]) / frame.sample_rate
        if self.capture_at_vad:
            due = end
        else:
            due = self.dues.popleft() if self.dues else math.nan
        self.in_latency.append(now - due)
        if self._pending:
            for ev in self._pending:
                ev.frame_end_s, ev.capture_due_s = end, due
            self._pending.clear()

    def on_speech_event(self, frame: UserStartedSpeakingFrame | UserStoppedSpeakingFrame, now: float) -> None:
        ev = SpeechEvent(type(frame) is UserStartedSpeakingFrame, frame.pts / frame.sample_rate, now)
        self.events.append(ev)
        self._pending.append(ev)

    def on_playback_audio(self, frame: AudioFrame, now: float) -> None:
        sent = self.sent.pop(frame.pts, None)
        if sent is not None:
            self.out_latency.append(now - sent)
        if frame.turn not in self.first_audio:
            self.first_audio[frame.turn] = now
        # a sound card's queue: it plays continuously from when audio arrives to an empty queue
        start = self._play_end
        same_item = frame.item_id is not None and frame.item_id == self._playing_item
        if now > start:
            if same_item:
                ours = sent is not None and start - sent >= PLAYBACK_TICK_S
                if ours:
                    self.underruns_client += 1
                else:
                    self.underruns_server += 1
                self.underrun_log.append({"gap_ms": round(1000 * (now - start), 2), "into_answer_ms": round(1000 * self._item_s),
                                          "margin_ms": None if sent is None else round(1000 * (start - sent), 2),
                                          "cause": "client" if ours else "server"})
            start = now
        seconds = frame.samples.shape[0] / frame.sample_rate
        self._play_end = start + seconds
        self._item_s = self._item_s + seconds if same_item else seconds
        self._playing_item = frame.item_id

    def on_interruption(self, frame: InterruptionFrame, now: float) -> None:
        self.interruptions.append(Interruption(now, frame.turn, playing=self._play_end > now))
        self._play_end = now
        self._playing_item = None


# --- the probes ---------------------------------------------------------------------------------


class TapResample(ResampleProcessor):
    """``audio.resample`` that notes, for each frame it pushes, the due time of the capture frame behind it."""

    def __init__(self, params: Any, *, name: str | None = None, recorder: Recorder) -> None:
        super().__init__(params, name=name)
        self.recorder = recorder
        self._due = math.nan

    async def process(self, frame: Frame, direction: Direction) -> None:
        if type(frame) is AudioFrame and direction is _DOWN:
            self._due = (frame.pts + frame.samples.shape[0]) / frame.sample_rate
            self.recorder.capture_latency.append(self.clock.elapsed() - self._due)
        await ResampleProcessor.process(self, frame, direction)  # the measured processor, unchanged

    async def push(self, frame: Frame, direction: Direction = _DOWN) -> None:
        if type(frame) is AudioFrame and direction is _DOWN and not self.recorder.capture_at_vad:
            self.recorder.dues.append(self._due)
        await ResampleProcessor.push(self, frame, direction)


class InputTap(Processor):
    """Between ``vad`` and ``model``: VAD events with the frame that decided them; input frame latency."""

    inline = True

    def __init__(self, recorder: Recorder, *, name: str = "tap_in") -> None:
        super().__init__(name=name)
        self.recorder = recorder

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is _DOWN:
            kind = type(frame)
            if kind is AudioFrame:
                self.recorder.on_input_audio(frame, self.clock.elapsed())
            elif kind is UserStartedSpeakingFrame or kind is UserStoppedSpeakingFrame:
                self.recorder.on_speech_event(frame, self.clock.elapsed())
        await self.push(frame, direction)


class OutputTap(Processor):
    """Between ``model`` and ``console``: when each assistant frame left the model; turn metrics."""

    inline = True

    def __init__(self, recorder: Recorder, *, name: str = "tap_out") -> None:
        super().__init__(name=name)
        self.recorder = recorder

    async def process(self, frame: Frame, direction: Direction) -> None:
        if direction is _DOWN:
            kind = type(frame)
            rec = self.recorder
            if kind is AudioFrame:
                rec.sent[frame.pts] = self.clock.elapsed()
            elif kind is ResponseStartFrame:
                rec.responses.append((frame.turn, self.clock.elapsed()))
            elif kind is MetricsFrame and frame.name == "realtime.turn" and "ttfb_ms" in frame.values:
                rec.ttfb_ms[int(frame.values.get("turn", frame.turn))] = float(frame.values["ttfb_ms"])
        await self.push(frame, direction)


class TimedPlayback(NullPlayback):
    """``playback.null`` that notes when audio and interruptions are handed to it."""

    def __init__(self, params: Any, *, name: str | None = None, recorder: Recorder) -> None:
        super().__init__(params, name=name)
        self.recorder = recorder

    async def process(self, frame: Frame, direction: Direction) -> None:
        kind = type(frame)
        if kind is AudioFrame:
            self.recorder.on_playback_audio(frame, self.clock.elapsed())
        elif kind is InterruptionFrame:
            self.recorder.on_interruption(frame, self.clock.elapsed())  # the flush follows at once
        await NullPlayback.process(self, frame, direction)  # the measured processor, unchanged


# --- the instrumented demo graph ------------------------------------------------------------------


def load_demo(url: str, wav: Path):
    """``pipelines/demo.yaml`` loaded and checked, pointed at ``url`` and reading ``wav``.

    The template :func:`build_session` copies: loading validates the YAML and resolves every
    type through the registry, which costs about 0.1 s per graph; a copy costs a few ms.
    """
    from pipeline.loader import load

    return load(DEMO, overrides=[f"mic.path={wav}", f"model.url={url}", "model.api_key=sk-local-bench"])


def build_session(url: str, wav: Path, out_dir: Path, *, recorder: Recorder | None = None, name: str = "demo",
                  vad_first: bool = False, template=None):
    """``pipelines/demo.yaml`` against ``url``, reading ``wav``, writing into ``out_dir``, with probes.

    Returns ``(graph, recorder)``. The console prints nowhere (its stream is replaced);
    everything else is the demo graph as shipped, params included. ``template`` is a
    :func:`load_demo` graph to copy (loaded here when not given). ``vad_first`` is an
    experiment: the VAD runs on the 16 kHz capture, before the resampler
    (``mic -> vad -> resample -> model``, ``resample -> record``), so that the resampler's
    hold is no longer in the path of the VAD's decisions.
    """
    rec = recorder or Recorder()
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = _copy(template if template is not None else load_demo(url, wav),
                  {"record": {"path": str(out_dir / "conversation.wav")},
                   "assistant_wav": {"path": str(out_dir / "assistant.wav")}})
    graph.name = name
    nodes = graph.nodes
    for needed in ("mic", "resample", "vad", "model", "console", "speaker", "record", "assistant_wav"):
        if needed not in nodes:
            raise RuntimeError(f"{DEMO}: the benchmark instruments node {needed!r}, which is gone; "
                               "update benchmarks/_demo_session.py to the new demo graph")
    _replace(graph, "resample", TapResample(nodes["resample"].processor.params, recorder=rec), "audio.resample")
    _replace(graph, "speaker", TimedPlayback(nodes["speaker"].processor.params, recorder=rec), "playback.null")
    shipped_vad_first = any(l.src == "vad" and l.dst == "resample" for l in graph.links)
    if vad_first and not shipped_vad_first:
        _relink(graph, drop=[("mic", "resample"), ("resample", "vad"), ("vad", "model"), ("vad", "record")],
                add=[("mic", "vad"), ("vad", "resample"), ("resample", "model"), ("resample", "record")])
    vad_first = vad_first or shipped_vad_first  # the demo as shipped runs the VAD first
    if vad_first:
        rec.capture_at_vad = True
    _insert(graph, "vad", "resample" if vad_first else "model", "tap_in", InputTap(rec))
    _insert(graph, "model", "console", "tap_out", OutputTap(rec))
    nodes["console"].processor.stream = _NullStream()
    graph.check()
    return graph, rec


def _copy(template, updates: dict[str, dict[str, Any]]):
    """A copy of the checked template (``Graph.copy``), with ``updates`` to some nodes' params."""
    graph = template.copy()
    for node_id, update in updates.items():
        old = graph.nodes[node_id].processor
        graph.replace(node_id, type(old)(old.params.model_copy(update=update, deep=True)), type=graph.nodes[node_id].type)
    return graph


class _NullStream(io.TextIOBase):
    def write(self, s: str) -> int:
        return len(s)


def _replace(graph, node_id: str, processor: Processor, type_name: str) -> None:
    graph.replace(node_id, processor, type=type_name)


def _relink(graph, *, drop: list[tuple[str, str]], add: list[tuple[str, str]]) -> None:
    for src, dst in drop:
        links = [l for l in graph.links if l.src == src and l.dst == dst]
        if not links:
            raise RuntimeError(f"{DEMO}: no link {src} -> {dst} to move; update benchmarks/_demo_session.py")
        graph.links.remove(links[0])
    for src, dst in add:
        graph.link(src, dst)


def _insert(graph, src: str, dst: str, node_id: str, processor: Processor) -> None:
    if not any(l.src == src and l.dst == dst for l in graph.links):
        raise RuntimeError(f"{DEMO}: no link {src} -> {dst} to put the benchmark probe {node_id!r} on")
    graph.insert(node_id, processor, between=(src, dst), type="benchmark probe")


# --- figures ----------------------------------------------------------------------------------------


def quantiles(values, unit: float = 1000.0) -> dict[str, float]:
    """n, median, p90, p99, max (and mean) of ``values`` in seconds, scaled by ``unit`` (ms)."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float) * unit
    if x.size == 0:
        return {"n": 0, "median": math.nan, "p90": math.nan, "p99": math.nan, "max": math.nan, "mean": math.nan}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"n": int(x.size), "median": float(p50), "p90": float(p90), "p99": float(p99), "max": float(x.max()),
            "mean": float(x.mean())}
