"""Regenerate ``demo_conversation_16k.wav``: the user's side of the offline demo.

Run from the repository root: ``python tests/make_demo_wav.py``. Each turn is
a sentence the demo rules (``processors/brain/demo_rules.yaml``) know, followed by the
silence in which the assistant answers. The gap after "tell me a story" is deliberately
shorter than the story: the next question barges in while the assistant is speaking.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import soxr

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "pipelines" / "samples"  # where the shipped samples live
sys.path.insert(0, str(ROOT))

from processors.files.wavfile import write_wav  # noqa: E402
from processors.speech.espeak import synthesize  # noqa: E402

RATE = 16000
VOICE = "en-us+klatt"
#: (sentence, seconds of silence after it). The story reply lasts ~25 s: 3.5 s into
#: it the user asks about Tokyo, which interrupts it.
TURNS = [
    ("Hello", 4.0),
    ("What is the weather in Paris", 6.0),
    ("Tell me a story", 3.5),
    ("What is the weather in Tokyo", 6.0),
    ("Goodbye", 3.5),
]
LEAD_S = 0.5


def render() -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """The conversation at 16 kHz and the (start_s, end_s, text) of each sentence."""
    parts = [np.zeros(int(LEAD_S * RATE), np.int16)]
    at = LEAD_S
    spans = []
    for text, gap in TURNS:
        speech, rate = synthesize(text, voice=VOICE)
        if rate != RATE:
            speech = soxr.resample(speech, rate, RATE)
        speech = speech.astype(np.int16)
        spans.append((at, at + len(speech) / RATE, text))
        parts += [speech, np.zeros(int(gap * RATE), np.int16)]
        at += len(speech) / RATE + gap
    return np.concatenate(parts), spans


def main() -> None:
    audio, spans = render()
    write_wav(HERE / "demo_conversation_16k.wav", audio, RATE)
    for start, end, text in spans:
        print(f"{start:6.2f}-{end:6.2f} s  {text}")
    print(f"demo_conversation_16k.wav: {len(audio) / RATE:.1f} s")


if __name__ == "__main__":
    main()
