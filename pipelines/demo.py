"""``voxpipe demo``: run the shipped offline voice agent and explain what happened.

It runs ``pipelines/demo.yaml`` (a synthesised caller against the local realtime server),
lets the pipeline's console print the conversation as the user heard it (an interrupted
reply up to the cut), and ends with a latency table labelled by what the user said and
the paths of the WAV files written. It runs on ``voxpipe bench``'s machinery
(:func:`pipelines.pipeline_bench.measure_graph`): the table is the bench's per-turn table.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from . import shipped

__all__ = ["DEMO", "run_demo", "turn_table"]

DEMO = shipped("demo.yaml")
LIVE_DEMO = shipped("live_agent.yaml")  # `voxpipe demo --model live`


def turn_table(records: list[dict]) -> str:
    """The per-turn table: ``voxpipe bench``'s (:func:`pipelines.pipeline_bench.format_turns`)."""
    from .pipeline_bench import format_turns

    return format_turns(records)


def run_demo(*, out_dir: Path = Path("out"), pipeline: Path = DEMO) -> int:
    """Run the demo pipeline once at real time (the barge-in needs it) on the bench's machinery; return the exit code.

    It is ``voxpipe bench demo.yaml --runs 1`` with the console printing: the same probes,
    the same per-turn split (speech end -> first audio at the sink, the VAD's wait, the
    model's time, voxpipe's share), the same table.
    """
    from pipeline.loader import load

    from .pipeline_bench import measure_graph

    out_dir = Path(out_dir)
    conversation, assistant = out_dir / "conversation.wav", out_dir / "assistant.wav"
    graph = load(pipeline, overrides=[f"record.path={conversation}", f"assistant_wav.path={assistant}"])
    print(f"voxpipe demo: {pipeline.name} - a synthesised caller talks to the local realtime server")
    print("  (offline: pocketsphinx hears, a scripted model answers and calls tools, eSpeak NG speaks)\n")
    t0 = time.monotonic()
    report = measure_graph(graph, file=str(pipeline), runs=1, show_progress=False, handle_signals=True)
    elapsed = time.monotonic() - t0
    print("\nlatency per turn (wall clock, local server, no artificial model delay):")
    print(turn_table(report["turn_records"]))
    barge = report["turns"].get("barge_in_to_silence_ms", {})
    if barge.get("n"):
        print(f"barge-in: the user's speech onset -> silence at the sink {barge['median']:.0f} ms "
              f"({report['turns']['barge_in_vad_ms'].get('median', math.nan):.0f} ms of it the VAD's detection)")
    print(f"\nwrote {conversation} (user left, assistant right) and {assistant}")
    print(f"finished in {elapsed:.1f} s: {report['ended']}")
    for err in report["errors"]:
        print(f"error in {err}", file=sys.stderr)
    return 0 if report["ended"] != "error" else 1
