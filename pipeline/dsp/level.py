"""Level and energy of a frame: RMS, peak and dBFS.

Levels are relative to full scale (1.0 for float32, 32768 for int16), over all channels.
dBFS here is ``20*log10(rms)``: a full-scale square wave is 0 dBFS and a full-scale sine is
-3.01 dBFS (the plain RMS convention, not the AES17 one that adds 3.01 dB for sines).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SILENCE_DBFS", "db_to_linear", "dbfs", "linear_to_db", "mean_square", "peak", "rms"]

#: What :func:`dbfs` reports for digital silence (instead of -inf).
SILENCE_DBFS = -120.0

_INT16 = np.dtype(np.int16)
_FLOAT32 = np.dtype(np.float32)
_INV_FS2 = 1.0 / (32768.0 * 32768.0)


def mean_square(x: np.ndarray) -> float:
    """Mean of the squared samples relative to full scale (0.0 for an empty frame)."""
    n = x.size
    if n == 0:
        return 0.0
    flat = x.reshape(-1)
    if x.dtype == _FLOAT32:
        return float(np.vdot(flat, flat)) / n
    if x.dtype == _INT16:
        f = flat.astype(np.float32)
        return float(np.vdot(f, f)) * _INV_FS2 / n
    raise TypeError(f"mean_square: expected int16 or float32 samples, got {x.dtype}")


def rms(x: np.ndarray) -> float:
    """Root mean square relative to full scale (1.0 = full-scale square wave)."""
    return math.sqrt(mean_square(x))


def peak(x: np.ndarray) -> float:
    """Largest absolute sample relative to full scale (int16 -32768 reads as 1.0)."""
    if x.size == 0:
        return 0.0
    hi = float(x.max())
    lo = float(x.min())
    m = max(hi, -lo)
    return m / 32768.0 if x.dtype == _INT16 else m


def dbfs(x: np.ndarray) -> float:
    """RMS level in dB relative to full scale; :data:`SILENCE_DBFS` for digital silence."""
    ms = mean_square(x)
    if ms <= 0.0:
        return SILENCE_DBFS
    return max(10.0 * math.log10(ms), SILENCE_DBFS)


def db_to_linear(db: float) -> float:
    """Amplitude factor for a gain in dB (``-6.02`` dB -> 0.5)."""
    return 10.0 ** (db / 20.0)


def linear_to_db(factor: float) -> float:
    """Gain in dB of an amplitude factor; :data:`SILENCE_DBFS` for 0."""
    if factor <= 0.0:
        return SILENCE_DBFS
    return max(20.0 * math.log10(factor), SILENCE_DBFS)
