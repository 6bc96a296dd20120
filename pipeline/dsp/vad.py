"""Voice activity detection: an energy VAD and the speech start/stop state machine.

Theory of operation
-------------------
A VAD here has two layers.

1. A *detector* decides, per analysis window, whether the audio is active: the
   :class:`EnergyVAD` compares the window's mean square with an adaptive noise floor,
   :class:`~pipeline.dsp.silero.SileroVAD` thresholds a neural network's probability.
2. A :class:`SpeechSegmenter` turns those decisions into speech segments with the
   semantics of the OpenAI Realtime API's server VAD (``threshold``,
   ``prefix_padding_ms``, ``silence_duration_ms``), plus ``min_speech_ms`` so that a click
   or a cough does not open a turn. Its states and transitions are the table below::

       SILENCE  --active-->   STARTING --speech held-->  SPEECH     (emit start)
       STARTING --silence held-->                  SILENCE    (a blip: nothing emitted)
       SPEECH   --inactive->  STOPPING --silence held--> SILENCE    (emit stop)
       STOPPING --active-->   SPEECH                            (a pause inside speech)

   "speech held": the activity since the onset lasted ``min_speech_ms`` and reached the
   detector's upper threshold; "silence held": ``silence_duration_ms`` passed since the
   last activity. Pauses shorter than that neither end speech nor drop a candidate.

Events carry exact media-time sample positions, not window indices: ``pts`` is where the
speech starts (the onset) or ends (the last active sample), refined inside the window to a
few milliseconds. ``padded_pts`` is what the Realtime API reports: ``audio_start_ms`` is the
onset minus ``prefix_padding_ms``, ``audio_end_ms`` the end plus ``silence_duration_ms``.
``detected_pts`` is where the decision was made (the end of the window that confirmed it):
the difference is the VAD's latency.

The energy detector's noise floor is tracked by minimum statistics (Martin, 2001): the
floor is the smallest window energy seen over the last second, kept as four 250 ms
sub-window minima so that the update costs a comparison per window. Steady noise (a fan,
mains hum, a tone) therefore becomes the floor within a second whatever its level and is
not speech; speech always has dips between syllables, so it never becomes the floor.
The first window initialises the floor, so a stream that starts in noise is handled at
once. A window is active when its energy exceeds both the floor by a margin and an
absolute level; both grow with ``threshold`` (see :func:`energy_thresholds`). Once in
speech a 3 dB lower threshold applies (hysteresis), so speech does not flutter at its
quiet ends.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

__all__ = [
    "EnergyVAD",
    "NoiseFloor",
    "SpeechSegmenter",
    "TRANSITIONS",
    "VADEvent",
    "VADInput",
    "VADState",
    "energy_thresholds",
]


class VADState(enum.Enum):
    """Where a speech segmenter is."""

    SILENCE = "silence"  # no speech
    STARTING = "starting"  # activity seen, not yet long enough to be speech
    SPEECH = "speech"  # speech start was reported
    STOPPING = "stopping"  # speech paused, not yet long enough to end it


class VADInput(enum.Enum):
    """What a window told the segmenter."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    SPEECH_HELD = "speech_held"  # activity lasted min_speech_ms and was strong once
    SILENCE_HELD = "silence_held"  # silence_duration_ms passed since the last activity


_S, _V = VADState, VADInput
#: The legal transitions; anything else is a bug in the caller.
TRANSITIONS: dict[tuple[VADState, VADInput], VADState] = {
    (_S.SILENCE, _V.INACTIVE): _S.SILENCE,
    (_S.SILENCE, _V.ACTIVE): _S.STARTING,
    (_S.STARTING, _V.ACTIVE): _S.STARTING,
    (_S.STARTING, _V.INACTIVE): _S.STARTING,
    (_S.STARTING, _V.SPEECH_HELD): _S.SPEECH,
    (_S.STARTING, _V.SILENCE_HELD): _S.SILENCE,
    (_S.SPEECH, _V.ACTIVE): _S.SPEECH,
    (_S.SPEECH, _V.INACTIVE): _S.STOPPING,
    (_S.STOPPING, _V.INACTIVE): _S.STOPPING,
    (_S.STOPPING, _V.ACTIVE): _S.SPEECH,
    (_S.STOPPING, _V.SILENCE_HELD): _S.SILENCE,
}
# Enum attribute access costs ~0.1 us in Python 3.11: the hot paths use these module constants.
_SILENCE, _STARTING, _SPEECH, _STOPPING = _S.SILENCE, _S.STARTING, _S.SPEECH, _S.STOPPING
_ACTIVE, _INACTIVE, _SPEECH_HELD, _SILENCE_HELD = _V.ACTIVE, _V.INACTIVE, _V.SPEECH_HELD, _V.SILENCE_HELD


@dataclass(frozen=True, slots=True)
class VADEvent:
    """Speech started (``started``) or stopped at media time ``pts`` (samples at ``sample_rate``).

    ``padded_pts`` follows the Realtime API (start minus prefix padding, end plus the
    silence duration); ``detected_pts`` is where the decision was taken.
    """

    started: bool
    pts: int
    padded_pts: int
    detected_pts: int
    sample_rate: int

    @property
    def ms(self) -> float:
        """``pts`` in milliseconds of media time."""
        return 1000.0 * self.pts / self.sample_rate

    @property
    def latency_ms(self) -> float:
        """How long after the boundary the VAD knew: ``detected_pts - pts`` in ms."""
        return 1000.0 * (self.detected_pts - self.pts) / self.sample_rate


def _ms_to_samples(ms: float, rate: int, what: str) -> int:
    if ms < 0:
        raise ValueError(f"{what} must be >= 0 ms, got {ms}")
    return int(round(ms * rate / 1000.0))


class SpeechSegmenter:
    """The start/stop state machine shared by every VAD (see the module docstring).

    Feed it one decision per window with :meth:`update`; it returns a :class:`VADEvent`
    when speech starts or stops, else None. ``last_active`` is the end of the latest
    activity: on the self-loop "active window while in SPEECH" (most windows of speech) a
    detector may just advance it instead of calling :meth:`update`.
    """

    __slots__ = ("sample_rate", "min_speech", "silence", "prefix", "state", "last_active", "_onset",
                 "_origin", "_strong")

    def __init__(self, sample_rate: int, *, min_speech_ms: float = 100.0, silence_duration_ms: float = 200.0,
                 prefix_padding_ms: float = 300.0) -> None:
        self.sample_rate = sample_rate
        self.min_speech = _ms_to_samples(min_speech_ms, sample_rate, "min_speech_ms")
        self.silence = _ms_to_samples(silence_duration_ms, sample_rate, "silence_duration_ms")
        self.prefix = _ms_to_samples(prefix_padding_ms, sample_rate, "prefix_padding_ms")
        self.state = _SILENCE
        self._onset = 0
        self.last_active = 0
        self._strong = False
        self._origin: int | None = None  # first sample of the stream (padding never goes before it)

    @property
    def speaking(self) -> bool:
        """True between a start and a stop event."""
        return self.state is _SPEECH or self.state is _STOPPING

    def _go(self, event: VADInput) -> VADState:
        try:
            new = TRANSITIONS[(self.state, event)]
        except KeyError:
            raise RuntimeError(f"VAD segmenter: no transition for {event.name} in state {self.state.name}") from None
        self.state = new
        return new

    def update(self, active: bool, start: int, end: int, onset: int | None = None,
               offset: int | None = None, strong: bool = True) -> VADEvent | None:
        """One window ``[start, end)``: ``active`` or not, with the exact activity bounds.

        ``onset`` is where activity begins in an active window that follows silence
        (default ``start``); ``offset`` is where activity ends in the last active stretch
        (default ``end``). A detector with two thresholds marks windows above the upper one
        ``strong``: activity opens a candidate at the lower threshold (so the onset is
        placed early), and speech is confirmed only once a strong window was seen and the
        activity lasted ``min_speech_ms``.
        """
        if self._origin is None:
            self._origin = start
        state = self.state
        if active:
            self.last_active = end if offset is None else offset
            if state is _SILENCE:
                self._onset = start if onset is None else onset
                self._strong = strong
                state = self._go(_ACTIVE)
            else:
                if state is _STARTING:
                    self._strong = self._strong or strong
                state = self._go(_ACTIVE)
            if state is _STARTING and self._strong and self.last_active - self._onset >= self.min_speech:
                self._go(_SPEECH_HELD)
                pts = self._onset
                return VADEvent(True, pts, max(self._origin, pts - self.prefix), end, self.sample_rate)
            return None
        if state is _SILENCE:
            return None
        if state is _SPEECH and offset is not None:
            self.last_active = offset
        state = self._go(_INACTIVE)
        if end - self.last_active < self.silence:
            return None
        self._go(_SILENCE_HELD)
        if state is _STOPPING:
            pts = self.last_active
            return VADEvent(False, pts, pts + self.silence, end, self.sample_rate)
        return None

    def begin(self, origin: int) -> None:
        """Note where the stream starts (prefix padding never reaches before it); detectors
        call it with their first chunk, before any :meth:`update`."""
        if self._origin is None:
            self._origin = origin

    def finish(self, end: int) -> VADEvent | None:
        """At the end of the stream: the stop of a segment still open (at its last activity)."""
        if self.speaking:
            self.state = _SILENCE
            pts = self.last_active
            return VADEvent(False, pts, min(end, pts + self.silence), end, self.sample_rate)
        self.state = _SILENCE
        return None

    def reset(self) -> None:
        """Back to silence, forgetting any pending segment."""
        self.state = _SILENCE
        self._origin = None


def energy_thresholds(threshold: float) -> tuple[float, float]:
    """``(margin_db, absolute_dbfs)`` for a Realtime-style ``threshold`` in 0..1.

    A window is active when its level is ``margin_db`` above the noise floor *and* above
    ``absolute_dbfs``. 0.5 (the Realtime default) gives 6 dB over the floor and -50 dBFS;
    1.0 gives 16 dB and -30 dBFS; 0.0 gives 1 dB and -70 dBFS.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"VAD threshold must be between 0 and 1 (Realtime semantics), got {threshold}")
    return 1.0 + 10.0 * threshold, -70.0 + 40.0 * threshold


_SUBWINDOWS = 4  # minimum statistics: the floor is the minimum over 4 sub-windows...
_SUBWINDOW_MS = 250.0  # ...of 250 ms, i.e. over the last 0.75 to 1 s
_HYSTERESIS_DB = 3.0
_REFINE_MS = 4.0  # resolution of the onset/offset search inside a window
_MAX_WINDOW_MS = 32.0  # longer chunks are analysed in windows of _WINDOW_MS
_WINDOW_MS = 20.0
_EMPTY: tuple = ()
_F32 = np.dtype(np.float32)
_vdot = np.vdot
_I16 = np.dtype(np.int16)
_INV_FS2 = 1.0 / (32768.0 * 32768.0)
_MAX_PLANS = 64  # window shapes whose buffer views are kept (frames of varying size: the latest)


def _divisors(n: int, b: int, dtype: np.dtype) -> np.ndarray:
    """Each block's length (the last may be shorter), times 2**30 for int16 squares: the
    squares are of unscaled samples, and folding the scale in here is exact."""
    k = -(-n // b)
    counts = np.full(k, b, np.float64)
    counts[-1] = n - (k - 1) * b
    if dtype is _I16:
        counts *= 32768.0 * 32768.0
    return counts.astype(_F32)


def _db(ms: float) -> float:
    return 10.0 * math.log10(ms) if ms > 0 else -120.0


class NoiseFloor:
    """Minimum-statistics noise floor of a stream of window energies (mean squares).

    ``update(ms, n)`` takes the energy of the next window of ``n`` samples and returns the
    floor: the smallest energy of the last 0.75 to 1 s, and at once any lower one. The
    first window sets it. Cost: a few comparisons per window.
    """

    __slots__ = ("floor", "_sub_min", "_sub_fill", "_subwindow", "_minima")

    def __init__(self, sample_rate: int) -> None:
        self._subwindow = int(sample_rate * _SUBWINDOW_MS / 1000)
        self.reset()

    def reset(self) -> None:
        """Forget the floor (the next window sets it)."""
        self.floor = -1.0  # < 0: not yet known
        self._sub_min = math.inf
        self._sub_fill = 0
        self._minima: list[float] = []

    def update(self, ms: float, n: int) -> float:
        """Feed one window's mean square; returns the floor."""
        if ms < self._sub_min:
            self._sub_min = ms
            # the floor is never above the current sub-window's minimum, so only a new
            # minimum can lower it (and the first window, below the initial inf, sets it)
            floor = self.floor
            if floor < 0.0 or ms < floor:
                self.floor = ms
        fill = self._sub_fill + n
        if fill < self._subwindow:
            self._sub_fill = fill
            return self.floor
        minima = self._minima  # the sub-window is complete
        minima.append(self._sub_min)
        if len(minima) > _SUBWINDOWS:
            del minima[0]
        self._sub_min = math.inf
        self._sub_fill = 0
        floor = self.floor = min(minima)
        return floor


class EnergyVAD:
    """Speech start/stop from signal energy over an adaptive noise floor (sans-I/O).

    ``process(x, pts)`` takes the next chunk of a stream (int16 or float32, mono or
    ``(n, channels)``; chunks up to 32 ms are analysed whole, longer ones in 20 ms
    windows) and returns the :class:`VADEvent` s it completes, usually none. Use it for
    server-side VAD, barge-in detection and endpointing where a neural VAD is too heavy:
    steady noise and hum are ignored, babble and music are not (use
    :class:`~pipeline.dsp.silero.SileroVAD` there).

    The VAD keeps a reference to the previous chunk, to place speech boundaries that fall
    just before a window boundary: do not modify chunks in place after passing them.
    """

    def __init__(
        self,
        sample_rate: int,
        *,
        threshold: float = 0.5,
        prefix_padding_ms: float = 300.0,
        silence_duration_ms: float = 200.0,
        min_speech_ms: float = 100.0,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.sample_rate = sample_rate
        self.threshold = threshold
        margin_db, abs_dbfs = energy_thresholds(threshold)
        self._margin_on = 10.0 ** (margin_db / 10.0)
        self._margin_off = 10.0 ** ((margin_db - _HYSTERESIS_DB) / 10.0)
        self._abs_on = 10.0 ** (abs_dbfs / 10.0)
        self._abs_off = 10.0 ** ((abs_dbfs - _HYSTERESIS_DB) / 10.0)
        self.segmenter = SpeechSegmenter(sample_rate, min_speech_ms=min_speech_ms,
                                         silence_duration_ms=silence_duration_ms,
                                         prefix_padding_ms=prefix_padding_ms)
        self.noise = NoiseFloor(sample_rate)
        self._update_floor = self.noise.update
        self._max_window = int(sample_rate * _MAX_WINDOW_MS / 1000)
        self._window = int(sample_rate * _WINDOW_MS / 1000)
        self._refine = max(1, int(sample_rate * _REFINE_MS / 1000))
        # buffers of the boundary search (see _block_levels), grown to the largest window seen
        self._f = np.zeros(self._max_window, _F32)
        self._sq = np.zeros(self._max_window + self._refine, _F32)
        self._sums = np.zeros(self._sq.shape[0] // self._refine + 1, _F32)
        self._plans: dict[tuple, tuple] = {}
        self.reset()

    # --- state ------------------------------------------------------------------------------

    def reset(self) -> None:
        """Start a new stream: silence, an unknown noise floor, media time from 0."""
        self.segmenter.reset()
        self.noise.reset()
        self._pos = 0
        self._fresh = True
        self._floor = -2.0  # the floor the thresholds were computed for
        self._thr_on = self._abs_on
        self._thr_off = self._abs_off
        self._prev: np.ndarray | None = None
        self._prev_start = 0
        self.level = 0.0  # mean square of the last window

    @property
    def state(self) -> VADState:
        """The segmenter's state."""
        return self.segmenter.state

    @property
    def speaking(self) -> bool:
        """True between a start and a stop event."""
        return self.segmenter.speaking

    @property
    def noise_floor_dbfs(self) -> float:
        """The current noise floor estimate in dBFS (-120 before the first chunk)."""
        return _db(self.noise.floor) if self.noise.floor > 0 else -120.0

    @property
    def level_dbfs(self) -> float:
        """The level of the last analysed window in dBFS."""
        return _db(self.level)

    # --- processing -------------------------------------------------------------------------

    def process(self, x: np.ndarray, pts: int | None = None) -> tuple[VADEvent, ...] | list[VADEvent]:
        """Analyse the next chunk (starting at media time ``pts``, default: right after the
        previous one); return the events it completes (usually an empty tuple)."""
        n = x.shape[0]
        start = self._pos if pts is None else pts
        if n > self._max_window:
            return self._process_long(x, start)
        if self._fresh:
            self._fresh = False
            self.segmenter.begin(start)
        end = self._pos = start + n
        # the window's mean square (the whole per-frame cost when nothing changes); vdot
        # flattens (n, channels) itself
        dtype = x.dtype
        if dtype is _I16:
            f = x.astype(_F32)  # cheaper than a ufunc into a preallocated buffer at this size
            ms = float(_vdot(f, f)) * _INV_FS2 / x.size
        elif dtype is _F32:
            ms = float(_vdot(x, x)) / x.size
        else:
            raise TypeError(f"EnergyVAD expects int16 or float32 samples, got {x.dtype}")
        self.level = ms
        floor = self._update_floor(ms, n)
        if floor != self._floor:
            self._floor = floor
            self._thr_on = max(self._abs_on, floor * self._margin_on)
            self._thr_off = max(self._abs_off, floor * self._margin_off)
        seg = self.segmenter
        state = seg.state
        if ms > self._thr_off:
            if state is _SPEECH:
                seg.last_active = end  # the hot path: speech goes on, no table lookup
                self._prev = x
                self._prev_start = start
                return _EMPTY
            if state is _SILENCE:
                onset = self._onset(self._prev, self._prev_start, x, start)
                event = seg.update(True, start, end, onset=onset, strong=ms > self._thr_on)
            else:
                event = seg.update(True, start, end, strong=ms > self._thr_on)
        elif state is _SILENCE:
            self._prev = x  # the other hot path: silence goes on
            self._prev_start = start
            return _EMPTY
        elif state is _SPEECH:
            event = seg.update(False, start, end, offset=self._offset(self._prev, self._prev_start, x, start))
        elif end - seg.last_active < seg.silence:
            event = None  # a pause still shorter than silence_duration_ms: no change of state
        else:
            event = seg.update(False, start, end)
        self._prev = x
        self._prev_start = start
        return _EMPTY if event is None else [event]

    def finish(self) -> tuple[VADEvent, ...] | list[VADEvent]:
        """At the end of the stream: the stop event of a segment still open, if any."""
        event = self.segmenter.finish(self._pos)
        return _EMPTY if event is None else [event]

    def _process_long(self, x: np.ndarray, pts: int) -> list[VADEvent]:
        events: list[VADEvent] = []
        w = self._window
        for i in range(0, x.shape[0], w):
            events += self.process(x[i : i + w], pts + i)
        return events

    # --- placing boundaries inside windows (only on transitions) ----------------------------
    #
    # Block levels are computed into buffers kept between calls (squares, block sums and the
    # per-block divisors for each window length seen), then searched as a Python list of a
    # handful of floats: no numpy temporaries on the boundary path. The arithmetic is the
    # float32 arithmetic of the plain formulation (square, per-sample channel mean, sums of
    # zero-padded blocks, divide by the block's length), so the levels and therefore the
    # boundaries are the same to the bit; int16 samples are squared unscaled and the 2**-30
    # folded into the divisor, which is exact.

    def _block_levels(self, x: np.ndarray) -> list[float]:
        """Mean square of consecutive blocks of ``_refine`` samples (the last may be shorter),
        in full-scale units, as float32 values."""
        dtype = x.dtype
        plan = self._plans.get((x.shape, dtype))
        if plan is None:
            plan = self._plan(x.shape, dtype)
        f, sq, blocks, sums, divisors, pad = plan
        if f is None:  # float32 mono: square straight into the buffer
            np.multiply(x, x, out=sq)
        elif x.ndim == 1:  # int16 mono: convert, then square (cheaper than a casting multiply)
            np.copyto(f, x)
            np.multiply(f, f, out=sq)
        else:  # the mean over the channels of each sample's squares
            np.multiply(x, x, out=f, dtype=_F32)
            np.add.reduce(f, axis=1, out=sq)
            np.divide(sq, _F32.type(x.shape[1]), out=sq)
        if pad is not None:
            pad.fill(0.0)
        np.add.reduce(blocks, axis=1, out=sums)
        np.divide(sums, divisors, out=sums)
        return sums.tolist()

    def _plan(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple:
        """Views into the search buffers for windows of this shape and type, made once."""
        if dtype is not _I16 and dtype is not _F32:
            raise TypeError(f"EnergyVAD expects int16 or float32 samples, got {dtype}")
        n = shape[0]
        size = n * (shape[1] if len(shape) > 1 else 1)
        b = self._refine
        k = -(-n // b)
        if self._sq.shape[0] < k * b or self._f.shape[0] < size or len(self._plans) >= _MAX_PLANS:
            self._sq = np.zeros(max(k * b, self._sq.shape[0]), _F32)
            self._f = np.zeros(max(size, self._f.shape[0]), _F32)
            self._sums = np.zeros(self._sq.shape[0] // b + 1, _F32)
            self._plans.clear()  # their views are of the old buffers
        if len(shape) == 1:
            f = None if dtype is _F32 else self._f[:n]
        else:
            f = self._f[:size].reshape(shape)
        plan = (f, self._sq[:n], self._sq[: k * b].reshape(k, b), self._sums[:k], _divisors(n, b, dtype),
                self._sq[n : k * b] if n != k * b else None)
        self._plans[(shape, dtype)] = plan
        return plan

    def _levels(self, prev: np.ndarray | None, prev_start: int, x: np.ndarray,
                start: int) -> tuple[list[float] | None, list[float]]:
        """Block levels of the previous window (None unless it ends where this one starts)
        and of this one; for two mono windows of one type in a single pass over the buffers."""
        if prev is None or prev_start + prev.shape[0] != start:
            return None, self._block_levels(x)
        dtype = x.dtype
        if prev.dtype is not dtype or prev.ndim != 1 or x.ndim != 1:
            return self._block_levels(prev), self._block_levels(x)
        key = (prev.shape[0], x.shape[0], dtype)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._pair_plan(key)
        f_prev, f_x, sq_prev, sq_x, blocks, sums, divisors, pads, k = plan
        if f_prev is None:  # float32: square straight into the buffer
            np.multiply(prev, prev, out=sq_prev)
            np.multiply(x, x, out=sq_x)
        else:
            np.copyto(f_prev, prev)
            np.multiply(f_prev, f_prev, out=sq_prev)
            np.copyto(f_x, x)
            np.multiply(f_x, f_x, out=sq_x)
        for pad in pads:
            pad.fill(0.0)
        np.add.reduce(blocks, axis=1, out=sums)
        np.divide(sums, divisors, out=sums)
        lv = sums.tolist()
        return lv[:k], lv[k:]

    def _pair_plan(self, key: tuple) -> tuple:
        """Like :meth:`_plan` for two mono windows laid out one after the other, each
        starting a block."""
        n1, n2, dtype = key
        b = self._refine
        k1, k2 = -(-n1 // b), -(-n2 // b)
        total = (k1 + k2) * b
        if self._sq.shape[0] < total or self._f.shape[0] < n1 + n2 or len(self._plans) >= _MAX_PLANS:
            self._sq = np.zeros(max(total, self._sq.shape[0]), _F32)
            self._f = np.zeros(max(n1 + n2, self._f.shape[0]), _F32)
            self._sums = np.zeros(self._sq.shape[0] // b + 1, _F32)
            self._plans.clear()
        sq, f = self._sq, self._f
        divisors = np.concatenate([_divisors(n1, b, dtype), _divisors(n2, b, dtype)])
        o2 = k1 * b
        pads = tuple(sq[lo:hi] for lo, hi in ((n1, o2), (o2 + n2, total)) if hi > lo)
        plan = (None if dtype is _F32 else f[:n1], None if dtype is _F32 else f[n1 : n1 + n2],
                sq[:n1], sq[o2 : o2 + n2], sq[:total].reshape(k1 + k2, b), self._sums[: k1 + k2],
                divisors, pads, k1)
        self._plans[key] = plan
        return plan

    def _onset(self, prev: np.ndarray | None, prev_start: int, x: np.ndarray, start: int) -> int:
        """The first loud block in the previous window's tail or in this window."""
        thr = float(_F32.type(self._thr_off))  # the comparison is in float32, as the levels
        b = self._refine
        lv_prev, lv = self._levels(prev, prev_start, x, start)
        if lv_prev is not None:
            # loud blocks at the very end of the previous window (after its last quiet block)
            first_loud = len(lv_prev)
            while first_loud and not lv_prev[first_loud - 1] <= thr:
                first_loud -= 1
            if first_loud < len(lv_prev):
                return prev_start + first_loud * b
        for i, level in enumerate(lv):
            if level > thr:
                return start + i * b
        return start

    def _offset(self, prev: np.ndarray | None, prev_start: int, x: np.ndarray, start: int) -> int:
        """The end of the last loud block in this window, else in the previous one."""
        thr = float(_F32.type(self._thr_off))
        b = self._refine
        lv_prev, lv = self._levels(prev, prev_start, x, start)
        if lv[0] > thr:
            # activity continues into this window: it ends after the leading loud run
            end_block = len(lv)
            for i, level in enumerate(lv):
                if level <= thr:
                    end_block = i
                    break
            return min(start + end_block * b, start + x.shape[0])
        if lv_prev is not None:
            for i in range(len(lv_prev) - 1, -1, -1):
                if lv_prev[i] > thr:
                    return min(prev_start + (i + 1) * b, start)
        return start
