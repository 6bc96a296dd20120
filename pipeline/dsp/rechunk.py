"""Rechunking: a stream of arbitrarily sized chunks in, frames of a fixed size out.

Models and codecs want fixed frames (Silero: 512 samples at 16 kHz; G.711 over RTP: 20 ms)
while devices, sockets and resamplers deliver what they have. A :class:`Rechunker` keeps
at most one partial frame. Whole frames that lie inside an input chunk are returned as
views of that chunk (no copy); only a frame that straddles two chunks is assembled in a
new array. The loop, where there is one, is over frames, never over samples.

The views share memory with the input: like every array pushed in a voxpipe graph, the
input must not be modified in place afterwards.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Rechunker", "frame_samples"]


def frame_samples(sample_rate: int, frame_ms: float) -> int:
    """Samples in a frame of ``frame_ms`` at ``sample_rate``; raises if not a whole number."""
    exact = sample_rate * frame_ms / 1000.0
    n = int(round(exact))
    if n < 1 or abs(exact - n) > 1e-9:
        raise ValueError(f"a {frame_ms} ms frame at {sample_rate} Hz is {exact:g} samples, not a whole "
                         "number; pick a frame length such as 10, 20, 30 or 32 ms that divides evenly")
    return n


class Rechunker:
    """Cuts a stream into frames of exactly ``frame_size`` samples (each ``(frame_size,)`` or
    ``(frame_size, channels)``).

    ``process(x)`` returns the list of frames completed by ``x`` (often empty or one);
    ``flush()`` returns the last partial frame at the end of a stream; ``reset()`` drops it.
    """

    __slots__ = ("frame_size", "channels", "dtype", "_pending", "_fill")

    def __init__(self, frame_size: int, *, channels: int = 1, dtype: np.dtype | str | type = "int16") -> None:
        if frame_size < 1:
            raise ValueError(f"frame_size must be at least 1 sample, got {frame_size}")
        if channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        self.frame_size = frame_size
        self.channels = channels
        self.dtype = np.dtype(dtype)
        shape = (frame_size,) if channels == 1 else (frame_size, channels)
        self._pending = np.zeros(shape, self.dtype)
        self._fill = 0

    @property
    def pending(self) -> int:
        """Samples held back, waiting for the rest of their frame."""
        return self._fill

    def process(self, x: np.ndarray) -> list[np.ndarray]:
        """The whole frames available once ``x`` is appended to the stream."""
        size = self.frame_size
        n = x.shape[0]
        fill = self._fill
        if fill:
            need = size - fill
            if n < need:
                self._pending[fill : fill + n] = x
                self._fill = fill + n
                return []
            first = np.empty_like(self._pending)
            first[:fill] = self._pending[:fill]
            first[fill:] = x[:need]
            self._fill = 0
            if n == need:
                return [first]
            frames = [first]
            frames.extend(self._whole(x[need:], n - need))
            return frames
        if n == size:
            return [x]
        return self._whole(x, n)

    def _whole(self, x: np.ndarray, n: int) -> list[np.ndarray]:
        size = self.frame_size
        k, rest = divmod(n, size)
        if rest:
            self._pending[:rest] = x[k * size :]
            self._fill = rest
        if k == 0:
            return []
        if k == 1:
            return [x[:size]]
        return list(x[: k * size].reshape((k, size) + x.shape[1:]))

    def flush(self, *, pad: bool = False) -> np.ndarray | None:
        """The partial frame held at the end of a stream (zero-padded to a whole frame with
        ``pad``), or None when nothing is held. The rechunker is then empty."""
        fill = self._fill
        if fill == 0:
            return None
        self._fill = 0
        if pad:
            out = self._pending.copy()
            out[fill:] = 0
            return out
        return self._pending[:fill].copy()

    def reset(self) -> None:
        """Drop the partial frame (after an interruption or a gap)."""
        self._fill = 0
