"""Gain, fades (no click), and mixing without overflow."""

import numpy as np
import pytest

from pipeline.dsp import (Fader, FadeState, Gain, Mixer, apply_gain, dbfs, fade_in, fade_out, hard_clip, mix, ramp,
                          soft_clip, to_float32)

RATE = 24000


def tone(freq=440.0, ms=100.0, db=-6.0, rate=RATE, dtype=np.int16, phase=0.0):
    n = int(rate * ms / 1000)
    x = 10 ** (db / 20) * np.sin(2 * np.pi * freq * np.arange(n) / rate + phase)
    return np.rint(x * 32767).astype(np.int16) if dtype == np.int16 else x.astype(np.float32)


def click(x):
    """Peak of the first difference, full scale = 1 (a cut mid-cycle shows up here)."""
    return float(np.abs(np.diff(to_float32(x).astype(np.float64))).max())


def test_gain_in_db():
    """-6.02 dB halves the level; int16 saturates instead of wrapping; 0 dB is a no-op."""
    x = tone(db=-6.0)
    assert dbfs(apply_gain(x, -6.0206)) == pytest.approx(dbfs(x) - 6.0206, abs=0.01)
    loud = apply_gain(x, 20.0)
    assert loud.dtype == np.int16 and loud.max() == 32767 and loud.min() == -32768
    assert np.all(np.sign(loud[x != 0]) == np.sign(x[x != 0]))  # saturated, not wrapped
    assert Gain(0.0).process(x) is x
    f = tone(dtype=np.float32)
    assert np.allclose(Gain(-20).process(f), f * 0.1, atol=1e-6)


@pytest.mark.parametrize("curve", ["linear", "cosine"])
def test_fade_out_removes_the_click(curve):
    """Cutting a 440 Hz tone at its peak clicks; a 5 ms fade-out brings the step down to the
    tone's own slope."""
    x = tone(ms=100.0, phase=np.pi / 2 - 2 * np.pi * 440 * 2399 / RATE)  # ends on a crest
    cut = np.concatenate([x, np.zeros(480, np.int16)])
    faded = np.concatenate([fade_out(x, 120, curve), np.zeros(480, np.int16)])
    slope = 2 * np.pi * 440 / RATE * 10 ** (-6 / 20)  # largest first difference of the tone itself
    assert click(cut) > 0.3
    assert click(faded) <= slope * 1.05
    assert faded[-481] == 0 or abs(int(faded[-481])) < 400  # the fade ends at (near) zero


@pytest.mark.parametrize("curve", ["linear", "cosine"])
def test_fade_in_removes_the_click(curve):
    """Starting a tone at its crest clicks; a 5 ms fade-in does not."""
    x = tone(phase=np.pi / 2)
    start = np.concatenate([np.zeros(480, np.int16), x])
    faded = np.concatenate([np.zeros(480, np.int16), fade_in(x, 120, curve)])
    slope = 2 * np.pi * 440 / RATE * 10 ** (-6 / 20)
    assert click(start) > 0.3
    assert click(faded) <= slope * 1.05
    assert np.array_equal(faded[480 + 120 :], x[120:])


def test_ramps_and_fades_on_short_arrays():
    """Ramps start at 0 and rise; a fade longer than the array still ends at silence."""
    r = ramp(8, "cosine")
    assert r[0] == 0 and np.all(np.diff(r) > 0) and r[-1] < 1
    assert not r.flags.writeable
    x = np.ones(4, np.float32)
    out = fade_out(x, 8, "linear")
    assert out.tolist() == pytest.approx([0.375, 0.25, 0.125, 0.0])
    assert np.array_equal(x, np.ones(4))  # inputs are never modified
    with pytest.raises(ValueError, match="linear, cosine"):
        ramp(8, "exp")


def test_fader_spans_frames_and_mutes_after_fading_out():
    """A 5 ms fade over 2.5 ms frames equals the one-array fade; then it stays muted."""
    x = tone(ms=20, dtype=np.float32)
    f = Fader(120, "cosine")
    assert f.process(x[:60]) is x[:60] or f.state is FadeState.OPEN
    f.start_out()
    parts = [f.process(x[i : i + 60]) for i in range(0, 240, 60)]
    assert f.state is FadeState.MUTED
    assert np.allclose(np.concatenate(parts)[:120], fade_out(x[:120], 120))
    assert not np.any(np.concatenate(parts)[120:])
    f.start_in()
    up = np.concatenate([f.process(x[i : i + 60]) for i in range(0, 240, 60)])
    assert f.state is FadeState.OPEN
    assert np.allclose(up[:120], fade_in(x[:120], 120)) and np.array_equal(up[120:], x[120:240])


def test_mix_sums_without_overflow():
    """Four full-scale int16 inputs sum in float and clip; nothing wraps around."""
    x = tone(db=-0.5)
    hard = mix([x, x, x, x], clip="hard")
    assert hard.dtype == np.int16
    assert np.all(np.sign(hard[x != 0]) == np.sign(x[x != 0]))
    assert hard.max() == 32767
    soft = mix([x, x, x, x], clip="soft")
    assert soft.max() <= 32767 and np.all(np.sign(soft[x != 0]) == np.sign(x[x != 0]))


def test_soft_clip_is_transparent_below_the_knee_and_bounded_above():
    """Below -2.5 dBFS soft clipping changes nothing; above, it stays within full scale."""
    quiet = tone(db=-6, dtype=np.float32)
    assert np.array_equal(soft_clip(quiet.copy()), quiet)
    loud = tone(db=+6, dtype=np.float32)
    out = soft_clip(loud.copy())
    assert np.abs(out).max() <= 1.0
    assert np.all(np.diff(np.sort(out)) >= 0)  # monotonic mapping keeps the order
    assert np.abs(hard_clip(loud.copy())).max() == 1.0


def test_mix_applies_gains_and_pads_shorter_inputs():
    """Gains are in dB per input; a shorter input counts as silence afterwards."""
    a = np.full(4, 0.25, np.float32)
    b = np.full(2, 0.5, np.float32)
    out = mix([a, b], gains_db=[0.0, -6.0206])
    assert out.tolist() == pytest.approx([0.5, 0.5, 0.25, 0.25], abs=1e-4)


def test_mixer_aligns_streams_on_media_time():
    """Chunks of different sizes and offsets add up sample-exactly at their pts."""
    m = Mixer(2, dtype="float32")
    a = np.arange(100, dtype=np.float32) / 1000
    b = np.full(100, 0.01, np.float32)
    m.write(a[:30], pts=1000)
    assert m.read() is None  # input 2 has not covered anything yet
    m.write(b[:50], pts=1000)
    pts, out = m.read()
    assert pts == 1000 and np.allclose(out, a[:30] + b[:30])
    m.write(a[30:], pts=1030)
    m.write(b[50:], pts=1050)
    pts, out = m.read()
    assert pts == 1030 and np.allclose(out, a[30:] + b[30:])
    assert m.read() is None and m.flush() is None


def test_mixer_per_input_gains_int16_output_and_late_input():
    """Per-input gains apply; with max_delay a stalled input is treated as silence and its
    late samples are dropped and counted."""
    m = Mixer(2, dtype="int16", gains_db=[0.0, -6.0206], max_delay=100)
    x = np.full(480, 10000, np.int16)
    m.write(x, 0, input=0)
    m.write(x, 0, input=1)
    pts, out = m.read()
    assert pts == 0 and out.dtype == np.int16 and np.all(np.abs(out - 15000) <= 1)
    m.write(x, 480, input=0)  # input 1 stalls
    pts, out = m.read()
    assert pts == 480 and out.shape == (380,) and np.all(out == 10000)
    m.write(x, 480, input=1)  # arrives late: 380 samples already gone
    assert m.late == 380
    pts, out = m.flush()
    assert pts == 860 and np.all(np.abs(out - 15000) <= 1)


def test_mixer_refuses_mismatched_channels_with_the_fix():
    """A stereo chunk into a mono mixer names the processor that fixes it."""
    with pytest.raises(ValueError, match="audio.resample"):
        Mixer(2).write(np.zeros((10, 2), np.float32), 0)


def test_mixer_numbered_and_anonymous_writes_agree():
    """The same chunks mixed with input numbers and without give the same result; mixing
    the two styles is refused."""
    rng = np.random.default_rng(5)
    chunks = [(k, rng.standard_normal(n).astype(np.float32) * 0.1, pts)
              for k, n, pts in [(0, 100, 0), (1, 60, 0), (1, 40, 60), (0, 50, 100), (1, 50, 100)]]
    a, b = Mixer(2), Mixer(2)
    outs_a, outs_b = [], []
    for k, x, pts in chunks:
        a.write(x, pts, k)
        b.write(x, pts)
        outs_a.append(a.read())
        outs_b.append(b.read())
    assert [o is None for o in outs_a] == [o is None for o in outs_b]
    for oa, ob in zip(outs_a, outs_b):
        if oa is not None:
            assert oa[0] == ob[0] and np.allclose(oa[1], ob[1])
    with pytest.raises(ValueError, match="every write or on none"):
        a.write(chunks[0][1], 150)
