"""Real PortAudio devices at real time: a JACK dummy server, speaker looped back into microphone.

The fixture starts ``jackd`` with the dummy driver (no sound card needed) under a unique
server name, points PortAudio at it through ``JACK_DEFAULT_SERVER`` and re-initialises
PortAudio (it enumerates devices once, at initialisation). The test opens
``playback.speaker`` and ``capture.microphone`` on it, connects PortAudio's output port to
its input port with ``jack_connect``, plays a synthesised sentence and checks that what
the microphone captured is the same signal (normalised cross-correlation), and that the
speaker reported the sentence as played.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import numpy as np
import pytest

from pipeline.errors import MediaError
from pipeline.frames import (
    AudioFrame,
    Direction,
    Frame,
    PlaybackProgressFrame,
    ResponseEndFrame,
)
from pipeline.graph import Graph
from pipeline.processor import Processor
from pipeline.runner import Runner
from pipeline.testing import CollectSink
from processors.files.wavfile import read_wav
from processors.devices.sound import (
    MicrophoneCapture,
    SpeakerPlayback,
    format_devices,
    list_devices,
)

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = ROOT / "pipelines" / "samples" / "hello_16k.wav"  # eSpeak NG, 16 kHz mono
RATE = 16000


def test_device_modules_import_without_sounddevice():
    """sounddevice (and PortAudio) load only when a device processor starts."""
    code = (
        "import sys, processors.devices.sound, processors.files.capture, processors.files.playback, processors.files.record\n"
        "assert 'sounddevice' not in sys.modules, 'sounddevice imported at module import'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def _jack_env(name: str) -> dict[str, str]:
    return {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_START_SERVER": "1"}


@pytest.fixture(scope="module")
def jack_server():
    """A JACK dummy server at 16 kHz, 320-sample periods; PortAudio re-initialised to see it."""
    jackd = shutil.which("jackd")
    if jackd is None or shutil.which("jack_connect") is None or shutil.which("jack_lsp") is None:
        pytest.skip("jackd / jack_connect / jack_lsp not installed (Debian: apt install jackd2)")
    if ctypes.util.find_library("portaudio") is None:
        pytest.skip("libportaudio is not installed (Debian: apt install libportaudio2)")
    name = f"voxpipe-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    env = _jack_env(name)
    server = subprocess.Popen(
        [jackd, "-n", name, "--no-realtime", "-d", "dummy", "-r", str(RATE), "-p", "320"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while True:  # wait for the external server process to accept clients
        if server.poll() is not None:
            log = server.stdout.read().decode(errors="replace") if server.stdout else ""
            pytest.fail(f"jackd exited with {server.returncode} at start:\n{log}")
        if subprocess.run(["jack_lsp"], env=env, capture_output=True, timeout=10, check=False).returncode == 0:
            break
        if time.monotonic() > deadline:
            server.kill()
            pytest.fail("jackd did not accept clients within 15 s")
        time.sleep(0.05)
    saved = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ.update(JACK_DEFAULT_SERVER=name, JACK_NO_START_SERVER="1")
    try:
        import sounddevice as sd
    except OSError as exc:
        server.kill()
        pytest.skip(f"PortAudio cannot be loaded: {exc}")
    sd._terminate()  # PortAudio lists devices at initialisation: start it again to see JACK
    sd._initialize()
    try:
        yield name
    finally:
        sd._terminate()  # leave the server before it goes away
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)
        if server.stdout:
            server.stdout.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        sd._initialize()


def jack_device() -> int:
    """The index of the JACK device PortAudio offers (the dummy driver's 'system')."""
    import sounddevice as sd

    for hostapi in sd.query_hostapis():
        if "JACK" in hostapi["name"] and hostapi["devices"]:
            return hostapi["devices"][0]
    pytest.fail(f"PortAudio sees no JACK device:\n{format_devices(list_devices())}")


def loopback_ports(env: dict[str, str]) -> tuple[str, str]:
    """PortAudio's own output and input ports (the names depend on the PortAudio build)."""
    ports = subprocess.run(["jack_lsp"], env=env, capture_output=True, text=True, timeout=10, check=True).stdout.split()
    outs = [p for p in ports if not p.startswith("system:") and ":out_" in p]
    ins = [p for p in ports if not p.startswith("system:") and ":in_" in p]
    assert outs and ins, f"PortAudio ports not found among {ports}"
    return outs[0], ins[0]


class PlaySentence(Processor):
    """Connects the loopback, pushes the sentence as one assistant item, waits until it is played."""

    def __init__(self, samples: np.ndarray, env: dict[str, str]) -> None:
        super().__init__(name="player")
        self.samples = samples
        self.env = env
        self.progress: list[PlaybackProgressFrame] = []
        self._played = anyio.Event()

    async def produce(self) -> None:
        out_port, in_port = loopback_ports(self.env)
        done = await anyio.to_thread.run_sync(
            lambda: subprocess.run(["jack_connect", out_port, in_port], env=self.env, capture_output=True, text=True,
                                   timeout=10, check=False)
        )
        assert done.returncode == 0, done.stderr
        n = RATE // 50
        for i in range(0, self.samples.shape[0], n):
            await self.push(AudioFrame(self.samples[i : i + n], RATE, pts=i, item_id="item_1", turn=1))
        await self.push(ResponseEndFrame(turn=1))
        with anyio.fail_after(self.samples.shape[0] / RATE + 10):
            await self._played.wait()

    async def process(self, frame: Frame, direction: Direction) -> None:
        if isinstance(frame, PlaybackProgressFrame):
            self.progress.append(frame)
            if frame.done:
                self._played.set()


def normalised_xcorr_peak(played: np.ndarray, captured: np.ndarray) -> tuple[float, int]:
    """max over lags of <x, y[lag:lag+len(x)]> / (|x| |y[lag:lag+len(x)]|), and that lag."""
    x = played.astype(np.float64)
    y = captured.astype(np.float64)
    n = 1 << int(np.ceil(np.log2(x.shape[0] + y.shape[0])))
    c = np.fft.irfft(np.fft.rfft(y, n) * np.conj(np.fft.rfft(x, n)), n)[: y.shape[0] - x.shape[0] + 1]
    energy = np.concatenate([[0.0], np.cumsum(y**2)])
    window = np.sqrt(np.maximum(energy[x.shape[0] :] - energy[: -x.shape[0]], 0)) * np.linalg.norm(x)
    ncc = c / np.maximum(window, 1e-9 * np.linalg.norm(x) ** 2)
    lag = int(np.argmax(ncc))
    return float(ncc[lag]), lag


@pytest.mark.anyio
async def test_speaker_to_microphone_loopback_through_jack(jack_server):
    """A sentence played on playback.speaker comes back on capture.microphone unchanged."""
    sentence, rate = read_wav(SENTENCE)
    assert rate == RATE
    device = jack_device()
    player = PlaySentence(sentence, _jack_env(jack_server))
    speaker = SpeakerPlayback({"device": device, "sample_rate": RATE, "frame_ms": 20})
    mic = MicrophoneCapture({"device": device, "sample_rate": RATE, "frame_ms": 20,
                             "duration_s": sentence.shape[0] / RATE + 1.5})
    captured = CollectSink(name="captured")
    graph = Graph(name="jack-loopback")
    for node in (player, speaker, mic, captured):
        graph.add(node.name, node)
    graph.link(player.name, speaker.name)
    graph.link(mic.name, captured.name)
    graph.check()
    with anyio.fail_after(60):
        result = await Runner(graph, realtime=True).run()
    assert result.ok, result.errors

    frames = [f for f in captured.received if isinstance(f, AudioFrame)]
    assert [f.pts for f in frames] == [i * 320 for i in range(len(frames))]  # pts from sample counts
    recorded = np.concatenate([f.samples for f in frames])
    peak, lag = normalised_xcorr_peak(sentence, recorded)
    figures = f"peak {peak:.4f} at lag {lag} samples; mic {mic.statistics()}; speaker {speaker.statistics()}"
    assert peak > 0.9, figures
    assert 0 <= lag < RATE, figures

    final = [p for p in player.progress if p.done]
    assert len(final) == 1 and final[0].item_id == "item_1", player.progress
    assert abs(final[0].played_ms - 1000 * sentence.shape[0] // RATE) <= 1, player.progress
    assert [p.played_ms for p in player.progress] == sorted(p.played_ms for p in player.progress)


@pytest.mark.anyio
async def test_unknown_device_lists_the_ones_there_are(jack_server):
    """A device name that matches nothing fails start() with the devices that would do."""
    mic = MicrophoneCapture({"device": "no such card", "sample_rate": RATE})
    graph = Graph.chain(mic, CollectSink())
    graph.check()
    with anyio.fail_after(10):
        result = await Runner(graph, realtime=True).run()
    assert not result.ok
    message = result.errors[0].message
    assert message.startswith("MediaError: input device 'no such card' not found (")
    assert "input devices: " in message and "'system'" in message
    with pytest.raises(MediaError, match="cannot open output device 0 at 44100 Hz"):
        speaker = SpeakerPlayback({"device": 0, "sample_rate": 44100})
        await speaker.start()  # the JACK server runs at 16 kHz: PortAudio refuses another rate
