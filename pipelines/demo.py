"""``voxpipe demo``: run the shipped offline voice agent and explain what happened.

It runs ``pipelines/demo.yaml`` (a synthesised caller against the local realtime server),
lets the pipeline's console print the conversation as the user heard it (an interrupted
reply up to the cut), and ends with a latency table labelled by what the user said and
the paths of the WAV files written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import shipped

__all__ = ["DEMO", "run_demo", "turn_table"]

DEMO = shipped("demo.yaml")
LIVE_DEMO = shipped("live_agent.yaml")  # `voxpipe demo --model live`


def turn_table(metrics: list[tuple[str, dict]], turns: dict[int, dict] | None = None) -> str:
    """The per-turn latency table from the model's ``realtime.turn`` metrics.

    Each row is labelled with what it answers: the user's words (``turns``, from the
    console: ``utterance``, ``after_tool``, ``tool_calls``, ``interrupted``, ``heard_ms``)
    or the tool result it speaks. A response that follows a tool result has no "speech
    end": its latency is counted from the moment the response was created. A reply the
    user barged into says ``interrupted`` and how much of it was heard, whatever status
    the server gave it (it had finished sending; the user had not finished hearing).
    """
    turns = turns or {}
    rows = [v for name, v in metrics if name == "realtime.turn"]

    def label(v: dict) -> str:
        info = turns.get(v.get("turn"), {})
        if info.get("after_tool"):
            return f"({info['after_tool']} result)"
        said = info.get("utterance")
        return f'"{said}"' if said else "(no user words)"

    def status(v: dict) -> str:
        info = turns.get(v.get("turn"), {})
        if info.get("interrupted"):
            heard = info.get("heard_ms")
            return "interrupted" + (f", heard {heard / 1000:.1f} s" if heard is not None else "")
        if info.get("tool_calls") and "first_audio_ms" not in v:
            return "calls " + ", ".join(info["tool_calls"])
        return str(v.get("status", "?"))

    def ms(v: dict, key: str) -> str:
        return f"{v[key]:.0f} ms" if key in v else "-"

    width = max([len(label(v)) for v in rows] + [len("the user said")])
    swidth = max([len(status(v)) for v in rows] + [len("status")])
    head = (f"{'the user said':<{width}}  {'status':<{swidth}}  {'speech end -> first audio':>25}"
            f"{'created -> first audio':>24}{'tokens out':>12}")
    lines = [head, "-" * len(head)]
    for v in rows:
        lines.append(f"{label(v):<{width}}  {status(v):<{swidth}}  {ms(v, 'ttfb_ms'):>25}"
                     f"{ms(v, 'first_audio_ms'):>24}{v.get('output_tokens', '-'):>12}")
    if not rows:
        lines.append("  (no turn completed)")
    lines.append("a reply that calls a tool has no audio; the reply after it speaks the tool's result")
    return "\n".join(lines)


def run_demo(*, out_dir: Path = Path("out"), pipeline: Path = DEMO) -> int:
    """Run the demo pipeline at real time (the barge-in needs it); return the exit code."""
    import anyio

    from pipeline.loader import load
    from pipeline.runner import run

    out_dir = Path(out_dir)
    conversation, assistant = out_dir / "conversation.wav", out_dir / "assistant.wav"
    graph = load(pipeline, overrides=[f"record.path={conversation}", f"assistant_wav.path={assistant}"])
    print(f"voxpipe demo: {pipeline.name} - a synthesised caller talks to the local realtime server")
    print("  (offline: pocketsphinx hears, a scripted model answers and calls tools, eSpeak NG speaks)\n")
    t0 = time.monotonic()
    result = anyio.run(lambda: run(graph, realtime=True, handle_signals=True))
    elapsed = time.monotonic() - t0
    console = graph.nodes["console"].processor
    print("\nlatency per turn (wall clock, local server, no artificial model delay):")
    print(turn_table(console.metrics, console.turns))
    print(f"\nwrote {conversation} (user left, assistant right) and {assistant}")
    print(f"finished in {elapsed:.1f} s: {result.ended}")
    for err in result.errors:
        print(f"error in {err.processor}: {err.message}", file=sys.stderr)
    return 0 if result.ok else 1
