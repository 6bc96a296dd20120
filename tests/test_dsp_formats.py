"""Sample formats and levels: conversions, channel counts, PCM bytes, RMS/peak/dBFS."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pipeline.dsp as dsp
from pipeline.dsp import (as_dtype, dbfs, deinterleave, downmix, from_pcm16, interleave, peak, rms, to_channels,
                          to_float32, to_int16, to_pcm16, upmix)

int16_arrays = hnp.arrays(np.int16, st.integers(0, 2000))
float_arrays = hnp.arrays(np.float32, st.integers(0, 2000),
                          elements=st.floats(-4.0, 4.0, width=32, allow_nan=False))


def test_exports_are_complete():
    """Every name in pipeline.dsp.__all__ exists, and every public module has __all__."""
    for name in dsp.__all__:
        assert hasattr(dsp, name), name
    import importlib

    for mod in ("formats", "resample", "rechunk", "level", "vad", "silero", "gain", "mix", "g711"):
        m = importlib.import_module(f"pipeline.dsp.{mod}")
        assert m.__all__ and all(hasattr(m, n) for n in m.__all__), mod


def test_every_int16_value_round_trips_exactly():
    """int16 -> float32 -> int16 is the identity for all 65536 values (one factor both ways)."""
    x = np.arange(-32768, 32768, dtype=np.int16)
    f = to_float32(x)
    assert f.dtype == np.float32 and f.min() == -1.0 and f.max() < 1.0
    assert np.array_equal(to_int16(f), x)


@given(int16_arrays)
@settings(max_examples=200, deadline=None)
def test_int16_round_trip_property(x):
    """Any int16 array survives a trip through float32 unchanged."""
    assert np.array_equal(to_int16(to_float32(x)), x)


@given(float_arrays)
@settings(max_examples=200, deadline=None)
def test_float_to_int16_saturates_and_rounds(f):
    """Out-of-range floats saturate (never wrap); in range the error is at most half a step."""
    y = to_int16(f)
    assert y.dtype == np.int16
    expected = np.clip(np.rint(f.astype(np.float64) * 32768), -32768, 32767)
    assert np.abs(y.astype(np.float64) - expected).max(initial=0) <= 1
    inside = np.abs(f) < 0.999
    err = np.abs(to_float32(y)[inside].astype(np.float64) - f[inside])
    assert err.max(initial=0) <= 0.5 / 32768 + 1e-7
    assert np.all(y[f >= 1.0] == 32767) and np.all(y[f <= -1.0] == -32768)


def test_out_buffers_are_used():
    """Conversions write into a preallocated out= buffer when given one."""
    x = np.array([0, 16384, -32768], np.int16)
    out = np.empty(3, np.float32)
    assert to_float32(x, out=out) is out and out.tolist() == [0.0, 0.5, -1.0]
    back = np.empty(3, np.int16)
    assert to_int16(out, out=back) is back and back.tolist() == [0, 16384, -32768]


def test_same_type_is_returned_as_is():
    """No copy when the audio already has the wanted type."""
    f = np.zeros(4, np.float32)
    i = np.zeros(4, np.int16)
    assert to_float32(f) is f and to_int16(i) is i and as_dtype(i, "int16") is i


def test_wrong_sample_type_names_the_fix():
    """An int32 array is refused with a message naming the conversion to use."""
    with pytest.raises(TypeError, match="to_float32"):
        to_int16(np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="int16"):
        as_dtype(np.zeros(3, np.int16), "int8")


@given(st.integers(1, 6), st.integers(0, 300), st.sampled_from([np.int16, np.float32]))
@settings(max_examples=100, deadline=None)
def test_interleave_deinterleave_round_trip(channels, frames, dtype):
    """Interleaving then deinterleaving gives back the (n, channels) array; both are views."""
    x = np.arange(frames * channels).astype(dtype).reshape(frames, channels)
    flat = interleave(x)
    assert flat.shape == (frames * channels,)
    assert np.shares_memory(flat, x) or x.size == 0
    back = deinterleave(flat, channels)
    assert np.array_equal(back.reshape(frames, channels), x)
    assert flat[:channels].tolist() == x[:1].reshape(-1).tolist()


def test_deinterleave_refuses_a_cut_frame():
    """7 samples do not make whole stereo frames: the error says why."""
    with pytest.raises(ValueError, match="cut mid-frame"):
        deinterleave(np.zeros(7, np.int16), 2)


@given(hnp.arrays(np.int16, st.tuples(st.integers(0, 200), st.integers(1, 4))))
@settings(max_examples=100, deadline=None)
def test_downmix_int16_is_the_rounded_mean_without_overflow(x):
    """Downmixing int16 is the channel mean, rounded; full-scale inputs do not overflow."""
    y = downmix(x)
    assert y.dtype == np.int16 and y.shape == (x.shape[0],)
    assert np.all(np.abs(y.astype(np.float64) - x.astype(np.float64).mean(axis=1)) <= 0.5)


def test_upmix_copies_mono_and_to_channels_converts_both_ways():
    """Mono becomes identical channels; stereo goes back to its mean."""
    x = np.array([1, -2, 3], np.int16)
    s = upmix(x, 2)
    assert s.shape == (3, 2) and np.array_equal(s[:, 0], x) and np.array_equal(s[:, 1], x)
    assert np.array_equal(to_channels(s, 1), x)
    assert to_channels(x, 1) is x
    st3 = to_channels(s, 3)
    assert st3.shape == (3, 3)
    f = np.array([[0.5, -0.5], [1.0, 0.0]], np.float32)
    assert downmix(f).tolist() == [0.0, 0.5]


def test_pcm16_bytes_round_trip_little_endian():
    """to_pcm16 writes little-endian interleaved bytes; from_pcm16 reads them back."""
    x = np.array([[1, -1], [256, -32768]], np.int16)
    data = to_pcm16(x)
    assert data == b"\x01\x00\xff\xff\x00\x01\x00\x80"
    assert np.array_equal(from_pcm16(data, 2), x)
    assert to_pcm16(np.array([0.5], np.float32)) == b"\x00\x40"
    with pytest.raises(ValueError, match="aligned"):
        from_pcm16(b"\x00\x01\x02", 1)


def test_levels_of_known_signals():
    """A full-scale sine is -3.01 dBFS RMS with peak 1; int16 and float32 agree; silence is -120."""
    t = np.arange(48000) / 48000
    sine = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    assert rms(sine) == pytest.approx(1 / math.sqrt(2), rel=1e-4)
    assert dbfs(sine) == pytest.approx(-3.0103, abs=0.01)
    assert peak(sine) == pytest.approx(1.0, abs=1e-4)
    half = to_int16(sine * np.float32(0.5))
    assert dbfs(half) == pytest.approx(-3.0103 - 6.0206, abs=0.01)
    assert peak(half) == pytest.approx(0.5, abs=1e-4)
    assert dbfs(np.zeros(480, np.int16)) == dsp.SILENCE_DBFS
    assert rms(np.zeros(0, np.float32)) == 0.0 and peak(np.zeros(0, np.int16)) == 0.0
    stereo = np.stack([sine, sine * 0], axis=1)
    assert dbfs(stereo) == pytest.approx(-3.0103 - 3.0103, abs=0.01)
