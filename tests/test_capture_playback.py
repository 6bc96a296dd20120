"""Capture sources, playback sinks and the conversation recorder, run in real graphs."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.frames import (
    AudioFormat,
    AudioFrame,
    Direction,
    Frame,
    InterruptionFrame,
    PlaybackProgressFrame,
    ResponseEndFrame,
)
from pipeline.graph import Graph
from pipeline.loader import load_text
from pipeline.processor import Processor
from pipeline.runner import Runner
from pipeline.testing import CollectSink, run_frames, run_graph, run_yaml
from processors.files.wavfile import WavError, WavWriter, read_wav, write_wav
from processors.files.capture import NoiseCapture, ToneCapture, WavCapture
from processors.files.playback import NullPlayback, WavPlayback
from processors.files.record import ConversationRecorder, ConversationTimeline

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pipelines" / "samples" / "two_turns_16k.wav"


def noise16(n: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.integers(-20000, 20000, size=(n, channels) if channels > 1 else n)
    return x.astype(np.int16)


def tone(freq: float, n: int, rate: int, amp: float = 0.5, start: int = 0) -> np.ndarray:
    t = (np.arange(n) + start) / rate
    return np.rint(amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def audio_of(frames: list[Frame]) -> list[AudioFrame]:
    return [f for f in frames if isinstance(f, AudioFrame)]


async def run_source(source: Processor, *more: Processor) -> tuple[list[Frame], object]:
    """Run ``source -> more... -> collector`` as fast as possible; return what arrived."""
    sink = CollectSink()
    graph = Graph.chain(source, *more, sink)
    graph.check()
    result = await run_graph(graph)
    assert result.ok, result.errors
    return sink.received, result


class StepClock:
    """A media clock the test moves by hand; ``wait_until`` returns once it has got there."""

    realtime = True

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self._moved = anyio.Event()

    def start(self) -> None:
        pass

    def elapsed(self) -> float:
        return self.now

    async def wait_until(self, media_s: float) -> None:
        self.waits.append(media_s)
        while self.now + 1e-9 < media_s:
            await self._moved.wait()

    def advance(self, seconds: float) -> None:
        self.now += seconds
        moved, self._moved = self._moved, anyio.Event()
        moved.set()


class Script(Processor):
    """A source that runs test steps (each ``await step(self)``) and keeps upstream frames."""

    def __init__(self, *steps) -> None:
        super().__init__(name="script")
        self.steps = steps
        self.received: list[Frame] = []

    async def produce(self) -> None:
        for step in self.steps:
            await step(self)
            await anyio.wait_all_tasks_blocked()

    async def process(self, frame: Frame, direction: Direction) -> None:
        self.received.append(frame)


async def run_with_clock(clock, *processors: Processor) -> object:
    graph = Graph.chain(*processors)
    graph.check()
    runner = Runner(graph, realtime=True)
    runner.clock = clock
    with anyio.fail_after(10):
        return await runner.run()


# --- capture.wav --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wav_capture_frames_pts_last_frame_and_padding(tmp_path):
    """Fixed 20 ms frames with pts in samples; the last frame is completed with silence; pad_ms adds more."""
    x = noise16(16160)  # 50.5 frames at 16 kHz
    write_wav(tmp_path / "in.wav", x, 16000)
    cap = WavCapture({"path": str(tmp_path / "in.wav"), "pad_ms": 100, "realtime": False})
    out, _ = await run_source(cap)
    frames = audio_of(out)
    assert [f.num_samples for f in frames] == [320] * 56
    assert [f.pts for f in frames] == [i * 320 for i in range(56)]
    assert all(f.sample_rate == 16000 and f.samples.dtype == np.int16 for f in frames)
    y = np.concatenate([f.samples for f in frames])
    assert np.array_equal(y[:16160], x) and not y[16160:].any()


@pytest.mark.anyio
async def test_wav_capture_stereo_float32_24bit(tmp_path):
    """A 24-bit stereo file comes out as (n, 2) float32 frames at the file's rate."""
    ints = np.random.default_rng(1).integers(-(2**23), 2**23, size=(4410, 2))
    raw = ints.astype("<i4").reshape(-1, 1).view(np.uint8)[:, :3].tobytes()
    import wave

    with wave.open(str(tmp_path / "s24.wav"), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(3)
        w.setframerate(44100)
        w.writeframes(raw)
    cap = WavCapture({"path": str(tmp_path / "s24.wav"), "frame_ms": 10, "dtype": "float32", "realtime": False})
    assert cap.output_format(None) == AudioFormat(44100, 2, "float32")
    out, _ = await run_source(cap)
    frames = audio_of(out)
    assert len(frames) == 10 and all(f.samples.shape == (441, 2) and f.samples.dtype == np.float32 for f in frames)
    np.testing.assert_allclose(np.concatenate([f.samples for f in frames]), ints / 2**23, atol=1e-7)


@pytest.mark.anyio
async def test_wav_capture_reads_flac_bit_exact(tmp_path):
    """capture.wav takes a FLAC file (made with soundfile): the frames are its samples, bit-exact."""
    import soundfile

    x = noise16(16000, channels=2, seed=3)
    soundfile.write(tmp_path / "in.flac", x, 16000, subtype="PCM_16", format="FLAC")
    text = "voxpipe: 1\nprocessors:\n  mic: {type: capture.wav, params: {path: in.flac, realtime: false}}\n"
    (tmp_path / "p.yaml").write_text(text)
    cap = load_text(text, file=str(tmp_path / "p.yaml"), base_dir=tmp_path).nodes["mic"].processor
    assert cap.output_format(None) == AudioFormat(16000, 2, "int16")
    out, _ = await run_source(cap)
    frames = audio_of(out)
    assert len(frames) == 50 and all(f.samples.shape == (320, 2) for f in frames)
    assert np.array_equal(np.concatenate([f.samples for f in frames]), x)


@pytest.mark.anyio
@pytest.mark.parametrize(("subtype", "rate"), [("VORBIS", 16000), ("OPUS", 48000)])
async def test_wav_capture_reads_ogg_vorbis_and_opus(tmp_path, subtype, rate):
    """capture.wav takes Ogg Vorbis and Opus (made with soundfile): a tone comes out at its rate and level."""
    import soundfile

    x = tone(440, rate, rate)
    soundfile.write(tmp_path / "in.ogg", x, rate, subtype=subtype, format="OGG")
    cap = WavCapture({"path": str(tmp_path / "in.ogg"), "realtime": False})
    assert cap.output_format(None) == AudioFormat(rate, 1, "int16")
    out, _ = await run_source(cap)
    frames = audio_of(out)
    n = rate // 50
    assert abs(len(frames) - 50) <= 2 and all(f.samples.shape == (n,) and f.sample_rate == rate for f in frames)
    y = np.concatenate([f.samples for f in frames[5:45]]).astype(np.float64)
    assert 0.8 < np.sqrt(np.mean(y**2)) / (0.5 * 32767 / np.sqrt(2)) < 1.2
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * rate / len(y) - 440) < 5


class StopAfter(Processor):
    """Sink that ends the run gracefully once it has seen ``count`` audio frames."""

    def __init__(self, count: int) -> None:
        super().__init__(name="stop_after")
        self.count = count
        self.frames: list[AudioFrame] = []
        self.runner: Runner | None = None

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, AudioFrame):
            self.frames.append(frame)
            if len(self.frames) == self.count:
                self.runner.end()  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_wav_capture_loop_is_continuous_across_the_file_end(tmp_path):
    """With loop, frames run on across the end of the file without a gap until the graph ends."""
    x = noise16(800, seed=2)  # 2.5 frames
    write_wav(tmp_path / "short.wav", x, 16000)
    cap = WavCapture({"path": str(tmp_path / "short.wav"), "loop": True, "realtime": False})
    sink = StopAfter(10)
    graph = Graph.chain(cap, sink)
    graph.check()
    runner = sink.runner = Runner(graph, realtime=False)
    with anyio.fail_after(10):
        result = await runner.run()
    assert result.ok and result.ended == "end"
    y = np.concatenate([f.samples for f in sink.frames[:10]])
    assert np.array_equal(y, np.tile(x, 4)[:3200])
    assert [f.pts for f in sink.frames[:10]] == [i * 320 for i in range(10)]


@pytest.mark.anyio
async def test_wav_capture_paces_by_media_time(tmp_path):
    """realtime: each frame waits for the media time of its end on the graph's clock."""
    write_wav(tmp_path / "p.wav", noise16(1600), 16000)
    clock = StepClock()
    clock.now = 1e9  # every wait is already due: the test checks what was asked for
    sink = CollectSink()
    result = await run_with_clock(clock, WavCapture({"path": str(tmp_path / "p.wav")}), sink)
    assert result.ok
    assert clock.waits == pytest.approx([0.02 * (i + 1) for i in range(5)])
    clock2 = StepClock()
    clock2.now = 1e9
    await run_with_clock(clock2, WavCapture({"path": str(tmp_path / "p.wav"), "realtime": False}), CollectSink())
    assert clock2.waits == []


def test_wav_capture_declares_the_file_format_to_the_graph_check(tmp_path):
    """The header read at build time lets the graph check name the mismatch and the fix."""
    write_wav(tmp_path / "in.wav", noise16(320), 16000)

    class Wants24k(Processor):
        input_format = AudioFormat(24000, 1, "int16")

    graph = Graph.chain(WavCapture({"path": str(tmp_path / "in.wav")}), Wants24k())
    with pytest.raises(PipelineError) as exc:
        graph.check()
    assert "16000 Hz int16 mono into 24000 Hz int16 mono" in str(exc.value)
    assert "{type: audio.resample, params: {rate: 24000, channels: 1, dtype: int16}}" in str(exc.value)


def test_wav_capture_bad_file_is_a_pipeline_error_naming_file_and_line(tmp_path):
    """A missing or broken file fails the load with the YAML line, the file and what is wrong."""
    text = (
        "voxpipe: 1\n"
        "processors:\n"
        "  mic: {type: capture.wav, params: {path: missing.wav}}\n"
        "  out: {type: playback.null}\n"
        "links: [mic -> out]\n"
    )
    with pytest.raises(PipelineError) as exc:
        load_text(text, file="p.yaml", base_dir=tmp_path)
    missing = tmp_path / "missing.wav"
    assert str(exc.value) == (
        f"p.yaml:3: processor 'mic': {missing}: no such file; "
        "check the path; in a pipeline a relative `path` is looked up next to the pipeline file, then in the current directory"
    )
    (tmp_path / "missing.wav").write_bytes(b"ID3\x03" + bytes(100))  # an MP3 tag and no audio after it
    with pytest.raises(PipelineError) as exc:
        load_text(text, file="p.yaml", base_dir=tmp_path)
    assert str(exc.value) == (
        f"p.yaml:3: processor 'mic': {missing}: not an audio file voxpipe reads: it starts with b'ID3\\x03' "
        "(WAV, FLAC, Ogg Vorbis/Opus, AIFF and MP3 are read); "
        "convert it with `ffmpeg -i IN -c:a pcm_s16le OUT.wav` or `sox IN -b 16 OUT.wav`"
    )
    with pytest.raises(WavError):
        WavCapture({"path": str(missing)})


def test_wav_capture_path_relative_to_the_pipeline_file(tmp_path):
    """A relative path is found next to the pipeline file."""
    write_wav(tmp_path / "beside.wav", noise16(320), 8000)
    text = "voxpipe: 1\nprocessors:\n  mic: {type: capture.wav, params: {path: beside.wav}}\n"
    graph = load_text(text, base_dir=tmp_path)
    assert graph.nodes["mic"].processor.params.path == str(tmp_path / "beside.wav")
    assert graph.formats["mic"] == AudioFormat(8000, 1, "int16")


def test_wav_capture_frame_length_must_be_whole_samples(tmp_path):
    """A frame_ms that is not a whole number of samples at the file's rate is refused."""
    write_wav(tmp_path / "cd.wav", noise16(441), 44100)
    with pytest.raises(ValueError, match=r"frame_ms: a 32.0 ms frame at 44100 Hz is 1411.2 samples.* \(.*cd.wav is 44100 Hz\)"):
        WavCapture({"path": str(tmp_path / "cd.wav"), "frame_ms": 32})


# --- capture.tone / capture.noise ---------------------------------------------------------


@pytest.mark.anyio
async def test_tone_frequency_level_length_and_continuity():
    """The tone has its frequency and peak level, exact length, and no seam between frames."""
    cap = ToneCapture({"frequency": 1000, "amplitude_dbfs": -6, "duration_s": 0.5, "sample_rate": 16000,
                       "frame_ms": 30, "dtype": "float32", "realtime": False})
    out, _ = await run_source(cap)
    frames = audio_of(out)
    y = np.concatenate([f.samples for f in frames]).astype(np.float64)
    assert y.shape == (8000,) and frames[-1].num_samples == 8000 - 16 * 480
    assert [f.pts for f in frames] == [i * 480 for i in range(17)]
    expected = 10 ** (-6 / 20) * np.sin(2 * np.pi * 1000 * np.arange(8000) / 16000)
    np.testing.assert_allclose(y, expected, atol=1e-6)  # one phase-continuous sine
    assert np.argmax(np.abs(np.fft.rfft(y))) * 16000 / 8000 == 1000
    assert 20 * np.log10(np.abs(y).max()) == pytest.approx(-6, abs=0.01)


@pytest.mark.anyio
async def test_tone_int16_and_bad_frequency():
    """int16 tones are rounded at full scale; a frequency at or above Nyquist is refused."""
    out, _ = await run_source(ToneCapture({"frequency": 440, "amplitude_dbfs": 0, "duration_s": 0.1, "realtime": False}))
    y = np.concatenate([f.samples for f in audio_of(out)])
    assert y.dtype == np.int16 and y.shape == (1600,) and y.max() >= 32700
    with pytest.raises(ValueError, match="must be below half the sample rate"):
        ToneCapture({"frequency": 8000, "sample_rate": 16000})


@pytest.mark.anyio
async def test_noise_is_seeded_and_has_its_level():
    """The same seed gives the same noise; the RMS level is as asked; another seed differs."""
    params = {"level_dbfs": -20, "duration_s": 1.0, "sample_rate": 8000, "dtype": "float32", "realtime": False}
    runs = []
    for seed in (7, 7, 8):
        out, _ = await run_source(NoiseCapture({**params, "seed": seed}))
        runs.append(np.concatenate([f.samples for f in audio_of(out)]))
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])
    rms_db = 10 * np.log10(np.mean(runs[0].astype(np.float64) ** 2))
    assert rms_db == pytest.approx(-20, abs=0.2)
    spectrum = np.abs(np.fft.rfft(runs[0])) ** 2  # white: as much power in the top half as the bottom
    half = spectrum.shape[0] // 2
    assert spectrum[half:].sum() / spectrum[:half].sum() == pytest.approx(1.0, abs=0.1)


# --- playback.wav -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_wav_playback_fills_gaps_with_silence(tmp_path):
    """A jump in pts becomes silence in the file, so the file's timeline is media time."""
    a, b, c = noise16(320, seed=1), noise16(320, seed=2), noise16(160, seed=3)
    frames = [AudioFrame(a, 16000, pts=0), AudioFrame(b, 16000, pts=960), AudioFrame(c, 16000, pts=1280)]
    sink = WavPlayback({"path": str(tmp_path / "out" / "gaps.wav")})
    got = await run_frames(sink, frames)
    y, rate = read_wav(tmp_path / "out" / "gaps.wav")
    assert rate == 16000 and y.shape == (1440,)
    assert np.array_equal(y[:320], a) and not y[320:960].any() and np.array_equal(y[960:1280], b)
    assert np.array_equal(y[1280:], c)
    assert got.stats[sink.name]["gaps"] == 1 and got.downstream == []  # audio is consumed


@pytest.mark.anyio
async def test_wav_playback_float32_file_and_overlap_appends(tmp_path):
    """float32 output; a frame that overlaps what was written is appended and counted."""
    a = noise16(100, seed=4)
    frames = [AudioFrame(a, 8000, pts=0), AudioFrame(a, 8000, pts=50)]
    sink = WavPlayback({"path": str(tmp_path / "f.wav"), "dtype": "float32"})
    got = await run_frames(sink, frames)
    y, _ = read_wav(tmp_path / "f.wav")
    assert y.dtype == np.float32 and np.array_equal(y, np.concatenate([a, a]).astype(np.float32) / 32768)
    assert got.stats[sink.name]["overlaps"] == 1


@pytest.mark.anyio
async def test_wav_playback_file_valid_while_running_and_after_cancel(tmp_path):
    """Mid-run the file is already valid; a cancelled graph leaves a complete file."""
    path = tmp_path / "live.wav"
    x = noise16(1600, seed=5)
    seen: list[np.ndarray] = []

    async def push_then_hang(src: Script) -> None:
        for i in range(0, 1600, 320):
            await src.push(AudioFrame(x[i : i + 320], 16000, pts=i))
        await anyio.wait_all_tasks_blocked()
        seen.append(read_wav(path)[0])  # the graph is still running
        runner.cancel()
        await anyio.sleep_forever()

    graph = Graph.chain(Script(push_then_hang), WavPlayback({"path": str(path)}))
    graph.check()
    runner = Runner(graph, realtime=False)
    with anyio.fail_after(10):
        result = await runner.run()
    assert result.ended == "cancel"
    assert np.array_equal(seen[0], x)
    assert np.array_equal(read_wav(path)[0], x)


@pytest.mark.anyio
async def test_wav_playback_without_audio_and_with_a_wrong_rate(tmp_path):
    """No audio still leaves a valid empty file; a rate change mid-stream is an error naming the fix."""
    await run_frames(WavPlayback({"path": str(tmp_path / "e.wav"), "sample_rate": 24000}), [])
    y, rate = read_wav(tmp_path / "e.wav")
    assert y.shape == (0,) and rate == 24000
    frames = [AudioFrame(noise16(160), 16000), AudioFrame(noise16(240), 24000, pts=160)]
    got = await run_frames(WavPlayback({"path": str(tmp_path / "r.wav")}), frames)
    assert not got.result.ok
    assert "a 24000 Hz int16 mono frame arrived in a file of 16000 Hz, 1 ch" in got.result.errors[0].message
    assert "put `{type: audio.resample, params: {rate: 16000, channels: 1}}`" in got.result.errors[0].message


# --- playback.null ------------------------------------------------------------------------


def item_audio(item: str, ms: int, turn: int, rate: int = 16000, start_pts: int = 0) -> list[AudioFrame]:
    n = rate // 50
    return [AudioFrame(tone(440, n, rate, start=i * n), rate, pts=start_pts + i * n, item_id=item, turn=turn)
            for i in range(ms // 20)]


@pytest.mark.anyio
async def test_null_playback_reports_progress_per_item():
    """Every item's played time grows to its length and ends with done=True; frames are consumed."""
    frames = [*item_audio("a", 300, 1), ResponseEndFrame(turn=1), *item_audio("b", 200, 2), ResponseEndFrame(turn=2)]
    sink = NullPlayback()
    got = await run_frames(sink, frames)
    progress = got.of_type(PlaybackProgressFrame, Direction.UPSTREAM)
    for item, length, turn in (("a", 300, 1), ("b", 200, 2)):
        mine = [p for p in progress if p.item_id == item]
        assert [p.played_ms for p in mine] == sorted(p.played_ms for p in mine)
        assert mine[-1].played_ms == length and mine[-1].done and mine[-1].turn == turn
        assert [p.done for p in mine].count(True) == 1
    assert got.of_type(AudioFrame) == [] and len(got.of_type(ResponseEndFrame)) == 2
    assert got.stats[sink.name]["played_s"] == pytest.approx(0.5)


@pytest.mark.anyio
async def test_null_playback_plays_at_media_time_and_interruption_drops_the_queue():
    """Progress follows the playout clock; an interruption cuts the item where it was, done=True."""
    clock = StepClock()

    async def queue_item_1(src: Script) -> None:
        for f in item_audio("item_1", 500, 1):
            await src.push(f)

    async def play_200ms(src: Script) -> None:
        clock.advance(0.2)

    async def barge_in(src: Script) -> None:
        await src.push(InterruptionFrame(turn=2))

    async def queue_item_2(src: Script) -> None:
        for f in item_audio("item_2", 100, 2, start_pts=8000):
            await src.push(f)
        await src.push(ResponseEndFrame(turn=2))

    async def play_on(src: Script) -> None:
        clock.advance(1.0)

    script = Script(queue_item_1, play_200ms, barge_in, queue_item_2, play_on)
    sink = NullPlayback()
    result = await run_with_clock(clock, script, sink)
    assert result.ok
    progress = [(p.item_id, p.played_ms, p.done) for p in script.received if isinstance(p, PlaybackProgressFrame)]
    assert progress == [
        *[("item_1", ms, False) for ms in range(20, 201, 20)],
        ("item_1", 200, True),
        *[("item_2", ms, False) for ms in range(20, 81, 20)],
        ("item_2", 100, True),
    ]
    stats = sink.statistics()
    assert stats["played_s"] == pytest.approx(0.3) and stats["dropped_s"] == pytest.approx(0.3)


# --- record -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_recorder_user_left_assistant_right_on_media_time(tmp_path):
    """User audio lands at its pts; assistant audio at the media time it arrives, back to back."""
    rate, n = 24000, 480
    user = tone(300, rate, rate)  # 1 s
    assistant = tone(1200, rate // 2, rate, amp=0.3)  # 0.5 s, sent in one burst after 0.4 s of user audio
    frames: list[Frame] = [AudioFrame(user[i : i + n], rate, pts=i) for i in range(0, 9600, n)]
    frames += [AudioFrame(assistant[i : i + n], rate, pts=i, item_id="item_1", turn=1) for i in range(0, 12000, n)]
    frames += [AudioFrame(user[i : i + n], rate, pts=i) for i in range(9600, rate, n)]
    rec = ConversationRecorder({"path": str(tmp_path / "call.wav")})
    got = await run_frames(rec, frames)
    assert len(got.of_type(AudioFrame)) == len(frames)  # a tap: everything passes on
    y, r = read_wav(tmp_path / "call.wav")
    assert r == rate and y.shape == (rate, 2)
    assert np.array_equal(y[:, 0], user)
    assert not y[:9600, 1].any() and np.array_equal(y[9600:21600, 1], assistant) and not y[21600:, 1].any()


def test_timeline_interruption_cuts_unheard_assistant_audio_with_a_fade(tmp_path):
    """Assistant audio ahead of the user's position is cut at the interruption, with a 5 ms fade."""
    rate = 16000
    w = WavWriter(tmp_path / "t.wav", rate, 2)
    tl = ConversationTimeline(w)
    tl.add_user(tone(200, 8000, rate), 0)  # 0.5 s of user audio
    assert tl.add_assistant(np.full(16000, 10000, np.int16)) == 8000  # 1 s queued from 0.5 s
    tl.add_user(tone(200, 3200, rate, start=8000), 8000)  # the user speaks on for 0.2 s, then barges in
    assert tl.interrupt() == 16000 - 3200 - 80  # all but what was heard and the fade
    tl.add_user(tone(200, 4800, rate, start=11200), 11200)
    tl.close()
    y, _ = read_wav(tmp_path / "t.wav")
    right = y[:, 1].astype(np.int32)
    assert y.shape == (16000, 2)
    assert not right[:8000].any() and (right[8000:11200] == 10000).all()
    fade = right[11200:11280]
    assert fade[0] > 9000 and fade[-1] < 100 and (np.diff(fade) <= 0).all()
    assert not right[11280:].any()


def test_timeline_memory_is_bounded_and_the_file_complete(tmp_path):
    """A long call goes through a small buffer; assistant-only audio still reaches the file."""
    rate = 8000
    w = WavWriter(tmp_path / "long.wav", rate, 2)
    tl = ConversationTimeline(w, max_pending_s=0.5, commit_s=0.1)
    user = noise16(rate * 20, seed=9)  # 20 s in 20 ms frames
    for i in range(0, user.shape[0], 160):
        tl.add_user(user[i : i + 160], i)
        assert tl.end - tl.base <= tl.capacity
    assistant = noise16(rate * 3, seed=10)
    for i in range(0, assistant.shape[0], 160):  # 3 s of assistant audio with no user audio
        tl.add_assistant(assistant[i : i + 160])
    assert tl._buf.shape == (4000, 2)
    tl.close()
    y, _ = read_wav(tmp_path / "long.wav")
    assert y.shape == (rate * 23, 2)
    assert np.array_equal(y[: rate * 20, 0], user) and not y[rate * 20 :, 0].any()
    assert np.array_equal(y[rate * 20 :, 1], assistant) and not y[: rate * 20, 1].any()


def test_recorder_declares_its_input_format():
    """Both inputs must be mono at the recording rate: the graph check says where to resample."""
    src = WavCapture({"path": str(SAMPLE)})
    graph = Graph.chain(src, ConversationRecorder({"path": "unused.wav", "sample_rate": 24000}))
    with pytest.raises(PipelineError, match="16000 Hz int16 mono into 24000 Hz any type mono"):
        graph.check()


# --- the shipped pipeline -----------------------------------------------------------------


@pytest.mark.anyio
async def test_shipped_wav_vad_pipeline_writes_the_speech_on_the_input_timeline(tmp_path):
    """pipelines/wav_vad.yaml runs on the shipped sample and writes the speech, gaps as silence."""
    out = tmp_path / "wav_vad.wav"
    # The sample's pauses are digital silence, which the resampler (rounded, not dithered) keeps
    # at exact zeros: a faint noise floor (+-2 LSB, far below the VAD's threshold) makes the audio
    # the VAD passed distinguishable from the zeros playback.wav writes where it cut.
    clean, _ = read_wav(SAMPLE)
    noisy = tmp_path / "two_turns_noise_floor.wav"
    floor = np.random.default_rng(7).integers(-2, 3, clean.shape[0])
    write_wav(noisy, np.clip(clean.astype(np.int32) + floor, -32768, 32767).astype(np.int16), 16000)
    result = await run_yaml(ROOT / "pipelines" / "wav_vad.yaml",
                            overrides=[f"in.path={noisy}", f"out.path={out}", "in.realtime=false"])
    assert result.ok, result.errors
    x, rate_in = read_wav(noisy, "float32")
    y, rate = read_wav(out, "float32")
    assert rate == 24000 and rate_in == 16000
    assert abs(y.shape[0] - x.shape[0] * 3 // 2) < 0.6 * rate  # up to the end of the last turn
    loud = y != 0
    silent_run = np.diff(np.flatnonzero(loud)).max() / rate  # the gap the VAD cut between the two turns
    assert 0.15 < silent_run < 0.4  # pause 1 s - silence_duration 0.5 s - prefix padding 0.3 s
    speech = int(0.3 * rate_in) + 2000  # well inside the first sentence
    seg_in = x[speech : speech + 1600]
    lag = np.arange(-50, 51)
    seg_out_start = speech * 3 // 2
    from soxr import resample

    ref = resample(seg_in, 16000, 24000)
    corr = [np.dot(ref, y[seg_out_start + k : seg_out_start + k + ref.shape[0]]) for k in lag]
    best = int(np.argmax(corr))
    norm = np.linalg.norm(ref) * np.linalg.norm(y[seg_out_start + lag[best] : seg_out_start + lag[best] + ref.shape[0]])
    assert corr[best] / norm > 0.95 and abs(lag[best]) <= 50  # the same speech at the same place
