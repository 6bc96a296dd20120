"""README.md's own examples, run as a user would: copied into a fresh folder outside the
repository, the processor and its test under plain ``pytest``, the pipelines through the
``voxpipe`` command, with no PYTHONPATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: A fenced block and its language.
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
#: The first line of a block that is a file: ``# mypkg/gain.py`` or ``# gain.yaml, next to mypkg/``.
NAMED = re.compile(r"^# ([\w./-]+\.(?:py|yaml))\b")


def readme_blocks(text: str) -> list[tuple[str, str]]:
    return [(lang, body) for lang, body in FENCE.findall(text)]


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VOXPIPE_REALTIME_URL")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict[str, Path]:
    """Every named python/yaml block of README.md written to its path in a fresh folder."""
    folder = tmp_path_factory.mktemp("user_project")
    files: dict[str, Path] = {}
    for lang, body in readme_blocks((ROOT / "README.md").read_text()):
        m = NAMED.match(body)
        if lang in ("python", "yaml") and m:
            path = folder / m.group(1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
            files[m.group(1)] = path
    return files


def test_the_readme_names_its_example_files(project):
    assert {"mypkg/gain.py", "test_gain.py", "gain.yaml"} <= set(project)


def test_the_readme_processor_test_passes_under_plain_pytest(project):
    folder = project["test_gain.py"].parent
    proc = subprocess.run([str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "test_gain.py"], cwd=folder,
                          env=user_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout and "not natively supported" not in proc.stdout + proc.stderr


def test_the_readme_processor_test_fails_when_the_gain_is_wrong(project, tmp_path):
    """The snippet's test can fail: with the gain left at 0 dB its assertion does."""
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "gain.py").write_text(project["mypkg/gain.py"].read_text().replace("10 ** (self.params.db / 20)", "1.0"))
    (tmp_path / "test_gain.py").write_text(project["test_gain.py"].read_text())
    proc = subprocess.run([str(BIN / "pytest"), "-q", "-p", "no:cacheprovider", "test_gain.py"], cwd=tmp_path,
                          env=user_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "1 failed" in proc.stdout, proc.stdout


def test_the_readme_pipeline_runs_its_package_from_another_directory(project, tmp_path):
    """``type: mypkg.gain:Gain`` imports from the YAML's folder, whatever the working directory."""
    yaml = project["gain.yaml"]
    proc = subprocess.run([str(BIN / "voxpipe"), "run", str(yaml), "--fast", "--stats"], cwd=tmp_path,
                          env=user_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^gain\s+50\b", proc.stdout, re.M), proc.stdout  # 1 s of 20 ms frames went through it


def test_every_readme_pipeline_without_a_file_name_validates(tmp_path):
    blocks = [body for lang, body in readme_blocks((ROOT / "README.md").read_text())
              if lang == "yaml" and body.startswith("voxpipe: 1") and not NAMED.match(body)]
    assert blocks
    for i, body in enumerate(blocks):
        path = tmp_path / f"readme_{i}.yaml"
        path.write_text(body)
        proc = subprocess.run([str(BIN / "voxpipe"), "validate", str(path)], cwd=tmp_path, env=user_env(),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, body + proc.stderr


def test_the_pipelines_guide_example_runs_beside_the_shipped_sample(tmp_path):
    """docs/pipelines.md's first pipeline, saved as it says beside the sample it names, runs."""
    import shutil

    from pipelines import shipped

    body = next(b for lang, b in readme_blocks((ROOT / "docs/pipelines.md").read_text()) if lang == "yaml")
    (tmp_path / "hello.yaml").write_text(body)
    shutil.copy(shipped("samples/hello_16k.wav"), tmp_path / "hello_16k.wav")
    proc = subprocess.run([str(BIN / "voxpipe"), "run", "hello.yaml", "--fast"], cwd=tmp_path, env=user_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "hello-16k.wav").stat().st_size > 1000
