"""Sample formats: int16 <-> float32, interleaving, channel counts, PCM bytes at the edge.

Conventions used across voxpipe:

* float32 audio is in [-1, 1); int16 full scale is 32768. One factor, ``1/32768``, is used in
  both directions, so ``to_int16(to_float32(x)) == x`` for every int16 ``x`` (symmetric:
  no drift when audio crosses the int16/float32 boundary several times in a graph).
* ``to_int16`` is clipping-safe: values outside [-1, 1) saturate at -32768 / 32767 instead
  of wrapping around (which is what a bare ``astype`` does and what makes loud clicks).
* Multi-channel audio is ``(samples, channels)``, C-contiguous, i.e. interleaved in memory,
  so :func:`interleave` and :func:`deinterleave` are free reshapes.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "FULL_SCALE",
    "as_dtype",
    "channels_of",
    "deinterleave",
    "downmix",
    "from_pcm16",
    "interleave",
    "to_channels",
    "to_float32",
    "to_int16",
    "to_pcm16",
    "upmix",
]

#: int16 full scale: float 1.0 corresponds to this many int16 steps.
FULL_SCALE = 32768.0
_SCALE_DOWN = np.float32(1.0 / FULL_SCALE)
_SCALE_UP = np.float32(FULL_SCALE)
_INT16 = np.dtype(np.int16)
_FLOAT32 = np.dtype(np.float32)


def _check_sample_type(x: np.ndarray, what: str) -> None:
    if x.dtype != _INT16 and x.dtype != _FLOAT32:
        raise TypeError(f"{what}: expected int16 or float32 samples, got {x.dtype}; convert with "
                        "pipeline.dsp.to_float32() or to_int16() first")


def to_float32(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """int16 (or float32) samples as float32 in [-1, 1); float32 input is returned as is.

    ``out`` (float32, same shape) avoids an allocation on hot paths.
    """
    if x.dtype == _FLOAT32:
        return x
    if x.dtype != _INT16:
        if not np.issubdtype(x.dtype, np.floating):
            _check_sample_type(x, "to_float32")
        if out is None:
            return x.astype(np.float32)
        np.copyto(out, x, casting="same_kind")
        return out
    if out is None:
        return np.multiply(x, _SCALE_DOWN, dtype=np.float32)
    return np.multiply(x, _SCALE_DOWN, out=out, dtype=np.float32)


def to_int16(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 samples as int16, rounded to nearest and saturated; int16 is returned as is.

    ``out`` (int16, same shape) avoids the final allocation; one float32 temporary remains.
    """
    if x.dtype == _INT16:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        _check_sample_type(x, "to_int16")
    y = np.multiply(x, _SCALE_UP, dtype=np.float32)
    np.clip(y, -32768.0, 32767.0, out=y)
    np.rint(y, out=y)
    if out is None:
        return y.astype(np.int16)
    np.copyto(out, y, casting="unsafe")
    return out


def as_dtype(x: np.ndarray, dtype: np.dtype | str) -> np.ndarray:
    """``x`` converted to ``dtype`` ("int16" or "float32") by the rules above."""
    dt = np.dtype(dtype)
    if dt == _INT16:
        return to_int16(x)
    if dt == _FLOAT32:
        return to_float32(x)
    raise ValueError(f"sample type must be 'int16' or 'float32', got {dtype!r}")


def channels_of(x: np.ndarray) -> int:
    """The channel count of ``(n,)`` (1) or ``(n, channels)`` audio."""
    return 1 if x.ndim == 1 else x.shape[1]


def interleave(x: np.ndarray) -> np.ndarray:
    """``(n, channels)`` audio as a flat interleaved array (a view when C-contiguous)."""
    return np.ascontiguousarray(x).reshape(-1)


def deinterleave(flat: np.ndarray, channels: int) -> np.ndarray:
    """A flat interleaved array as ``(n, channels)`` (``(n,)`` for mono); a view, no copy."""
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if channels == 1:
        return flat.reshape(-1)
    if flat.shape[0] % channels:
        raise ValueError(f"deinterleave: {flat.shape[0]} samples do not split into {channels} channels; "
                         "the input was cut mid-frame (keep whole sample frames when chunking bytes)")
    return flat.reshape(-1, channels)


def downmix(x: np.ndarray) -> np.ndarray:
    """Mono ``(n,)`` audio: the mean of the channels (int16 rounded, no overflow)."""
    if x.ndim == 1:
        return x
    if x.shape[1] == 1:
        return x[:, 0]
    if x.dtype == _INT16:
        s = x.sum(axis=1, dtype=np.int32).astype(np.float32)
        s *= np.float32(1.0 / x.shape[1])
        return np.rint(s, out=s).astype(np.int16)
    _check_sample_type(x, "downmix")
    return x.mean(axis=1, dtype=np.float32)


def upmix(x: np.ndarray, channels: int) -> np.ndarray:
    """Mono audio copied to ``channels`` identical channels, shape ``(n, channels)``."""
    if channels < 1:
        raise ValueError(f"channels must be at least 1, got {channels}")
    if x.ndim != 1:
        x = downmix(x)
    if channels == 1:
        return x
    return np.repeat(x[:, None], channels, axis=1)


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """``x`` with ``channels`` channels: returned as is, downmixed, or upmixed from mono."""
    have = channels_of(x)
    if have == channels:
        return x
    if channels == 1:
        return downmix(x)
    return upmix(x if have == 1 else downmix(x), channels)


def from_pcm16(data: bytes | bytearray | memoryview, channels: int = 1) -> np.ndarray:
    """Little-endian 16-bit PCM bytes (WAV data, Realtime ``pcm16``) as int16 samples.

    A view of ``data`` when it is already native-endian (read-only for ``bytes``).
    """
    if len(data) % (2 * channels):
        raise ValueError(f"from_pcm16: {len(data)} bytes are not whole {channels}-channel 16-bit "
                         "sample frames; keep byte chunks aligned to 2*channels bytes")
    flat = np.frombuffer(data, dtype="<i2")
    if flat.dtype != _INT16:  # big-endian host
        flat = flat.astype(np.int16)
    return deinterleave(flat, channels)


def to_pcm16(x: np.ndarray) -> bytes:
    """Audio as little-endian 16-bit interleaved PCM bytes (converted from float32 if needed)."""
    y = to_int16(x)
    return np.ascontiguousarray(y, dtype="<i2").tobytes()
