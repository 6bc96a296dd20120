"""The foreground gate: in babble, only what rises above the room's usual level reaches a VAD.

Pure numpy, sans-I/O; ``vad.energy``'s ``foreground_db`` puts one in front of its detector.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ForegroundGate"]


class ForegroundGate:
    """In babble, only what rises above the room's usual level is the user: the rest reaches the VAD as silence.

    A crowd is speech too, so a VAD calls nearly all of it speech (measured: > 99 % of the gaps
    between the user's lines, at 5 and 10 dB SNR, docs/quality.md). But the user near the
    microphone is louder than the crowd. Per chunk: its level (dB), kept in a ring of the last
    ``background_s``; the median of the ring is the room's level (the user's speech holds less
    than half of any 3 s of a conversation, and has dips between words besides); a chunk less
    than ``margin_db`` above it is replaced by silence for the detector (the audio itself passes
    untouched). It costs a level per chunk and a median of 150 values every fifth chunk (the
    room's level moves slowly), and nothing is allocated per chunk of a length seen before. The user must be ``margin_db`` louder than
    the crowd, and a monologue longer than half the window raises the estimate: opt-in, for
    crowded rooms.
    """

    def __init__(self, rate: int, *, margin_db: float = 6.0, background_s: float = 3.0, frame_ms: float = 20.0) -> None:
        self.margin_db = margin_db
        self._ring = np.full(max(int(background_s * 1000 / frame_ms), 3), np.nan)
        self._i = 0
        self._seen = 0
        self._zeros: dict[tuple[int, str], np.ndarray] = {}
        self._scratch = np.zeros(0, np.float32)
        self._background = 0.0
        self.gated = 0  # chunks replaced by silence

    def apply(self, x: np.ndarray) -> np.ndarray:
        """``x`` if it stands out from the background, else silence of its shape and type."""
        if not x.shape[0]:
            return x
        if x.dtype == np.int16:
            v = self._scratch
            if v.shape != x.shape:
                v = self._scratch = np.zeros(x.shape, np.float32)
            v[...] = x
            level = 10.0 * np.log10(float(np.vdot(v, v)) / v.size / 1073741824.0 + 1e-12)  # dB re full scale
        else:
            level = 10.0 * np.log10(float(np.vdot(x, x)) / x.size + 1e-12)
        ring = self._ring
        ring[self._i] = level
        self._i = (self._i + 1) % ring.shape[0]
        self._seen += 1
        if self._seen <= 5 or self._seen % 5 == 0:  # the room's level moves slowly: a median every 100 ms
            self._background = float(np.median(ring if self._seen >= ring.shape[0] else ring[: self._seen]))
        if level > self._background + self.margin_db:
            return x
        self.gated += 1
        key = (x.shape, x.dtype.str)
        z = self._zeros.get(key)
        if z is None:
            z = self._zeros[key] = np.zeros(x.shape, x.dtype)
        return z
