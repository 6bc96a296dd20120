"""The guides' examples run as written: docs/python-api.md's programs, docs/tools.md's
tool module and rules file. Each named block (``# file.py`` on its first line) is written
to a fresh folder and run there, as a user would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
NAMED = re.compile(r"^# ([\w./-]+\.(?:py|yaml))\b")


def named_blocks(doc: str, folder: Path) -> dict[str, Path]:
    files = {}
    for _lang, body in FENCE.findall((ROOT / "docs" / doc).read_text()):
        m = NAMED.match(body)
        if m:
            (folder / m.group(1)).write_text(body)
            files[m.group(1)] = folder / m.group(1)
    return files


def run_python(path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, path.name], cwd=path.parent, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_python_api_shapes_program_prints_both_branches(tmp_path):
    files = named_blocks("python-api.md", tmp_path)
    proc = run_python(files["shapes.py"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0.100", "0.010", "50"]  # -20 dBFS tone, then 20 dB quieter; 1 s of 20 ms frames


@pytest.mark.slow
def test_python_api_agent_talks_to_the_local_model(tmp_path):
    pytest.importorskip("pocketsphinx")
    files = named_blocks("python-api.md", tmp_path)
    proc = run_python(files["agent.py"])
    assert proc.returncode == 0, proc.stderr
    assert "tool call : get_weather({'location': 'Paris'})" in proc.stdout, proc.stdout
    assert "in Paris" in proc.stdout.split("tool call")[-1] and proc.stdout.strip().endswith("end True")


@pytest.mark.anyio
async def test_tools_guide_module_answers_and_errors_as_the_table_says(tmp_path, monkeypatch):
    from pipeline.frames import ToolCallFrame, ToolResultFrame
    from pipeline.testing import run_frames
    from processors.tools.router import ToolRouter

    named_blocks("tools.md", tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    router = ToolRouter({"modules": ["mytools"]})
    assert router.registry.get("get_weather").timeout_s == 3
    calls = [ToolCallFrame("c1", "get_weather", {"location": "Paris"}, turn=1),
             ToolCallFrame("c2", "get_weather", {"location": "Atlantis"}, turn=1)]
    out = await run_frames(router, calls, expect_upstream=3)
    res = {f.call_id: f for f in out.upstream if isinstance(f, ToolResultFrame)}
    assert json.loads(res["c1"].output)["temp_c"] == 18 and not res["c1"].is_error
    assert json.loads(res["c2"].output) == {"error": "no weather data for 'Atlantis'; I only know Paris"}
    sys.modules.pop("mytools", None)


def test_tools_guide_rules_file_loads_and_answers(tmp_path):
    from processors.brain.rules import Brain, Call, Say
    from processors.tools.examples import get_weather
    from processors.tools.schema import build_tool_spec

    files = named_blocks("tools.md", tmp_path)
    brain = Brain.from_yaml(files["my_rules.yaml"])
    assert isinstance(brain.respond("Hello there"), Say)
    tools = [build_tool_spec(get_weather).to_realtime()]
    reply = brain.respond("what is the weather in london", tools)
    assert isinstance(reply, Call) and reply.arguments == {"location": "London"}
    assert brain.respond("play some music").text.startswith("Sorry, I did not understand")
