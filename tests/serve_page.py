"""A browser page's side of ``voxpipe serve``'s protocol, for the serving tests (no browser).

:func:`converse` connects to ``/ws``, streams each utterance (eSpeak NG speech from
:mod:`speech_fixtures`) as the page's microphone would, in 20 ms PCM16 frames paced at real
time, keeps streaming silence while the model answers, reports what it "played" (every
chunk it received, as soon as it arrives) like the page's worklet, and counts a turn once
a response that carried audio has ended. Every wait has a deadline.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

__all__ = ["Conversation", "converse", "speech_pcm"]

_SYNTH = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[3])
from speech_fixtures import utterance
pcm = np.clip(utterance(sys.argv[1], int(sys.argv[2])) * 32767, -32768, 32767).astype("<i2")
sys.stdout.buffer.write(pcm.tobytes())
"""


@functools.lru_cache(maxsize=None)
def speech_pcm(text: str, rate: int) -> np.ndarray:
    """``text`` spoken, as int16 PCM at ``rate``: the same samples whatever the process synthesised before.

    eSpeak NG's output depends on what it synthesised earlier in the process (same length,
    other samples: "what is the weather in london" had four different md5s after 0, 1, 10 and
    40 other sentences). The whole suite runs in one process, so a test added anywhere before
    the serving tests changed their audio, and once the session model heard every page's
    "... in london" as "what is a weather unit of" (20 of 20 sessions, in CI only). So each
    text is spoken by a fresh Python process, as on its first synthesis (about 0.5 s, once
    per text and rate).
    """
    out = subprocess.run([sys.executable, "-c", _SYNTH, text, str(rate), str(Path(__file__).resolve().parent)],
                         capture_output=True, check=True, timeout=60)
    pcm = np.frombuffer(out.stdout, "<i2").astype(np.int16)
    pcm.flags.writeable = False
    return pcm


@dataclass
class Conversation:
    """What one page saw: its turns (response ids with audio), tool calls, how it closed."""

    session: str | None = None
    turns: list[str] = field(default_factory=list)
    tool_calls: list[str] = field(default_factory=list)
    transcripts: list[str] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""
    closed_at: float | None = None  # time.monotonic() when the server closed it
    completed: bool = False  # every utterance answered, closed by the page
    events: list[dict] = field(default_factory=list)


async def converse(url: str, texts: list[str], *, turn_timeout_s: float = 30.0, keep_events: bool = False,
                   on_ready=None) -> Conversation:
    """Speak each of ``texts`` in turn and wait for its answer; close with 1000 when all were answered."""
    conv = Conversation()
    async with connect(url, open_timeout=20, max_size=2**22) as ws:
        try:
            ready = json.loads(await _recv(ws, 20))
            if ready.get("type") != "ready":
                raise AssertionError(f"first event is not ready: {ready}")
            conv.session = ready["session"]
            if on_ready is not None:
                on_ready(conv)
            rate = ready["input_rate"]
            frame = rate // 50
            state = {"audio_ms": {}, "ended": [], "pending": None, "reader_done": anyio.Event()}
            async with anyio.create_task_group() as tg:
                tg.start_soon(_reader, ws, conv, state, keep_events)
                t0 = time.monotonic()
                sent = 0

                async def send_frames(pcm: np.ndarray) -> None:
                    nonlocal sent
                    for i in range(0, len(pcm) - frame + 1, frame):
                        await anyio.sleep(max(0.0, t0 + sent * 0.02 - time.monotonic()))
                        await ws.send(pcm[i:i + frame].astype("<i2").tobytes())
                        sent += 1

                silence = np.zeros(frame * 10, np.int16)  # 200 ms
                try:
                    # the first words wait for the model's connection (a second under load), as a person waits
                    # for the greeting: what is said before it reaches the model in one burst
                    await send_frames(np.zeros(frame * 50 * 2, np.int16))
                    for text in texts:
                        await send_frames(np.concatenate([silence, speech_pcm(text, rate), silence]))
                        want = len(conv.turns) + 1
                        deadline = time.monotonic() + turn_timeout_s
                        while len(conv.turns) < want and time.monotonic() < deadline:
                            await send_frames(silence[: frame * 5])  # the microphone keeps running
                        if len(conv.turns) < want:
                            raise TimeoutError(f"no answer to {text!r} within {turn_timeout_s} s (session {conv.session}; "
                                               f"heard {conv.transcripts}, {len(conv.turns)} turns, closed {ws.close_code})")
                        # a reply that called a tool is followed by a second response: let it end too
                        quiet_until = time.monotonic() + 0.6
                        while time.monotonic() < quiet_until:
                            await send_frames(silence[: frame * 5])
                            if state["pending"] is not None:
                                quiet_until = time.monotonic() + 0.6
                    conv.completed = True
                    await ws.close(1000, "page closed")
                except ConnectionClosed:
                    # the server closed it and the sender saw it first: let the reader take the close
                    # frame, which records when it came (cancelling it now left closed_at None)
                    with anyio.move_on_after(2.0):
                        await state["reader_done"].wait()
                tg.cancel_scope.cancel()
        except ConnectionClosed:
            pass
    conv.close_code = ws.close_code if conv.close_code is None else conv.close_code
    conv.close_reason = ws.close_reason or conv.close_reason
    return conv


async def _recv(ws, timeout: float):
    with anyio.fail_after(timeout):
        return await ws.recv()


async def _reader(ws, conv: Conversation, state: dict, keep_events: bool) -> None:
    current = None  # the item whose audio chunks arrive now
    rate = 24000
    audio_ms = state["audio_ms"]
    try:
        async for message in ws:
            if isinstance(message, bytes):
                if current is not None:
                    audio_ms[current] = audio_ms.get(current, 0) + len(message) // 2 * 1000 // rate
                    await ws.send(json.dumps({"type": "played", "item_id": current, "ms": audio_ms[current],
                                              "done": False, "underruns": 0}))
                continue
            event = json.loads(message)
            if keep_events:
                conv.events.append(event)
            kind = event.get("type")
            if kind == "audio":
                current, rate = event["item_id"], event.get("rate") or rate
                state["pending"] = event.get("turn")
            elif kind == "response.end":
                if current is not None and audio_ms.get(current):
                    await ws.send(json.dumps({"type": "played", "item_id": current, "ms": audio_ms[current],
                                              "done": True, "underruns": 0}))
                    conv.turns.append(event.get("response_id") or current)
                current = None
                state["pending"] = None
            elif kind == "tool.call":
                conv.tool_calls.append(event["name"])
            elif kind == "transcript.done" and event.get("role") == "user":
                conv.transcripts.append(event["text"])
    except ConnectionClosed as exc:
        if exc.rcvd is not None:
            conv.close_code, conv.close_reason = exc.rcvd.code, exc.rcvd.reason
            conv.closed_at = time.monotonic()
    finally:
        state["reader_done"].set()
