"""How a sentence ends in pitch: a falling F0 closes a statement, a level or rising one goes on.

A cheap autocorrelation pitch tracker (numpy only, no model): frames of 40 ms every 10 ms;
each frame's autocorrelation comes from one FFT (the Wiener-Khinchin theorem), normalised
by the frame's energy; the pitch period is the lag of the highest peak between 2.5 ms
(400 Hz) and 14.3 ms (70 Hz), preferring the shortest lag within 10 % of that peak (the
octave-too-low error of a plain maximum). A frame is voiced when that peak reaches
``voicing`` (0.45 of the energy), the frame is within 30 dB of the loudest frame looked
at, and at least three frames in a row are (30 ms: a vowel, not a click). The track of the
last 1.2 s cost 0.6-0.95 ms of CPU in a loop and 1.2-1.4 ms right after the model's inference
(caches cold), once per pause, on the 100 pauses of the turn test's scenes; the last 0.8 s
(``_LOOK_S``: 600 ms of speech before the pause the detector asks about 200 ms in) costs about
a third less and gives the same verdicts with the default rule on every eSpeak scene of
``python benchmarks/quality.py --turn-sweep`` (fewer premature ends with ``unsure_wait_ms``
1200 and ``rise_st`` 1), and equal or fewer on three Piper scenes of the same audio (5, 5, 4
of 8 -> 4, 4, 4).

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
_LOOK_S = 0.8  # audio before the pause that is tracked
_FMIN, _FMAX, _VOICING, _FLOOR_DB = 70.0, 400.0, 0.45, -30.0  # pitch_track's defaults


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
def _setup(n: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, int, np.float64]:
    """(float32 Hann window, 1/w(lag) of its autocorrelation for lags lo..hi, FFT length, float32 1/length).

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
    size = _fast_size(n + hi)
    return window, correction, size, np.float64(np.reciprocal(size, dtype=np.float32))


class _Work:
    """One caller's work arrays for :func:`pitch_track` (1.7 MB at 16 kHz), kept between calls."""

    __slots__ = ("key", "rows", "windowed", "spectrum32", "windowed64", "ac64", "spectrum", "floor", "ac",
                 "quotient", "norm", "runs")

    def __init__(self, key: tuple[int, int, int, int], rows: int) -> None:
        n, lo, hi, size = key
        self.key, self.rows = key, rows
        bins = size // 2 + 1
        flat32 = np.empty(rows * 2 * bins, np.float32)  # the windowed frames, then their spectra in float32
        self.windowed = flat32[: rows * n].reshape(rows, n)
        self.spectrum32 = flat32.view(np.complex64).reshape(rows, bins)
        flat = np.empty(rows * size)  # the loud windowed frames in float64, then their autocorrelation
        self.windowed64 = flat[: rows * n].reshape(rows, n)
        self.ac64 = flat.reshape(rows, size)
        self.spectrum = np.empty((rows, bins), np.complex128)  # the spectra, then the power spectra
        self.ac = np.empty((rows, hi + 1), np.float32)
        self.floor = np.empty((rows, 1), np.float32)
        self.quotient = np.empty((rows, hi - lo + 1), np.float32)
        self.norm = np.empty((rows, hi - lo + 1))
        self.runs = np.zeros(rows + 4, bool)  # voicing with two False frames either side


_SCRATCH: list[_Work] = []  # free work arrays, a set per concurrent caller
_KEPT_ROWS = 80  # work arrays for more frames are not kept: a pause's 0.8 s (_LOOK_S) is 77 frames
_F32 = np.float32


def _voiced(x: np.ndarray, rate: int, fmin: float, fmax: float, voicing: float,
            floor_db: float) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the voiced frames, their F0 in Hz) of C-contiguous float32 ``x`` of one frame or more.

    The values of the plain steps (float32 frames and spectra, as the module docstring says)
    in fewer numpy calls, into work arrays kept between calls, and with the FFTs in their own
    types. numpy transforms float32 in float64 (the first loop that takes it), casting into and
    out of temporary arrays: on 100 frames 490 us for the forward FFT and 740 us for the
    inverse, against 250 and 160 us on float64 arrays. So the float32 frames are widened
    (exactly) before it, the float32 power spectrum after, and the inverse FFT runs unscaled
    with its float32 1/size applied after it to the lags looked at (pocketfft applies it so,
    to the float64 values), each result rounded to float32 as the casts did.
    """
    n, hop = int(_FRAME_S * rate), int(_HOP_S * rate)
    count = (x.shape[0] - n) // hop + 1
    lo, hi = int(rate / fmax), min(int(rate / fmin), n - 1)
    window, correction, size, scale = _setup(n, lo, hi)
    key = (n, lo, hi, size)
    try:
        w = _SCRATCH.pop()
    except IndexError:
        w = None
    if w is None or w.key != key or w.rows < count:
        w = _Work(key, max(count, _KEPT_ROWS))
    try:
        frames = np.ndarray((count, n), np.float32, x, 0, (hop * 4, 4))  # a view: frame k starts at k * hop
        mean = np.add.reduce(frames, axis=1, keepdims=True)
        np.true_divide(mean, _F32(n), out=mean)  # = frames.mean(axis=1, keepdims=True) (float32 quotient)
        windowed = np.subtract(frames, mean, out=w.windowed[:count])
        np.multiply(windowed, window, out=windowed)
        # Only frames that can pass the loudness test below are transformed: a frame whose energy is
        # a quarter of the floor under the loudest one's is unvoiced whatever its autocorrelation
        # (the factor 4 covers the rounding between this energy and the FFT's, ~1e-6). The pause at
        # the end of a turn is such frames; so is silence before the turn. The frames from the first
        # to the last such loud one are transformed (any quiet frame between them is unvoiced by the
        # test on its own energy); the FFT works row by row: the same values as all rows.
        direct = np.einsum("ij,ij->i", windowed, windowed)
        kept = (direct >= np.maximum.reduce(direct) * 10 ** (floor_db / 10) / 4).nonzero()[0]
        if not kept.size:  # NaN in the audio
            return _NOTHING
        k0, k1 = int(kept[0]), int(kept[-1]) + 1
        k = k1 - k0
        loud64 = w.windowed64[:k]
        loud64[...] = windowed[k0:k1]
        spec = np.fft.rfft(loud64, size, axis=1, out=w.spectrum[:k])
        # the power spectrum in float32 (the parts rounded to float32, squared, added) in the real parts,
        # zero imaginary parts (casts in numpy's own loops: a ufunc told dtype=float32 casts 3x slower)
        parts = w.spectrum32[:k]
        parts[...] = spec
        parts = parts.view(np.float32)
        np.multiply(parts, parts, out=parts)
        np.add(parts[:, 0::2], parts[:, 1::2], out=spec.real, dtype=_F32)
        spec.imag = 0.0
        ac64 = np.fft.irfft(spec, size, axis=1, norm="forward", out=w.ac64[:k])  # unscaled
        lags = np.multiply(ac64[:, : hi + 1], scale, out=ac64[:, : hi + 1])  # scaled
        ac = w.ac[:k]
        ac[...] = lags  # rounded to float32
        energy = ac[:, :1]
        # voiced: the peak reaches voicing, the frame is within floor_db of the loudest one looked at
        # and its energy is positive (when the threshold is not, no energy is)
        floor = np.maximum.reduce(energy, axis=None) * 10 ** (floor_db / 10)
        if floor > 0:
            loud = energy[:, 0] >= floor
        elif floor == 0:  # the loudest energy's floor underflows, or all are 0
            loud = energy[:, 0] > 0
        else:  # NaN, or no energy is positive
            return _NOTHING
        quotient = np.divide(ac[:, lo : hi + 1], np.maximum(energy, 1e-12, out=w.floor[:k]),
                             out=w.quotient[:k])
        norm = np.multiply(quotient, correction, out=w.norm[:k])
        peak = np.maximum.reduce(norm, axis=1)
        runs = w.runs[: k + 4]
        np.logical_and(peak >= voicing, loud, out=runs[2:-2])
        runs[-2:] = False
        # voicing lasts: a frame is voiced in a run of at least 3 frames (30 ms: a vowel, not a noise or click)
        three = runs[:-2] & runs[1:-1] & runs[2:]
        rows = (three[:-2] | three[1:-1] | three[2:]).nonzero()[0]
        if not rows.size:
            return _NOTHING
        norm, peak = norm[rows], peak[rows, None]
        width = norm.shape[1]
        # The shortest lag within 10 % of the highest peak that is a local maximum, else the highest
        # peak's, kept off the edges for the interpolation below. A voiced frame's peak is positive and
        # finite, so an inner highest peak is such a local maximum; without one the highest is at an
        # edge, lag 0 if it is the first highest (its neighbour 1) and the last otherwise (width - 2).
        inner = norm[:, 1:-1]
        cand = (inner >= 0.9 * peak) & (inner >= norm[:, :-2]) & (inner >= norm[:, 2:])
        cand[:, -1] |= norm[:, -1] > norm[:, 0]
        i = cand.argmax(axis=1)
        i += 1
        if voicing < 0:  # a negative peak has no lag within 10 % of it (0.9 * peak is above it): the highest
            neg = peak[:, 0] < 0
            i[neg] = np.clip(norm[neg].argmax(axis=1), 1, width - 2)
        # parabolic interpolation around the chosen lag
        abc = norm.take(np.arange(0, norm.size, width)[:, None] + i[:, None] + _AROUND)
        a, b, c = abc[:, 0], abc[:, 1], abc[:, 2]
        den = a - 2 * b + c
        shift = np.divide(0.5 * (a - c), den, out=np.zeros(den.shape), where=np.abs(den) > 1e-9)
        lag = lo + i + np.minimum(np.maximum(shift, -0.5), 0.5)
        return rows + k0, rate / lag
    finally:
        if w.rows <= _KEPT_ROWS:
            _SCRATCH.append(w)


_AROUND = np.array([-1, 0, 1])
_NOTHING = (np.zeros(0, np.intp), np.zeros(0))  # no voiced frame
for _a in _NOTHING:
    _a.flags.writeable = False


def pitch_track(audio: np.ndarray, rate: int = 16000, *, fmin: float = _FMIN, fmax: float = _FMAX,
                voicing: float = _VOICING, floor_db: float = _FLOOR_DB) -> tuple[np.ndarray, np.ndarray]:
    """(frame centre times in s, F0 in Hz or NaN when unvoiced) of mono ``audio`` at ``rate``."""
    x = _mono(audio, "pitch_track")
    n, hop = int(_FRAME_S * rate), int(_HOP_S * rate)
    if x.shape[0] < n:
        return np.zeros(0), np.zeros(0)
    idx, hz = _voiced(x, rate, fmin, fmax, voicing, floor_db)
    count = (x.shape[0] - n) // hop + 1
    f0 = np.full(count, np.nan)
    f0[idx] = hz
    return (np.arange(count) * hop + n / 2) / rate, f0


def _mono(audio: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(audio, np.float32)
    if x.ndim != 1:
        raise ValueError(f"{name} takes mono audio, got shape {x.shape}")
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


@dataclass(frozen=True, slots=True)
class PitchEnd:
    """The pitch movement at the end of an utterance: ``semitones`` over ``voiced_ms`` of voiced frames."""

    semitones: float
    voiced_ms: float
    mean_hz: float


def final_pitch_movement(audio: np.ndarray, rate: int = 16000, *, span_ms: float = 300.0,
                         min_voiced_ms: float = 80.0) -> PitchEnd | None:
    """F0 change (semitones) along a line fitted to the last ``span_ms`` of voiced frames of ``audio``.

    Only the last 0.8 s of ``audio`` is tracked (the pause itself is unvoiced). None when
    fewer than ``min_voiced_ms`` of voiced frames are there (whispered, noise, too short).
    """
    x = _mono(np.asarray(audio)[-int(_LOOK_S * rate) :], "final_pitch_movement")
    n, hop = int(_FRAME_S * rate), int(_HOP_S * rate)
    if x.shape[0] < n:
        return None
    idx, hz = _voiced(x, rate, _FMIN, _FMAX, _VOICING, _FLOOR_DB)  # pitch_track's voiced frames only
    if idx.size < 3:
        return None
    # the last voiced stretch: frames after the last gap of more than 150 ms of unvoiced frames
    gaps = (idx[1:] - idx[:-1] > 15).nonzero()[0]
    if gaps.size:
        start = int(gaps[-1]) + 1
        idx, hz = idx[start:], hz[start:]
    st = 12.0 * np.log2(hz / 100.0)
    # octave errors folded back around the median (np.median's value: the middle one or the mean of the
    # two middle ones); nothing moves when every frame is within six semitones of it
    s = st.copy()
    s.sort()
    h = s.shape[0] // 2
    med = s[h] if s.shape[0] % 2 else (s[h - 1] + s[h]) / 2
    if not (s[-1] - med < 6.0 and s[0] - med > -6.0):
        st -= 12.0 * np.rint((st - med) / 12.0)
    t = (idx * hop + n / 2) / rate  # the frames' centre times
    keep = int(t.searchsorted(t[-1] - span_ms / 1000.0))  # the last span_ms: t >= t[-1] - span
    if st.size >= 3:  # a median of three against single-frame jumps, max(min(a, b), min(max(a, b), c)), on the
        # frames kept (the first and last frames keep their values: their outer neighbour is themselves)
        first, last = max(keep, 1), st.size - 1
        a, b, c = st[first - 1 : last - 1], st[first:last], st[first + 1 :]
        smooth = st[keep:].copy()
        np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c), out=smooth[first - keep : last - keep])
        st = smooth
    else:
        st = st[keep:]
    t = t[keep:]
    voiced_ms = t.shape[0] * _HOP_S * 1000.0
    if voiced_ms < min_voiced_ms or t[-1] - t[0] <= 0:
        return None
    # the least-squares line's slope in closed form (np.polyfit's SVD costs 10x more for the same line)
    dt = t - np.add.reduce(t) / t.shape[0]
    mean_st = np.add.reduce(st) / st.shape[0]
    slope = float(dt.dot(st - mean_st) / dt.dot(dt))
    return PitchEnd(slope * float(t[-1] - t[0]), float(voiced_ms), float(100.0 * 2 ** (mean_st / 12.0)))
