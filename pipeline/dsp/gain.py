"""Gain in dB and short fades, so that cutting audio does not click.

Cutting a waveform mid-cycle (an interruption, a stream that stops) is a step: a broadband
click. A fade of a few milliseconds (5 ms is inaudible as a fade and removes the click)
turns the step into a smooth ramp. Two curves: ``linear`` and ``cosine`` (raised cosine,
``0.5 - 0.5*cos``), whose slope is zero at both ends and so leaves less splatter.

:func:`fade_in` / :func:`fade_out` work on one array; :class:`Fader` carries a fade across
frames (a 5 ms fade over 2.5 ms frames, or a fade that starts mid-frame). :class:`Gain`
scales a stream by a fixed gain; int16 results saturate instead of wrapping.
"""

from __future__ import annotations

import enum
from functools import lru_cache

import numpy as np

from .level import db_to_linear

__all__ = ["FadeState", "Fader", "Gain", "apply_gain", "fade_in", "fade_out", "ramp"]

_INT16 = np.dtype(np.int16)
_FLOAT32 = np.dtype(np.float32)
_CURVES = ("linear", "cosine")


@lru_cache(maxsize=64)
def _ramp(n: int, curve: str) -> np.ndarray:
    k = np.arange(n, dtype=np.float64) / n
    if curve == "linear":
        r = k
    elif curve == "cosine":
        r = 0.5 - 0.5 * np.cos(np.pi * k)
    else:
        raise ValueError(f"fade curve must be one of {', '.join(_CURVES)}, got {curve!r}")
    r = r.astype(np.float32)
    r.flags.writeable = False
    return r


def ramp(n: int, curve: str = "cosine") -> np.ndarray:
    """A rising gain ramp of ``n`` samples from 0 towards 1 (read-only, cached).

    ``ramp(n)[0] == 0``; the sample after the ramp has gain 1. Reverse it for a fade-out.
    """
    if n < 0:
        raise ValueError(f"fade length must be >= 0 samples, got {n}")
    return _ramp(int(n), curve)


def _scaled(x: np.ndarray, g: np.ndarray | np.floating) -> np.ndarray:
    """``x * g`` in x's sample type (int16 rounded and saturated)."""
    if x.dtype == _FLOAT32:
        return np.multiply(x, g, dtype=np.float32)
    if x.dtype != _INT16:
        raise TypeError(f"expected int16 or float32 samples, got {x.dtype}")
    y = np.multiply(x, g, dtype=np.float32)
    np.rint(y, out=y)
    np.clip(y, -32768.0, 32767.0, out=y)
    return y.astype(np.int16)


def _per_sample(g: np.ndarray, x: np.ndarray) -> np.ndarray:
    return g if x.ndim == 1 else g[:, None]


def apply_gain(x: np.ndarray, db: float) -> np.ndarray:
    """``x`` scaled by ``db`` decibels, as a new array of the same type."""
    return _scaled(x, np.float32(db_to_linear(db)))


def fade_in(x: np.ndarray, samples: int, curve: str = "cosine") -> np.ndarray:
    """A copy of ``x`` whose first ``samples`` rise from silence (the rest untouched)."""
    n = min(int(samples), x.shape[0])
    out = x.copy()
    if n:
        out[:n] = _scaled(x[:n], _per_sample(ramp(int(samples), curve)[:n], x))
    return out


def fade_out(x: np.ndarray, samples: int, curve: str = "cosine") -> np.ndarray:
    """A copy of ``x`` whose last ``samples`` fall to silence (the rest untouched)."""
    n = min(int(samples), x.shape[0])
    out = x.copy()
    if n:
        g = ramp(int(samples), curve)[::-1][-n:]  # ends at 0 even when x is shorter than the fade
        out[-n:] = _scaled(x[-n:], _per_sample(g, x))
    return out


class Gain:
    """A fixed gain in dB for a stream; ``process`` returns a new array of the same type."""

    __slots__ = ("db", "_factor")

    def __init__(self, db: float = 0.0) -> None:
        self.db = float(db)
        self._factor = np.float32(db_to_linear(db))

    def process(self, x: np.ndarray) -> np.ndarray:
        """``x`` scaled by the gain (the same array when the gain is 0 dB)."""
        if self.db == 0.0:
            return x
        return _scaled(x, self._factor)


class FadeState(enum.Enum):
    """Where a :class:`Fader` is: passing audio, ramping, or muting."""

    OPEN = "open"
    FADING_IN = "fading_in"
    FADING_OUT = "fading_out"
    MUTED = "muted"


class Fader:
    """A fade that spans frames: call :meth:`start_in` or :meth:`start_out`, then feed the
    stream through :meth:`process`. After a fade-out it outputs silence until the next
    fade-in; ``FadeState`` tells where it is.
    """

    __slots__ = ("samples", "curve", "state", "_pos")

    def __init__(self, samples: int, curve: str = "cosine", *, muted: bool = False) -> None:
        ramp(samples, curve)  # validates
        self.samples = int(samples)
        self.curve = curve
        self.state = FadeState.MUTED if muted else FadeState.OPEN
        self._pos = 0

    def start_in(self) -> None:
        """Rise from silence over the next ``samples`` samples."""
        self.state, self._pos = (FadeState.FADING_IN, 0) if self.samples else (FadeState.OPEN, 0)

    def start_out(self) -> None:
        """Fall to silence over the next ``samples`` samples, then stay muted."""
        self.state, self._pos = (FadeState.FADING_OUT, 0) if self.samples else (FadeState.MUTED, 0)

    def process(self, x: np.ndarray) -> np.ndarray:
        """The next frame with the fade applied (the same array when fully open)."""
        state = self.state
        if state is FadeState.OPEN:
            return x
        if state is FadeState.MUTED:
            return np.zeros_like(x)
        r = ramp(self.samples, self.curve)
        pos = self._pos
        n = min(self.samples - pos, x.shape[0])
        g = r[pos : pos + n] if state is FadeState.FADING_IN else r[::-1][pos : pos + n]
        out = x.copy() if state is FadeState.FADING_IN else np.zeros_like(x)
        out[:n] = _scaled(x[:n], _per_sample(g, x))
        self._pos = pos + n
        if self._pos >= self.samples:
            self.state = FadeState.OPEN if state is FadeState.FADING_IN else FadeState.MUTED
        return out
