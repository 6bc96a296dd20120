"""Each mistake a user made (issue 17, section 4) gives one short paragraph: no traceback,
no pydantic wording, no knock-on error, and the message says what to do."""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import textwrap
import types
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.frames import ToolCallFrame, ToolResultFrame
from pipeline.testing import run_frames

ROOT = Path(__file__).resolve().parent.parent


def assert_short(text: str, *, max_lines: int = 3) -> None:
    """One short paragraph: a few lines, no blank line, no traceback, no pydantic leak."""
    text = text.strip()
    assert text, "no message at all"
    lines = text.splitlines()
    assert len(lines) <= max_lines, text
    assert "" not in [ln.strip() for ln in lines], text
    for noise in ("Traceback", 'File "', "Value error,", "pydantic", "Input should be", "expected dict",
                  "For further information", "(got "):
        assert noise not in text, f"{noise!r} in:\n{text}"
    assert len(text) <= 500, text


def cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.err + out.out


def pipeline(tmp_path: Path, body: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text("voxpipe: 1\nname: t\n" + textwrap.dedent(body))
    return path


@pytest.fixture
def broken_package(tmp_path, monkeypatch):
    """A user's package next to the YAML whose modules fail to import in three ways."""
    pkg = tmp_path / "usertools"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "missing_dep.py").write_text("import nonexistent_dependency_xyz\n")
    (pkg / "syntax.py").write_text("def f(:\n")
    (pkg / "nameerr.py").write_text("x = undefined_name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    import sys

    for mod in [m for m in sys.modules if m.startswith("usertools")]:
        del sys.modules[mod]


@pytest.mark.parametrize("module, says", [
    ("usertools.missing_dep", "install 'nonexistent_dependency_xyz'"),
    ("usertools.syntax", "SyntaxError"),
    ("usertools.nameerr", "NameError: name 'undefined_name' is not defined"),
])
def test_tool_module_that_fails_to_import_is_one_line(broken_package, capsys, module, says):
    path = pipeline(broken_package, f"""\
        processors:
          src: {{type: capture.tone}}
          tools: {{type: tools.router, params: {{modules: [{module}]}}}}
        links:
          - src -> tools
        """)
    code, text = cli(["validate", str(path)], capsys)
    assert code == 2
    assert_short(text, max_lines=1)
    assert says in text and "p.yaml:5: processor 'tools'" in text
    assert f"{module.replace('.', '/')}.py:1" in text  # where the user's mistake is


def test_missing_wav_says_where_relative_paths_are_looked_up(tmp_path, capsys):
    path = pipeline(tmp_path, """\
        processors:
          src: {type: capture.wav, params: {path: nothere.wav}}
          out: {type: playback.null}
        links:
          - src -> out
        """)
    code, text = cli(["validate", str(path)], capsys)
    assert code == 2
    assert_short(text)
    assert "current directory" not in text.split("next to the pipeline file")[0]
    assert "next to the pipeline file" in text


def test_a_validator_sentence_is_not_wrapped_in_pydantic_words(tmp_path, capsys):
    path = pipeline(tmp_path, """\
        processors:
          src: {type: capture.tone}
          model: {type: realtime.openai, params: {url: "http://example.com/v1"}}
          out: {type: playback.null}
        links:
          - src -> model -> out
        """)
    code, text = cli(["validate", str(path)], capsys)
    assert code == 2
    assert_short(text, max_lines=1)
    assert text.strip().endswith("use ws://example.com/v1")


def test_a_wrong_type_is_said_in_words(tmp_path, capsys):
    path = pipeline(tmp_path, """\
        processors:
          src: {type: capture.tone}
          tools: {type: tools.router, params: {functions: [a, b]}}
        links:
          - src -> tools
        """)
    code, text = cli(["validate", str(path)], capsys)
    assert code == 2
    assert_short(text)
    assert "param 'functions' must be a mapping" in text and "not a list ['a', 'b']" in text


def test_unset_variable_is_one_problem_not_two(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VOXPIPE_UNSET_INPUT", raising=False)
    path = pipeline(tmp_path, """\
        processors:
          src: {type: capture.wav, params: {path: "${VOXPIPE_UNSET_INPUT}"}}
          out: {type: playback.null}
        links:
          - src -> out
        """)
    code, text = cli(["validate", str(path)], capsys)
    assert code == 2
    assert_short(text, max_lines=2)
    assert "VOXPIPE_UNSET_INPUT is not set" in text and "no such file" not in text


def test_a_typo_in_set_is_reported_on_the_command_line_not_the_file(capsys):
    code, text = cli(["validate", str(ROOT / "pipelines/transcribe.yaml"), "--set", "vad.treshold=0.3"], capsys)
    assert code == 2
    assert_short(text, max_lines=2)
    assert text.startswith("--set vad.treshold=0.3: processor 'vad': unknown param 'treshold'")
    assert "transcribe.yaml" not in text and "did you mean 'threshold'?" in text
    code, text = cli(["validate", str(ROOT / "pipelines/transcribe.yaml"), "--set", "vad.threshold=abc"], capsys)
    assert_short(text, max_lines=2)
    assert text.startswith("--set vad.threshold=abc: processor 'vad': param 'threshold' must be a number")


@pytest.mark.anyio
async def test_a_raising_tool_logs_one_line_and_the_model_hears_no_exception_text(caplog):
    from processors.tools.router import ToolRegistry, ToolRouter
    from processors.tools.schema import build_tool_spec

    def lookup(city: str) -> dict:
        """Look a city up."""
        raise KeyError("secret_table_column")

    router = ToolRouter(registry=ToolRegistry([build_tool_spec(lookup)]))
    caplog.set_level(logging.DEBUG)
    out = await run_frames(router, [ToolCallFrame("c1", "lookup", {"city": "Oslo"}, turn=1)], expect_upstream=2)
    result = [f for f in out.upstream if isinstance(f, ToolResultFrame)][0]
    assert result.is_error and json.loads(result.output) == {"error": "lookup hit an internal error"}
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and errors[0].exc_info is None
    line = errors[0].getMessage()
    assert_short(line, max_lines=1)
    assert "KeyError: 'secret_table_column'" in line and "test_messages.py:" in line
    assert "anyio" not in line


@pytest.mark.anyio
async def test_a_tool_error_is_what_the_model_says():
    from processors.tools.router import ToolRouter

    router = ToolRouter({"functions": {"get_weather": "processors.tools.examples:get_weather"}})
    out = await run_frames(router, [ToolCallFrame("c1", "get_weather", {"location": "Atlantis"}, turn=1)],
                           expect_upstream=2)
    result = [f for f in out.upstream if isinstance(f, ToolResultFrame)][0]
    error = json.loads(result.output)["error"]
    assert error.startswith("no weather data for 'Atlantis'; known cities: Paris") and "Error" not in error


def test_no_input_device_says_run_voxpipe_devices(tmp_path, capsys, monkeypatch):
    import processors.devices.sound as sound

    class PortAudioError(Exception):
        pass

    fake = types.SimpleNamespace(default=types.SimpleNamespace(device=(-1, -1)), PortAudioError=PortAudioError,
                                 query_devices=lambda *a, **k: [],
                                 InputStream=lambda **k: (_ for _ in ()).throw(PortAudioError("Error querying device -1")))
    monkeypatch.setattr(sound, "_sounddevice", lambda: fake)
    path = pipeline(tmp_path, """\
        processors:
          mic: {type: capture.microphone}
          out: {type: playback.null}
        links:
          - mic -> out
        """)
    code, text = cli(["run", str(path)], capsys)
    assert code == 1
    first = text.strip().splitlines()[0]
    assert_short(first, max_lines=1)
    assert "no default input device; run `voxpipe devices`" in first
    assert "-1" not in text and "None" not in text


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (apt-get install nodejs)")
@pytest.mark.parametrize("code, reason, says", [
    (1001, "", "The voxpipe server went away"),
    (1006, "", "connection to the voxpipe server was lost"),
    (1011, "pipeline failed", "hit an error on the server"),
    (1008, "too many malformed messages", "refused this page's messages (too many malformed messages)."),
    (4321, "", "closed unexpectedly (code 4321)"),
])
def test_the_browser_page_says_why_the_connection_closed(code, reason, says):
    source = (ROOT / "processors/web/static/app.js").read_text()
    fn = re.search(r"^function closeReason\(.*?^}\n", source, re.S | re.M).group(0)
    script = fn + f"\nconsole.log(closeReason({code}, {json.dumps(reason)}));\n"
    text = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True).stdout
    assert_short(text, max_lines=1)
    assert says in text and "Press Reconnect" in text and "Connection closed" not in text
