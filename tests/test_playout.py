"""The playout core shared by playback sinks: progress accounting and the lock-free ring."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.frames import PlaybackProgressFrame
from processors.devices.playout import PlayoutProgress, PlayoutRing, fade_out_ramp


def P(item: str, ms: int, done: bool = False, turn: int = 1) -> PlaybackProgressFrame:
    return PlaybackProgressFrame(item, ms, done, turn=turn)


def test_progress_reports_changes_and_done_when_the_next_item_starts():
    """played_ms grows per item; an item is done once played and followed by another."""
    p = PlayoutProgress(1000)
    p.write(500, "a", 1)
    p.write(300, "a", 1)  # the same item continues
    p.write(200, "b", 1)
    assert p.updates() == []  # nothing played yet
    p.advance(100)
    assert p.updates() == [P("a", 100)]
    assert p.updates() == []  # no change, no frame
    p.advance(850)
    assert p.updates() == [P("a", 800, True), P("b", 50)]
    p.advance(10_000)  # clamped to what was written
    assert p.played == 1000 and p.updates() == [P("b", 200)]  # b may still grow
    p.finish_items()
    assert p.updates() == [P("b", 200, True)]


def test_progress_interruption_cuts_and_reports_final_positions():
    """drop() makes the played position final for the item cut, and 0 for items never started."""
    p = PlayoutProgress(16000)
    p.write(16000, "a", 1)
    p.write(8000, "b", 1)
    p.advance(4800)
    assert p.updates() == [P("a", 300)]
    assert p.drop(6400) == 24000 - 6400
    assert p.updates() == [P("a", 400, True), P("b", 0, True)]
    assert p.queued == 0
    p.write(1600, "c", 2)  # after the cut, the next item starts right there
    p.advance(p.played + 1600)
    p.finish_items()
    assert p.updates() == [P("c", 100, True, turn=2)]


def test_progress_resume_position_skips_what_a_ring_dropped():
    """With resume, new audio is counted from where the ring's writer was."""
    p = PlayoutProgress(1000)
    p.write(1000, "a", 1)
    p.advance(200)
    p.drop(205, resume=1000)
    assert p.updates() == [P("a", 205, True)]
    p.write(100, "b", 2)
    p.advance(1050)
    assert p.updates() == [P("b", 50, turn=2)]


def test_progress_ignores_audio_without_item_but_keeps_its_place():
    """Audio with no item id takes time on the timeline and is not reported; it ends the item before it."""
    p = PlayoutProgress(1000)
    p.write(100, "a", 1)
    p.write(400, None)
    p.write(100, "b", 1)
    p.advance(550)
    assert p.updates() == [P("a", 100, True), P("b", 50)]


def fill(n: int, channels: int = 1, dtype: str = "int16") -> np.ndarray:
    x = (np.arange(1, n * channels + 1) % 30000).astype(dtype).reshape(n, channels)
    return x[:, 0] if channels == 1 else x


@pytest.mark.parametrize("chunk", [17, 509])
def test_ring_round_trip_with_wraparound(chunk):
    """Writes and reads of awkward sizes across the ring's end give back the same samples."""
    ring = PlayoutRing(1000, 2, "int16")
    x = fill(20_000, 2)
    out = np.empty((20_000, 2), np.int16)
    w = r = 0
    while r < 20_000:
        if w < 20_000:
            w += ring.write(x[w : w + chunk])
        block = out[r : min(r + 2 * chunk // 3 + 1, 20_000)]
        r += ring.read_into(block)
    assert np.array_equal(out, x) and ring.underruns == 0


def test_ring_full_write_is_partial_and_empty_read_is_silence():
    """A full ring takes what fits; a dry ring gives silence, an underrun only mid-response."""
    ring = PlayoutRing(100, 1, "float32")
    assert ring.write(np.ones(150, np.float32)) == 100 and ring.space == 0
    out = np.full((160, 1), 7.0, np.float32)
    assert ring.read_into(out) == 100
    assert (out[:100] == 1).all() and (out[100:] == 0).all() and ring.underruns == 0
    ring.expect_more = True
    assert ring.read_into(out) == 0 and ring.underruns == 1


def test_ring_broadcasts_mono_into_every_channel():
    """Mono audio written to a stereo ring plays on both channels."""
    ring = PlayoutRing(64, 2, "int16")
    ring.write(fill(10))
    out = np.zeros((10, 2), np.int16)
    ring.read_into(out)
    assert np.array_equal(out[:, 0], fill(10)) and np.array_equal(out[:, 1], fill(10))


def test_ring_flush_fades_out_then_resumes_with_new_audio():
    """A flush plays a 5 ms fade of what was queued, drops the rest, then plays what came after."""
    rate = 16000
    fade = 80
    ring = PlayoutRing(rate, 1, "int16", fade=fade)
    t = np.arange(rate) / rate
    sine = np.rint(30000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    ring.write(sine)
    first = np.zeros((320, 1), np.int16)
    ring.read_into(first)
    resume = ring.request_flush()
    assert resume == rate
    ring.write(np.full(100, 5, np.int16))  # the next response, queued after the interruption
    out = np.zeros((320, 1), np.int16)
    assert ring.read_into(out) == fade
    gain = fade_out_ramp(fade)[:, 0]
    np.testing.assert_allclose(out[:fade, 0], np.rint(sine[320 : 320 + fade] * gain), atol=1)
    assert not out[fade:].any() and ring.read == rate
    nxt = np.zeros((320, 1), np.int16)
    assert ring.read_into(nxt) == 100 and (nxt[:100] == 5).all()
    # the fade removes the click: the largest step at the cut is far below an abrupt cut's
    faded = np.concatenate([first[:, 0], out[:, 0]]).astype(np.int32)
    abrupt = np.concatenate([first[:, 0], np.zeros(320, np.int16)]).astype(np.int32)
    assert np.abs(np.diff(faded[300:])).max() < 0.3 * np.abs(np.diff(abrupt[300:])).max()


def test_fade_ramp_shape():
    """The fade-out gain falls monotonically from near 1 to exactly 0."""
    g = fade_out_ramp(80)[:, 0]
    assert g.shape == (80,) and g[0] > 0.99 and g[-1] == 0 and (np.diff(g) <= 0).all()
    assert fade_out_ramp(0).shape == (0, 1)
