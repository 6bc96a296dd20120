"""Energy VAD: eSpeak speech in silence, white noise and 440 Hz hum; steady noise is not speech."""

import numpy as np
import pytest

from pipeline.dsp import EnergyVAD, SpeechSegmenter, VADState
from pipeline.dsp.vad import TRANSITIONS, VADInput
from speech_fixtures import background, segments, speech_scene

TOLERANCE_MS = 60


def run(vad, x, chunk):
    events = []
    for i in range(0, x.shape[0] - chunk + 1, chunk):
        events += vad.process(x[i : i + chunk])
    return events + list(vad.finish())


def assert_matches(found, truth, rate):
    assert len(found) == len(truth), f"found {found}, truth {truth}"
    tol = TOLERANCE_MS * rate / 1000
    for (s, e), (ts, te) in zip(found, truth):
        assert abs(s - ts) <= tol and abs(e - te) <= tol, (
            f"segment {s / rate:.3f}-{e / rate:.3f}s vs truth {ts / rate:.3f}-{te / rate:.3f}s")


@pytest.mark.parametrize("kind", ["silence", "noise", "hum"])
@pytest.mark.parametrize("rate,chunk_ms", [(24000, 20), (16000, 10), (48000, 30), (8000, 20)])
def test_speech_segments_within_60ms(kind, rate, chunk_ms):
    """Three utterances, each found once, start and stop within 60 ms of the truth."""
    scene = speech_scene(kind, rate)
    vad = EnergyVAD(rate, silence_duration_ms=500, min_speech_ms=100)
    events = run(vad, scene.int16(), rate * chunk_ms // 1000)
    assert_matches(segments(events), scene.truth, rate)


def test_float32_and_stereo_input_give_the_same_segments():
    """float32 samples and a two-channel copy are segmented like the int16 mono signal."""
    scene = speech_scene("noise")
    mono = run(EnergyVAD(24000, silence_duration_ms=500), scene.int16(), 480)
    f32 = run(EnergyVAD(24000, silence_duration_ms=500), scene.samples.astype(np.float32), 480)
    stereo = np.repeat(scene.int16()[:, None], 2, axis=1)
    st = run(EnergyVAD(24000, silence_duration_ms=500), stereo, 480)
    assert segments(mono) == segments(st)
    assert [abs(a.pts - b.pts) <= 96 for a, b in zip(mono, f32)] == [True] * len(mono)


@pytest.mark.parametrize("kind", ["noise", "hum"])
def test_ten_seconds_of_steady_noise_is_not_speech(kind):
    """10 s of white noise or 440 Hz hum at -30 dBFS never opens a segment."""
    x = background(kind, 240000, 24000, -30.0, seed=3)
    vad = EnergyVAD(24000)
    x16 = np.rint(x * 32768).astype(np.int16)
    assert run(vad, x16, 480) == []
    assert vad.noise_floor_dbfs == pytest.approx(-30.0, abs=1.5)


def test_noise_that_starts_later_becomes_the_floor():
    """Noise switching on after digital silence gives at most one short false segment, then
    none: the floor adapts within a second."""
    x = np.concatenate([np.zeros(24000, np.float32), background("noise", 240000, 24000, -30.0)])
    events = run(EnergyVAD(24000, silence_duration_ms=200), x, 480)
    segs = segments(events)
    assert len(segs) <= 1
    if segs:
        assert segs[0][1] - segs[0][0] <= 1.3 * 24000


def test_events_follow_realtime_semantics():
    """padded_pts = onset - prefix_padding (start) and end + silence_duration (stop);
    the stop is decided silence_duration after the end of speech."""
    scene = speech_scene("silence")
    vad = EnergyVAD(24000, prefix_padding_ms=300, silence_duration_ms=500, min_speech_ms=100)
    events = run(vad, scene.int16(), 480)
    start, stop = events[0], events[1]
    assert start.started and not stop.started
    assert start.padded_pts == start.pts - 7200
    assert stop.padded_pts == stop.pts + 12000
    assert 0 <= stop.detected_pts - stop.padded_pts < 480
    assert 100 <= start.latency_ms <= 140
    assert start.ms == pytest.approx(1000 * start.pts / 24000)


def test_short_blip_is_not_speech_but_min_speech_zero_takes_it():
    """A 40 ms click burst is dropped with min_speech_ms=100 and reported with 0."""
    x = np.zeros(48000, np.float32)
    x[12000:12960] = background("noise", 960, 24000, -10.0)
    assert run(EnergyVAD(24000, min_speech_ms=100), x, 480) == []
    got = segments(run(EnergyVAD(24000, min_speech_ms=0), x, 480))
    assert len(got) == 1 and abs(got[0][0] - 12000) <= 96 and abs(got[0][1] - 12960) <= 96


def test_long_chunks_are_analysed_in_windows():
    """A whole second per call finds the same segments as 20 ms frames."""
    scene = speech_scene("hum")
    a = segments(run(EnergyVAD(24000, silence_duration_ms=500), scene.int16(), 480))
    b = segments(run(EnergyVAD(24000, silence_duration_ms=500), scene.int16(), 24000))
    assert len(a) == len(b) == 3
    assert all(abs(x - y) <= 240 for pa, pb in zip(a, b) for x, y in zip(pa, pb))


def test_explicit_pts_and_reset():
    """Events carry the media time given with each chunk; reset starts a new stream."""
    scene = speech_scene("silence")
    x = scene.int16()
    vad = EnergyVAD(24000, silence_duration_ms=500)
    events = []
    for i in range(0, x.shape[0] - 479, 480):
        events += vad.process(x[i : i + 480], pts=100000 + i)
    assert events[0].pts == pytest.approx(100000 + scene.truth[0][0], abs=24 * 60)
    vad.reset()
    assert vad.state is VADState.SILENCE and vad.noise_floor_dbfs == -120.0


def test_threshold_is_validated():
    """The Realtime threshold is 0..1; the error says so."""
    with pytest.raises(ValueError, match="between 0 and 1"):
        EnergyVAD(24000, threshold=2)


def test_transition_table_is_complete_and_enforced():
    """Every state handles ACTIVE and INACTIVE; an illegal input names input and state."""
    for state in VADState:
        assert (state, VADInput.ACTIVE) in TRANSITIONS and (state, VADInput.INACTIVE) in TRANSITIONS
    seg = SpeechSegmenter(16000)
    with pytest.raises(RuntimeError, match="SPEECH_HELD in state SILENCE"):
        seg._go(VADInput.SPEECH_HELD)


class _PlainNumpyVAD(EnergyVAD):
    """The boundary search as first written (whole-array numpy, a temporary per step): the
    reference the buffered search must reproduce to the bit."""

    def _block_levels(self, x):
        f = x.reshape(x.shape[0], -1).astype(np.float32)
        if x.dtype == np.int16:
            f *= np.float32(1.0 / 32768.0)
        sq = np.einsum("ij,ij->i", f, f) / f.shape[1]
        b = self._refine
        k = -(-sq.shape[0] // b)
        padded = np.zeros(k * b, np.float32)
        padded[: sq.shape[0]] = sq
        counts = np.full(k, b, np.float32)
        counts[-1] = sq.shape[0] - (k - 1) * b
        return padded.reshape(k, b).sum(axis=1) / counts

    def _onset(self, prev, prev_start, x, start):
        thr, b = self._thr_off, self._refine
        if prev is not None and prev_start + prev.shape[0] == start:
            lv = self._block_levels(prev)
            quiet = np.flatnonzero(lv <= thr)
            first_loud = int(quiet[-1]) + 1 if quiet.size else 0
            if first_loud < lv.shape[0]:
                return prev_start + first_loud * b
        loud = np.flatnonzero(self._block_levels(x) > thr)
        return start + (int(loud[0]) * b if loud.size else 0)

    def _offset(self, prev, prev_start, x, start):
        thr, b = self._thr_off, self._refine
        lv = self._block_levels(x)
        loud = np.flatnonzero(lv > thr)
        if loud.size and loud[0] == 0:
            run = np.flatnonzero(lv <= thr)
            end_block = int(run[0]) if run.size else lv.shape[0]
            return min(start + end_block * b, start + x.shape[0])
        if prev is not None and prev_start + prev.shape[0] == start:
            loud = np.flatnonzero(self._block_levels(prev) > thr)
            if loud.size:
                return min(prev_start + (int(loud[-1]) + 1) * b, start)
        return start


@pytest.mark.parametrize("shape", [(480,), (470,), (96,), (7,), (768,), (480, 2), (470, 3), (160, 6)])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_block_levels_are_the_plain_numpy_levels_to_the_bit(shape, dtype):
    """The buffered block levels equal the whole-array formulation exactly, for window
    lengths that are and are not whole blocks, mono and multichannel, one VAD reused."""
    rng = np.random.default_rng(5)
    vad, ref = EnergyVAD(24000), _PlainNumpyVAD(24000)
    for scale in (30000.0, 300.0, 3.0):
        x = rng.standard_normal(shape) * scale
        x = np.clip(x, -32768, 32767).astype(np.int16) if dtype is np.int16 else (x / 32768).astype(np.float32)
        got = vad._block_levels(x)
        want = ref._block_levels(x)
        assert isinstance(got, list) and len(got) == want.shape[0]
        assert np.array_equal(np.asarray(got, np.float32), want)


@pytest.mark.parametrize("kind", ["silence", "noise", "hum"])
@pytest.mark.parametrize("rate,chunk_ms", [(24000, 20), (16000, 10), (48000, 30), (8000, 20), (24000, 15)])
def test_boundaries_are_those_of_the_plain_numpy_search(kind, rate, chunk_ms):
    """Every event (start and stop pts, padding, decision point) is the reference's, on the
    speech scenes, for int16, float32 and stereo input."""
    scene = speech_scene(kind, rate)
    chunk = rate * chunk_ms // 1000
    inputs = [scene.int16(), scene.samples.astype(np.float32), np.repeat(scene.int16()[:, None], 2, axis=1)]
    for x in inputs:
        got = run(EnergyVAD(rate, silence_duration_ms=500), x, chunk)
        want = run(_PlainNumpyVAD(rate, silence_duration_ms=500), x, chunk)
        assert got == want
        assert len(got) == 6


@pytest.mark.parametrize("n1,n2", [(480, 480), (470, 480), (480, 7), (96, 200), (768, 768)])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_levels_of_two_windows_in_one_pass_are_each_windows_levels(n1, n2, dtype):
    """The one-pass levels of a window and the one before it equal the reference's levels
    of each window to the bit; a window that does not follow the previous one gets none."""
    rng = np.random.default_rng(6)
    vad, ref = EnergyVAD(24000), _PlainNumpyVAD(24000)
    for scale in (20000.0, 40.0):
        a, b = (rng.standard_normal(n) * scale for n in (n1, n2))
        if dtype is np.int16:
            a, b = (np.clip(v, -32768, 32767).astype(np.int16) for v in (a, b))
        else:
            a, b = ((v / 32768).astype(np.float32) for v in (a, b))
        lv_a, lv_b = vad._levels(a, 1000, b, 1000 + n1)
        assert np.array_equal(np.asarray(lv_a, np.float32), ref._block_levels(a))
        assert np.array_equal(np.asarray(lv_b, np.float32), ref._block_levels(b))
        assert vad._levels(a, 0, b, 1000 + n1)[0] is None
