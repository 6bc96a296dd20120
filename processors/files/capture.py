"""Capture sources that need no device: an audio file (WAV, FLAC, Ogg, ...), a sine tone, white noise.

Each emits fixed-size audio frames (``frame_ms``) stamped with their media time in samples
(``pts``), paced by the graph's media clock: frame ``[pts, pts + n)`` is pushed when media
time reaches ``pts + n``, as a sound card would deliver it. With ``realtime: false`` (or a
run that is not real time) frames go out as fast as the graph takes them. A source ends
the stream by returning from ``produce()``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import anyio
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.dsp.formats import to_int16
from pipeline.dsp.rechunk import frame_samples
from pipeline.frames import AudioFormat, AudioFrame
from pipeline.processor import Processor
from processors.files.wavfile import WavError, WavInfo, WavReader, read_wav_info

__all__ = ["NoiseCapture", "ToneCapture", "WavCapture"]

_BLOCK_S = 1.0  # a file is read and converted a second at a time; frames are views of it


class _PacedSource(Processor):
    """Pushes frames at their media time; subclasses yield the sample arrays."""

    def _pace_enabled(self) -> bool:
        return bool(getattr(self.params, "realtime", True)) and self.clock is not None

    async def _emit(self, samples: np.ndarray, rate: int, pts: int) -> None:
        if self._pace_enabled():
            await self.clock.wait_until((pts + samples.shape[0]) / rate)  # type: ignore[union-attr]
        else:
            await anyio.lowlevel.checkpoint()
        await self.push(AudioFrame(samples, rate, pts=pts))


def _silence(n: int, channels: int, dtype: str) -> np.ndarray:
    z = np.zeros(n if channels == 1 else (n, channels), dtype=dtype)
    z.flags.writeable = False  # shared by every padding frame
    return z


class WavCapture(_PacedSource):
    """Reads an audio file and emits it as fixed-size audio frames; ends the stream at its end.

    The file may be any format :mod:`processors.files.wavfile` reads (soundfile): WAV,
    FLAC, Ogg Vorbis or Opus, AIFF, MP3; the type keeps its name ``capture.wav``.

    The file's header is read when the processor is built, so the graph check knows its
    rate and channels and a missing or broken file is reported before anything runs. The
    last frame is completed with silence; ``pad_ms`` adds trailing silence so that a VAD
    downstream can close the last turn; ``loop`` plays the file again and again (until the
    graph ends). In YAML, a relative ``path`` is looked up next to the pipeline file first,
    then in the current directory.
    """

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str = Field(description="audio file to read: WAV (PCM, float, mu-law, A-law, ADPCM), FLAC, Ogg Vorbis/Opus, AIFF, MP3")
        frame_ms: float = Field(20.0, gt=0, le=1000, description="frame duration (10, 20, 30, 32 ms ...)")
        realtime: bool = Field(True, description="pace frames at real time by media time; false: as fast as possible")
        loop: bool = Field(False, description="start again at the end of the file, until the graph ends")
        pad_ms: float = Field(0.0, ge=0, description="silence emitted after the end of the file")
        dtype: Literal["int16", "float32"] = Field("int16", description="sample type of the frames")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self.info: WavInfo = read_wav_info(self.params.path)
        try:
            self.frame_samples = frame_samples(self.info.sample_rate, self.params.frame_ms)
        except ValueError as exc:
            raise ValueError(f"frame_ms: {exc} ({self.params.path} is {self.info.sample_rate} Hz)") from None

    @classmethod
    def resolve_paths(cls, raw: dict[str, Any], base_dir: Path) -> dict[str, Any]:
        """Relative ``path``: next to the pipeline file when it is there, else as given."""
        path = raw.get("path")
        if isinstance(path, str) and path and not os.path.isabs(path):
            beside = Path(base_dir) / path
            if beside.exists() or not Path(path).exists():
                return {**raw, "path": str(beside)}
        return raw

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat:
        return AudioFormat(self.info.sample_rate, self.info.channels, self.params.dtype)

    async def produce(self) -> None:
        p, info, n = self.params, self.info, self.frame_samples
        rate, channels = info.sample_rate, info.channels
        block_frames = n * max(1, int(_BLOCK_S * rate) // n)
        pts = 0
        with WavReader(p.path) as reader:
            if reader.info.sample_rate != rate or reader.info.channels != channels:
                raise WavError(p.path, f"the file changed since the pipeline was built (now {reader.info.describe()})")
            while True:
                block = self._read_block(reader, block_frames)
                if block is None:
                    break
                end = block.shape[0]
                for i in range(0, end, n):
                    samples = block[i : i + n]
                    if samples.shape[0] < n:  # the end of the file: complete the frame with silence
                        samples = np.concatenate([samples, _silence(n - samples.shape[0], channels, p.dtype)])
                    await self._emit(samples, rate, pts)
                    pts += n
        pad = _silence(n, channels, p.dtype)
        for _ in range(math.ceil(p.pad_ms * rate / 1000 / n)):
            await self._emit(pad, rate, pts)
            pts += n

    def _read_block(self, reader: WavReader, want: int) -> np.ndarray | None:
        """Up to ``want`` frames; with ``loop``, wraps around to the start of the file."""
        parts: list[np.ndarray] = []
        got = 0
        while got < want:
            x = reader.read(want - got, self.params.dtype)
            if x.shape[0] == 0:
                if not self.params.loop or reader.info.num_frames == 0:
                    break
                reader.seek(0)
                continue
            parts.append(x)
            got += x.shape[0]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class _GeneratorParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    duration_s: float | None = Field(1.0, gt=0, description="length of the signal; null: until the graph ends")
    sample_rate: int = Field(16000, gt=0, le=384000, description="Hz of the frames")
    frame_ms: float = Field(20.0, gt=0, le=1000, description="frame duration")
    realtime: bool = Field(True, description="pace frames at real time by media time; false: as fast as possible")
    dtype: Literal["int16", "float32"] = Field("int16", description="sample type of the frames")


class _Generator(_PacedSource):
    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self.frame_samples = frame_samples(self.params.sample_rate, self.params.frame_ms)

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat:
        return AudioFormat(self.params.sample_rate, 1, self.params.dtype)

    def _generate(self, n: int) -> np.ndarray:
        """The next ``n`` float32 samples in [-1, 1] (written into a fresh array)."""
        raise RuntimeError(f"{type(self).__name__} must define _generate")

    async def produce(self) -> None:
        p, n = self.params, self.frame_samples
        total = None if p.duration_s is None else round(p.duration_s * p.sample_rate)
        pts = 0
        while total is None or pts < total:
            k = n if total is None else min(n, total - pts)
            x = self._generate(k)
            await self._emit(to_int16(x) if p.dtype == "int16" else x, p.sample_rate, pts)
            pts += k


class ToneCapture(_Generator):
    """Emits a sine tone (``frequency`` Hz at ``amplitude_dbfs`` peak) for tests and demos.

    The phase runs on across frames, so the tone has no discontinuity at frame borders;
    the last frame is shorter when ``duration_s`` is not a whole number of frames.
    """

    class Params(_GeneratorParams):
        frequency: float = Field(440.0, gt=0, description="Hz; below half the sample rate")
        amplitude_dbfs: float = Field(-20.0, le=0, description="peak level in dB relative to full scale")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        p = self.params
        if p.frequency >= p.sample_rate / 2:
            raise ValueError(f"frequency {p.frequency} Hz must be below half the sample rate ({p.sample_rate / 2:g} Hz)")
        self._step = 2 * np.pi * p.frequency / p.sample_rate
        self._amp = 10 ** (p.amplitude_dbfs / 20)
        self._ramp = np.arange(self.frame_samples, dtype=np.float64) * self._step
        self._phase = 0.0

    def _generate(self, n: int) -> np.ndarray:
        x = np.sin(self._ramp[:n] + self._phase).astype(np.float32)
        x *= np.float32(self._amp)
        self._phase = (self._phase + n * self._step) % (2 * np.pi)
        return x


class NoiseCapture(_Generator):
    """Emits seeded white Gaussian noise at ``level_dbfs`` RMS (clipped to full scale).

    The same ``seed`` gives the same samples, so a test can rely on them.
    """

    class Params(_GeneratorParams):
        level_dbfs: float = Field(-30.0, le=0, description="RMS level in dB relative to full scale")
        seed: int = Field(0, description="seed of the random generator")

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self._rng = np.random.default_rng(self.params.seed)
        self._scale = np.float32(10 ** (self.params.level_dbfs / 20))

    def _generate(self, n: int) -> np.ndarray:
        x = self._rng.standard_normal(n, dtype=np.float32)
        x *= self._scale
        return np.clip(x, -1.0, 1.0, out=x)
