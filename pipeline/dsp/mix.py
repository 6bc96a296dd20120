"""Mixing: sum several audio streams into one without overflow.

Inputs are accumulated in float32 (so four full-scale int16 inputs cannot wrap around)
and clipped once at the end: ``hard`` saturates at full scale, ``soft`` leaves everything
below a knee (-2.5 dBFS) untouched and bends the peaks above it smoothly into full scale
with a tanh curve, which sounds far less harsh than hard clipping when voices overlap.

:func:`mix` sums whole signals. :class:`Mixer` sums streams aligned on media time: each
chunk is written at its ``pts``, and :meth:`Mixer.read` returns the span that every input
has covered. It counts coverage per sample, so it needs no input ids (a graph node does not
know which neighbour sent a frame); each input must write each instant at most once. In a
live graph an input may stall or be silent for a while (a TTS branch between replies):
``max_delay`` bounds the wait, after which the missing input counts as silence and its late
samples are dropped and counted in :attr:`Mixer.late`.
"""

from __future__ import annotations

import numpy as np

from .level import db_to_linear

__all__ = ["CLIP_MODES", "Mixer", "hard_clip", "mix", "soft_clip"]

CLIP_MODES = ("soft", "hard")
_KNEE = np.float32(0.75)  # -2.5 dBFS
_HEAD = np.float32(1.0) - _KNEE
_INV_HEAD = np.float32(1.0) / _HEAD
_INT16 = np.dtype(np.int16)
_FLOAT32 = np.dtype(np.float32)
_FROM_INT16 = 1.0 / 32768.0


def hard_clip(x: np.ndarray) -> np.ndarray:
    """Saturate float32 audio to [-1, 1] in place; returns ``x``."""
    return np.clip(x, -1.0, 1.0, out=x)


def soft_clip(x: np.ndarray) -> np.ndarray:
    """Bend float32 peaks above the knee smoothly into [-1, 1], in place; returns ``x``.

    Below the knee (0.75, -2.5 dBFS) samples are untouched, so normal-level mixes are exact;
    above it the excess ``e`` becomes ``h * tanh(e / h)`` with ``h = 1 - knee``: continuous
    in value and slope at the knee, never beyond full scale.
    """
    if x.size == 0:
        return x
    if max(float(x.max()), -float(x.min())) <= _KNEE:
        return x
    excess = np.abs(x)
    np.subtract(excess, _KNEE, out=excess)
    np.maximum(excess, 0.0, out=excess)  # how far each sample is above the knee (0 below)
    bent = np.multiply(excess, _INV_HEAD)
    np.tanh(bent, out=bent)
    bent *= _HEAD
    np.subtract(excess, bent, out=excess)  # what to take off: e - h*tanh(e/h) >= 0
    np.copysign(excess, x, out=excess)
    np.subtract(x, excess, out=x)
    return x


def _check_clip(clip: str) -> str:
    if clip not in CLIP_MODES:
        raise ValueError(f"clip must be one of {', '.join(CLIP_MODES)}, got {clip!r}")
    return clip


def _finish(acc: np.ndarray, clip: str, dtype: np.dtype) -> np.ndarray:
    """Clip float32 ``acc`` in place and return it in ``dtype`` (a new array for int16)."""
    (soft_clip if clip == "soft" else hard_clip)(acc)
    if dtype == _INT16:
        acc *= np.float32(32768.0)
        np.rint(acc, out=acc)
        np.clip(acc, -32768.0, 32767.0, out=acc)
        return acc.astype(np.int16)
    return acc


def mix(
    signals: list[np.ndarray],
    gains_db: list[float] | None = None,
    *,
    clip: str = "soft",
    dtype: np.dtype | str | None = None,
) -> np.ndarray:
    """The sum of ``signals`` (shorter ones padded with silence), each scaled by its gain.

    The result has the type of the first signal unless ``dtype`` says otherwise.
    """
    _check_clip(clip)
    if not signals:
        raise ValueError("mix() needs at least one signal")
    if gains_db is not None and len(gains_db) != len(signals):
        raise ValueError(f"mix(): {len(signals)} signals but {len(gains_db)} gains")
    out_dtype = np.dtype(dtype) if dtype is not None else signals[0].dtype
    n = max(s.shape[0] for s in signals)
    acc = np.zeros((n,) + signals[0].shape[1:], np.float32)
    for i, s in enumerate(signals):
        g = db_to_linear(gains_db[i]) if gains_db is not None else 1.0
        if s.dtype == _INT16:
            g *= _FROM_INT16
        acc[: s.shape[0]] += s * np.float32(g)
    return _finish(acc, clip, out_dtype)


class Mixer:
    """Sums ``inputs`` streams written at their media time; reads back what all have covered.

    ``write(samples, pts, input)`` adds a chunk of input number ``input`` (which selects its
    gain); ``read()`` returns ``(pts, mixed)`` for the span every input has covered, or
    None; ``flush()`` returns whatever is left at the end of the stream; ``reset()``
    empties it. With input numbers the mixer tracks how far each input has written; a
    writer that cannot tell its inputs apart passes ``input=None`` on every write and the
    mixer counts coverage per sample instead (slower; each instant at most once per input).
    """

    def __init__(
        self,
        inputs: int,
        *,
        channels: int = 1,
        dtype: np.dtype | str = "float32",
        gains_db: list[float] | None = None,
        clip: str = "soft",
        max_delay: int | None = None,
        capacity: int = 8192,
    ) -> None:
        if inputs < 1:
            raise ValueError(f"a Mixer needs at least one input, got {inputs}")
        if gains_db is not None and len(gains_db) != inputs:
            raise ValueError(f"Mixer: {inputs} inputs but {len(gains_db)} gains in gains_db")
        self.inputs = inputs
        self.channels = channels
        self.dtype = np.dtype(dtype)
        if self.dtype not in (_INT16, _FLOAT32):
            raise ValueError(f"Mixer dtype must be 'int16' or 'float32', got {dtype!r}")
        self.clip = _check_clip(clip)
        self.max_delay = max_delay
        self.late = 0
        gains = [db_to_linear(g) for g in gains_db] if gains_db is not None else [1.0] * inputs
        self._gains = [np.float32(g) for g in gains]
        self._gains_i16 = [np.float32(g * _FROM_INT16) for g in gains]
        self._alloc(max(capacity, 2 * (max_delay or 0)))
        self._base: int | None = None  # pts of _acc[0]
        self._end = 0  # samples of _acc written so far
        self._marks = [0] * inputs  # per input: how far (in _acc samples) it has written
        self._anonymous: bool | None = None  # writes without input numbers: count coverage

    def _alloc(self, capacity: int) -> None:
        shape = (capacity,) if self.channels == 1 else (capacity, self.channels)
        acc = np.zeros(shape, np.float32)
        cov = np.zeros(capacity, np.int32)
        scratch = np.empty(shape, np.float32)
        if getattr(self, "_acc", None) is not None:
            acc[: self._end] = self._acc[: self._end]
            cov[: self._end] = self._cov[: self._end]
        self._acc, self._cov, self._scratch = acc, cov, scratch

    @property
    def pts(self) -> int | None:
        """Media time of the next sample ``read`` will return (None before the first write)."""
        return self._base

    def write(self, samples: np.ndarray, pts: int, input: int | None = None) -> None:
        """Add ``samples`` (int16 or float32) that start at media time ``pts``."""
        n = samples.shape[0]
        if n == 0:
            return
        if samples.ndim != (1 if self.channels == 1 else 2) or (self.channels > 1 and samples.shape[1] != self.channels):
            raise ValueError(f"Mixer has {self.channels} channel(s), got samples of shape {samples.shape}; "
                             "put an audio.resample with `channels` before the mix")
        if self._base is None:
            self._base = pts
        start = pts - self._base
        if start < 0:  # this input is behind what was already emitted
            skip = min(-start, n)
            self.late += skip
            samples = samples[skip:]
            n -= skip
            start = 0
            if n == 0:
                return
        stop = start + n
        if stop > self._acc.shape[0]:
            self._alloc(max(2 * self._acc.shape[0], stop))
        anonymous = input is None
        if anonymous is not self._anonymous:
            if self._anonymous is not None:
                raise ValueError("Mixer.write: give an input number on every write or on none")
            self._anonymous = anonymous
        i = 0 if anonymous else input
        if samples.dtype == _INT16:
            g = self._gains_i16[i]
        elif samples.dtype == _FLOAT32:
            g = self._gains[i]
        else:
            raise TypeError(f"Mixer.write: expected int16 or float32 samples, got {samples.dtype}")
        tmp = self._scratch[:n]
        np.multiply(samples, g, out=tmp)
        region = self._acc[start:stop]
        np.add(region, tmp, out=region)
        if anonymous:
            self._cov[start:stop] += 1
        elif stop > self._marks[i]:
            self._marks[i] = stop
        if stop > self._end:
            self._end = stop

    def _ready(self) -> int:
        end = self._end
        if self._anonymous:
            short = np.flatnonzero(self._cov[:end] < self.inputs)
            ready = int(short[0]) if short.size else end
        else:
            ready = min(self._marks)
        if self.max_delay is not None and end - ready > self.max_delay:
            ready = end - self.max_delay
        return ready

    def read(self) -> tuple[int, np.ndarray] | None:
        """``(pts, samples)`` of the mixed span every input has covered, or None."""
        if self._base is None:
            return None
        return self._take(self._ready())

    def flush(self) -> tuple[int, np.ndarray] | None:
        """Everything written so far, mixed (missing inputs count as silence)."""
        if self._base is None:
            return None
        return self._take(self._end)

    def reset(self) -> None:
        """Forget everything written; the next write sets the media time again."""
        self._acc[: self._end] = 0
        self._cov[: self._end] = 0
        self._end = 0
        self._marks = [0] * self.inputs
        self._anonymous = None
        self._base = None

    def _take(self, k: int) -> tuple[int, np.ndarray] | None:
        if k <= 0:
            return None
        end = self._end
        out = _finish(self._acc[:k].copy(), self.clip, self.dtype)
        rest = end - k
        if rest:
            self._acc[:rest] = self._acc[k:end]
            if self._anonymous:
                self._cov[:rest] = self._cov[k:end]
        self._acc[rest:end] = 0
        if self._anonymous:
            self._cov[rest:end] = 0
        self._marks = [max(m - k, 0) for m in self._marks]
        self._end = rest
        pts = self._base
        self._base = pts + k  # type: ignore[operator]
        return pts, out  # type: ignore[return-value]
