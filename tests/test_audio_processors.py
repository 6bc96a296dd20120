"""Audio processors (resample, gain, mix, vad.energy, vad.silero) run in real graphs."""

import numpy as np
import pytest

from pipeline import (AudioFormat, AudioFrame, Graph, InterruptionFrame, PipelineError, Processor, Runner,
                      UserStartedSpeakingFrame, UserStoppedSpeakingFrame)
from pipeline.dsp import Resampler, dbfs, resample, to_float32
from pipeline.testing import CollectSink, FrameSource, run_frames
from processors.audio import GainProcessor, MixProcessor, ResampleProcessor
from processors.audio.vad import EnergyVADProcessor, SileroVADProcessor
from speech_fixtures import speech_scene

pytestmark = pytest.mark.anyio


def needs_silero():
    pytest.importorskip("onnxruntime")
    from pipeline.dsp import silero_model_path

    try:
        silero_model_path()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def frames_of(x, rate, ms=20, *, pts=0, turn=0, item_id=None):
    n = rate * ms // 1000
    return [AudioFrame(x[i : i + n], rate, pts=pts + i, turn=turn, item_id=item_id) for i in range(0, x.shape[0], n)]


def tone(freq, rate, seconds, db=-6.0, dtype=np.int16):
    x = 10 ** (db / 20) * np.sin(2 * np.pi * freq * np.arange(int(rate * seconds)) / rate)
    return np.rint(x * 32767).astype(np.int16) if dtype == np.int16 else x.astype(np.float32)


def audio_frames(out):
    return [f for f in out.downstream if isinstance(f, AudioFrame)]


def assert_contiguous(frames):
    pts = frames[0].pts
    for f in frames:
        assert f.pts == pts, "pts must count output samples without gaps"
        pts += f.samples.shape[0]


async def test_resample_stream_equals_one_shot_and_flushes_on_end():
    """48 kHz int16 in 20 ms frames -> 24 kHz: contiguous pts from 0, the tail arrives at the
    end, and the whole equals resampling the signal at once."""
    x = tone(1000, 48000, 1.0)
    out = await run_frames(ResampleProcessor({"rate": 24000}), frames_of(x, 48000))
    frames = audio_frames(out)
    assert all(f.sample_rate == 24000 and f.samples.dtype == np.int16 for f in frames)
    assert frames[0].pts == 0
    assert_contiguous(frames)
    y = np.concatenate([f.samples for f in frames])
    one = resample(x, 48000, 24000)
    assert y.shape == one.shape
    assert np.abs(y.astype(int) - one.astype(int)).max() <= 2


async def test_resample_converts_channels_and_type():
    """Stereo int16 at 44.1 kHz becomes mono float32 at 16 kHz with the same level."""
    x = tone(440, 44100, 0.5)
    stereo = np.stack([x, x], axis=1)
    out = await run_frames(ResampleProcessor({"rate": 16000, "channels": 1, "dtype": "float32"}),
                           frames_of(stereo, 44100))
    frames = audio_frames(out)
    y = np.concatenate([f.samples for f in frames])
    assert y.dtype == np.float32 and y.ndim == 1
    assert y.shape[0] == pytest.approx(8000, abs=1)
    assert dbfs(y[1600:-1600]) == pytest.approx(dbfs(x), abs=0.2)


async def test_resample_keeps_media_time_of_a_later_start():
    """A stream starting at pts 48000 (1 s) comes out starting at 24000 at 24 kHz."""
    x = tone(440, 48000, 0.2)
    frames = audio_frames(await run_frames(ResampleProcessor({"rate": 24000}), frames_of(x, 48000, pts=48000)))
    assert frames[0].pts == 24000
    assert_contiguous(frames)


async def test_interruption_drops_the_interrupted_turns_tail():
    """Audio of response turn 1 is cut by an interruption: its held tail is dropped and the
    next turn's audio comes out as from a fresh resampler."""
    a = tone(440, 16000, 0.5)
    b = tone(660, 16000, 0.3)
    feed = (frames_of(a, 16000, turn=1, item_id="item_1") + [InterruptionFrame(turn=2)]
            + frames_of(b, 16000, turn=2, item_id="item_2"))
    out = await run_frames(ResampleProcessor({"rate": 24000}), feed)
    first = [f for f in audio_frames(out) if f.turn == 1]
    second = [f for f in audio_frames(out) if f.turn == 2]
    assert sum(f.samples.shape[0] for f in first) < resample(a, 16000, 24000).shape[0]
    assert all(f.item_id == "item_2" for f in second)
    r = Resampler(16000, 24000)
    fresh = np.concatenate([r.process(f.samples) for f in frames_of(b, 16000)] + [r.flush()])
    assert second[0].pts == 0
    got = np.concatenate([f.samples for f in second])
    assert got.shape == fresh.shape
    assert np.abs(got.astype(int) - fresh.astype(int)).max() <= 2  # soxr's int16 rounding, nothing of turn 1


async def test_interruption_leaves_live_capture_audio_alone():
    """Microphone audio (turn 0) passes an interruption without losing a sample."""
    x = tone(440, 48000, 0.4)
    frames = frames_of(x, 48000)
    feed = frames[:10] + [InterruptionFrame(turn=1)] + frames[10:]
    out = await run_frames(ResampleProcessor({"rate": 16000}), feed)
    y = np.concatenate([f.samples for f in audio_frames(out)])
    assert y.shape == resample(x, 48000, 16000).shape
    assert any(isinstance(f, InterruptionFrame) for f in out.downstream)


async def test_same_format_passes_frames_through():
    """Nothing to change: the very same frame objects come out."""
    frames = frames_of(tone(440, 24000, 0.1), 24000)
    out = await run_frames(ResampleProcessor({"rate": 24000}), frames)
    assert [id(f) for f in audio_frames(out)] == [id(f) for f in frames]


class _Source48k(Processor):
    def output_format(self, upstream):
        return AudioFormat(48000, 1, "int16")


class _Needs24k(Processor):
    input_format = AudioFormat(24000, 1, "int16")


def test_graph_check_sees_the_declared_output_format():
    """mic(48 kHz) -> model(24 kHz) fails the check naming audio.resample; with a
    ResampleProcessor between them, or auto_resample, it passes."""
    g = Graph(name="bad")
    g.add("mic", _Source48k())
    g.add("model", _Needs24k())
    g.link("mic", "model")
    with pytest.raises(PipelineError, match="audio.resample"):
        g.check()
    g = Graph(name="good")
    g.add("mic", _Source48k())
    g.add("rs", ResampleProcessor({"rate": 24000}))
    g.add("model", _Needs24k())
    g.link("mic", "rs", "model")
    g.check()
    assert g.formats["rs"] == AudioFormat(24000, 1, "int16")
    g = Graph(name="auto", auto_resample=True)
    g.add("mic", _Source48k())
    g.add("model", _Needs24k())
    g.link("mic", "model")
    g.check()
    inserted = [n for n in g.nodes.values() if n.inserted]
    assert len(inserted) == 1 and isinstance(inserted[0].processor, ResampleProcessor)


def test_resample_params_are_validated():
    """An unknown quality or param is refused by the Params model."""
    with pytest.raises(Exception, match="quality"):
        ResampleProcessor({"rate": 24000, "quality": "best"})
    with pytest.raises(Exception, match="extra"):
        ResampleProcessor({"rate": 24000, "rat": 1})


async def test_gain_and_fade_in():
    """-6 dB halves the level; fade_in_ms ramps the first frame and the first after a gap."""
    x = tone(440, 24000, 0.2)
    out = await run_frames(GainProcessor({"db": -6.0206}), frames_of(x, 24000))
    y = np.concatenate([f.samples for f in audio_frames(out)])
    assert dbfs(y) == pytest.approx(dbfs(x) - 6.02, abs=0.05)
    crest = tone(440, 24000, 0.1, db=-1)
    crest = np.roll(crest, -int(24000 / 440 / 4))  # starts on a crest: a click without a fade
    feed = frames_of(crest, 24000) + frames_of(crest, 24000, pts=100000)
    out = await run_frames(GainProcessor({"fade_in_ms": 5}), feed)
    frames = audio_frames(out)
    assert abs(int(frames[0].samples[0])) < 200 and abs(int(frames[5].samples[0])) < 200
    assert np.array_equal(frames[1].samples, feed[1].samples)


async def test_mix_sums_branches_aligned_on_pts():
    """Two sources fan in: the mix is their sample-wise sum, whatever their frame sizes."""
    a = tone(440, 16000, 0.5, db=-12)
    b = tone(1000, 16000, 0.5, db=-12)
    g = Graph(name="mix")
    g.add("a", FrameSource(frames_of(a, 16000, ms=20), name="a"))
    g.add("b", FrameSource(frames_of(b, 16000, ms=30), name="b"))
    g.add("mix", MixProcessor({"clip": "hard"}))
    sink = g.add("sink", CollectSink())
    g.link("a", "mix", "sink")
    g.link("b", "mix")
    g.check()
    result = await Runner(g, realtime=False).run()
    assert result.ok
    frames = [f for f in sink.received if isinstance(f, AudioFrame)]
    assert_contiguous(frames)
    y = np.concatenate([f.samples for f in frames])
    expected = np.clip(a.astype(int) + b.astype(int), -32768, 32767)
    assert y.shape == expected.shape and np.abs(y.astype(int) - expected).max() <= 1
    assert g.nodes["mix"].processor.late_samples == 0


async def test_energy_vad_processor_reports_speech_and_passes_audio():
    """Speech in noise: started/stopped frames within 60 ms of the truth; every audio frame
    passes unchanged."""
    scene = speech_scene("noise")
    frames = frames_of(scene.int16(), 24000)
    out = await run_frames(EnergyVADProcessor({"silence_duration_ms": 500}), frames)
    starts = out.of_type(UserStartedSpeakingFrame)
    stops = out.of_type(UserStoppedSpeakingFrame)
    assert len(starts) == len(stops) == 3
    for s, e, (ts, te) in zip(starts, stops, scene.truth):
        assert s.sample_rate == 24000
        assert abs(s.pts - ts) <= 1440 and abs(e.pts - te) <= 1440
    assert [id(f) for f in audio_frames(out)] == [id(f) for f in frames]


async def test_energy_vad_gate_replays_the_prefix():
    """gate: only speech passes, each stretch starting prefix_padding_ms before the onset."""
    scene = speech_scene("silence")
    out = await run_frames(EnergyVADProcessor({"silence_duration_ms": 500, "prefix_padding_ms": 300, "gate": True}),
                           frames_of(scene.int16(), 24000))
    starts = out.of_type(UserStartedSpeakingFrame)
    audio = audio_frames(out)
    assert len(starts) == 3
    stretches, current = [], [audio[0]]
    for f in audio[1:]:
        if f.pts == current[-1].pts + current[-1].samples.shape[0]:
            current.append(f)
        else:
            stretches.append(current)
            current = [f]
    stretches.append(current)
    assert len(stretches) == 3
    for stretch, start, (ts, te) in zip(stretches, starts, scene.truth):
        assert stretch[0].pts == start.pts - 7200
        end = stretch[-1].pts + stretch[-1].samples.shape[0]
        assert te <= end <= te + 12000 + 2 * 480
    x = scene.int16()
    for stretch in stretches:
        for f in stretch:
            assert np.array_equal(f.samples, x[f.pts : f.pts + f.samples.shape[0]])


async def test_energy_vad_closes_open_speech_at_the_end():
    """A stream that ends mid-speech still gets its stopped frame."""
    scene = speech_scene("silence")
    x = scene.int16()[: scene.truth[0][0] + 12000]
    out = await run_frames(EnergyVADProcessor(), frames_of(x, 24000))
    assert len(out.of_type(UserStartedSpeakingFrame)) == 1
    assert len(out.of_type(UserStoppedSpeakingFrame)) == 1


async def test_silero_processor_resamples_internally():
    """At 24 kHz (model at 16 kHz) segments come back in 24 kHz media time within 60 ms."""
    needs_silero()
    scene = speech_scene("hum")
    out = await run_frames(SileroVADProcessor({"silence_duration_ms": 500}), frames_of(scene.int16(), 24000))
    starts = out.of_type(UserStartedSpeakingFrame)
    stops = out.of_type(UserStoppedSpeakingFrame)
    assert len(starts) == len(stops) == 3
    for s, e, (ts, te) in zip(starts, stops, scene.truth):
        assert s.sample_rate == 24000
        assert abs(s.pts - ts) <= 1440 and abs(e.pts - te) <= 1440
    assert len(audio_frames(out)) == len(frames_of(scene.int16(), 24000))


async def test_silero_processor_on_steady_noise_and_stereo_float():
    """Stereo float32 noise at 48 kHz, -30 dBFS, 5 s: no speech frames."""
    needs_silero()
    rng = np.random.default_rng(11)
    x = (10 ** (-30 / 20) * rng.standard_normal((240000, 2))).astype(np.float32)
    out = await run_frames(SileroVADProcessor(), frames_of(x, 48000))
    assert out.of_type(UserStartedSpeakingFrame) == []
    assert to_float32(audio_frames(out)[0].samples).shape == (960, 2)


async def test_resample_follows_format_changes_mid_stream():
    """Mono int16 then stereo then float32 frames at another rate: each stretch is
    converted to the declared output, and every frame keeps the output format."""
    mono = tone(440, 48000, 0.1)
    stereo = np.stack([mono, mono], axis=1)
    f32 = tone(440, 16000, 0.1, dtype=np.float32)
    feed = frames_of(mono, 48000) + frames_of(stereo, 48000, pts=4800) + frames_of(f32, 16000, pts=3200)
    out = await run_frames(ResampleProcessor({"rate": 24000, "channels": 1, "dtype": "int16"}), feed)
    frames = audio_frames(out)
    assert all(f.samples.dtype == np.int16 and f.samples.ndim == 1 and f.sample_rate == 24000 for f in frames)
    total = sum(f.samples.shape[0] for f in frames)
    assert abs(total - 3 * 2400) <= 3


async def test_resample_frame_ms_gives_steady_frames():
    """With frame_ms: 20 every frame but the last is 480 samples, and the audio is the same
    as without it (soxr itself delivers irregular blocks)."""
    x = tone(440, 48000, 0.5)
    plain = audio_frames(await run_frames(ResampleProcessor({"rate": 24000}), frames_of(x, 48000)))
    steady = audio_frames(await run_frames(ResampleProcessor({"rate": 24000, "frame_ms": 20}), frames_of(x, 48000)))
    assert len({f.samples.shape[0] for f in plain}) > 1
    assert all(f.samples.shape[0] == 480 for f in steady[:-1]) and 0 < steady[-1].samples.shape[0] <= 480
    assert_contiguous(steady)
    a = np.concatenate([f.samples for f in steady]).astype(int)
    b = np.concatenate([f.samples for f in plain]).astype(int)
    assert a.shape == b.shape and np.abs(a - b).max() <= 2  # soxr dithers int16 output: +-2 LSB
    same_rate = audio_frames(await run_frames(ResampleProcessor({"rate": 48000, "frame_ms": 30}), frames_of(x, 48000)))
    assert [f.samples.shape[0] for f in same_rate] == [1440] * 16 + [960]
