"""48 kHz <-> 24/16 kHz for the WebRTC edge: a short linear-phase polyphase FIR (sans-I/O, numpy).

Why hand-written
----------------
Opus in WebRTC always runs at 48 kHz; the realtime models take 24 kHz (or 16 kHz). The
general resampler (:class:`pipeline.dsp.Resampler`, soxr) made the WebRTC path ~40 ms slower
than the websocket's: soxr works in blocks and withholds output while it fills them, so every
20 ms frame waits. Streaming 20 ms frames of 48 -> 24 kHz, the latency of a sample (what soxr
withholds, on average, plus the filter's group delay, which for soxr is 0: it aligns its
output) measured with soxr 1.1.0 (``tests/test_webrtc.py::test_rates_beat_soxr_on_delay``
prints it)::

    soxr quality   48->24 mean [max] ms   24->48        48->16        16->48        passband
    QQ             0.0 [0.0]              0.1 [0.1]     0.0 [0.0]     0.1 [0.1]     no filter: a 13.2 kHz tone aliases at full level
    LQ             11.0 [20.4]            11.0 [20.4]   11.2 [20.0]   11.2 [20.0]   -20 dB at 90 % of Nyquist
    MQ             21.3 [39.3]            21.3 [39.3]   21.3 [37.6]   21.3 [37.7]   flat
    HQ (default)   21.3 [38.3]            21.3 [38.3]   21.1 [36.6]   21.1 [36.6]   flat
    VHQ            21.3 [36.8]            21.3 [36.8]   42.5 [76.2]   42.5 [76.2]   flat

(docs/dsp.md's table agrees). python-soxr 1.1 exposes only these five
presets: libsoxr's minimum/intermediate-phase and low-delay recipe flags are not reachable
from Python, and ``QQ`` (its "quick" cubic) filters nothing. The microphone, a real-time
stream, paid all of it at ``HQ`` (the last loud frame of a question reached the model 27 ms
late in ``benchmarks/webrtc.py``'s trace); the way out pays it whenever the model's audio
comes at real time rather than in bursts; ``LQ`` would halve it with audibly dull sibilants.

The ratios here are exact integers (48000 = 2 x 24000 = 3 x 16000), so a plain polyphase FIR
does it with no block structure: every input frame of ``n`` samples gives exactly
``n * L / M`` samples at once, and the only latency is the filter's group delay,
:data:`DELAY_HI` = 60 samples at 48 kHz = **1.25 ms**, constant. The filter is one 121-tap
Kaiser-windowed sinc at 48 kHz (beta 8.0), cut off 1 kHz below the low rate's Nyquist. Its
response: flat within 0.002 dB to 10 kHz (6 kHz for 16 kHz), -6 dB at 11 kHz (7 kHz),
-73 dB at the low rate's Nyquist, -85 dB from 500 Hz above it and -90 dB from 1 kHz above:
so every alias (or image) lands 73 dB down or more, 85 dB down outside the top 500 Hz
band. ``tests/test_webrtc.py`` measures a sweep, tones and an impulse through it (int16 in
and out): the delay is exactly 1.25 ms, the passband and stopband as above, a 13.2 kHz
tone's alias at 24 kHz below int16 resolution. A 20 ms frame costs about 20 us of numpy
(``np.convolve`` per phase; soxr ``HQ``: about 9 us), the history lives in one
preallocated buffer, and the only array made per call is the result.

The stream is continuous across calls (the filter's history is kept); :meth:`flush` releases
the last :attr:`delay` output samples at the end of a stream, :meth:`reset` forgets it.
Output sample ``k`` is the input instant ``k / out_rate`` delayed by :attr:`delay` samples.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DELAY_HI", "HI_RATE", "RATES", "IntegerResampler", "design"]

#: The high rate of every conversion here (Opus's clock).
HI_RATE = 48000
#: The low rates it converts to and from (and 48 kHz itself: no conversion).
RATES = (16000, 24000, 48000)
#: The filter's group delay in samples at 48 kHz (1.25 ms): a multiple of 2 and 3, so whole samples at 24 and 16 kHz.
DELAY_HI = 60
#: Kaiser window shape: about 80 dB of stopband for this length.
BETA = 8.0
#: Cut-off below the low rate's Nyquist, Hz (half the transition band of a 121-tap filter at 48 kHz).
MARGIN_HZ = 1000.0


def design(low_rate: int, *, taps: int = 2 * DELAY_HI + 1, beta: float = BETA) -> np.ndarray:
    """The linear-phase low-pass at 48 kHz for a conversion to or from ``low_rate`` (unit DC gain)."""
    fc = (low_rate / 2 - MARGIN_HZ) / HI_RATE  # cycles per sample
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * fc * np.sinc(2 * fc * n) * np.kaiser(taps, beta)
    return h / h.sum()


class IntegerResampler:
    """Streaming int16 mono 48 kHz <-> 24/16 kHz (either way), exact ratio, 1.25 ms delay (module doc).

    ``process(x)`` takes any number of samples and returns a new int16 array of all the output
    they complete (for a frame of a multiple of the ratio, exactly ``len(x) * out / in``).
    """

    __slots__ = ("in_rate", "out_rate", "up", "down", "delay", "_phases", "_taps", "_buf", "_fill", "_hist")

    def __init__(self, in_rate: int, out_rate: int) -> None:
        if in_rate not in RATES or out_rate not in RATES or HI_RATE not in (in_rate, out_rate) or in_rate == out_rate:
            raise ValueError(f"IntegerResampler converts 48000 Hz to or from 16000 or 24000 Hz, not {in_rate} -> "
                             f"{out_rate}; use pipeline.dsp.Resampler (soxr) for other rates")
        self.in_rate, self.out_rate = in_rate, out_rate
        low = min(in_rate, out_rate)
        ratio = HI_RATE // low
        self.up, self.down = (ratio, 1) if out_rate == HI_RATE else (1, ratio)
        h = design(low) * self.up  # interpolation: each phase sees 1 of `up` samples: restore the gain
        per = math.ceil(h.shape[0] / ratio)
        h = np.concatenate([h, np.zeros(per * ratio - h.shape[0])])
        self._taps = per  # taps per phase
        # phase p convolves with h[p::ratio] (np.convolve flips its kernel: the FIR as written)
        self._phases = [np.ascontiguousarray(h[p::ratio]) for p in range(ratio)]
        self.delay = DELAY_HI * out_rate // HI_RATE  # output samples
        # history: decimation keeps per*ratio - 1 input samples, interpolation per - 1
        self._hist = per * ratio - 1 if self.down > 1 else per - 1
        self._buf = np.zeros(self._hist + 2 * HI_RATE // 50, np.float64)  # room for a 40 ms frame; grows if needed
        self._fill = self._hist

    def reset(self) -> None:
        """Forget the stream: the next sample starts a new one (after silence)."""
        self._buf[:self._hist] = 0.0
        self._fill = self._hist

    def flush(self) -> np.ndarray:
        """The last :attr:`delay` output samples still inside the filter; then a new stream starts."""
        tail = self.process(np.zeros(-(-DELAY_HI * self.in_rate // HI_RATE), np.int16))
        self.reset()
        return tail[:self.delay]

    def process(self, x: np.ndarray) -> np.ndarray:
        """Resample the next int16 (or float in int16 scale) mono chunk; returns new int16 samples."""
        n = x.shape[0]
        need = self._fill + n
        if need > self._buf.shape[0]:  # a longer chunk than ever before: grow once
            grown = np.zeros(need, np.float64)
            grown[:self._fill] = self._buf[:self._fill]
            self._buf = grown
        buf = self._buf
        buf[self._fill:need] = x
        self._fill = need
        if self.down > 1:
            m, taps = self.down, self._taps
            count = (need - taps * m) // m + 1 if need >= taps * m else 0
            if count <= 0:
                return np.zeros(0, np.int16)
            acc = None
            for p, h in enumerate(self._phases):  # y[k] = sum_p sum_i h[i m + p] x[(k - i) m + m - 1 - p]
                s = buf[m - 1 - p::m][:count + taps - 1]
                y = np.convolve(s, h, "valid")
                if acc is None:
                    acc = y
                else:
                    acc += y
            used = count * m
        else:
            count = need - self._hist
            if count <= 0:
                return np.zeros(0, np.int16)
            acc = np.empty(count * self.up, np.float64)
            view = buf[:need]
            for p, h in enumerate(self._phases):  # y[j up + p] = sum_i h[i up + p] x[j - i]
                acc[p::self.up] = np.convolve(view, h, "valid")
            used = count
        keep = need - used
        buf[:keep] = buf[used:need]
        self._fill = keep
        np.rint(acc, out=acc)
        np.clip(acc, -32768, 32767, out=acc)
        return acc.astype(np.int16)

    def __repr__(self) -> str:
        return f"IntegerResampler({self.in_rate}, {self.out_rate})"
