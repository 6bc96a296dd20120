"""``voxpipe demo``: run the shipped offline voice agent and explain what happened.

It runs ``pipelines/demo.yaml`` (a synthesised caller against the local realtime server),
lets the pipeline's console print the conversation as it happens, and ends with a
latency table per turn and the paths of the WAV files written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from . import shipped

__all__ = ["DEMO", "run_demo", "turn_table"]

DEMO = shipped("demo.yaml")


def turn_table(metrics: list[tuple[str, dict]]) -> str:
    """The per-turn latency table from the model's ``realtime.turn`` metrics.

    A response that follows a tool result has no "speech end": its latency is counted
    from the moment the response was created.
    """
    rows = [v for name, v in metrics if name == "realtime.turn"]
    head = (f"{'turn':>4}  {'status':<10}{'speech end -> first audio':>27}{'created -> first audio':>24}"
            f"{'speech end -> done':>20}{'tokens out':>12}")
    lines = [head, "-" * len(head)]

    def ms(v: dict, key: str) -> str:
        return f"{v[key]:.0f} ms" if key in v else "-"

    for v in rows:
        lines.append(f"{v.get('turn', '?'):>4}  {v.get('status', '?'):<10}{ms(v, 'ttfb_ms'):>27}"
                     f"{ms(v, 'first_audio_ms'):>24}{ms(v, 'response_ms'):>20}{v.get('output_tokens', '-'):>12}")
    if not rows:
        lines.append("  (no turn completed)")
    lines.append("a turn without audio is a tool call; the turn after it speaks the tool's result")
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
    print(turn_table(console.metrics))
    print(f"\nwrote {conversation} (user left, assistant right) and {assistant}")
    print(f"finished in {elapsed:.1f} s: {result.ended}")
    for err in result.errors:
        print(f"error in {err.processor}: {err.message}", file=sys.stderr)
    return 0 if result.ok else 1
