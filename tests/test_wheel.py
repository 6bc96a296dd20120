"""The wheel: built from a copy of the source tree, it holds our three packages and their data, nothing else."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Left out of the copy: build/ in particular, whose stale files setuptools would package.
IGNORE = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                ".hypothesis", "out", "test-artifacts", "bench-results")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    """The file list of a wheel built (``pip wheel --no-deps``) from a clean copy of the checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp / "dist").glob("voxpipe-*.whl")
    with zipfile.ZipFile(wheel) as z:
        return z.namelist()


def test_wheel_installs_only_our_packages(wheel_names):
    """The top level holds pipeline, pipelines, processors and the dist-info; no tests, benchmarks or docs."""
    top = {PurePosixPath(n).parts[0] for n in wheel_names}
    assert top == {"pipeline", "pipelines", "processors", "voxpipe-0.1.0.dist-info"}
    assert "pipeline/cli.py" in wheel_names and "processors/realtime/server/server.py" in wheel_names


def test_wheel_ships_the_package_data(wheel_names):
    """Every shipped YAML, sample WAV, the demo rules and the web page are in the wheel."""
    expected = {str(p.relative_to(ROOT).as_posix()) for pattern in
                ("pipelines/*.yaml", "pipelines/samples/*", "processors/brain/*.yaml", "processors/web/static/*")
                for p in ROOT.glob(pattern)}
    assert {"pipelines/demo.yaml", "pipelines/samples/demo_conversation_16k.wav", "processors/brain/demo_rules.yaml",
            "processors/web/static/index.html"} <= expected
    assert expected <= set(wheel_names)


def test_wheel_samples_are_only_wavs(wheel_names):
    """pipelines/samples holds audio only: the scripts that made it stay in tests/."""
    samples = [n for n in wheel_names if n.startswith("pipelines/samples/")]
    assert samples and all(n.endswith(".wav") for n in samples), samples


def test_wheel_has_no_data_outside_packages(wheel_names):
    """Non-Python files are only the declared package data (and the dist-info)."""
    data = sorted(n for n in wheel_names if not n.endswith(".py") and ".dist-info/" not in n)
    allowed = ("pipelines/", "pipelines/samples/", "processors/brain/", "processors/web/static/")
    stray = [n for n in data if str(PurePosixPath(n).parent) + "/" not in allowed]
    assert not stray, stray
