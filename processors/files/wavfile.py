"""WAV files: read PCM and float RIFF/WAVE into numpy, write them incrementally.

The stdlib :mod:`wave` reads integer PCM only and writes its header sizes at ``close()``;
this module reads what voice work meets (8/16/24/32-bit PCM, 32/64-bit IEEE float, plain or
``WAVE_FORMAT_EXTENSIBLE``, any channel count and rate) and writes files whose header is
valid after every write, so a recording survives a cancelled graph or a killed process.

Theory of operation
-------------------
A WAV file is a RIFF container: ``"RIFF" <size> "WAVE"`` then chunks ``<id> <size> <body>``
(bodies padded to an even length). :func:`read_wav_info` walks the chunks, reading only
their headers and the ``fmt `` body, until it has both ``fmt `` and ``data``; it never reads
the audio. A data size of ``0xFFFFFFFF`` (written by streaming tools that could not seek
back) means "to the end of the file". A data chunk that claims more bytes than the file
holds is an error: the file was cut short. A trailing partial frame is ignored.

Decoding is vectorised: 8-bit is unsigned, 24-bit is unpacked through a 4-byte view, and
integers become float32 by dividing by the full scale (``2**(bits-1)``); float becomes int16
by scaling by 32768 and clipping. Every problem is a :class:`WavError` naming the file.

:class:`WavWriter` writes the header first with zero sizes, appends audio with one
unbuffered write per call, and patches the RIFF and data sizes (and the ``fact`` sample
count of float files) after every write by default, at every :meth:`WavWriter.flush` and at
:meth:`WavWriter.close`.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from pipeline.errors import MediaError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "WavError",
    "WavInfo",
    "WavReader",
    "WavWriter",
    "decode_samples",
    "read_wav",
    "read_wav_info",
    "write_wav",
]

FORMAT_PCM = 0x0001
FORMAT_FLOAT = 0x0003
FORMAT_EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = {0x0002: "MS ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0011: "IMA ADPCM", 0x0055: "MP3"}
_SUPPORTED = {FORMAT_PCM: (8, 16, 24, 32), FORMAT_FLOAT: (32, 64)}
_CONVERT_HINT = "convert it with `ffmpeg -i IN -c:a pcm_s16le OUT.wav` or `sox IN -b 16 OUT.wav`"
_RIFF_LIMIT = 0xFFFFFFFF
_STREAMED_SIZE = 0xFFFFFFFF


class WavError(MediaError):
    """A WAV file cannot be read or written: ``path`` names it, ``problem`` says what is wrong.

    ``hint``, when set, says what to do about it. ``str()`` gives ``"path: problem; hint"``.
    """

    def __init__(self, path: str | os.PathLike, problem: str, hint: str | None = None) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.path}: {self.problem}"
        return f"{text}; {self.hint}" if self.hint else text


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What a WAV header says: layout of the samples and where they are in the file."""

    sample_rate: int
    channels: int
    bits_per_sample: int
    format_tag: int  # FORMAT_PCM or FORMAT_FLOAT (the subformat of an extensible file)
    num_frames: int
    data_offset: int
    extensible: bool = False

    @property
    def block_align(self) -> int:
        return self.channels * self.bits_per_sample // 8

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.sample_rate

    @property
    def is_float(self) -> bool:
        return self.format_tag == FORMAT_FLOAT

    @property
    def native_dtype(self) -> str:
        """The numpy sample type that holds this file without loss of range: int16 or float32."""
        return "int16" if self.format_tag == FORMAT_PCM and self.bits_per_sample <= 16 else "float32"

    def describe(self) -> str:
        kind = "float" if self.is_float else "PCM"
        return f"{self.sample_rate} Hz {self.bits_per_sample}-bit {kind}, {self.channels} ch, {self.duration_s:.2f} s"


# --- reading ------------------------------------------------------------------------------


def read_wav_info(path: str | os.PathLike) -> WavInfo:
    """Parse the header of the WAV file at ``path`` without reading its audio.

    Cheap enough to call when a graph is built, so that the graph check knows the file's
    rate and channels. Raises :class:`WavError` when the file is missing or unreadable.
    """
    with _open_for_reading(path) as f:
        return _parse_header(f, os.fspath(path))


def read_wav(path: str | os.PathLike, dtype: str | None = None) -> tuple[np.ndarray, int]:
    """Read a whole WAV file: ``(samples, sample_rate)``.

    ``samples`` has shape ``(n,)`` for mono and ``(n, channels)`` otherwise; ``dtype`` is
    ``"int16"``, ``"float32"`` or ``None`` for the file's :attr:`WavInfo.native_dtype`.
    """
    with WavReader(path) as reader:
        return reader.read(reader.info.num_frames, dtype), reader.info.sample_rate


class WavReader:
    """Reads the audio of a WAV file in blocks, converted to int16 or float32.

    Use it for long files (a capture source reads a second at a time); :func:`read_wav`
    reads a whole file at once. ``read`` returns fewer frames at the end and an empty
    array after it; ``seek(0)`` starts again (for looping).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self._file = _open_for_reading(path)
        try:
            self.info = _parse_header(self._file, self.path)
        except BaseException:
            self._file.close()
            raise
        self._pos = 0
        self.seek(0)

    @property
    def position(self) -> int:
        """The next frame ``read`` returns, counted from the start of the audio."""
        return self._pos

    def seek(self, frame: int) -> None:
        """Continue reading at ``frame`` (0 is the first frame of the audio)."""
        frame = max(0, min(frame, self.info.num_frames))
        self._file.seek(self.info.data_offset + frame * self.info.block_align)
        self._pos = frame

    def read(self, frames: int, dtype: str | None = None) -> np.ndarray:
        """Up to ``frames`` frames from the current position, as ``dtype`` (default native)."""
        info = self.info
        frames = max(0, min(frames, info.num_frames - self._pos))
        want = frames * info.block_align
        raw = self._file.read(want)
        if len(raw) < want:  # the file shrank since its header was read
            raise WavError(
                self.path,
                f"truncated data chunk: expected {want} more bytes of audio at frame {self._pos}, "
                f"the file ends after {len(raw)}",
            )
        self._pos += frames
        return decode_samples(raw, info, dtype or info.native_dtype)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def decode_samples(raw: bytes, info: WavInfo, dtype: str) -> np.ndarray:
    """Decode little-endian sample bytes laid out as ``info`` says into ``dtype`` samples."""
    if dtype not in ("int16", "float32"):
        raise ValueError(f"dtype must be 'int16' or 'float32', got {dtype!r}")
    bits = info.bits_per_sample
    if info.is_float:
        x = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8")
        out = _float_to_int16(x) if dtype == "int16" else x.astype(np.float32, copy=False)
    elif bits == 16:
        x = np.frombuffer(raw, dtype="<i2")
        out = x.astype(np.int16, copy=False) if dtype == "int16" else x * np.float32(1 / 32768)
    elif bits == 8:
        x = np.frombuffer(raw, dtype=np.uint8)
        if dtype == "int16":
            out = (x.astype(np.int16) - 128) << 8
        else:
            out = (x.astype(np.float32) - 128) * np.float32(1 / 128)
    elif bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        if dtype == "int16":  # the top two bytes are the int16 value (truncation, as sox does)
            out = np.ascontiguousarray(b[:, 1:]).view("<i2").reshape(-1).astype(np.int16, copy=False)
        else:
            wide = np.zeros((b.shape[0], 4), dtype=np.uint8)
            wide[:, 1:] = b  # value << 8 in an int32: the sign comes for free
            out = wide.view("<i4").reshape(-1).astype(np.float32) * np.float32(1 / 2**31)
    else:  # 32-bit PCM
        x = np.frombuffer(raw, dtype="<i4")
        out = (x >> 16).astype(np.int16) if dtype == "int16" else x.astype(np.float32) * np.float32(1 / 2**31)
    if info.channels > 1:
        out = out.reshape(-1, info.channels)
    return out


def _open_for_reading(path: str | os.PathLike) -> BinaryIO:
    name = os.fspath(path)
    try:
        return open(name, "rb", buffering=0)  # block reads are large; the header needs a few small ones
    except FileNotFoundError:
        raise WavError(name, "no such file", "check the path (relative paths start at the current directory)") from None
    except IsADirectoryError:
        raise WavError(name, "is a directory, not a WAV file") from None
    except OSError as exc:
        raise WavError(name, f"cannot open: {exc.strerror or exc}") from None


def _parse_header(f: BinaryIO, name: str) -> WavInfo:
    """Walk the RIFF chunks of ``f`` until ``fmt `` and ``data`` are both found."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        if not head:
            raise WavError(name, "empty file, not a WAV file")
        if head[:4] in (b"RF64", b"BW64"):
            raise WavError(name, f"{head[:4].decode()} (WAV larger than 4 GiB) is not supported", "split it into smaller files")
        if head[:4] != b"RIFF":
            raise WavError(name, f"not a WAV file: it starts with {head[:4]!r}, not b'RIFF'")
        if len(head) < 12:
            raise WavError(name, f"truncated header: the file ends after {len(head)} bytes")
        raise WavError(name, f"not a WAV file: a RIFF file of type {head[8:12]!r}, not b'WAVE'")
    f.seek(0, os.SEEK_END)
    file_size = f.tell()
    f.seek(12)
    fmt: tuple[int, int, int, int, bool] | None = None
    pos = 12
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            if fmt is None:
                raise WavError(name, "no 'fmt ' chunk (the header is incomplete or the file was cut short)")
            raise WavError(name, "no 'data' chunk (the file has a header but no audio)")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16:
                raise WavError(name, f"'fmt ' chunk of {size} bytes is too short (16 needed)", "the header is corrupt; re-export the file")
            if body + size > file_size:
                raise WavError(name, f"truncated 'fmt ' chunk: {size} bytes declared, {file_size - body} in the file")
            fmt = _parse_fmt(f.read(size), name)
        elif cid == b"data":
            if fmt is None:
                raise WavError(name, "'data' chunk comes before the 'fmt ' chunk", _CONVERT_HINT)
            rate, channels, bits, tag, extensible = fmt
            block = channels * bits // 8
            available = file_size - body
            if size == _STREAMED_SIZE:
                size = available
            elif size > available:
                raise WavError(
                    name,
                    f"truncated data chunk: the header says {size} bytes of audio, the file holds {available}",
                    "the file was cut short while being written; re-export it, or repair its header "
                    "with `sox --ignore-length IN OUT.wav`",
                )
            return WavInfo(rate, channels, bits, tag, size // block, body, extensible)
        pos = body + size + (size & 1)
        f.seek(pos)


def _parse_fmt(body: bytes, name: str) -> tuple[int, int, int, int, bool]:
    tag, channels, rate, _byte_rate, _block, bits = struct.unpack("<HHIIHH", body[:16])
    extensible = tag == FORMAT_EXTENSIBLE
    if extensible:
        if len(body) < 40:
            raise WavError(name, f"truncated WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk ({len(body)} bytes, 40 needed)")
        tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the subformat GUID
    if tag not in _SUPPORTED:
        label = _FORMAT_NAMES.get(tag, "unknown")
        where = " (subformat of WAVE_FORMAT_EXTENSIBLE)" if extensible else ""
        raise WavError(
            name,
            f"unsupported format 0x{tag:04X} ({label}){where}: voxpipe reads PCM and IEEE float",
            _CONVERT_HINT,
        )
    if channels == 0:
        raise WavError(name, "zero channels in the 'fmt ' chunk", "the header is corrupt; re-export the file")
    if rate == 0:
        raise WavError(name, "sample rate 0 in the 'fmt ' chunk", "the header is corrupt; re-export the file")
    if bits not in _SUPPORTED[tag]:
        kind = "float" if tag == FORMAT_FLOAT else "PCM"
        depths = "/".join(str(b) for b in _SUPPORTED[tag])
        raise WavError(name, f"unsupported bit depth: {bits}-bit {kind} (supported: {depths}-bit)", _CONVERT_HINT)
    return rate, channels, bits, tag, extensible


# --- writing ------------------------------------------------------------------------------


class WavWriter:
    """Writes a WAV file incrementally; the file is valid after every write.

    ``dtype`` is the file's sample type: ``"int16"`` (16-bit PCM) or ``"float32"`` (IEEE
    float, with the ``fact`` chunk the format requires). ``write`` takes int16 or float32
    arrays of shape ``(n,)`` or ``(n, channels)`` and converts them. The header sizes are
    patched whenever at least ``header_interval_s`` of audio was written since the last
    patch (0, the default, patches after every write: two 4-byte ``pwrite`` calls), and at
    :meth:`flush` and :meth:`close`. Audio goes to the OS at once (unbuffered), so a killed
    process leaves a file that reads back up to its last patch.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_rate: int,
        channels: int = 1,
        dtype: str = "int16",
        *,
        header_interval_s: float = 0.0,
    ) -> None:
        self.path = os.fspath(path)
        if dtype not in ("int16", "float32"):
            raise WavError(self.path, f"cannot write sample type {dtype!r}", "use 'int16' or 'float32'")
        if sample_rate <= 0 or channels <= 0:
            raise WavError(self.path, f"cannot write {sample_rate} Hz with {channels} channels")
        self.sample_rate = sample_rate
        self.channels = channels
        self.dtype = dtype
        self.frames_written = 0
        self._is_float = dtype == "float32"
        self._file_dtype = np.dtype("<f4" if self._is_float else "<i2")
        self._block = channels * self._file_dtype.itemsize
        self._patch_every = max(0, int(header_interval_s * sample_rate))
        self._unpatched = 0
        try:
            self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 - owned until close()
        except OSError as exc:
            raise WavError(self.path, f"cannot create: {exc.strerror or exc}") from None
        header = self._header()
        self._data_offset = len(header)
        self._file.write(header)

    def _header(self) -> bytes:
        bits = 8 * self._file_dtype.itemsize
        rate, ch, block = self.sample_rate, self.channels, self._block
        if self._is_float:  # non-PCM: 18-byte fmt (cbSize 0) and a fact chunk
            fmt = struct.pack("<4sIHHIIHHH", b"fmt ", 18, FORMAT_FLOAT, ch, rate, rate * block, block, bits, 0)
            fmt += struct.pack("<4sII", b"fact", 4, 0)
        else:
            fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, FORMAT_PCM, ch, rate, rate * block, block, bits)
        return b"RIFF" + struct.pack("<I", 4 + len(fmt) + 8) + b"WAVE" + fmt + b"data" + struct.pack("<I", 0)

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, samples: np.ndarray) -> None:
        """Append ``samples`` (int16 or float32, ``(n,)`` or ``(n, channels)``)."""
        if self._file.closed:
            raise WavError(self.path, "write after close")
        x = np.asarray(samples)
        n = x.shape[0]
        if (x.ndim == 1 and self.channels != 1) or (x.ndim == 2 and x.shape[1] != self.channels) or x.ndim > 2:
            raise WavError(
                self.path, f"samples of shape {x.shape} do not fit a {self.channels}-channel file",
                "give (n,) arrays for mono and (n, channels) arrays otherwise",
            )
        if n == 0:
            return
        if (self.frames_written + n) * self._block + self._data_offset > _RIFF_LIMIT:
            raise WavError(self.path, "the file would pass the 4 GiB limit of RIFF WAV", "split the recording")
        if x.dtype == self._file_dtype.newbyteorder("="):
            data = np.ascontiguousarray(x, dtype=self._file_dtype)
        elif self._is_float:
            data = _int16_to_float(x) if x.dtype == np.int16 else x.astype("<f4")
        else:
            data = _float_to_int16(x) if x.dtype.kind == "f" else _int_to_int16(x)
        self._file.write(memoryview(data).cast("B"))
        self.frames_written += n
        self._unpatched += n
        if self._unpatched >= self._patch_every:
            self._patch()

    def write_silence(self, frames: int) -> None:
        """Append ``frames`` frames of silence, a bounded block at a time."""
        block = min(frames, self.sample_rate)
        if block <= 0:
            return
        zeros = np.zeros((block, self.channels) if self.channels > 1 else block, dtype=self._file_dtype)
        while frames > 0:
            self.write(zeros[: min(frames, block)])
            frames -= block

    def flush(self) -> None:
        """Patch the header sizes so that the file on disk is complete up to here."""
        if not self._file.closed:
            self._patch()

    def close(self) -> None:
        """Patch the header and close the file. Calling it again does nothing."""
        if self._file.closed:
            return
        try:
            self._patch()
        finally:
            self._file.close()

    def _patch(self) -> None:
        data_bytes = self.frames_written * self._block
        fd = self._file.fileno()
        _pwrite(fd, struct.pack("<I", self._data_offset - 8 + data_bytes), 4)
        _pwrite(fd, struct.pack("<I", data_bytes), self._data_offset - 4)
        if self._is_float:
            _pwrite(fd, struct.pack("<I", self.frames_written), self._data_offset - 12)
        self._unpatched = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int, dtype: str | None = None) -> None:
    """Write a whole signal to ``path``; ``dtype`` defaults to the type of ``samples``."""
    x = np.asarray(samples)
    channels = 1 if x.ndim == 1 else x.shape[1]
    file_dtype = dtype or ("int16" if x.dtype == np.int16 else "float32")
    with WavWriter(path, sample_rate, channels, file_dtype) as w:
        w.write(x)


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    if hasattr(os, "pwrite"):
        os.pwrite(fd, data, offset)
    else:  # Windows: no pwrite; seek there and back
        end = os.lseek(fd, 0, os.SEEK_CUR)
        os.lseek(fd, offset, os.SEEK_SET)
        os.write(fd, data)
        os.lseek(fd, end, os.SEEK_SET)


def _float_to_int16(x: np.ndarray) -> np.ndarray:
    """Scale by 32768, round and clip: the inverse of int16 / 32768, exact on round trips."""
    y = np.multiply(x, 32768.0, dtype=np.float32)
    np.rint(y, out=y)
    np.clip(y, -32768.0, 32767.0, out=y)
    return y.astype("<i2")


def _int16_to_float(x: np.ndarray) -> np.ndarray:
    return np.multiply(x, np.float32(1 / 32768), dtype=np.float32).astype("<f4", copy=False)


def _int_to_int16(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "iu":
        raise TypeError(f"WAV samples must be int16 or float32, got {x.dtype}")
    return np.clip(x, -32768, 32767).astype("<i2")
