"""Test material for the VAD tests: eSpeak NG speech placed in known spots of a background.

The speech comes from the shared synthesiser (``processors.speech.espeak.synthesize``); we
place each utterance ourselves, so the truth is known: an utterance's active region is where
its clean 5 ms envelope is within 35 dB of its loudest block.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from pipeline.dsp import resample

UTTERANCES = (
    "We were away a year ago.",
    "Mary will allow one more meal on Monday.",
    "Open the window and let the air in.",
)


@lru_cache(maxsize=None)
def utterance(text: str, rate: int) -> np.ndarray:
    """``text`` spoken by eSpeak NG, float32 at ``rate``, normalised to -24 dBFS active RMS (peaks near -4 dBFS)."""
    from processors.speech.espeak import synthesize

    x, sr = synthesize(text)
    y = resample(x.astype(np.float32) / 32768.0, sr, rate)
    a, b = active_region(y, rate)
    y = y * np.float32(10 ** (-24 / 20) / np.sqrt(np.mean(y[a:b] ** 2)))
    y.flags.writeable = False
    return y


def active_region(x: np.ndarray, rate: int, *, below_peak_db: float = 35.0) -> tuple[int, int]:
    """First and one-past-last sample of the 5 ms blocks within ``below_peak_db`` of the peak."""
    w = rate // 200
    n = x.shape[0] // w * w
    e = 10 * np.log10(np.mean(x[:n].reshape(-1, w).astype(np.float64) ** 2, axis=1) + 1e-20)
    act = np.flatnonzero(e > e.max() - below_peak_db)
    return int(act[0]) * w, int(act[-1] + 1) * w


@dataclass
class Scene:
    """A test signal and the true speech segments in it (sample positions)."""

    samples: np.ndarray
    rate: int
    truth: list[tuple[int, int]]

    def int16(self) -> np.ndarray:
        return (np.clip(self.samples, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def background(kind: str, n: int, rate: int, dbfs: float, seed: int = 7) -> np.ndarray:
    """``n`` samples of ``silence``, white ``noise`` or a 440 Hz ``hum`` at ``dbfs`` RMS."""
    if kind == "silence":
        return np.zeros(n, np.float32)
    amp = 10 ** (dbfs / 20)
    if kind == "noise":
        return (amp * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)
    if kind == "hum":
        return (amp * np.sqrt(2) * np.sin(2 * np.pi * 440.0 * np.arange(n) / rate)).astype(np.float32)
    raise ValueError(kind)


def speech_scene(kind: str, rate: int = 24000, *, background_dbfs: float = -45.0, gap_s: float = 1.0) -> Scene:
    """The three utterances separated by ``gap_s`` of background, which also runs under them."""
    gap = int(gap_s * rate)
    parts, truth, pos = [np.zeros(gap, np.float32)], [], gap
    for text in UTTERANCES:
        u = utterance(text, rate)
        a, b = active_region(u, rate)
        truth.append((pos + a, pos + b))
        parts += [u, np.zeros(gap, np.float32)]
        pos += u.shape[0] + gap
    speech = np.concatenate(parts)
    return Scene(speech + background(kind, speech.shape[0], rate, background_dbfs), rate, truth)


def segments(events, *, end: int | None = None) -> list[tuple[int, int]]:
    """(start, stop) pairs from a list of VAD events, checking they alternate."""
    out, start = [], None
    for e in events:
        if e.started:
            assert start is None, f"two starts in a row: {events}"
            start = e.pts
        else:
            assert start is not None, f"stop without start: {events}"
            out.append((start, e.pts))
            start = None
    assert start is None, f"speech still open at the end: {events}"
    return out
