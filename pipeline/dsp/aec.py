"""Acoustic echo cancellation: WebRTC AEC3 (``pywebrtc-audio``) on numpy streams, sans-I/O.

Theory of operation
-------------------
A voice agent's microphone hears the agent's own voice from the speaker, delayed by the
audio buffers and the air and coloured by the room. AEC3 subtracts an adaptive estimate of
that echo from the capture, given the *reference* (what was sent to the speaker), and a
residual-echo suppressor removes what the linear filter misses (the room's reverberant
tail beyond its ~50 ms filter).

Two streams feed one object: :meth:`EchoCanceller.reference` takes far-end audio as it is
played, :meth:`EchoCanceller.process` takes the capture and returns it with the echo
removed. Each capture block is paired with the oldest reference audio not yet used, so
both streams must run at the same rate in real time; the *delay* between the reference
and the echo (buffers + air, typically 30-300 ms) is not configured: AEC3's delay
estimator finds it (and follows changes) from the signals themselves.

* When the reference runs dry (nothing playing, or it arrives late), silence is paired
  and counted in :attr:`reference_missing`.
* When the reference runs ahead (it arrives in a burst), at most ``max_reference_ms`` is
  kept, the oldest is dropped and counted in :attr:`reference_dropped`: reference older
  than that cannot be echoing any more.
* When the reference can arrive *after* its echo (a fast loopback, or a reference that
  travels more hops than the capture), ``capture_delay_ms`` holds the capture back by that
  much before pairing, so the reference is in hand first; it adds that much latency, and it
  makes the pairing follow arrival (below). A continuous reference (silence included) keeps
  the pairing stable: every gap filled with silence shifts the alignment, which AEC3 then
  has to find again.

Pairing by arrival
------------------
AEC3 models the echo as the reference delayed by zero or more samples; an echo that comes
*before* its paired reference it cannot cancel at all. Pairing by sample order alone fixes
that offset by which reference frame happens to arrive first: on the JACK loopback of
``tests/test_quality_aec.py`` each reference frame reaches ``audio.aec`` about 0.4 ms after
the capture frame that holds its echo, but at the start, in bursts, 2 to 4 reference frames
come before the first capture (they are dropped: nothing to pair with). When only 2 came, every
echo came 20 ms before its paired reference (FIFO 1600 samples at each pairing, against
1280 or 960 in the runs that passed) and AEC3 never converged (ERLE 2.2 dB). Holding the
capture back did not help: the hold deepens the FIFO by its length but leaves the pairing
where the start put it.

So with ``capture_delay_ms`` (hold ``H``) the reference ahead of the capture is kept at
``H / 2`` (the *margin*): each capture chunk is paired with the reference that arrived about
``H / 2`` after it, which tolerates a reference that arrives up to ``H / 2`` after its echo,
and the other half absorbs the reference's jitter before it runs dry. At the first pairing
the backlog beyond the margin is dropped; then, once a second, if the reference ran more
than a 10 ms block beyond the margin at its peak and is still beyond it, the excess is
dropped again (start-up bursts, silence paired after the reference ran dry, lost capture
blocks). Each such cut is counted in :attr:`realigned` and its samples in
:attr:`reference_dropped`. The peak, not the mean, is what counts: the reference's earliest
arrivals show how far ahead it really is, and a late one only risks a gap, never an echo
ahead of its reference. Without a hold the pairing stays by sample order: a stream fed in
lockstep (a file, a test) or a burst kept whole up to ``max_reference_ms``.

WebRTC works in 10 ms blocks at 16, 32 or 48 kHz. Other rates (24 kHz, the Realtime API's;
8 kHz telephony) are resampled with soxr to the next native rate up (24 kHz to 32 kHz, 8 kHz
to 16 kHz) and back. 32 kHz rather than 48 kHz for 24 kHz: both hold the whole 12 kHz band,
and AEC3 at 32 kHz splits it in two bands instead of three: 0.40 against 0.54-0.56 ms of CPU
per 20 ms frame for the raw call on the 24 kHz echo conversation upsampled (NS: 67 against
122-140 us), for 3-5 us more of soxr per call; the 5-minute 24 kHz test measures ERLE 53.3 dB,
0 false barge-ins and 19/19 barge-ins (through 48 kHz: 54.7 dB, 0, 19/19). WebRTC's
``AudioProcessor`` could resample inside, but on the 5-minute 24 kHz conversation test it let
1 false barge-in through and missed 1 of 19 barge-ins where the 48 kHz path had 0 and 19/19
(ERLE 38.5 vs 38.9 dB, before the residual gate). A
:class:`~pipeline.dsp.blocks.BlockFramer` hands AEC3 whole blocks; with 20 ms frames at a
native rate nothing is copied or delayed.

Residual gate
-------------
AEC3's own suppressor lets short bursts of residual echo through (after double talk, on
some voices), loud enough for a VAD to start a false barge-in: 5 in the 5-minute 16 kHz
test with a 30 ms echo path. The bursts have a signature the user's voice does not: while
the far end plays, the canceller removed most of the block (output ``residual_gate_db`` or
more below the capture, judged per chunk: 20 ms in a 20 ms graph), whereas a user talking over the echo keeps the block within a few
dB of the capture. :class:`ResidualGate` attenuates exactly those chunks by 30 dB, and only
while the reference was active in the last 500 ms (echo delay plus the room's tail); it
never touches audio when nothing is playing. AEC3 exposes no knob for this through
``pywebrtc-audio``, so it is written here: three dot products and a multiply a frame.

Silent reference
----------------
AEC3 fed a reference of exact digital zeros after it has adapted on speech (the far end
stops talking; nothing is playing and the reference runs dry) slows down six-fold: its
filter states decay into subnormal floats, which x86 handles in microcode. On 30 s of the
16 kHz echo conversation of ``tests/test_quality_aec.py``, half of it silent reference, the
raw ``EchoCanceller.process`` took 2.0-2.1 ms of CPU per 20 ms frame on average (3.5-4.4 ms
over the silent stretches), against 0.34 ms with those blocks replaced by +-1 LSB noise
(-92 dBFS). So a reference chunk that is all zeros is handed to AEC3 as that noise (one
preallocated pattern, never the caller's array): far below anything it could cancel or
the residual gate's -60 dBFS activity floor, so the echo figures do not move.
"""

from __future__ import annotations

import numpy as np

from .blocks import BlockFramer
from .resample import Resampler

_nonzero = np.count_nonzero  # 4x cheaper than ndarray.any() on a 20 ms block

__all__ = ["WEBRTC_RATES", "EchoCanceller", "ResidualGate", "webrtc_rate"]

#: Rates WebRTC's audio processing runs at natively.
WEBRTC_RATES = (16000, 32000, 48000)
_DTYPES = (np.dtype(np.int16), np.dtype(np.float32))


def webrtc_rate(rate: int) -> int:
    """The rate WebRTC runs at for a stream at ``rate``: itself at 16/32/48 kHz, else the next native one up."""
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    if rate in WEBRTC_RATES:
        return rate
    for native in WEBRTC_RATES:  # 8 kHz -> 16, 24 kHz -> 32 (not 48: the same band, a third less work), 44.1 -> 48
        if rate < native:
            return native
    return WEBRTC_RATES[-1]


def import_webrtc():
    """The ``pywebrtc_audio`` module, or an error saying what to install."""
    try:
        import pywebrtc_audio
    except ImportError as exc:
        raise ImportError("audio.aec and audio.denoise need WebRTC's audio processing: "
                          "`pip install pywebrtc-audio` (or `pip install voxpipe[quality]`)") from exc
    return pywebrtc_audio


def _quiet(n: int, dtype: np.dtype) -> np.ndarray:
    """``n`` samples of +-1 LSB noise (fixed seed): the stand-in for an all-zero reference (module doc)."""
    q = np.random.default_rng(0x5EED).integers(-1, 2, n).astype(np.int16)
    q[0] = 1  # never all zeros itself
    return q if dtype == np.int16 else (q / 32768.0).astype(np.float32)


class _ReferenceFifo:
    """The far-end samples not yet paired with capture, bounded (oldest dropped)."""

    __slots__ = ("_buf", "_start", "_end", "limit", "dropped", "missing")

    def __init__(self, limit: int, dtype: np.dtype) -> None:
        self.limit = limit
        self._buf = np.zeros(max(4 * limit, 4096), dtype)
        self._start = self._end = 0
        self.dropped = 0
        self.missing = 0

    def __len__(self) -> int:
        return self._end - self._start

    def push(self, x: np.ndarray) -> None:
        n = x.shape[0]
        if n >= self.limit:
            self.dropped += len(self) + n - self.limit
            x = x[n - self.limit :]
            n = self.limit
            self._start = self._end = 0
        elif len(self) + n > self.limit:
            drop = len(self) + n - self.limit
            self.dropped += drop
            self._start += drop
        if self._end + n > self._buf.shape[0]:  # compact: move what is left to the front
            held = len(self)
            self._buf[:held] = self._buf[self._start : self._end]
            self._start, self._end = 0, held
        self._buf[self._end : self._end + n] = x
        self._end += n

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` samples (silence where there are none); valid until the next push."""
        have = len(self)
        if have >= n:
            out = self._buf[self._start : self._start + n]
            self._start += n
            if self._start == self._end:
                self._start = self._end = 0
            return out
        out = np.zeros(n, self._buf.dtype)
        out[:have] = self._buf[self._start : self._end]
        self._start = self._end = 0
        self.missing += n - have
        return out

    def drop(self, n: int) -> None:
        """Drop the oldest ``n`` samples held (at most all of them), counted in :attr:`dropped`."""
        n = min(n, len(self))
        self._start += n
        self.dropped += n

    def clear(self) -> None:
        self._start = self._end = 0


class ResidualGate:
    """Attenuates chunks that are residual echo: far end active, output far below the capture.

    ``apply(capture, output, reference)`` takes one chunk the canceller paired (three arrays
    of one length at one rate, whole 10 ms blocks: a 20 ms frame is one decision) and scales
    ``output`` in place; ``gated`` counts the samples attenuated.

    Nothing is allocated per chunk: int16 chunks are widened into one preallocated float32
    scratch buffer (20 ms long; a shorter chunk uses a view of it, a longer one grows it once)
    that the three energies reuse in turn; float32 chunks are read where they are.
    """

    __slots__ = ("threshold", "gain", "hangover", "_far_left", "_ref_floor", "gated", "_scratch", "_full")

    def __init__(self, rate: int, *, gate_db: float = 10.0, attenuation_db: float = 30.0,
                 far_hangover_ms: float = 500.0, reference_floor_dbfs: float = -60.0,
                 dtype: np.dtype | str | type = np.int16) -> None:
        self.threshold = 10.0 ** (-gate_db / 10.0)  # energy ratio output / capture
        self.gain = 10.0 ** (-attenuation_db / 20.0)
        self.hangover = int(far_hangover_ms * rate / 1000)
        self._far_left = 0  # samples the far end still counts as active
        self._full = 32768.0 * 32768.0 if np.dtype(dtype) == np.int16 else 1.0
        self._ref_floor = 10.0 ** (reference_floor_dbfs / 10.0) * self._full  # energy per sample
        self.gated = 0
        self._scratch = np.zeros(rate // 50, np.float32)  # one 20 ms chunk

    def reset(self) -> None:
        """Forget that the far end was active (a new stream)."""
        self._far_left = 0

    def apply(self, capture: np.ndarray, output: np.ndarray, reference: np.ndarray, *, silent: bool = False) -> None:
        """Gate ``output`` in place; ``silent``: the caller knows ``reference`` is all zeros (its energy is not taken)."""
        n = output.shape[0]
        if capture.shape[0] != n or reference.shape[0] != n:
            raise ValueError(f"ResidualGate.apply takes chunks of one length, got {capture.shape[0]}, {n}, "
                             f"{reference.shape[0]}")
        if not n:
            return
        # one decision per chunk: three dot products, not an array program (this runs every frame)
        s = self._scratch
        if s.shape[0] != n:  # not the usual 20 ms: a view of the buffer, grown if too short
            if s.shape[0] < n:
                s = self._scratch = np.zeros(n, np.float32)
            else:
                s = s[:n]
        floor = self._ref_floor * n
        wide = output.dtype == np.int16
        if silent:
            e = 0.0
        elif wide:
            s[:] = reference
            e = s.dot(s)
        else:
            e = reference.dot(reference)
        if e > floor:
            self._far_left = self.hangover
        elif self._far_left > 0:
            self._far_left -= n
            if self._far_left < 0:
                self._far_left = 0
        else:
            return  # nothing played lately: the common case while the user talks alone
        if wide:
            s[:] = output
            eo = s.dot(s)
            s[:] = capture
            ec = s.dot(s)
        else:
            eo = output.dot(output)
            ec = capture.dot(capture)
        if eo < self.threshold * ec:
            np.multiply(output, self.gain, out=output, casting="unsafe")
            self.gated += n


class EchoCanceller:
    """Removes the far-end (reference) signal's echo from a mono capture stream.

    ``reference(x)`` feeds what the speaker plays; ``process(x)`` takes the next capture
    chunk and returns the cleaned audio available so far (for chunks that are whole 10 ms
    blocks at 16/32/48 kHz: exactly that chunk's length, with no delay). :attr:`delay` is
    the capture held back, in samples. ``flush()`` returns the tail at the end of a stream,
    ``reset()`` forgets the echo path (a new call). int16 or float32, fixed at construction.
    ``residual_gate_db`` (None: off) sets the :class:`ResidualGate` after AEC3; :attr:`gate`
    counts the samples it attenuated. With ``capture_delay_ms`` the pairing follows arrival
    (module doc); :attr:`realigned` counts the times it was moved.
    """

    def __init__(self, sample_rate: int, *, dtype: np.dtype | str | type = np.int16,
                 max_reference_ms: float = 1000.0, capture_delay_ms: float = 0.0,
                 residual_gate_db: float | None = 10.0) -> None:
        self.dtype = np.dtype(dtype)
        if self.dtype not in _DTYPES:
            raise TypeError(f"EchoCanceller takes int16 or float32 samples, not {self.dtype}")
        if max_reference_ms < 20:
            raise ValueError(f"max_reference_ms must be at least 20 ms, got {max_reference_ms}")
        if not 0.0 <= capture_delay_ms <= 500.0:
            raise ValueError(f"capture_delay_ms must be between 0 and 500, got {capture_delay_ms}")
        self.sample_rate = sample_rate
        self.work_rate = webrtc_rate(sample_rate)
        self._hold_n = int(capture_delay_ms * sample_rate / 1000)
        self._hold = np.zeros(0, self.dtype)
        self._webrtc = import_webrtc()
        self.engine = self._webrtc.EchoCanceller(sample_rate=self.work_rate, num_channels=1)
        block = self.work_rate // 100
        self._framer = BlockFramer(block, self.dtype)
        self._run = self.engine.process
        self.gate = ResidualGate(self.work_rate, gate_db=residual_gate_db, dtype=self.dtype) if residual_gate_db else None
        self._fifo = _ReferenceFifo(int(max_reference_ms * self.work_rate / 1000), self.dtype)
        # live pairing (module doc, "Pairing by arrival"): only with a capture hold
        self._margin = int(capture_delay_ms * self.work_rate / 1000) // 2 if self._hold_n else None
        self._band = self.work_rate // 100  # one 10 ms block of slack before re-pairing
        self._aligned = False
        self._peak = 0  # most reference ahead of the capture in this window (samples at the work rate)
        self._seen = 0  # capture samples paired in this window
        self.realigned = 0
        self._quiet = _quiet(self.work_rate // 50, self.dtype)  # one 20 ms: the usual chunk; grown if longer
        if self.work_rate != sample_rate:
            dt = self.dtype.name
            self._up = Resampler(sample_rate, self.work_rate, dtype=dt)
            self._up_ref = Resampler(sample_rate, self.work_rate, dtype=dt)
            self._down = Resampler(self.work_rate, sample_rate, dtype=dt)
        else:
            self._up = self._up_ref = self._down = None

    @property
    def reference_dropped(self) -> int:
        """Reference samples dropped (at the work rate): more than ``max_reference_ms`` ahead, or, with a
        capture hold, beyond the pairing margin (module doc, "Pairing by arrival")."""
        return self._fifo.dropped

    @property
    def reference_missing(self) -> int:
        """Capture samples that had no reference and were paired with silence (at the work rate)."""
        return self._fifo.missing

    @property
    def delay(self) -> float:
        """Capture samples (at ``sample_rate``) held inside: the framing remainder plus resampling."""
        held = self._hold.shape[0] + self._framer.pending * self.sample_rate / self.work_rate
        if self._up is not None:
            held += self._up.delay * self.sample_rate / self.work_rate + self._down.delay
        return held

    def reference(self, x: np.ndarray) -> None:
        """Feed the next chunk of far-end audio (what the speaker plays), same rate and type."""
        if x.dtype is not self.dtype and x.dtype != self.dtype:
            raise TypeError(f"EchoCanceller reference must be {self.dtype}, got {x.dtype}")
        if self._up_ref is not None:
            x = self._up_ref.process(x)
        if x.shape[0]:
            self._fifo.push(x)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Cancel the echo in the next capture chunk; returns the cleaned audio available (a new array)."""
        if x.dtype is not self.dtype and x.dtype != self.dtype:
            raise TypeError(f"EchoCanceller capture must be {self.dtype}, got {x.dtype}")
        if x.ndim != 1:
            raise ValueError(f"EchoCanceller takes mono capture, got shape {x.shape}; downmix first")
        if self._hold_n:  # hold the capture back so that late reference still precedes its echo
            x = np.concatenate((self._hold, x))
            k = max(x.shape[0] - self._hold_n, 0)
            self._hold = x[k:].copy()
            x = x[:k]
        framer = self._framer
        if self._up is None and not framer._held.shape[0] and not x.shape[0] % framer.block and x.shape[0]:
            return self._cancel(x)  # whole blocks at a native rate: straight through
        if self._up is not None:
            x = self._up.process(x)
        x = self._framer.process(x)
        if x.shape[0]:
            y = self._cancel(x)
        else:
            y = x[:0].copy()
        if self._down is not None:
            y = self._down.process(y)
        return y

    def _cancel(self, x: np.ndarray) -> np.ndarray:
        """AEC3 (and the residual gate) on whole blocks ``x`` at the work rate, paired with the reference."""
        if self._margin is not None:
            self._align(x.shape[0])
        ref = self._fifo.take(x.shape[0])
        silent = not _nonzero(ref)
        y = self._run(x, self._silent(ref.shape[0]) if silent else ref)
        if self.gate is not None:
            self.gate.apply(x, y, ref, silent=silent)
        return y

    def _align(self, n: int) -> None:
        """Keep the reference ahead of the next ``n`` capture samples at ``_margin`` (module doc)."""
        ahead = len(self._fifo) - n
        if not self._aligned:  # the first pairing: the newest reference but the margin
            self._aligned = True
            self._peak = self._seen = 0
            if ahead > self._margin:
                self._fifo.drop(ahead - self._margin)
                self.realigned += 1
            return
        if ahead > self._peak:
            self._peak = ahead
        self._seen += n
        if self._seen < self.work_rate:  # one second of capture per look
            return
        excess = min(self._peak, ahead) - self._margin
        if self._peak - self._margin > self._band and excess > 0:
            self._fifo.drop(excess)
            self.realigned += 1
        self._peak = self._seen = 0

    def _silent(self, n: int) -> np.ndarray:
        """The stand-in for ``n`` samples of all-zero reference (module doc, "Silent reference")."""
        if n > self._quiet.shape[0]:
            self._quiet = _quiet(n, self.dtype)
        return self._quiet[:n]

    def flush(self) -> np.ndarray:
        """The capture still held, processed (the last block padded with silence); a new stream follows."""
        if self._up is not None:
            self._fifo.push(self._up_ref.flush())  # the reference's tail pairs with the capture's
        hold, self._hold = self._hold, self._hold[:0]
        x = hold if self._up is None else np.concatenate((self._up.process(hold), self._up.flush()))
        x = np.concatenate((self._framer.drain(), x))
        n = x.shape[0]
        y = x
        if n:
            b = self._framer.block
            padded = np.zeros(-(-n // b) * b, self.dtype)
            padded[:n] = x
            ref = self._fifo.take(padded.shape[0])
            y = self.engine.process(padded, ref if _nonzero(ref) else self._silent(ref.shape[0]))[:n]
        if self._down is not None:
            y = np.concatenate((self._down.process(y), self._down.flush()))
        return y

    def reset(self) -> None:
        """Forget the echo path, the held audio and the reference: a new stream, same config."""
        self.engine.reset()
        if self.gate is not None:
            self.gate.reset()
        self._framer.reset()
        self._fifo.clear()
        self._aligned = False
        self._hold = self._hold[:0]
        for r in (self._up, self._up_ref, self._down):
            if r is not None:
                r.reset()
