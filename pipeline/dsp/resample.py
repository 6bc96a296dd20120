"""Sample-rate conversion: a one-shot :func:`resample` and a streaming :class:`Resampler`.

Both are thin layers over soxr. The streaming object keeps the filter state between
chunks, so a stream cut into 20 ms frames comes out the same as the whole signal resampled
at once (soxr aligns its output with the input, so output sample ``k`` is the input's
instant ``k / out_rate``). soxr withholds some output while it fills its filter and works
in blocks: that is :attr:`Resampler.delay`. At the end of a stream :meth:`Resampler.flush`
releases it; after an interruption or a gap :meth:`Resampler.reset` drops it. Neither
happens on its own, and never by wall-clock time.

int16 is resampled in float32 and rounded back: soxr's own int16 output is dithered (TPDF,
about +-2 LSB) with a seed of its own per stream, so the same int16 audio came out with other
bytes on every run (python-soxr has no switch for the dither). Here soxr runs on float32 (the
int16 values as they are: its float path is linear and does not clip) and the result is
rounded to the nearest integer (half to even) and clipped to int16, so int16 results are
bit-identical from one stream to the next, like float32 ones, and within 0.5 LSB of the float
resampling instead of about 2. The lengths and the delay are soxr's float32 ones, which are
its int16 ones. The conversions cost a few microseconds per 20 ms frame (docs/benchmarks.md).

Quality presets are soxr's: ``QQ`` (cubic, no delay, aliases), ``LQ``, ``MQ``, ``HQ``,
``VHQ``. ``docs/dsp.md`` has the measured delay and passband of each; the default, ``HQ``,
costs no more delay or CPU than ``MQ`` at voice frame sizes and keeps the passband flat to
90% of Nyquist (``LQ`` is already -20 dB there).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_QUALITY", "QUALITIES", "Resampler", "resample"]

#: soxr quality presets, fastest and lowest first.
QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
#: The quality used when none is given (see the module docstring and docs/dsp.md).
DEFAULT_QUALITY = "HQ"

_DTYPES = {"int16": np.dtype(np.int16), "float32": np.dtype(np.float32)}
_INT16 = _DTYPES["int16"]
_FLOAT32 = _DTYPES["float32"]


try:  # the clip ufunc itself: np.clip's Python layer costs about 1.4 us more per call (numpy 2.4)
    from numpy._core.umath import clip as _clip
except ImportError:  # an older or newer numpy: the public function, same result
    _clip = np.clip


def _round_int16(y: np.ndarray) -> np.ndarray:
    """soxr's float32 output (in int16 units, a new array) as int16: clipped in place, then
    rounded half to even straight into a new int16 array. No dither, so the same input gives
    the same bytes. Two ufunc calls (clip, then rint with an unsafe cast, which is exact
    after the clip), not four: about 0.6 us less per 20 ms frame, the same bytes."""
    _clip(y, -32768.0, 32767.0, out=y)
    out = np.empty(y.shape, _INT16)
    np.rint(y, out=out, casting="unsafe")
    return out


def _int16_over_float(chunk, process):
    """The int16 chunk function over a float32 soxr stream (``chunk`` its ``resample_chunk``,
    ``process`` its extension function or None): int16 in, int16 out, as an int16 soxr stream
    takes and gives, but rounded instead of dithered (the module docstring says why)."""
    ndarray, f32, i16, rnd = np.ndarray, _FLOAT32, _INT16, _round_int16

    def resample_int16(x: np.ndarray) -> np.ndarray:
        if type(x) is ndarray and x.dtype is i16 and x.ndim == 1 and process is not None:
            y = process(x.astype(f32)[:, None], False)
            # about every other 20 ms frame soxr gives nothing yet: no rounding to do
            return rnd(y).reshape(-1) if y.shape[0] else y.astype(i16).reshape(-1)
        if not isinstance(x, ndarray) or x.dtype != i16:
            got = getattr(x, "dtype", type(x).__name__)
            raise TypeError(f"expected int16 samples (native byte order), got {got}")
        return rnd(chunk(x.astype(f32)))

    return resample_int16


def _int16_kernel(process):
    """:meth:`Resampler.mono_kernel` for int16: ``(n, 1)`` int16 and ``last`` in, ``(m, 1)``
    int16 out, through the float32 extension function. Checks nothing, like soxr's."""
    f32, rnd = _FLOAT32, _round_int16

    def kernel(x: np.ndarray, last: bool) -> np.ndarray:
        return rnd(process(x.astype(f32), last))

    return kernel


def _identity(x: np.ndarray) -> np.ndarray:
    return x


def _direct_chunk(stream, channels: int, dtype: np.dtype):
    """``stream.resample_chunk`` without soxr's per-call Python layer, where it can be skipped.

    soxr's ``resample_chunk`` checks the array type and dtype, adds a channel axis to mono
    input, calls its extension and squeezes the axis off again (``np.squeeze``: about half
    a microsecond of a 10 us call). The type is fixed per stream, so for mono arrays of it
    this calls the extension function soxr itself calls, with the view soxr itself builds,
    and takes the channel off with a reshape (the same view ``np.squeeze`` returns). Anything
    else (other dtype, 2-D or 3-D input, a subclass) goes through ``resample_chunk``, which
    raises soxr's own errors. If a soxr release no longer has the extension function
    (``ResampleStream._process``), it is ``resample_chunk`` throughout.
    """
    chunk = stream.resample_chunk
    process = _kernel(stream, channels)
    if process is None:
        return chunk
    ndarray = np.ndarray

    def resample_mono(x: np.ndarray) -> np.ndarray:
        if type(x) is ndarray and x.ndim == 1 and x.dtype is dtype:
            return process(x[:, None], False).reshape(-1)
        return chunk(x)

    return resample_mono


def _kernel(stream, channels: int):
    process = getattr(stream, "_process", None)
    return process if channels == 1 and callable(process) else None


def _check_quality(quality: str) -> str:
    q = str(quality).upper()
    if q not in QUALITIES:
        raise ValueError(f"resample quality {quality!r} is not one of {', '.join(QUALITIES)}; "
                         f"use {DEFAULT_QUALITY!r} unless docs/dsp.md's table says otherwise")
    return q


def _check_rate(rate: float, what: str) -> None:
    if not rate or rate <= 0:
        raise ValueError(f"{what} must be a positive sample rate in Hz, got {rate!r}")


def _dtype_name(dtype: np.dtype | str | type) -> str:
    name = np.dtype(dtype).name
    if name not in _DTYPES:
        raise ValueError(f"resampler sample type must be 'int16' or 'float32', got {name!r}")
    return name


def resample(x: np.ndarray, in_rate: int, out_rate: int, *, quality: str = DEFAULT_QUALITY) -> np.ndarray:
    """A whole signal at ``out_rate`` (int16 or float32, mono ``(n,)`` or ``(n, channels)``).

    Returns ``x`` itself when the rates are equal. For streams use :class:`Resampler`.
    """
    _check_rate(in_rate, "in_rate")
    _check_rate(out_rate, "out_rate")
    _dtype_name(x.dtype)
    if in_rate == out_rate:
        return x
    import soxr

    quality = _check_quality(quality)
    if x.dtype == _INT16:  # rounded, not dithered: the same bytes every time (module docstring)
        return _round_int16(soxr.resample(x.astype(_FLOAT32), in_rate, out_rate, quality=quality))
    return soxr.resample(x, in_rate, out_rate, quality=quality)


class Resampler:
    """Streaming sample-rate converter for one stream of fixed rate, channels and type.

    ``process(x)`` returns the output available so far (possibly empty: soxr withholds
    :attr:`delay` samples); ``flush()`` returns the tail at the end of the stream and leaves
    the object ready for a new one; ``reset()`` drops what is held (interruption, gap).
    With equal rates it passes arrays through untouched and has no delay.

    The sample type is fixed at construction and checked on each call; a mismatch raises
    ``TypeError`` naming both types. int16 streams run soxr on float32 and round back
    (no dither), so the same int16 input gives the same bytes in every stream and run.
    """

    __slots__ = ("in_rate", "out_rate", "channels", "dtype", "quality", "_stream", "_chunk")

    def __init__(
        self,
        in_rate: int,
        out_rate: int,
        *,
        channels: int = 1,
        dtype: np.dtype | str | type = "int16",
        quality: str = DEFAULT_QUALITY,
    ) -> None:
        _check_rate(in_rate, "in_rate")
        _check_rate(out_rate, "out_rate")
        if channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.channels = channels
        self.dtype = _DTYPES[_dtype_name(dtype)]
        self.quality = _check_quality(quality)
        if in_rate == out_rate:
            self._stream = None
            self._chunk = _identity
        else:
            import soxr

            # int16 runs on a float32 stream and is rounded back: soxr would dither it
            self._stream = soxr.ResampleStream(in_rate, out_rate, channels, dtype="float32", quality=self.quality)
            if self.dtype is _INT16:
                self._chunk = _int16_over_float(self._stream.resample_chunk, _kernel(self._stream, channels))
            else:
                self._chunk = _direct_chunk(self._stream, channels, self.dtype)

    def process(self, x: np.ndarray) -> np.ndarray:
        """Resample the next chunk of the stream; returns a new array (maybe empty)."""
        try:
            return self._chunk(x)
        except (TypeError, ValueError) as exc:
            raise self._explain(x, exc) from exc

    def chunk_function(self):
        """The bare function behind :meth:`process` (identity with equal rates).

        For hot loops that checked the sample type and channels once already: it skips
        this wrapper's call and error translation (a fraction of a microsecond per frame).
        It takes what ``soxr.ResampleStream.resample_chunk`` takes and returns the same.
        """
        return self._chunk

    def mono_kernel(self):
        """soxr's extension function behind :meth:`process` for a mono stream, or None.

        It takes a C-ordered ``(n, 1)`` array and ``last`` (False but for a stream's end)
        and returns ``(m, 1)``. It checks nothing: given another sample type it converts
        silently, so callers must have checked that the type is :attr:`dtype` (a processor
        that resyncs on a format change has). None for multichannel streams, equal rates,
        or a soxr release without it. For int16 it is the float32 function with the
        conversions around it (the class docstring says why).
        """
        process = None if self._stream is None else _kernel(self._stream, self.channels)
        if process is None or self.dtype is not _INT16:
            return process
        return _int16_kernel(process)

    def flush(self) -> np.ndarray:
        """The withheld tail at the end of a stream; the next ``process`` starts a new stream."""
        empty = np.zeros((0,) if self.channels == 1 else (0, self.channels), self.dtype)
        stream = self._stream
        if stream is None:
            return empty
        if self.dtype is _INT16:
            tail = _round_int16(stream.resample_chunk(empty.astype(_FLOAT32), last=True))
        else:
            tail = stream.resample_chunk(empty, last=True)
        stream.clear()
        return tail

    def reset(self) -> None:
        """Drop the withheld samples and the filter state: a new stream starts, same config."""
        if self._stream is not None:
            self._stream.clear()

    @property
    def delay(self) -> float:
        """Output samples soxr holds right now (what ``flush`` would release)."""
        return 0.0 if self._stream is None else float(self._stream.delay())

    @property
    def delay_ms(self) -> float:
        """:attr:`delay` in milliseconds."""
        return 1000.0 * self.delay / self.out_rate

    def output_length(self, input_length: int) -> int:
        """How many samples a whole stream of ``input_length`` samples yields once flushed."""
        if self._stream is None:
            return input_length
        # soxr rounds the exact length half up; integer arithmetic keeps that exact.
        return int((2 * input_length * self.out_rate + self.in_rate) // (2 * self.in_rate))

    def _explain(self, x: np.ndarray, exc: Exception) -> Exception:
        shape = "mono (n,)" if self.channels == 1 else f"(n, {self.channels})"
        got = f"{x.dtype} shape {x.shape}"
        return type(exc)(f"Resampler({self.in_rate} -> {self.out_rate} Hz) expects {self.dtype.name} {shape} "
                         f"samples, got {got}; convert with pipeline.dsp.as_dtype()/to_channels() or make a "
                         f"Resampler for this format")

    def __repr__(self) -> str:
        return (f"Resampler({self.in_rate}, {self.out_rate}, channels={self.channels}, "
                f"dtype={self.dtype.name!r}, quality={self.quality!r})")
