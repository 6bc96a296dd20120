"""What one turn of the local model costs: recognition + response + synthesis, CPU seconds.

Question. How much CPU does the local realtime server spend on one user turn, split into
its three stages, and what does hearing out-of-grammar speech with the general English
model add, gated (the server's default) and on every turn? It bounds how many sessions one
server serves (a 2-core VM decodes two utterances at once).

Setup. In one process, the server's own parts, no socket: :class:`SpeechResources` (the
demo rules), three :class:`Recognizer` s, interleaved per utterance: ``fallback="gated"``
as the server builds it, ``"always"`` (every utterance decoded twice) and ``"off"`` (the
grammar alone, the floor). The session grammar of ``tests/local_model_cases.py``'s seven
tools for tool turns and out-of-grammar turns (its ``HELD_OUT`` sentences), of the demo
rules alone for demo turns. Each turn: eSpeak NG speech of the request (made before
timing), then, timed separately,

* ``gated`` / ``always`` / ``off``: the three recognisers on the same audio;
* ``respond``: the rules, then tool matching and filling (and the sentence from a canned
  tool output for tool turns), on the gated recogniser's words;
* ``synthesize``: eSpeak NG speaking the reply (whole, 22.05 kHz).

Also counted: how many turns of each kind the gate sent to the general model, and how many it
also decoded with the phone loop (session model, score inside ``Recognizer.GATE_BAND_CORPUS``);
the phone loop's pass is timed alone on every tool and out-of-grammar turn (``phone_loop``). Timed once:
loading a recogniser (what a server start pays), loading the general model (what the first
unsure utterance pays), loading the phone loop (what the first utterance in the band pays),
building the session grammar (corpus, bigram model, adding it to a decoder) and switching to it.

``--gate`` measures the gate instead (minutes): every utterance of both halves of
``tests/local_model_cases.py`` (demo phrases, tool requests, ``OUT_OF_GRAMMAR`` sentences;
``GATE_VOICES``), with the demo grammar and the seven-tool session model, through an
``"always"`` recogniser, which records the grammar pass's score and the general model's words
for every one (and, inside the session model's score band, its ratio to the phone loop). The
threshold of each grammar kind (the score for the demo grammar, the phone-loop ratio for the
session model) is chosen on the tuning half (fewest false fallbacks plus missed sentences, as
shares) and reported on the other half, beside the shipped thresholds, with the word error
rates and the tool accuracy that result.

Run: ``python benchmarks/local_model.py [--quick] [--gate] [--json FILE]``.
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

from local_model_cases import (GATE_VOICES, HELD_OUT, INSTRUCTIONS, OUT_OF_GRAMMAR, TOOLS,  # noqa: E402
                               TUNING_SEED, requests)

__all__ = ["main", "run"]

_OUTPUTS = {"book_table": {"confirmed": True, "reference": "LX42"}, "get_stock_price": {"price_usd": 412.5},
            "set_timer": {"ends_at": "10:42"}, "play_music": {"playing": "Kind of Blue"},
            "set_thermostat": {"target_c": 21}, "call_contact": {"status": "ringing"},
            "convert_currency": {"result": 46.2}}


def _spoken(text: str, voice: str = "en-us+klatt", rate_wpm: int = 160) -> np.ndarray:
    from pipeline.dsp.resample import resample
    from processors.speech.espeak import synthesize

    x, rate = synthesize(text, voice=voice, rate_wpm=rate_wpm)
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
    gated = Recognizer(resources.phrases, fallback="gated")
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    gated.load_general()
    general_s = time.perf_counter() - t
    t = time.perf_counter()
    gated._loop_decoder()  # the phone loop (loaded at the first score inside the session model's band)
    loop_s = time.perf_counter() - t
    always = Recognizer(resources.phrases, fallback="always")
    off = Recognizer(resources.phrases)
    recognizers = {"gated": gated, "always": always, "off": off}
    t = time.perf_counter()
    tools_grammar = resources.grammar_for(TOOLS, INSTRUCTIONS)
    corpus_s = time.perf_counter() - t
    t = time.perf_counter()
    gated.use_grammar(tools_grammar)
    add_s = time.perf_counter() - t
    demo_grammar = resources.grammar_for([], "")
    t = time.perf_counter()
    gated.use_grammar(demo_grammar)
    gated.use_grammar(tools_grammar)
    switch_s = (time.perf_counter() - t) / 2

    demo = ["hello", "what is the weather in paris", "tell me a story", "what time is it", "goodbye"]
    tool_turns = requests(1 if quick else 3)
    cases = [("demo", text, demo_grammar) for text in (demo if not quick else demo[:3])]
    cases += [("tools", r.text, tools_grammar) for r in tool_turns]
    cases += [("oog", text, tools_grammar) for text in (HELD_OUT[:4] if quick else HELD_OUT[:12])]
    audio = {text: _spoken(text) for _, text, _ in cases}
    timings: dict[str, dict[str, list[float]]] = {}
    general: dict[str, int] = {}
    loop: dict[str, int] = {}
    seconds = 0.0
    for kind, text, grammar in cases:
        row = timings.setdefault(kind, {"gated": [], "always": [], "off": [], "respond": [], "synthesize": []})
        seconds += audio[text].shape[0] / 16000
        heard = ""
        for name, recognizer in recognizers.items():
            recognizer.use_grammar(grammar)
            passes, loops = recognizer.general_passes, recognizer.loop_passes
            t = time.perf_counter()
            words = recognizer.recognize(audio[text], 16000)
            row[name].append(time.perf_counter() - t)
            if name == "gated":
                heard = words
                general[kind] = general.get(kind, 0) + (recognizer.general_passes - passes)
                loop[kind] = loop.get(kind, 0) + (recognizer.loop_passes - loops)
        t = time.perf_counter()
        reply = resources.brain.respond(heard, TOOLS if kind != "demo" else [
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
        if kind != "demo":  # the phone loop's pass alone, as the session-model gate runs it in its band
            decoder, cmn = gated._loop_decoder()
            t = time.perf_counter()
            decoder.reinit_feat()
            decoder.set_cmn(cmn)
            decoder.start_utt()
            decoder.process_raw(audio[text].view(np.uint8), False, False)
            decoder.end_utt()
            row.setdefault("phone_loop", []).append(time.perf_counter() - t)
    return {
        "setup_ms": {"recognizer_load": 1000 * load_s, "general_model_load": 1000 * general_s,
                     "phone_loop_load": 1000 * loop_s,
                     "session_corpus": 1000 * corpus_s, "session_model_add": 1000 * add_s,
                     "grammar_switch": 1000 * switch_s},
        "turns": {kind: {stage: _stats(xs) for stage, xs in row.items()} for kind, row in timings.items()},
        "general_passes": {kind: {"turns": len(timings[kind]["gated"]), "gated": general[kind]} for kind in timings},
        "phone_loop_passes": {kind: loop[kind] for kind in timings},
        "mean_utterance_s": seconds / len(cases),
        "loadavg": _loadavg(),
        "versions": _versions(),
    }


def gate(voices: tuple = GATE_VOICES) -> dict:
    """The gate's error rates: thresholds chosen on the tuning half, measured on the held-out half."""
    from processors.realtime.server.engine import SpeechResources
    from processors.speech.sphinx import Recognizer

    resources = SpeechResources()
    recognizer = Recognizer(resources.phrases, fallback="always")
    grammars = {"demo": resources.grammar_for([], ""), "tools": resources.grammar_for(TOOLS, INSTRUCTIONS)}
    phrases = list(resources.phrases)
    rows: list[dict] = []
    for voice, rate in voices:
        jobs = [("in", i % 2, text, kind, None) for i, text in enumerate(phrases) for kind in grammars]
        jobs += [("in", 0, r.text, "tools", r) for r in requests(9, seed=TUNING_SEED)]
        jobs += [("in", 1, r.text, "tools", r) for r in requests(9)]
        jobs += [("out", i % 2, text, kind, None) for i, text in enumerate(OUT_OF_GRAMMAR) for kind in grammars]
        for side, half, text, kind, request in jobs:
            recognizer.use_grammar(grammars[kind])
            heard = recognizer.recognize(_spoken(text, voice, rate), 16000)
            per = (recognizer.phone_error_rate(recognizer.last_grammar, recognizer.last_general)
                   if recognizer.last_general and recognizer.last_grammar else None)
            rows.append({"side": side, "half": "tune" if half == 0 else "test", "text": text, "kind": kind,
                         "voice": voice, "request": request, "grammar": recognizer.last_grammar or str(heard),
                         "general": recognizer.last_general, "per": per, "score": recognizer.last_score,
                         "unexplained": recognizer.last_unexplained, "loop": recognizer.last_loop,
                         "rescued": not recognizer.last_general and bool(recognizer.last_phrase)
                         and str(heard) == recognizer.last_phrase})
    result: dict = {"voices": [f"{v}@{r}" for v, r in voices], "kinds": {}}
    for kind in grammars:
        mine = [r for r in rows if r["kind"] == kind]
        tune = [r for r in mine if r["half"] == "tune"]
        test = [r for r in mine if r["half"] == "test"]

        def sure(r: dict, threshold: float, kind: str = kind) -> bool:
            if r["rescued"]:
                return True
            if kind == "tools":  # the score's band, inside it the phone loop's ratio against threshold
                return r["score"] is not None and (r["score"] >= Recognizer.GATE_BAND_CORPUS[1] or (
                    r["loop"] is not None and r["loop"] >= threshold))
            ok = r["score"] is not None and r["score"] >= threshold
            return ok and r["unexplained"] <= Recognizer.GATE_UNEXPLAINED

        def cost(threshold: float) -> float:
            ins = [r for r in tune if r["side"] == "in"]
            outs = [r for r in tune if r["side"] == "out"]
            return (sum(not sure(r, threshold) for r in ins) / len(ins)
                    + sum(sure(r, threshold) for r in outs) / len(outs))

        field = "loop" if kind == "tools" else "score"
        candidates = sorted({round(r[field]) for r in tune if r[field] is not None and r[field] > -1e9})
        chosen = min(candidates, key=lambda t: (cost(t), t))
        shipped = Recognizer.GATE_LOOP_CORPUS if kind == "tools" else Recognizer.GATE_SCORE
        result["kinds"][kind] = {
            "chosen_on_tuning_half": chosen, "shipped": shipped,
            "tuning_half": _gate_figures(resources, tune, lambda r: sure(r, shipped), kind),
            "held_out_half": _gate_figures(resources, test, lambda r: sure(r, shipped), kind),
            "held_out_half_chosen": _gate_figures(resources, test, lambda r: sure(r, chosen), kind),
            "held_out_half_always": _gate_figures(resources, test, lambda r: False, kind),
            "held_out_half_off": _gate_figures(resources, test, lambda r: True, kind),
        }
    result["loadavg"] = _loadavg()
    return result


def _gate_figures(resources, rows: list[dict], sure, kind: str) -> dict:
    """False fallbacks, caught sentences, WERs and tool accuracy when ``sure`` is the gate."""
    from processors.brain.rules import Call
    from processors.speech.sphinx import Recognizer, word_error_rate

    out = {"in_grammar": 0, "false_fallbacks": 0, "second_passes_in_grammar": 0, "out_of_grammar": 0, "caught": 0,
           "wer_transcript": 0.0, "wer_general": 0.0, "wer_grammar": 0.0, "requests": 0, "right_tool": 0,
           "right_arguments": 0, "out_of_grammar_calls": 0}
    for r in rows:
        doubted = not sure(r)
        limit = Recognizer.agreement_limit(kind == "tools", r["score"])  # what end_utterance uses
        fell_back = bool(doubted and r["general"] and not (r["grammar"] and r["per"] is not None and r["per"] <= limit))
        text = r["general"] if fell_back else r["grammar"]
        if r["side"] == "in":
            out["in_grammar"] += 1
            out["false_fallbacks"] += fell_back
            out["second_passes_in_grammar"] += doubted
        else:
            out["out_of_grammar"] += 1
            out["caught"] += fell_back
            out["wer_transcript"] += word_error_rate(r["text"], text)
            out["wer_general"] += word_error_rate(r["text"], r["general"])
            out["wer_grammar"] += word_error_rate(r["text"], r["grammar"])
            tools = TOOLS if kind == "tools" else []
            reply = resources.brain.respond(text, tools, instructions=INSTRUCTIONS, out_of_grammar=fell_back)
            out["out_of_grammar_calls"] += isinstance(reply, Call)  # a sentence that made a tool call
        if r["request"] is not None:
            reply = resources.brain.respond(text, TOOLS, instructions=INSTRUCTIONS, out_of_grammar=fell_back)
            name = reply.name if isinstance(reply, Call) else None
            out["requests"] += 1
            out["right_tool"] += name == r["request"].name
            out["right_arguments"] += name == r["request"].name and reply.arguments == r["request"].arguments
    for key in ("wer_transcript", "wer_general", "wer_grammar"):
        out[key] = out[key] / max(1, out["out_of_grammar"])
    return out


def gate_table(result: dict) -> str:
    lines = [f"gate measured with voices {', '.join(result['voices'])}; load average {result['loadavg']}"]
    for kind, k in result["kinds"].items():
        lines.append(f"{kind}: threshold chosen on the tuning half {k['chosen_on_tuning_half']}, shipped {k['shipped']}")
        for label in ("tuning_half", "held_out_half", "held_out_half_chosen", "held_out_half_always",
                      "held_out_half_off"):
            f = k[label]
            line = (f"  {label:<22} false fallbacks {f['false_fallbacks']}/{f['in_grammar']}, second passes on "
                    f"in-grammar {f['second_passes_in_grammar']}/{f['in_grammar']}, caught {f['caught']}/"
                    f"{f['out_of_grammar']}; WER transcript {f['wer_transcript']:.1%}, general model "
                    f"{f['wer_general']:.1%}, grammar alone {f['wer_grammar']:.1%}; out-of-grammar sentences "
                    f"that made a tool call {f['out_of_grammar_calls']}")
            if f["requests"]:
                line += f"; tool {f['right_tool']}/{f['requests']}, arguments {f['right_arguments']}/{f['requests']}"
            lines.append(line)
    return "\n".join(lines)


def _loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return "?"


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
    lines = ["setup (ms, once per server, per recogniser or per new session grammar): " + ", ".join(
        f"{k} {v:.1f}" for k, v in result["setup_ms"].items())]
    head = f"{'turns':<7}{'stage':<12}{'n':>4}{'median ms':>11}{'p90 ms':>9}{'max ms':>9}"
    lines += [head, "-" * len(head)]
    for kind, stages in result["turns"].items():
        for stage, s in stages.items():
            lines.append(f"{kind:<7}{stage:<12}{s['n']:>4}{s['median_ms']:>11.1f}{s['p90_ms']:>9.1f}{s['max_ms']:>9.1f}")
        rest = stages["respond"]["median_ms"] + stages["synthesize"]["median_ms"]
        floor = max(stages["off"]["median_ms"], 1e-9)
        for name in ("gated", "always"):
            lines.append(f"{kind:<7}{'turn ' + name:<12}{'':>4}{stages[name]['median_ms'] + rest:>11.1f}   "
                         f"(recognise {stages[name]['median_ms'] / floor:.1f}x the grammar alone)")
        passes = result["general_passes"][kind]
        lines.append(f"{kind:<7}{'general':<12}{'':>4}{passes['gated']:>6}/{passes['turns']:<4} turns decoded "
                     "again by the gated recogniser")
        lines.append(f"{kind:<7}{'phone loop':<12}{'':>4}{result['phone_loop_passes'][kind]:>6}/{passes['turns']:<4} "
                     "turns the gated recogniser also decoded with the phone loop")
    lines.append(f"mean utterance {result['mean_utterance_s']:.2f} s of audio; load average {result['loadavg']}")
    lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer turns")
    ap.add_argument("--gate", action="store_true", help="measure the out-of-grammar gate instead (minutes)")
    ap.add_argument("--json", default=None, metavar="FILE", help="write the figures and versions as JSON")
    args = ap.parse_args(argv)
    if args.gate:
        result = gate(GATE_VOICES[:1] if args.quick else GATE_VOICES)
        print(gate_table(result))
    else:
        result = run(quick=args.quick)
        print(table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
