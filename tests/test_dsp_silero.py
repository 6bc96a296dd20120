"""Silero VAD (the wheel's ONNX model, onnxruntime, no torch): same targets as the energy VAD."""

import subprocess
import sys

import numpy as np
import pytest

from pipeline.dsp import Rechunker, SileroVAD, silero_model_path
from speech_fixtures import background, segments, speech_scene

pytest.importorskip("onnxruntime")
try:
    silero_model_path()
except FileNotFoundError as exc:  # the silero-vad wheel (installed with --no-deps) is missing
    pytest.skip(str(exc), allow_module_level=True)


@pytest.fixture(scope="module")
def vad16():
    return SileroVAD(16000, silence_duration_ms=500, min_speech_ms=100)


def run(vad, x):
    vad.reset()
    n = vad.chunk_size
    events = []
    for i in range(0, x.shape[0] - n + 1, n):
        events += vad.process(x[i : i + n])
    return events + list(vad.finish())


@pytest.mark.parametrize("kind", ["silence", "noise", "hum"])
def test_speech_segments_within_60ms(vad16, kind):
    """Three utterances at 16 kHz, each found once, start and stop within 60 ms of the truth."""
    scene = speech_scene(kind, 16000)
    found = segments(run(vad16, scene.int16()))
    assert len(found) == 3, found
    for (s, e), (ts, te) in zip(found, scene.truth):
        assert abs(s - ts) <= 960 and abs(e - te) <= 960, (s / 16, e / 16, ts / 16, te / 16)


def test_8khz_model_and_float_input():
    """At 8 kHz (256-sample chunks) with float32 input the segments are found as well."""
    scene = speech_scene("noise", 8000)
    vad = SileroVAD(8000, silence_duration_ms=500)
    assert vad.chunk_size == 256
    found = segments(run(vad, scene.samples.astype(np.float32)))
    assert len(found) == 3
    for (s, e), (ts, te) in zip(found, scene.truth):
        assert abs(s - ts) <= 480 and abs(e - te) <= 480


@pytest.mark.parametrize("kind", ["noise", "hum"])
def test_ten_seconds_of_steady_noise_is_not_speech(vad16, kind):
    """10 s of white noise or hum at -30 dBFS: no event, probabilities stay low."""
    x = background(kind, 160000, 16000, -30.0, seed=4)
    assert run(vad16, x) == []
    assert vad16.probability < 0.35


def test_state_is_kept_between_chunks(vad16):
    """The model's recurrent state and context carry over: resetting mid-speech changes the
    probability of the next chunk, continuing does not change a re-run."""
    x = speech_scene("silence", 16000).samples.astype(np.float32)[16000:24192]
    vad16.reset()
    probs = [vad16.infer(x[i : i + 512]) for i in range(0, 8192, 512)]
    vad16.reset()
    again = [vad16.infer(x[i : i + 512]) for i in range(0, 8192, 512)]
    assert probs == pytest.approx(again, abs=1e-6)
    vad16.reset()
    for i in range(0, 4096, 512):
        vad16.infer(x[i : i + 512])
    vad16.reset()
    fresh_mid = vad16.infer(x[4096:4608])
    assert abs(fresh_mid - probs[8]) > 1e-3


def test_rechunked_20ms_frames_match_whole_chunks(vad16):
    """Feeding 20 ms frames through a Rechunker(512) gives the same events with pts."""
    scene = speech_scene("noise", 16000)
    x = scene.int16()
    direct = run(vad16, x)
    vad16.reset()
    r = Rechunker(512)
    events, pos = [], 0
    for i in range(0, x.shape[0] - 319, 320):
        for chunk in r.process(x[i : i + 320]):
            events += vad16.process(chunk, pts=pos)
            pos += 512
    events += vad16.finish()
    assert [(e.started, e.pts) for e in events] == [(e.started, e.pts) for e in direct]


def test_wrong_rate_and_chunk_are_refused_with_the_fix():
    """24 kHz is refused (resample first); a 480-sample chunk names the Rechunker."""
    with pytest.raises(ValueError, match="resample first"):
        SileroVAD(24000)
    vad = SileroVAD(16000)
    with pytest.raises(ValueError, match="Rechunker"):
        vad.process(np.zeros(480, np.float32))


def test_model_is_found_without_importing_silero_vad_or_torch():
    """The ONNX file is located and run in a fresh interpreter that never imports torch."""
    code = ("import sys, numpy as np\n"
            "from pipeline.dsp import SileroVAD\n"
            "v = SileroVAD(16000)\n"
            "v.process(np.zeros(512, np.float32))\n"
            "assert 'silero_vad' not in sys.modules and 'torch' not in sys.modules\n"
            "print(v.session.get_session_options().intra_op_num_threads)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
    assert silero_model_path().endswith("silero_vad.onnx")


def _raw_probabilities(session, x, rate):
    """The model run plainly with onnxruntime: each chunk after the previous one's tail,
    the state fed back, a new feed dict per call."""
    n, ctx = (512, 64) if rate == 16000 else (256, 32)
    state = np.zeros((2, 1, 128), np.float32)
    prev = np.zeros(ctx, np.float32)
    probs = []
    for i in range(0, x.shape[0] - n + 1, n):
        chunk = x[i : i + n].astype(np.float32) / 32768.0 if x.dtype == np.int16 else x[i : i + n]
        inp = np.concatenate([prev, chunk])[None, :]
        out, state = session.run(None, {"input": inp, "state": state, "sr": np.array(rate, np.int64)})
        probs.append(float(out[0, 0]))
        prev = chunk[-ctx:]
    return probs


@pytest.mark.parametrize("rate,dtype", [(16000, np.int16), (16000, np.float32), (8000, np.int16)])
def test_probabilities_are_the_raw_models(rate, dtype):
    """Through the bound buffers (two state buffers in turn) the probabilities are those of
    a plain session.run to 1e-6, over speech in noise, and again after a reset."""
    from pipeline.dsp.silero import _session

    scene = speech_scene("noise", rate)
    x = scene.int16() if dtype is np.int16 else scene.samples.astype(np.float32)
    x = x[: 6 * rate]
    want = _raw_probabilities(_session(silero_model_path()), x, rate)
    assert max(want) > 0.9 and min(want) < 0.1  # speech and pauses both in there
    vad = SileroVAD(rate)
    n = vad.chunk_size
    for _ in range(2):
        got = [vad.infer(x[i : i + n]) for i in range(0, x.shape[0] - n + 1, n)]
        assert np.max(np.abs(np.asarray(got) - np.asarray(want))) <= 1e-6
        vad.reset()
