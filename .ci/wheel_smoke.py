"""Run the installed ``voxpipe`` commands from an empty directory, as a user of the wheel would.

Usage: ``VENV/bin/python .ci/wheel_smoke.py``, with voxpipe installed non-editable (with the
``local`` extra) in VENV. Each check runs in a fresh empty temporary directory, so nothing is
found through a source checkout; the script exits 1 naming the first check that failed.

Checks: ``voxpipe demo``; ``voxpipe realtime-server`` (connect once, stop with SIGINT, then
again with SIGTERM); ``voxpipe serve`` (GET the page, stop with SIGINT); ``voxpipe run`` of a
user YAML that uses ``realtime.openai`` with ``url: local`` and a WAV beside it (the shipped sample, an
out-of-grammar sentence; then a greeting synthesised with the wheel's eSpeak NG).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent / "voxpipe"
USER_YAML = """\
voxpipe: 1
name: my-agent
processors:
  mic: {type: capture.wav, params: {path: hello.wav, pad_ms: 1000}}
  vad: {type: vad.energy, params: {threshold: 0.5, silence_duration_ms: 500}}
  resample: {type: audio.resample, params: {rate: 24000}}
  model: {type: realtime.openai, params: {url: local, turn_detection: {type: none}, input_transcription: {model: whisper-1}}}
  console: {type: debug.console}
  speaker: {type: playback.null}
links:
  - mic -> vad -> resample -> model -> console -> speaker
"""


class Failed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args: list[str], cwd: Path, timeout: float) -> str:
    proc = subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise Failed(f"voxpipe {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    # A handled SIGINT in this process becomes the default action in the child (not "ignored",
    # which a shell's background job would pass on and which would make Ctrl-C do nothing).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return subprocess.Popen([str(BIN), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_listening(proc: subprocess.Popen, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Failed(f"exited {proc.returncode} before listening:\n{proc.stdout.read()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise Failed(f"not listening on port {port} after {timeout} s")


def stop(proc: subprocess.Popen, sig: int, what: str) -> int:
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise Failed(f"{what}: still running 15 s after {signal.Signals(sig).name}") from None
    if code != 0:  # both signals close every connection and exit 0
        raise Failed(f"{what}: exited {code} after {signal.Signals(sig).name}:\n{proc.stdout.read()}")
    return code


def check_demo(cwd: Path) -> str:
    out = run(["demo"], cwd, timeout=240)
    for line in ("tool call : get_weather({'location': 'Paris'})", "assistant : Goodbye! Talk to you soon."):
        if line not in out:
            raise Failed(f"voxpipe demo did not print {line!r}:\n{out}")
    for name in ("conversation.wav", "assistant.wav"):
        if not (cwd / "out" / name).stat().st_size > 44:
            raise Failed(f"voxpipe demo wrote no audio to out/{name}")
    return "ok"


async def realtime_session(port: int) -> str:
    import websockets  # a dependency of voxpipe

    url = f"ws://127.0.0.1:{port}/v1/realtime?model=gpt-realtime"
    async with websockets.connect(url, additional_headers={"Authorization": "Bearer local"}) as ws:
        return (await asyncio.wait_for(ws.recv(), 30))[:60]


def check_realtime_server(cwd: Path) -> str:
    codes = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        port = free_port()
        proc = start(["realtime-server", "--port", str(port)], cwd)
        try:
            wait_listening(proc, port)
            first = asyncio.run(realtime_session(port))
            if "session.created" not in first:
                raise Failed(f"realtime-server: first event is not session.created: {first}")
        finally:
            if proc.poll() is None:
                codes.append(f"{signal.Signals(sig).name} -> exit {stop(proc, sig, 'realtime-server')}")
    return ", ".join(codes)


def check_serve(cwd: Path) -> str:
    port = free_port()
    proc = start(["serve", "--port", str(port)], cwd)
    try:
        wait_listening(proc, port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            page = resp.read().decode()
        if resp.status != 200 or "<html" not in page.lower():
            raise Failed(f"serve: GET / gave {resp.status}: {page[:200]}")
    finally:
        code = stop(proc, signal.SIGINT, "serve") if proc.poll() is None else proc.returncode
    return f"GET / 200, SIGINT -> exit {code}"


# A user's own recording of a greeting, made with the wheel's eSpeak NG (a user would record it)
GREETING_WAV = """\
import numpy as np
from pipeline.dsp.resample import resample
from processors.files.wavfile import write_wav
from processors.speech.espeak import synthesize
speech, rate = synthesize("Hello.", voice="en-us+klatt")
speech = resample(speech, rate, 16000)
write_wav("greeting.wav", np.concatenate([np.zeros(4800, np.int16), speech, np.zeros(8000, np.int16)]), 16000)
"""


def lines_of(out: str, who: str) -> list[str]:
    """What `voxpipe run`'s live view printed for `who` (user, assistant), one entry a line."""
    return [line.strip()[11:].strip() for line in out.splitlines()
            if line.strip().startswith(f"{who:<10}:")]


def check_run_user_yaml(cwd: Path) -> str:
    from_package = subprocess.run(
        [sys.executable, "-c", "from pipelines import shipped; print(shipped('samples/hello_16k.wav'))"],
        cwd=cwd, capture_output=True, text=True, check=True,
    ).stdout.strip()
    shutil.copy(from_package, cwd / "hello.wav")
    (cwd / "agent.yaml").write_text(USER_YAML)
    out = run(["run", "agent.yaml"], cwd, timeout=120)
    # The sample says "Hello, this is a short test of the voxpipe audio pipeline." (tests/make_samples.py):
    # a sentence outside the local model's grammar, so its gate hands it to the general English model and
    # the brain answers it as out-of-grammar speech (docs/local-model.md), not as the nearest phrase
    # ("hello", whose greeting rule is anchored: ^(hello|hi|hey)( there)?$).
    user, assistant = lines_of(out, "user"), lines_of(out, "assistant")
    if not any("short test" in line for line in user):
        raise Failed(f"voxpipe run agent.yaml did not print the user's words (the general model's 'short test'):\n{out}")
    if not any(line.startswith("Sorry, I can't help with") for line in assistant):
        raise Failed(f"voxpipe run agent.yaml did not print the out-of-grammar answer:\n{out}")
    # The same YAML with a greeting: the grammar hears it, the greeting rule answers.
    subprocess.run([sys.executable, "-c", GREETING_WAV], cwd=cwd, capture_output=True, text=True, check=True)
    (cwd / "greeting.yaml").write_text(USER_YAML.replace("path: hello.wav", "path: greeting.wav"))
    out = run(["run", "greeting.yaml"], cwd, timeout=120)
    user, assistant = lines_of(out, "user"), lines_of(out, "assistant")
    if user != ["hello"] or assistant != ["Hello! I am the voxpipe local model."]:
        raise Failed(f"voxpipe run greeting.yaml: a spoken 'Hello.' was not heard as 'hello' and answered by the "
                     f"demo rules' greeting (user {user}, assistant {assistant}):\n{out}")
    return "out-of-grammar sentence answered as such; greeting answered by its rule"


def main() -> int:
    if not BIN.is_file():
        print(f"no voxpipe command at {BIN}: install the wheel into this interpreter's venv", file=sys.stderr)
        return 1
    checks = {"demo": check_demo, "realtime-server": check_realtime_server, "serve": check_serve,
              "run (user YAML, url: local)": check_run_user_yaml}
    only = set(sys.argv[1:])
    for name, check in checks.items():
        if only and name.split()[0] not in only:
            continue
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="voxpipe-wheel-") as tmp:
            try:
                detail = check(Path(tmp))
            except (Failed, subprocess.SubprocessError, OSError) as exc:
                print(f"wheel smoke: voxpipe {name}: FAILED\n{exc}", file=sys.stderr)
                return 1
        print(f"wheel smoke: voxpipe {name}: {detail} ({time.monotonic() - t0:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    os.environ.pop("VOXPIPE_REALTIME_URL", None)
    sys.exit(main())
