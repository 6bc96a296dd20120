"""Errors in user code: one ErrorFrame and one log paragraph, never an escaping ExceptionGroup."""

import logging

import numpy as np
import pytest

from pipeline import AudioFrame, Graph, Processor, Runner, TextFrame
from pipeline.registry import BUILTINS, resolve_type
from pipeline.testing import CollectSink, FrameSource, run_frames, sine

pytestmark = pytest.mark.anyio


def params_for(name, tmp_path):
    """Params valid for each built-in type (paths under ``tmp_path``)."""
    if name == "capture.wav":
        from processors.files.wavfile import write_wav

        write_wav(tmp_path / "in.wav", np.zeros(480, np.int16), 24000)
        return {"path": str(tmp_path / "in.wav")}
    return {
        "audio.resample": {"rate": 16000},
        "playback.wav": {"path": str(tmp_path / "out.wav")},
        "record": {"path": str(tmp_path / "rec.wav")},
        "tools.router": {"functions": {"get_weather": "processors.tools.examples:get_weather"}},
    }.get(name, {})


class Failure(Exception):
    """What the patched method raises."""


async def _raise(self, *args):
    raise Failure(f"{type(self).__name__} failed on purpose")


async def _nothing(self, *args):
    return None


async def _pass_on(self, frame, direction, *link):
    await self.push(frame, direction)


@pytest.mark.parametrize("method", ["process", "start", "stop"])
@pytest.mark.parametrize("name", sorted(BUILTINS))
async def test_every_builtin_reports_its_failures_as_error_frames(name, method, tmp_path, monkeypatch):
    """A raising process/start/stop of each built-in ends the run with an ErrorFrame, not an ExceptionGroup."""
    try:
        cls = resolve_type(name)
    except Exception as exc:  # an optional dependency is missing
        pytest.skip(f"{name} cannot be imported here: {exc}")
    proc = cls(params_for(name, tmp_path), name="proc")
    for m, fn in {"start": _nothing, "stop": _nothing, "process": _pass_on}.items():
        monkeypatch.setattr(cls, m, _raise if m == method else fn)
    frames = [TextFrame("hello", role="user"), sine(ms=20, rate=24000)]
    g = Graph(name=f"fail-{name}")
    g.add("source", FrameSource(frames))
    g.add("proc", proc, type=name)
    g.add("sink", CollectSink())
    g.link("source", "proc", "sink")
    g.check()
    try:
        result = await Runner(g, realtime=False, stop_timeout_s=1.0).run()
    except BaseExceptionGroup as group:  # noqa: F821 (a builtin on 3.11)
        pytest.fail(f"an exception group escaped the runner: {group!r}")
    assert not result.ok and result.ended == "error"
    assert [(e.processor, type(e.exception)) for e in result.errors][:1] == [("proc", Failure)]


async def test_the_log_names_node_type_where_and_the_user_line(caplog):
    """One ERROR paragraph: node id, type, what it was doing, the exception and where it was raised."""

    class Picky(Processor):
        """Fails on audio."""

        async def process(self, frame, direction):
            if isinstance(frame, AudioFrame):
                raise ValueError("no audio please")
            await self.push(frame, direction)

    with caplog.at_level(logging.ERROR, logger="voxpipe"):
        out = await run_frames(Picky(name="picky"), [sine()])
    assert not out.result.ok
    [record] = [r for r in caplog.records if r.name == "voxpipe.node"]
    text = record.getMessage()
    assert "'picky'" in text and "Picky" in text and "while processing AudioFrame" in text
    assert "ValueError: no audio please" in text and "test_core_errors.py:" in text and "in process" in text
    assert record.exc_info is None  # the traceback goes to DEBUG only


async def test_null_playback_says_what_to_fix_when_the_rate_changes():
    """playback.null fed 24 kHz then 8 kHz audio reports its own error, not a TypeError."""
    from processors.files.playback import NullPlayback

    out = await run_frames(NullPlayback(name="speaker"), [sine(rate=24000), sine(rate=8000)])
    assert not out.result.ok
    [err] = out.result.errors
    assert err.processor == "speaker"
    assert "8000 Hz audio after 24000 Hz" in err.message and "audio.resample" in err.message
    assert not isinstance(err.exception, TypeError)


class Spawner(Processor):
    """Starts a task that fails."""

    async def start(self):
        self.spawn(self._work)

    async def _work(self):
        raise RuntimeError("the task broke")


class BadSource(Processor):
    """A source whose produce() fails."""

    async def produce(self):
        raise KeyError("nothing to produce")


async def test_produce_and_spawned_task_failures_are_reported():
    """produce() and spawned tasks report like process(): an ErrorFrame naming the node."""
    g = Graph.chain(BadSource(name="src"), Spawner(name="spawner"), CollectSink())
    result = await Runner(g, realtime=False).run()
    assert not result.ok
    assert {e.processor for e in result.errors} <= {"src", "spawner"} and result.errors
    where = {e.processor: e.message for e in result.errors}
    assert "KeyError" in where.get("src", "KeyError") and "RuntimeError" in where.get("spawner", "RuntimeError")


async def test_a_processor_runs_in_one_graph_at_a_time():
    """Running the same processor instance in two graphs at once is refused with a clear error."""
    import anyio

    shared = Processor(name="shared")

    class Forever(Processor):
        """A source that never ends on its own."""

        async def produce(self):
            await anyio.sleep_forever()

    one = Runner(Graph.chain(Forever(), shared, CollectSink()), realtime=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(one.run)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="already running in another graph"):
            await Runner(Graph.chain(FrameSource([]), shared, CollectSink(name="other")), realtime=False).run()
        one.cancel()
