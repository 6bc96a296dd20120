"""aiortc peers asking the weather over WebRTC, for the WebRTC tests; also runnable as a process.

:func:`weather_turn` is one peer's turn: say the question, then wait for the user transcript,
the tool's result, the spoken answer and its end, each with a deadline; a turn that stops says
which events the page had received by then.

Run as a script (``python tests/webrtc_peers.py URL N``) it connects ``N`` peers to the offer
``URL`` at once, each takes one turn, and it prints one JSON line: the turns' results and the
peers' own event-loop lag. The concurrent-sessions test runs the peers this way, in a process
of their own, as real callers' browsers are: twenty aiortc endpoints (ten peers and the
server's ten) with their Opus, SRTP and SCTP in one Python event loop with the local model
left it 300-500 ms late (p99) on this 2-core VM, and a session's data channel then stalled
for 30 s or more while its audio kept flowing (measured after such runs: associations with
``cwnd`` back at one packet, as after a retransmission timeout, and RTOs of 2-9 s). The
server under test does not carry its callers' half in production.
"""

from __future__ import annotations

import json
import sys
import time

import anyio
import numpy as np

from speech_fixtures import utterance

__all__ = ["loop_lag", "speech_48k", "weather_turn"]

QUESTION = "what is the weather in paris"


def speech_48k(text: str) -> np.ndarray:
    """``text`` spoken at 48 kHz float32, with 0.1 s of silence before and 1 s after."""
    return np.concatenate([np.zeros(4800, np.float32), utterance(text, 48000), np.zeros(48000, np.float32)])


async def weather_turn(peer, question: np.ndarray) -> dict:
    """Say the weather question; wait for the words, the tool's result and the spoken answer."""
    try:
        await peer.wait_event("ready", timeout=20)
        peer.say(question)
        user = await peer.wait_event(lambda e: e["type"] == "transcript.done" and e["role"] == "user", timeout=60)
        result = await peer.wait_event("tool.result", timeout=30)
        audio = await peer.wait_event("audio", timeout=30)
        done = await peer.wait_event(lambda e: e["type"] == "audio.done" and e["item_id"] == audio["item_id"],
                                     timeout=30)
        with anyio.fail_after(30):  # the answer plays at real time
            while np.count_nonzero(np.abs(peer.audio()) > 300) < 48000 * 0.5:
                await anyio.sleep(0.1)
    except TimeoutError:
        seen = [{k: v for k, v in e.items() if k in ("type", "role", "text", "name", "message")} for e in peer.events]
        raise AssertionError(f"the turn stopped; the page's events so far: {seen}") from None
    return {"said": user["text"], "result": json.loads(result["output"]), "answer_ms": done["ms"]}


async def loop_lag(samples: list[float], stop: anyio.Event) -> None:
    """How late a 10 ms sleep wakes up (the event loop's lag), until ``stop``."""
    while not stop.is_set():
        t = time.perf_counter()
        await anyio.sleep(0.01)
        samples.append(time.perf_counter() - t - 0.01)


async def _main(url: str, n: int) -> None:
    from processors.webrtc.client import PeerClient

    question = speech_48k(QUESTION)
    results: dict[int, dict] = {}
    lag: list[float] = []
    stop = anyio.Event()

    async def one(i: int) -> None:
        async with PeerClient.connect(url) as peer:
            results[i] = await weather_turn(peer, question)

    with anyio.fail_after(140):
        async with anyio.create_task_group() as tg:
            tg.start_soon(loop_lag, lag, stop)
            async with anyio.create_task_group() as peers:
                for i in range(n):
                    peers.start_soon(one, i)
            stop.set()
    print(json.dumps({"results": [results[i] for i in sorted(results)], "lag_s": lag}))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python tests/webrtc_peers.py OFFER_URL PEERS")
    anyio.run(_main, sys.argv[1], int(sys.argv[2]))
