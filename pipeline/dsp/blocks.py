"""Block framing for libraries that work in fixed blocks (WebRTC's 10 ms), without copies.

WebRTC's audio processing takes whole 10 ms blocks; ``pywebrtc-audio`` zero-pads a short
last block, which would put a hole in a stream. A :class:`BlockFramer` hands the library
the largest run of whole blocks it has and keeps the remainder (less than one block) for
the next call. When nothing is held and a chunk is a whole number of blocks (20 ms frames
at 16, 24 and 48 kHz) the chunk itself is returned: no copy, no added latency.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BlockFramer"]


class BlockFramer:
    """Whole blocks of ``block`` samples out of a stream of any chunk sizes (mono)."""

    __slots__ = ("block", "dtype", "_held")

    def __init__(self, block: int, dtype: np.dtype | str | type = np.float32) -> None:
        if block < 1:
            raise ValueError(f"block must be at least 1 sample, got {block}")
        self.block = block
        self.dtype = np.dtype(dtype)
        self._held = np.zeros(0, self.dtype)

    @property
    def pending(self) -> int:
        """Samples held back until the next block completes."""
        return self._held.shape[0]

    def process(self, x: np.ndarray) -> np.ndarray:
        """The whole blocks available after ``x``, as one array (maybe empty, maybe ``x`` itself)."""
        b = self.block
        held = self._held
        if held.shape[0]:
            x = np.concatenate((held, x))
        n = x.shape[0] // b * b
        if n == x.shape[0]:
            if held.shape[0]:
                self._held = held[:0]
            return x
        self._held = x[n:].copy()  # small (< one block); must not alias the caller's array
        return x[:n]

    def drain(self) -> np.ndarray:
        """The held remainder (less than a block), which is then forgotten."""
        held = self._held
        self._held = held[:0]
        return held

    def reset(self) -> None:
        """Drop the held remainder."""
        self._held = self._held[:0]
