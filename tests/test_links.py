"""Which input: process(frame, direction, link), Processor.inputs/outputs, mix gains, recorder sides."""

import numpy as np
import pytest

from pipeline import AudioFrame, Direction, Graph, Processor, Runner, TextFrame
from pipeline.testing import CollectSink, FrameSource
from processors.files.wavfile import read_wav
from processors.audio.transforms import MixProcessor
from processors.files.record import ConversationRecorder

pytestmark = pytest.mark.anyio
RATE = 16000


def tone(freq, seconds, db, rate=RATE):
    t = np.arange(int(rate * seconds)) / rate
    return (10 ** (db / 20) * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def frames_of(x, rate=RATE, ms=20, item_id=None):
    n = rate * ms // 1000
    return [AudioFrame(x[i : i + n], rate, pts=i, item_id=item_id) for i in range(0, x.shape[0], n)]


def level_db(y, freq, rate=RATE):
    """Level (dBFS of the sine's peak) of the ``freq`` component of ``y``, by least squares."""
    t = np.arange(y.shape[0]) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)
    return 20 * np.log10(np.hypot(*coef))


class LinkAware(Processor):
    """Records the link of every frame; pushes frames on."""

    async def start(self):
        self.seen = []
        self.ins, self.outs = self.inputs, self.outputs

    async def process(self, frame, direction, link):
        self.seen.append((type(frame).__name__, direction, link))
        await self.push(frame, direction)


class Answering(LinkAware):
    """A link-aware sink that answers the first frame upstream."""

    async def process(self, frame, direction, link):
        self.seen.append((type(frame).__name__, direction, link))
        if len(self.seen) == 1:
            await self.push(TextFrame("back", role="system"), Direction.UPSTREAM)


async def test_process_learns_which_link_a_frame_came_from():
    """Downstream frames name the upstream neighbour, upstream frames the downstream one."""
    g = Graph(name="diamond")
    g.add("src", FrameSource([TextFrame("hi")]))
    a, b = g.add("a", LinkAware()), g.add("b", LinkAware())
    join = g.add("join", Answering())
    g.link("src", "a", "join")
    g.link("src", "b", "join")
    result = await Runner(g, realtime=False).run()
    assert result.ok
    assert sorted(link for _, d, link in join.seen if d is Direction.DOWNSTREAM) == ["a", "b"]
    assert join.ins == ["a", "b"] and a.ins == ["src"] and a.outs == ["join"] and join.outs == []
    assert a.seen[0] == ("TextFrame", Direction.DOWNSTREAM, "src")
    ups = [s for s in a.seen + b.seen if s[1] is Direction.UPSTREAM]
    assert ups == [("TextFrame", Direction.UPSTREAM, "join")] * 2  # upstream goes back along both links


def _mix_graph(gains):
    g = Graph(name="mix")
    g.add("voice", FrameSource(frames_of(tone(440, 0.5, -12)), name="voice"))
    g.add("music", FrameSource(frames_of(tone(1000, 0.5, -12), ms=30), name="music"))
    g.add("mix", MixProcessor({"gains": gains, "dtype": "float32"}))
    sink = g.add("sink", CollectSink())
    g.link("voice", "mix", "sink")
    g.link("music", "mix")
    g.check()
    return g, sink


async def test_mix_applies_a_gain_per_input_by_node_id():
    """gains: {music: -6}: the 1 kHz input comes out 6 dB down, the 440 Hz one unchanged."""
    g, sink = _mix_graph({"music": -6.0})
    result = await Runner(g, realtime=False).run()
    assert result.ok
    y = np.concatenate([f.samples for f in sink.received if isinstance(f, AudioFrame)])
    assert y.shape[0] == RATE // 2
    assert abs(level_db(y, 440) - -12.0) < 0.1
    assert abs(level_db(y, 1000) - -18.0) < 0.1


async def test_mix_rejects_a_gain_for_a_node_that_is_not_an_input():
    """An unknown id in gains fails start() with the available inputs named."""
    g, _ = _mix_graph({"musik": -6.0})
    result = await Runner(g, realtime=False).run()
    assert not result.ok
    [err] = result.errors
    assert err.processor == "mix" and "'musik'" in err.message and "'voice', 'music'" in err.message


async def test_recorder_places_audio_by_link_when_told_the_sides(tmp_path):
    """user: mic / assistant: model: assistant audio without item_id still lands on the right."""
    user = tone(300, 1.0, -6)
    assistant = tone(1200, 0.4, -12)
    g = Graph(name="rec")
    g.add("mic", FrameSource(frames_of(user), name="mic"))
    g.add("model", FrameSource(frames_of(assistant), name="model"))  # no item_id on these frames
    g.add("record", ConversationRecorder({"path": str(tmp_path / "call.wav"), "sample_rate": RATE,
                                          "dtype": "float32", "user": "mic", "assistant": "model"}))
    g.link("mic", "record")
    g.link("model", "record")
    result = await Runner(g, realtime=False).run()
    assert result.ok, result.errors
    y, rate = read_wav(tmp_path / "call.wav", dtype="float32")
    assert rate == RATE and y.shape[1] == 2
    assert np.allclose(y[: user.shape[0], 0], user, atol=1e-6)
    right = y[:, 1]
    start = int(np.flatnonzero(right)[0]) - 1  # the sine starts at 0.0
    placed = right[start : start + assistant.shape[0]]
    assert np.allclose(placed, assistant, atol=1e-6) and abs(level_db(placed, 1200) - -12.0) < 0.1
    assert not right[start + assistant.shape[0]:].any()


async def test_recorder_without_sides_keeps_the_item_id_rule(tmp_path):
    """Unset user/assistant: frames without item_id are the user's, wherever they come from."""
    g = Graph(name="rec")
    g.add("mic", FrameSource(frames_of(tone(300, 0.2, -6)), name="mic"))
    g.add("model", FrameSource(frames_of(tone(1200, 0.2, -12), item_id="item_1"), name="model"))
    g.add("record", ConversationRecorder({"path": str(tmp_path / "call.wav"), "sample_rate": RATE, "dtype": "float32"}))
    g.link("mic", "record")
    g.link("model", "record")
    assert (await Runner(g, realtime=False).run()).ok
    y, _ = read_wav(tmp_path / "call.wav", dtype="float32")
    assert abs(level_db(y[:3200, 0], 300) - -6.0) < 0.1 and level_db(y[:, 0], 1200) < -60
    assert level_db(y[:, 1], 300) < -60


async def test_recorder_rejects_a_side_that_is_not_an_input(tmp_path):
    """A user/assistant id that is not linked in fails start() naming the inputs."""
    g = Graph(name="rec")
    g.add("mic", FrameSource(frames_of(tone(300, 0.1, -6)), name="mic"))
    g.add("record", ConversationRecorder({"path": str(tmp_path / "c.wav"), "sample_rate": RATE, "assistant": "modle"}))
    g.link("mic", "record")
    result = await Runner(g, realtime=False).run()
    assert not result.ok and "'modle'" in result.errors[0].message and "'mic'" in result.errors[0].message
