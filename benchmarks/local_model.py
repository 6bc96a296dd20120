"""What one turn of the local model costs: recognition + response + synthesis, CPU seconds.

Question. How much CPU does the local realtime server spend on one user turn, split into
its three stages, and what does the out-of-grammar fallback add? It bounds how many
sessions one server serves (a 2-core VM decodes two utterances at once).

Setup. In one process, the server's own parts, no socket: :class:`SpeechResources` (the
demo rules), one pooled :class:`Recognizer` with the fallback as the server builds it, the
session grammar of ``tests/local_model_cases.py``'s seven tools for tool turns and of the
demo rules alone for demo turns. Each turn: eSpeak NG speech of the request (made before
timing), then, timed separately,

* ``recognize``: the server's recogniser (session model, then the general model);
* ``floor``: the same utterance decoded by the session model alone (no fallback): the
  difference is the fallback's price;
* ``respond``: the rules, then tool matching and filling (and the sentence from a canned
  tool output for tool turns);
* ``synthesize``: eSpeak NG speaking the reply (whole, 22.05 kHz).

The recogniser case and its floor are interleaved per utterance. Also timed once: building
the session grammar (corpus, bigram model, adding it to a decoder) and switching to it.

Run: ``python benchmarks/local_model.py [--quick] [--json FILE]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from local_model_cases import INSTRUCTIONS, TOOLS, requests  # noqa: E402

__all__ = ["main", "run"]

_OUTPUTS = {"book_table": {"confirmed": True, "reference": "LX42"}, "get_stock_price": {"price_usd": 412.5},
            "set_timer": {"ends_at": "10:42"}, "play_music": {"playing": "Kind of Blue"},
            "set_thermostat": {"target_c": 21}, "call_contact": {"status": "ringing"},
            "convert_currency": {"result": 46.2}}


def _spoken(text: str) -> np.ndarray:
    from pipeline.dsp.resample import resample
    from processors.speech.espeak import synthesize

    x, rate = synthesize(text)
    quiet = np.random.default_rng(len(text)).normal(0, 30, 4800).astype(np.int16)
    return np.concatenate([quiet, resample(x, rate, 16000), quiet]).astype(np.int16)


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {"n": len(xs), "median_ms": 1000 * statistics.median(xs),
            "p90_ms": 1000 * xs[min(len(xs) - 1, int(0.9 * len(xs)))], "max_ms": 1000 * xs[-1]}


def run(quick: bool = False) -> dict:
    from processors.brain.rules import Call
    from processors.realtime.server.engine import SpeechResources
    from processors.speech.espeak import synthesize
    from processors.speech.sphinx import Recognizer

    resources = SpeechResources()
    t = time.perf_counter()
    recognizer = Recognizer(resources.phrases, fallback=True)
    load_s = time.perf_counter() - t
    floor = Recognizer(resources.phrases)
    t = time.perf_counter()
    tools_grammar = resources.grammar_for(TOOLS, INSTRUCTIONS)
    corpus_s = time.perf_counter() - t
    t = time.perf_counter()
    recognizer.use_grammar(tools_grammar)
    add_s = time.perf_counter() - t
    floor.use_grammar(tools_grammar)
    demo_grammar = resources.grammar_for([], "")
    t = time.perf_counter()
    recognizer.use_grammar(demo_grammar)
    recognizer.use_grammar(tools_grammar)
    switch_s = (time.perf_counter() - t) / 2

    demo = ["hello", "what is the weather in paris", "tell me a story", "what time is it", "goodbye"]
    tool_turns = requests(1 if quick else 3)
    cases = [("demo", text, demo_grammar) for text in (demo if not quick else demo[:3])]
    cases += [("tools", r.text, tools_grammar) for r in tool_turns]
    audio = {text: _spoken(text) for _, text, _ in cases}
    timings: dict[str, dict[str, list[float]]] = {}
    seconds = 0.0
    for kind, text, grammar in cases:
        row = timings.setdefault(kind, {"recognize": [], "floor": [], "respond": [], "synthesize": []})
        seconds += audio[text].shape[0] / 16000
        recognizer.use_grammar(grammar)
        floor.use_grammar(grammar)
        t = time.perf_counter()
        heard = recognizer.recognize(audio[text], 16000)
        row["recognize"].append(time.perf_counter() - t)
        t = time.perf_counter()
        floor.recognize(audio[text], 16000)
        row["floor"].append(time.perf_counter() - t)
        t = time.perf_counter()
        reply = resources.brain.respond(heard, TOOLS if kind == "tools" else [
            {"type": "function", "name": "get_weather", "parameters": {}},
            {"type": "function", "name": "get_time", "parameters": {}}], instructions=INSTRUCTIONS)
        if isinstance(reply, Call):
            reply = resources.brain.after_tool(reply, json.dumps(_OUTPUTS.get(reply.name, {"temp_c": 21,
                                                                                   "conditions": "sunny",
                                                                                   "time": "ten past two"})))
        row["respond"].append(time.perf_counter() - t)
        t = time.perf_counter()
        synthesize(reply.text)
        row["synthesize"].append(time.perf_counter() - t)
    return {
        "setup_ms": {"recognizer_with_general_model": 1000 * load_s, "session_corpus": 1000 * corpus_s,
                     "session_model_add": 1000 * add_s, "grammar_switch": 1000 * switch_s},
        "turns": {kind: {stage: _stats(xs) for stage, xs in row.items()} for kind, row in timings.items()},
        "mean_utterance_s": seconds / len(cases),
        "versions": _versions(),
    }


def _versions() -> dict:
    from importlib.metadata import version

    out = {"python": platform.python_version(), "machine": platform.machine(), "cpus": str(__import__("os").cpu_count())}
    for name in ("pocketsphinx", "espeakng-loader", "numpy"):
        try:
            out[name] = version(name)
        except Exception:
            out[name] = "?"
    return out


def table(result: dict) -> str:
    lines = ["setup (ms, once per server or per new session grammar): " + ", ".join(
        f"{k} {v:.1f}" for k, v in result["setup_ms"].items())]
    head = f"{'turns':<7}{'stage':<12}{'n':>4}{'median ms':>11}{'p90 ms':>9}{'max ms':>9}"
    lines += [head, "-" * len(head)]
    for kind, stages in result["turns"].items():
        total = 0.0
        for stage, s in stages.items():
            lines.append(f"{kind:<7}{stage:<12}{s['n']:>4}{s['median_ms']:>11.1f}{s['p90_ms']:>9.1f}{s['max_ms']:>9.1f}")
            if stage != "floor":
                total += s["median_ms"]
        lines.append(f"{kind:<7}{'turn total':<12}{'':>4}{total:>11.1f}   (recognize + respond + synthesize)")
        ratio = stages["recognize"]["median_ms"] / max(stages["floor"]["median_ms"], 1e-9)
        lines.append(f"{kind:<7}{'fallback x':<12}{'':>4}{ratio:>11.1f}   (recognize / floor)")
    lines.append(f"mean utterance {result['mean_utterance_s']:.2f} s of audio")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer turns")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the figures and versions as JSON")
    args = ap.parse_args(argv)
    result = run(quick=args.quick)
    print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
