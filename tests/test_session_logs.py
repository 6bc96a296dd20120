"""Each log line of a `voxpipe serve` session carries its session id (pipeline/logs.py), in text and JSON,
over a real server on 127.0.0.1."""

from __future__ import annotations

import json
import logging

import anyio
import pytest
from websockets.asyncio.client import connect

from pipeline.cli import _JsonFormatter
from pipeline.logs import SessionFilter, session_id
from processors.web.server import web_server
from test_web_server import Page, pcm, scripted_yaml


class Records(logging.Handler):
    """The records the CLI's own handler would format, with the filter `install()` gives it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(SessionFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records():
    handler = Records()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler.records
    root.removeHandler(handler)
    root.setLevel(old)


@pytest.mark.anyio
async def test_every_line_of_a_session_names_it_even_from_inside_its_graph(tmp_path, records):
    """The failing model logs from its node's task: the line says s1; the other session's lines say s2."""
    with anyio.fail_after(10):
        async with web_server(scripted_yaml(tmp_path, answer_ms=100)) as srv:
            async with connect(srv.ws_url) as a, connect(srv.ws_url) as b:
                pa, pb = Page(a), Page(b)
                await pa.event("ready")
                await pb.event("ready")
                await a.send(pcm(3))  # the model of s1 raises
                await pa.event("error", fatal=True)
            await srv.wait_idle()
    by_session: dict[str, list[str]] = {}
    for r in records:
        by_session.setdefault(r.session, []).append(r.getMessage())
    failed = [m for m in by_session["s1"] if "processor 'model'" in m and "failing on purpose" in m]
    assert failed, by_session  # logged by voxpipe.node, inside the graph, not by the server's handler
    assert any(m.startswith("session s1: opened from 127.0.0.1") for m in by_session["s1"])
    assert any(m.startswith("session s1: the pipeline ended: error") for m in by_session["s1"])
    assert any(m.startswith("session s2: closed") for m in by_session["s2"])
    assert not any("s2" in m for m in by_session["s1"]) and not any("failing" in m for m in by_session["s2"])
    assert any(m.startswith("serving ") for m in by_session[""])  # outside any session: no id


def test_text_and_json_lines_carry_the_session():
    record = logging.LogRecord("voxpipe.node", logging.ERROR, __file__, 1, "processor %r failed", ("model",), None)
    token = session_id.set("s7")
    try:
        SessionFilter().filter(record)
    finally:
        session_id.reset(token)
    text = logging.Formatter("%(levelname)s %(name)s%(session_tag)s: %(message)s").format(record)
    assert text == "ERROR voxpipe.node [s7]: processor 'model' failed"
    assert json.loads(_JsonFormatter().format(record))["session"] == "s7"
    outside = logging.LogRecord("voxpipe.web", logging.INFO, __file__, 1, "serving", (), None)
    SessionFilter().filter(outside)
    assert "session" not in json.loads(_JsonFormatter().format(outside))
    assert logging.Formatter("%(name)s%(session_tag)s: %(message)s").format(outside) == "voxpipe.web: serving"
