"""Noise suppression: WebRTC NS (``pywebrtc-audio``) on numpy streams, sans-I/O.

WebRTC's noise suppressor estimates the noise spectrum while nobody speaks (and keeps
tracking it under speech) and applies a Wiener-style gain per frequency band, limited to a
maximum attenuation chosen by ``level``: ``low`` 6 dB, ``moderate`` 12 dB, ``high`` 18 dB,
``very_high`` 21 dB. Steady noise (fans, hiss, hum, road) goes down by about that much;
babble, being speech, only partly. It works in 10 ms blocks at 16, 32 or 48 kHz; other rates go through
the next native rate up and back with soxr, as in :mod:`pipeline.dsp.aec` (24 kHz through 32 kHz:
67 against 122-140 us of CPU a frame for the 48 kHz call; white noise at 24 kHz goes down 6.2 /
12.1 / 17.2 / 19.7 dB per level, 6.5 / 12.4 / 17.5 / 20.1 through 48 kHz). (WebRTC's own
resampling, ``AudioProcessor(24000)``, is cheaper but leaves the 8-12 kHz band alone:
it took white noise down 6.5 dB at every level, where the 48 kHz path gives 12.5 and 18.1.)
"""

from __future__ import annotations

import numpy as np

from .aec import import_webrtc, webrtc_rate
from .blocks import BlockFramer
from .resample import Resampler

__all__ = ["NS_LEVELS", "NoiseSuppressor"]

#: Level name -> (WebRTC level, maximum attenuation in dB).
NS_LEVELS = {"low": (0, 6), "moderate": (1, 12), "high": (2, 18), "very_high": (3, 21)}
_DTYPES = (np.dtype(np.int16), np.dtype(np.float32))


class NoiseSuppressor:
    """Lowers steady background noise in a mono stream by up to ``level``'s attenuation.

    ``process(x)`` returns the audio available so far (for whole 10 ms blocks at a native
    rate: ``x``'s length, no delay); ``flush()`` the tail; ``reset()`` forgets the noise
    estimate. :attr:`speech_probability` is WebRTC's estimate for the last block processed.
    """

    def __init__(self, sample_rate: int, *, level: str = "moderate", dtype: np.dtype | str | type = np.int16) -> None:
        if level not in NS_LEVELS:
            raise ValueError(f"noise suppression level must be one of {', '.join(NS_LEVELS)}, got {level!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in _DTYPES:
            raise TypeError(f"NoiseSuppressor takes int16 or float32 samples, not {self.dtype}")
        self.sample_rate = sample_rate
        self.level = level
        self.work_rate = webrtc_rate(sample_rate)
        self.engine = import_webrtc().NoiseSuppressor(sample_rate=self.work_rate, num_channels=1,
                                                      level=NS_LEVELS[level][0])
        self._framer = BlockFramer(self.work_rate // 100, self.dtype)
        self._run = self.engine.process
        if self.work_rate != sample_rate:
            self._up = Resampler(sample_rate, self.work_rate, dtype=self.dtype.name)
            self._down = Resampler(self.work_rate, sample_rate, dtype=self.dtype.name)
        else:
            self._up = self._down = None

    @property
    def speech_probability(self) -> float:
        """WebRTC's speech probability (0-1) for the last block."""
        return float(self.engine.speech_probability)

    @property
    def delay(self) -> float:
        """Samples (at ``sample_rate``) held inside: the framing remainder plus resampling."""
        held = self._framer.pending * self.sample_rate / self.work_rate
        if self._up is not None:
            held += self._up.delay * self.sample_rate / self.work_rate + self._down.delay
        return held

    def process(self, x: np.ndarray) -> np.ndarray:
        """Suppress noise in the next chunk; returns the audio available (a new array, maybe empty)."""
        if x.dtype is not self.dtype and x.dtype != self.dtype:
            raise TypeError(f"NoiseSuppressor takes {self.dtype}, got {x.dtype}")
        if x.ndim != 1:
            raise ValueError(f"NoiseSuppressor takes mono audio, got shape {x.shape}; downmix first")
        framer = self._framer
        if self._up is None and not framer._held.shape[0] and not x.shape[0] % framer.block:
            return self._run(x) if x.shape[0] else x.copy()  # whole blocks at a native rate: straight through
        if self._up is not None:
            x = self._up.process(x)
        x = self._framer.process(x)
        y = self.engine.process(x) if x.shape[0] else x[:0].copy()
        if self._down is not None:
            y = self._down.process(y)
        return y

    def flush(self) -> np.ndarray:
        """The audio still held, processed (the last block padded with silence); a new stream follows."""
        held = self._framer.drain()
        x = np.concatenate((held, self._up.flush())) if self._up is not None else held
        n = x.shape[0]
        y = x
        if n:
            b = self._framer.block
            padded = np.zeros(-(-n // b) * b, self.dtype)
            padded[:n] = x
            y = self.engine.process(padded)[:n]
        if self._down is not None:
            y = np.concatenate((self._down.process(y), self._down.flush()))
        return y

    def reset(self) -> None:
        """Forget the noise estimate and the held audio: a new stream, same config."""
        self.engine.reset()
        self._framer.reset()
        for r in (self._up, self._down):
            if r is not None:
                r.reset()
