"""The voxpipe command line, run as a real subprocess."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GOOD = """\
voxpipe: 1
name: cli-test
processors:
  src:  {type: "procs:Counter", params: {count: 5}}
  gain: {type: "procs:Gain", params: {factor: 3}}
  out:  {type: "procs:Collect"}
links:
  - src -> gain -> out
"""


def voxpipe(*args, timeout=60, **kw):
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{ROOT}")
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT, **kw)


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    return path


def test_help_lists_the_commands():
    """voxpipe --help names every command."""
    out = voxpipe("--help").stdout
    for cmd in ("run", "validate", "graph", "schema", "processors", "devices", "realtime-server", "demo", "bench", "serve"):
        assert cmd in out


def test_validate_good_and_bad(good, tmp_path):
    """validate says ok, or prints file:line problems and exits 2 without a traceback."""
    r = voxpipe("validate", str(good))
    assert r.returncode == 0 and "ok (3 processors, 2 links)" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("factor: 3", "factr: 3"))
    r = voxpipe("validate", str(bad))
    assert r.returncode == 2
    assert f"{bad}:5: processor 'gain': unknown param 'factr'" in r.stderr
    assert "Traceback" not in r.stderr


def test_graph_prints_mermaid_and_dot(good):
    """graph renders the links in both formats."""
    r = voxpipe("graph", str(good))
    assert r.stdout.startswith("flowchart LR") and "src --> gain" in r.stdout
    r = voxpipe("graph", str(good), "--format", "dot")
    assert r.stdout.startswith('digraph "cli-test"') and '"gain" -> "out"' in r.stdout


def test_run_with_stats_and_set(good):
    """run drains the pipeline, applies --set and prints the stats table."""
    r = voxpipe("run", str(good), "--fast", "--stats", "--set", "gain.factor=4")
    assert r.returncode == 0, r.stderr
    assert "gain" in r.stdout and "p99 us" in r.stdout
    assert "ended: end" in r.stderr


def test_run_exits_nonzero_when_the_pipeline_fails(tmp_path):
    """A processor that raises makes the exit code 1 and names the processor."""
    p = tmp_path / "boom.yaml"
    p.write_text(GOOD.replace('"procs:Gain", params: {factor: 3}', '"procs:Boom"'))
    r = voxpipe("run", str(p), "--fast")
    assert r.returncode == 1
    assert "error in gain: ValueError: third frame is bad" in r.stderr


def test_schema_covers_every_builtin_type():
    """schema is JSON with a branch per registered processor type."""
    schema = json.loads(voxpipe("schema").stdout)
    branches = schema["properties"]["processors"]["additionalProperties"]["oneOf"]
    consts = {b["properties"]["type"].get("const") for b in branches}
    assert {"tools.router", "debug.console"} <= consts


def test_processors_lists_types_with_a_description():
    """processors prints each type with the first line of its docstring."""
    out = voxpipe("processors").stdout
    assert "tools.router" in out and "debug.console" in out


def test_first_ctrl_c_ends_gracefully(tmp_path):
    """SIGINT ends a real-time run gracefully (exit 0); the end is drained, not cancelled."""
    p = tmp_path / "long.yaml"
    marker = tmp_path / "running"
    p.write_text(GOOD.replace("count: 5", "count: 100000").replace(
        "  out:  {type: \"procs:Collect\"}",
        f"  mark: {{type: \"procs:Touch\", params: {{path: \"{marker}\"}}}}\n  out:  {{type: \"procs:Collect\"}}").replace(
        "src -> gain -> out", "src -> gain -> mark -> out"))
    env = dict(os.environ, PYTHONPATH=f"{HERE}{os.pathsep}{ROOT}")
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(p)], stderr=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 30
    while not marker.exists():  # frames flow, so the signal handler is installed: wait for that, not a guess
        assert proc.poll() is None and time.monotonic() < deadline, "the pipeline never started"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "ended: end" in err
