"""The resampler: frequency and level kept at every voice rate pair, streaming == one-shot."""

import itertools

import numpy as np
import pytest
import soxr

from pipeline.dsp import QUALITIES, Resampler, dbfs, resample, to_float32

RATES = (8000, 16000, 22050, 24000, 44100, 48000)
PAIRS = [(a, b) for a, b in itertools.permutations(RATES, 2)]


def sine(freq, rate, seconds, db=-6.0, dtype=np.float32, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    x = (10 ** (db / 20)) * np.sin(2 * np.pi * freq * t)
    if dtype == np.int16:
        x = np.rint(x * 32767).astype(np.int16)
    else:
        x = x.astype(np.float32)
    if channels > 1:
        x = np.stack([x] + [(x // 2 if dtype == np.int16 else x * np.float32(0.5))] * (channels - 1), axis=1)
    return x


def peak_frequency(x, rate):
    w = np.hanning(x.shape[0])
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * w))
    k = int(np.argmax(spectrum))
    # parabolic interpolation around the peak bin
    if 0 < k < spectrum.shape[0] - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-30)
        k = k + 0.5 * (a - c) / (a - 2 * b + c)
    return k * rate / x.shape[0]


def stream(r, x, chunk):
    parts = [r.process(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    parts.append(r.flush())
    return np.concatenate(parts)


@pytest.mark.parametrize("in_rate,out_rate", PAIRS)
def test_sine_keeps_frequency_and_level(in_rate, out_rate):
    """A 997 Hz sine keeps its FFT peak frequency (within 1 Hz) and level (within 0.5 dB)."""
    x = sine(997.0, in_rate, 0.5, dtype=np.int16)
    r = Resampler(in_rate, out_rate, dtype="int16")
    y = stream(r, x, in_rate // 50)
    assert y.dtype == np.int16
    mid_x = x[in_rate // 10 : -in_rate // 10]
    mid_y = y[out_rate // 10 : -out_rate // 10]
    assert peak_frequency(to_float32(mid_y), out_rate) == pytest.approx(997.0, abs=1.0)
    assert dbfs(mid_y) == pytest.approx(dbfs(mid_x), abs=0.5)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
@pytest.mark.parametrize("in_rate,out_rate", PAIRS)
def test_20ms_streaming_equals_one_shot(in_rate, out_rate, dtype):
    """Streaming in 20 ms chunks then flushing equals soxr's one-shot output, length within 1."""
    x = sine(440.0, in_rate, 0.3, dtype=dtype) + (sine(3100.0, in_rate, 0.3, db=-20, dtype=dtype))
    one = soxr.resample(x, in_rate, out_rate, quality="HQ")
    r = Resampler(in_rate, out_rate, dtype=np.dtype(dtype).name)
    y = stream(r, x, in_rate // 50)
    assert abs(y.shape[0] - one.shape[0]) <= 1
    assert r.output_length(x.shape[0]) == one.shape[0]
    n = min(y.shape[0], one.shape[0])
    diff = np.abs(y[:n].astype(np.float64) - one[:n].astype(np.float64))
    tol = 2.0 if dtype == np.int16 else 1e-5  # int16 output is rounded/dithered by soxr
    assert diff.max() <= tol


@pytest.mark.parametrize("chunk", [17, 509, 441, 1])
def test_odd_chunk_sizes_and_empty_chunks_change_nothing(chunk):
    """Chunks of 17, 509, 441 or 1 samples, with empty chunks between, give the one-shot result."""
    x = sine(440.0, 44100, 0.1)
    one = resample(x, 44100, 16000)
    r = Resampler(44100, 16000, dtype="float32")
    parts = []
    for i in range(0, x.shape[0], chunk):
        parts.append(r.process(x[i : i + chunk]))
        parts.append(r.process(x[:0]))
    parts.append(r.flush())
    y = np.concatenate(parts)
    assert y.shape == one.shape
    assert np.abs(y - one).max() < 1e-5


def test_no_discontinuity_at_chunk_boundaries():
    """The first difference at 20 ms chunk boundaries is no larger than anywhere in a sine."""
    x = sine(440.0, 48000, 1.0)
    r = Resampler(48000, 24000, dtype="float32")
    outs = [r.process(x[i : i + 960]) for i in range(0, 48000, 960)] + [r.flush()]
    y = np.concatenate(outs)
    boundaries = np.cumsum([o.shape[0] for o in outs])[:-2]
    boundaries = boundaries[(boundaries > 100) & (boundaries < y.shape[0] - 100)]
    d = np.abs(np.diff(y))
    body = d[1000:-1000].max()
    assert len(boundaries) > 10
    assert d[boundaries - 1].max() <= body * 1.001
    # and the steady part is the ideal sine (soxr aligns output with input: no delay offset)
    t = np.arange(y.shape[0]) / 24000
    ideal = 0.5012 * np.sin(2 * np.pi * 440 * t)
    assert np.abs(y[2400:-2400] - ideal[2400:-2400]).max() < 2e-3


def test_stereo_streams_keep_channels_apart():
    """Stereo int16 at 44.1 kHz -> 24 kHz: each channel equals its mono resampling."""
    x = sine(1000.0, 44100, 0.5, dtype=np.int16, channels=2)
    r = Resampler(44100, 24000, channels=2, dtype="int16")
    y = stream(r, x, 882)
    assert y.ndim == 2 and y.shape[1] == 2
    left = soxr.resample(np.ascontiguousarray(x[:, 0]), 44100, 24000)
    right = soxr.resample(np.ascontiguousarray(x[:, 1]), 44100, 24000)
    assert np.abs(y[:, 0].astype(int) - left.astype(int)).max() <= 2
    assert np.abs(y[:, 1].astype(int) - right.astype(int)).max() <= 2
    assert dbfs(y[2400:-2400, 1]) == pytest.approx(dbfs(y[2400:-2400, 0]) - 6.02, abs=0.1)
    assert dbfs(y[2400:-2400, 0]) == pytest.approx(dbfs(x[4410:-4410, 0]), abs=0.1)


def test_flush_starts_a_new_stream_and_reset_drops_what_is_held():
    """After flush the object resamples a new stream exactly like a fresh one; reset drops the tail."""
    x = sine(440.0, 16000, 0.2)
    fresh = stream(Resampler(16000, 24000, dtype="float32"), x, 320)
    r = Resampler(16000, 24000, dtype="float32")
    stream(r, x[:1000], 320)
    again = stream(r, x, 320)
    assert np.array_equal(again, fresh)
    r.process(x[:3200])
    assert r.delay > 0 and r.delay_ms > 0
    r.reset()
    assert r.delay == 0
    assert np.array_equal(stream(r, x, 320), fresh)


def test_equal_rates_pass_through_with_no_delay():
    """Same rate in and out: the input array itself comes back and nothing is held."""
    x = sine(440.0, 24000, 0.02, dtype=np.int16)
    r = Resampler(24000, 24000)
    assert r.process(x) is x and r.delay == 0 and r.flush().shape == (0,)
    assert resample(x, 24000, 24000) is x


def test_wrong_type_error_names_both_formats():
    """Feeding float32 to an int16 resampler says what it expects and how to fix it."""
    r = Resampler(48000, 24000, dtype="int16")
    with pytest.raises(TypeError, match=r"expects int16 mono.*got float32.*as_dtype"):
        r.process(np.zeros(960, np.float32))
    with pytest.raises(ValueError, match="channels"):
        Resampler(48000, 24000, channels=2).process(np.zeros(960, np.int16))


def test_bad_configuration_is_refused_with_the_fix():
    """Unknown quality, bad rate and bad sample type raise errors that name the choices."""
    with pytest.raises(ValueError, match="QQ, LQ, MQ, HQ, VHQ"):
        Resampler(48000, 24000, quality="ultra")
    with pytest.raises(ValueError, match="positive sample rate"):
        Resampler(0, 24000)
    with pytest.raises(ValueError, match="'int16' or 'float32'"):
        Resampler(48000, 24000, dtype="float64")
    assert [Resampler(48000, 24000, quality=q.lower()).quality for q in QUALITIES] == list(QUALITIES)


@pytest.mark.parametrize("in_rate,out_rate", [(48000, 24000), (24000, 16000), (16000, 24000)])
def test_direct_call_equals_soxr_resample_chunk(in_rate, out_rate):
    """The per-chunk path that skips soxr's Python layer gives soxr's public call's output
    to the bit (float32), chunk by chunk: same shapes, 1-D, contiguous; strided views too."""
    import soxr

    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(in_rate) / in_rate)).astype(np.float32)
    r = Resampler(in_rate, out_rate, dtype="float32")
    raw = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=r.quality)
    f = r.chunk_function()
    assert f is not raw.resample_chunk  # the direct path is in use (this soxr has it)
    n = in_rate // 50
    for i in range(0, x.shape[0] - n + 1, n):
        chunk = x[i : i + n] if i % (4 * n) else np.repeat(x[i : i + n], 2)[::2]  # some strided
        got, want = f(chunk), raw.resample_chunk(chunk)
        assert got.ndim == 1 and got.flags.c_contiguous and got.dtype == np.float32
        assert np.array_equal(got, want)
    assert np.array_equal(r.flush(), raw.resample_chunk(np.zeros(0, np.float32), last=True))


def test_direct_call_hands_other_input_to_soxr():
    """Another type or a 2-D chunk is not converted silently: soxr's own checks refuse it."""
    r = Resampler(48000, 24000, dtype="int16")
    f = r.chunk_function()
    with pytest.raises(TypeError):
        f(np.zeros(960, np.float32))
    with pytest.raises(TypeError):
        f(np.zeros(960, np.int16).byteswap().view(np.dtype(">i2")))
    with pytest.raises(ValueError):
        f(np.zeros((960, 2), np.int16))
    assert f(np.zeros((960, 1), np.int16)).shape[1] == 1  # (n, 1) is soxr's mono too
    k = r.mono_kernel()
    assert k is not None and k(np.zeros((960, 1), np.int16), False).ndim == 2
    assert Resampler(48000, 24000, channels=2).mono_kernel() is None
    assert Resampler(24000, 24000).mono_kernel() is None


def _speechlike_int16(rate, seconds, seed=7):
    """Noise bursts under a 4 Hz envelope plus a sine, near full scale at the peaks."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    x = 0.6 * env * rng.standard_normal(n) / 3 + 0.3 * np.sin(2 * np.pi * 440 * t)
    return np.clip(np.rint(x * 32767), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("in_rate,out_rate", [(16000, 24000), (48000, 24000), (24000, 16000), (44100, 16000)])
def test_int16_is_bit_reproducible_across_fresh_streams(in_rate, out_rate):
    """Two fresh int16 Resamplers on the same chunked input give the same bytes (soxr's own
    int16 output is dithered with a seed per stream; ours is rounded), and so does the
    one-shot resample(), twice; the lengths are soxr's."""
    x = _speechlike_int16(in_rate, 1.0)
    a = stream(Resampler(in_rate, out_rate, dtype="int16"), x, in_rate // 50)
    b = stream(Resampler(in_rate, out_rate, dtype="int16"), x, in_rate // 50)
    assert a.dtype == np.int16 and a.tobytes() == b.tobytes()
    one = resample(x, in_rate, out_rate)
    assert one.tobytes() == resample(x, in_rate, out_rate).tobytes()
    assert a.shape == one.shape == soxr.resample(x, in_rate, out_rate, quality="HQ").shape


@pytest.mark.parametrize("chunk", [320, 17, 1, 4410])
def test_int16_chunked_equals_one_shot(chunk):
    """int16 streamed in any chunk size, with flush, equals the one-shot int16 resample to
    within one LSB (float32 streaming and one-shot differ by < 1e-5 of full scale, which can
    move a rounding at the half), and exactly in all but a few samples."""
    x = _speechlike_int16(16000, 0.5)
    one = resample(x, 16000, 24000)
    y = stream(Resampler(16000, 24000, dtype="int16"), x, chunk)
    assert y.shape == one.shape
    diff = np.abs(y.astype(int) - one.astype(int))
    assert diff.max() <= 1
    assert np.count_nonzero(diff) <= y.shape[0] // 1000


@pytest.mark.parametrize("in_rate,out_rate", [(16000, 24000), (48000, 24000), (24000, 16000)])
def test_int16_quality_against_the_float_reference(in_rate, out_rate):
    """Against the float32 resampling of the same samples, int16 output is within 0.5 LSB
    (rounding, clipped only where the float exceeds int16) and its error power is below the
    dithered soxr int16 path's, which is measured here in the same run."""
    x = _speechlike_int16(in_rate, 1.0)
    ref = soxr.resample(x.astype(np.float32), in_rate, out_rate, quality="HQ").astype(np.float64)
    y = stream(Resampler(in_rate, out_rate, dtype="int16"), x, in_rate // 50).astype(np.float64)
    inside = np.abs(ref) <= 32767
    assert inside.mean() > 0.99
    assert np.abs(y - ref)[inside].max() <= 0.5 + 1e-3
    dithered = soxr.resample(x, in_rate, out_rate, quality="HQ").astype(np.float64)
    assert np.mean((y - ref)[inside] ** 2) < np.mean((dithered - ref)[inside] ** 2)
