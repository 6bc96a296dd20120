"""How a sentence ends in pitch: a falling F0 closes a statement, a level or rising one goes on.

A cheap autocorrelation pitch tracker (numpy only, no model): frames of 40 ms every 10 ms;
each frame's autocorrelation comes from one FFT (the Wiener-Khinchin theorem), normalised
by the frame's energy; the pitch period is the lag of the highest peak between 2.5 ms
(400 Hz) and 14.3 ms (70 Hz), preferring the shortest lag within 10 % of that peak (the
octave-too-low error of a plain maximum). A frame is voiced when that peak reaches
``voicing`` (0.45 of the energy), the frame is within 30 dB of the loudest frame looked
at, and at least three frames in a row are (30 ms: a vowel, not a click). The whole track of
the last 1.2 s costs about 2 ms of CPU (docs/quality.md, "Cost"), once per pause.

:func:`final_pitch_movement` fits a line to the log-frequency (semitones) of the last
``span_ms`` of voiced frames (a median of three first, against single octave jumps) and
returns the change along that line over the span: negative when the pitch falls. Octave
errors are folded back to within six semitones of the stretch's median first.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["PitchEnd", "final_pitch_movement", "pitch_track"]

_FRAME_S = 0.040
_HOP_S = 0.010
_LOOK_S = 1.2  # audio before the pause that is tracked


def _fast_size(m: int) -> int:
    """The smallest 2^a 3^b 5^c >= ``m`` (a length numpy's FFT does fast)."""
    best = 1 << (m - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            k = p35
            while k < m:
                k *= 2
            best = min(best, k)
            p35 *= 3
        p5 *= 5
    return best


@functools.lru_cache(maxsize=8)
def _setup(n: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(float32 Hann window, the window's autocorrelation decay 1/w(lag) for lags lo..hi, FFT length).

    Built once per frame length and lag range, not on every pause. The FFT length only has
    to hold the lags looked at without wrap-around (n + hi), not the full 2n - 1: at 16 kHz
    1024 points instead of 2048, half the work for the same values.
    """
    w = np.hanning(n)
    wac = np.correlate(w, w, "full")[n - 1 : n + hi]
    correction = wac[0] / wac[lo : hi + 1]
    correction.flags.writeable = False
    window = w.astype(np.float32)
    window.flags.writeable = False
    return window, correction, _fast_size(n + hi)


def pitch_track(audio: np.ndarray, rate: int = 16000, *, fmin: float = 70.0, fmax: float = 400.0,
                voicing: float = 0.45, floor_db: float = -30.0) -> tuple[np.ndarray, np.ndarray]:
    """(frame centre times in s, F0 in Hz or NaN when unvoiced) of mono ``audio`` at ``rate``."""
    x = np.asarray(audio, np.float32)
    if x.ndim != 1:
        raise ValueError(f"pitch_track takes mono audio, got shape {x.shape}")
    n, hop = int(_FRAME_S * rate), int(_HOP_S * rate)
    if x.shape[0] < n:
        return np.zeros(0), np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
    count = frames.shape[0]
    frames = frames - frames.mean(axis=1, keepdims=True)
    lo, hi = int(rate / fmax), min(int(rate / fmin), n - 1)
    window, correction, size = _setup(n, lo, hi)
    windowed = frames * window
    # Only frames that can pass the loudness test below are transformed: a frame whose energy is
    # a quarter of the floor under the loudest one's is unvoiced whatever its autocorrelation
    # (the factor 4 covers the rounding between this energy and the FFT's, ~1e-6). The pause at
    # the end of a turn is such frames. The FFT works row by row: the same values as all rows.
    direct = np.einsum("ij,ij->i", windowed, windowed)
    kept = np.flatnonzero(direct >= direct.max() * 10 ** (floor_db / 10) / 4) if count else direct
    spec = np.fft.rfft(windowed[kept], size, axis=1)
    ac = np.fft.irfft(spec.real**2 + spec.imag**2, size, axis=1)[:, : hi + 1]
    energy = ac[:, 0]
    norm = ac[:, lo : hi + 1] / np.maximum(energy[:, None], 1e-12) * correction
    peak = norm.max(axis=1)
    # the shortest lag within 10 % of the highest peak that is a local maximum
    near = (norm >= 0.9 * peak[:, None])
    local = np.zeros_like(near)
    local[:, 1:-1] = (norm[:, 1:-1] >= norm[:, :-2]) & (norm[:, 1:-1] >= norm[:, 2:])
    cand = near & local
    has = cand.any(axis=1)
    first = np.where(has, cand.argmax(axis=1), norm.argmax(axis=1))
    # parabolic interpolation around the chosen lag
    i = np.clip(first, 1, norm.shape[1] - 2)
    rows = np.arange(norm.shape[0])
    a, b, c = norm[rows, i - 1], norm[rows, i], norm[rows, i + 1]
    den = a - 2 * b + c
    ok = np.abs(den) > 1e-9
    shift = np.where(ok, 0.5 * (a - c) / np.where(ok, den, 1.0), 0.0)
    lag = lo + i + np.clip(shift, -0.5, 0.5)
    loud = energy >= energy.max() * 10 ** (floor_db / 10) if energy.size else energy
    voiced = np.zeros(count, bool)
    voiced[kept] = (peak >= voicing) & loud & (energy > 0)
    lag_all = np.ones(count)
    lag_all[kept] = lag
    # voicing lasts: a run shorter than 3 frames (30 ms) is a noise or click, not a vowel
    v = np.concatenate(([False], voiced, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(v))
    for a, b in zip(edges[::2], edges[1::2]):
        if b - a < 3:
            voiced[a:b] = False
    f0 = np.where(voiced, rate / lag_all, np.nan)
    times = (np.arange(count) * hop + n / 2) / rate
    return times, f0


@dataclass(frozen=True, slots=True)
class PitchEnd:
    """The pitch movement at the end of an utterance: ``semitones`` over ``voiced_ms`` of voiced frames."""

    semitones: float
    voiced_ms: float
    mean_hz: float


def final_pitch_movement(audio: np.ndarray, rate: int = 16000, *, span_ms: float = 300.0,
                         min_voiced_ms: float = 80.0) -> PitchEnd | None:
    """F0 change (semitones) along a line fitted to the last ``span_ms`` of voiced frames of ``audio``.

    Only the last 1.2 s of ``audio`` is tracked (the pause itself is unvoiced). None when
    fewer than ``min_voiced_ms`` of voiced frames are there (whispered, noise, too short).
    """
    x = np.asarray(audio)[-int(_LOOK_S * rate) :]
    times, f0 = pitch_track(x, rate)
    idx = np.flatnonzero(~np.isnan(f0))
    if idx.size < 3:
        return None
    # the last voiced stretch: frames after the last gap of more than 150 ms of unvoiced frames
    gaps = np.flatnonzero(np.diff(idx) > 15)
    if gaps.size:
        idx = idx[gaps[-1] + 1 :]
    st = 12.0 * np.log2(f0[idx] / 100.0)
    st -= 12.0 * np.round((st - np.median(st)) / 12.0)  # octave errors folded back around the median
    if st.size >= 3:  # a median of three against single-frame jumps: max(min(a, b), min(max(a, b), c))
        a, b, c = np.concatenate((st[:1], st[:-1])), st, np.concatenate((st[1:], st[-1:]))
        st = np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))
    t = times[idx]
    keep = t >= t[-1] - span_ms / 1000.0
    t, st = t[keep], st[keep]
    voiced_ms = t.shape[0] * _HOP_S * 1000.0
    if voiced_ms < min_voiced_ms or t[-1] - t[0] <= 0:
        return None
    # the least-squares line's slope in closed form (np.polyfit's SVD costs 10x more for the same line)
    dt = t - t.mean()
    mean_st = st.mean()
    slope = float(dt.dot(st - mean_st) / dt.dot(dt))
    return PitchEnd(slope * float(t[-1] - t[0]), float(voiced_ms), float(100.0 * 2 ** (mean_st / 12.0)))
