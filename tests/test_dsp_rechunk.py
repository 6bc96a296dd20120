"""The rechunker: fixed frames out of any chunk sizes, views when the input already fits."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.dsp import Rechunker, frame_samples


@given(
    frame=st.sampled_from([80, 160, 320, 480, 512, 720]),
    sizes=st.lists(st.integers(0, 2000), max_size=30),
    channels=st.sampled_from([1, 2]),
)
@settings(max_examples=200, deadline=None)
def test_frames_concatenate_to_the_input(frame, sizes, channels):
    """Whatever the chunk sizes, frames are exactly `frame` long and rejoin into the stream."""
    total = sum(sizes)
    stream = np.arange(total * channels, dtype=np.int32).astype(np.int16).reshape(total, channels)
    if channels == 1:
        stream = stream[:, 0].copy()
    r = Rechunker(frame, channels=channels, dtype="int16")
    out, pos = [], 0
    for n in sizes:
        got = r.process(stream[pos : pos + n])
        pos += n
        for f in got:
            assert f.shape == ((frame,) if channels == 1 else (frame, channels))
        out += got
    assert len(out) == total // frame
    assert r.pending == total % frame
    tail = r.flush()
    assert (tail is None) == (total % frame == 0)
    pieces = out + ([tail] if tail is not None else [])
    joined = np.concatenate(pieces) if pieces else stream[:0]
    assert np.array_equal(joined, stream)
    assert r.pending == 0


def test_no_copy_when_the_input_fits():
    """Aligned input comes back as views of itself: the same array, or slices of it."""
    r = Rechunker(480)
    x = np.arange(480, dtype=np.int16)
    assert r.process(x)[0] is x
    big = np.arange(480 * 3, dtype=np.int16)
    frames = r.process(big)
    assert len(frames) == 3 and all(np.shares_memory(f, big) for f in frames)
    # after a partial frame only the straddling frame is new; later ones are views again
    r.process(np.zeros(100, np.int16))
    frames = r.process(big)
    assert not np.shares_memory(frames[0], big)
    assert all(np.shares_memory(f, big) for f in frames[1:])
    assert r.pending == 100


def test_frames_do_not_alias_the_pending_buffer():
    """A frame assembled from held samples stays intact when more input arrives."""
    r = Rechunker(4)
    r.process(np.array([1, 2], np.int16))
    (first,) = r.process(np.array([3, 4, 5], np.int16))
    r.process(np.array([6, 7, 8, 9, 10, 11], np.int16))
    assert first.tolist() == [1, 2, 3, 4]


def test_flush_pads_on_request_and_reset_drops():
    """flush(pad=True) zero-pads the last frame; reset forgets it."""
    r = Rechunker(4, dtype="float32")
    r.process(np.ones(6, np.float32))
    assert r.flush(pad=True).tolist() == [1, 1, 0, 0]
    r.process(np.ones(3, np.float32))
    r.reset()
    assert r.pending == 0 and r.flush() is None


def test_frame_samples_for_common_frame_lengths():
    """10/20/30/32 ms at the voice rates, and a helpful error when it is not whole."""
    assert frame_samples(24000, 20) == 480
    assert frame_samples(16000, 32) == 512
    assert frame_samples(8000, 10) == 80
    assert frame_samples(48000, 30) == 1440
    with pytest.raises(ValueError, match="not a whole number"):
        frame_samples(22050, 10)
