"""Audio files: read WAV, FLAC, Ogg and the rest of libsndfile's formats into numpy; write WAV incrementally.

Reading is soundfile's (libsndfile, shipped in its wheel): WAV of any PCM depth, float,
mu-law, A-law and ADPCM, plain or ``WAVE_FORMAT_EXTENSIBLE``, RF64, FLAC, Ogg Vorbis and
Opus, AIFF, MP3 and more. What this module adds around it is what libsndfile lacks:

* errors that name the file, the fault and the fix. libsndfile says "Format not
  recognised" or "Unspecified internal error"; for a RIFF/WAVE file a walk over its chunk
  headers (never the audio) says what is wrong: no ``fmt `` or ``data`` chunk, a bit depth
  or a layout it cannot hold, a file cut short;
* a file cut short is an error: libsndfile silently reads what is there, so a recording
  that lost its end would pass for a short one. (A data size of ``0xFFFFFFFF``, written by
  streaming tools that could not seek back, means "to the end of the file".)
* absurd headers are refused before anything is allocated: 0 or more than
  :data:`MAX_CHANNELS` channels, a sample rate of 0 or above :data:`MAX_SAMPLE_RATE`;
* reads never allocate more than :data:`MAX_BLOCK_BYTES` at once, whatever a header claims;
* samples come as int16 or float32 with our conversions: integers become float32 by
  dividing by their full scale (``2**(bits-1)``, exact), wider integers become int16 by
  truncation (as sox does), float becomes int16 by scaling by 32768, rounding and clipping.

Every problem is a :class:`WavError` naming the file (the names keep "wav": WAV is what
voxpipe writes, and what most users hand it).

:class:`WavWriter` is ours; its docstring says why soundfile's writer does not do.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import soundfile

from pipeline.errors import MediaError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "MAX_BLOCK_BYTES",
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "WavError",
    "WavInfo",
    "WavReader",
    "WavWriter",
    "read_wav",
    "read_wav_info",
    "write_wav",
]

FORMAT_PCM = 0x0001
FORMAT_FLOAT = 0x0003
FORMAT_EXTENSIBLE = 0xFFFE
#: The most channels a file may declare (a microphone array; not 65,535 from a broken header).
MAX_CHANNELS = 64
#: The highest sample rate a file may declare (768 kHz, the top of professional converters).
MAX_SAMPLE_RATE = 768_000
#: The most bytes one read allocates at once (decoded samples), whatever a header claims.
MAX_BLOCK_BYTES = 16 << 20
_FORMAT_NAMES = {0x0001: "PCM", 0x0002: "MS ADPCM", 0x0003: "IEEE float", 0x0006: "A-law", 0x0007: "mu-law",
                 0x0011: "IMA ADPCM", 0x0031: "GSM 6.10", 0x0055: "MP3"}
_MAGIC = {b"RF64": "RF64", b"BW64": "BW64", b"OggS": "Ogg", b"fLaC": "FLAC", b"FORM": "AIFF"}
_DEPTHS = {FORMAT_PCM: (8, 16, 24, 32), FORMAT_FLOAT: (32, 64)}  # the tags whose depth we check
_CONVERT_HINT = "convert it with `ffmpeg -i IN -c:a pcm_s16le OUT.wav` or `sox IN -b 16 OUT.wav`"
_CORRUPT_HINT = "the header is corrupt; re-export the file"
_RIFF_LIMIT = 0xFFFFFFFF
_STREAMED_SIZE = 0xFFFFFFFF
# How each libsndfile subtype is read losslessly: as int16, as (left-justified) int32, else float32.
_INT16_SUBTYPES = frozenset({"PCM_S8", "PCM_U8", "PCM_16", "ULAW", "ALAW", "IMA_ADPCM", "MS_ADPCM", "GSM610",
                             "VOX_ADPCM", "G721_32", "G723_24", "G723_40", "DWVW_12", "DWVW_16", "ALAC_16"})
_INT32_SUBTYPES = frozenset({"PCM_24", "PCM_32", "DWVW_24", "ALAC_20", "ALAC_24", "ALAC_32"})
_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64,
         "ULAW": 8, "ALAW": 8}


class WavError(MediaError):
    """An audio file cannot be read or written: ``path`` names it, ``problem`` says what is wrong.

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
    """What an audio file's header says: rate, channels, length and encoding.

    ``format`` and ``subtype`` are libsndfile's names (``"WAV"``, ``"WAVEX"``, ``"FLAC"``,
    ``"OGG"``; ``"PCM_16"``, ``"FLOAT"``, ``"VORBIS"``, ``"OPUS"``, ...).
    """

    sample_rate: int
    channels: int
    num_frames: int
    format: str
    subtype: str

    @property
    def bits_per_sample(self) -> int | None:
        """Bits per stored sample for PCM, float, mu-law and A-law; None for compressed formats."""
        return _BITS.get(self.subtype)

    @property
    def extensible(self) -> bool:
        return self.format == "WAVEX"

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.sample_rate

    @property
    def is_float(self) -> bool:
        return self.subtype in ("FLOAT", "DOUBLE")

    @property
    def native_dtype(self) -> str:
        """The numpy sample type that holds this file without loss of range: int16 or float32."""
        return "int16" if self.subtype in _INT16_SUBTYPES else "float32"

    def describe(self) -> str:
        return (f"{self.sample_rate} Hz {self.format} {self.subtype}, {self.channels} ch, "
                f"{self.duration_s:.2f} s")


# --- reading ------------------------------------------------------------------------------


def read_wav_info(path: str | os.PathLike) -> WavInfo:
    """Read the header of the audio file at ``path`` without decoding its audio.

    Cheap enough to call when a graph is built, so that the graph check knows the file's
    rate and channels. Raises :class:`WavError` when the file is missing or unreadable.
    """
    with WavReader(path) as reader:
        return reader.info


def read_wav(path: str | os.PathLike, dtype: str | None = None) -> tuple[np.ndarray, int]:
    """Read a whole audio file: ``(samples, sample_rate)``.

    ``samples`` has shape ``(n,)`` for mono and ``(n, channels)`` otherwise; ``dtype`` is
    ``"int16"``, ``"float32"`` or ``None`` for the file's :attr:`WavInfo.native_dtype`.
    """
    with WavReader(path) as reader:
        return reader.read(reader.info.num_frames, dtype), reader.info.sample_rate


class WavReader:
    """Reads the audio of a file in blocks, converted to int16 or float32.

    Use it for long files (a capture source reads a second at a time); :func:`read_wav`
    reads a whole file at once. ``read`` returns fewer frames at the end and an empty
    array after it; ``seek(0)`` starts again (for looping).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        riff_frames, tag = _check_file(self.path)
        try:
            self._file = soundfile.SoundFile(self.path)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise _open_error(self.path, exc, tag) from None
        try:
            f = self._file
            _check_layout(self.path, f.samplerate, f.channels, "header")
            frames = f.frames if riff_frames is None else min(f.frames, riff_frames)
            self.info = WavInfo(f.samplerate, f.channels, frames, f.format, f.subtype)
        except BaseException:
            self._file.close()
            raise
        self._read_as = ("int16" if self.info.subtype in _INT16_SUBTYPES
                         else "int32" if self.info.subtype in _INT32_SUBTYPES else "float32")
        self._pos = 0

    @property
    def position(self) -> int:
        """The next frame ``read`` returns, counted from the start of the audio."""
        return self._pos

    def seek(self, frame: int) -> None:
        """Continue reading at ``frame`` (0 is the first frame of the audio)."""
        frame = max(0, min(frame, self.info.num_frames))
        self._file.seek(frame)
        self._pos = frame

    def read(self, frames: int, dtype: str | None = None) -> np.ndarray:
        """Up to ``frames`` frames from the current position, as ``dtype`` (default native)."""
        dtype = dtype or self.info.native_dtype
        if dtype not in ("int16", "float32"):
            raise ValueError(f"dtype must be 'int16' or 'float32', got {dtype!r}")
        info = self.info
        want = max(0, min(frames, info.num_frames - self._pos))
        block = max(1, MAX_BLOCK_BYTES // (4 * info.channels))
        parts: list[np.ndarray] = []
        got = 0
        while got < want:
            raw = self._file.read(min(block, want - got), dtype=self._read_as, always_2d=True)
            if raw.shape[0] == 0:
                break
            parts.append(_convert(raw, self._read_as, dtype))
            got += raw.shape[0]
        if got < want:  # the file shrank since its header was read
            raise WavError(self.path, f"truncated audio: expected {want} more frames at frame {self._pos}, "
                                      f"the file ends after {got}")
        self._pos += got
        out = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros((0, info.channels), dtype)
        return out[:, 0] if info.channels == 1 else out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _convert(raw: np.ndarray, read_as: str, dtype: str) -> np.ndarray:
    """Samples as libsndfile read them (int16, left-justified int32 or float32) into ``dtype``."""
    if read_as == "int16":
        return raw if dtype == "int16" else raw * np.float32(1 / 32768)
    if read_as == "int32":  # the top 16 bits are the int16 value (truncation, as sox does)
        return (raw >> 16).astype(np.int16) if dtype == "int16" else raw.astype(np.float32) * np.float32(1 / 2**31)
    return _float_to_int16(raw) if dtype == "int16" else raw


def _check_layout(name: str, rate: int, channels: int, where: str) -> None:
    if channels == 0:
        raise WavError(name, f"zero channels in the {where}", _CORRUPT_HINT)
    if channels > MAX_CHANNELS:
        raise WavError(name, f"{channels} channels in the {where}: voxpipe reads at most {MAX_CHANNELS}",
                       f"{_CORRUPT_HINT}, or split the channels with `sox IN OUT.wav remix 1 2`")
    if rate == 0:
        raise WavError(name, f"sample rate 0 in the {where}", _CORRUPT_HINT)
    if rate > MAX_SAMPLE_RATE:
        raise WavError(name, f"sample rate {rate} Hz in the {where} is above {MAX_SAMPLE_RATE} Hz",
                       f"{_CORRUPT_HINT}, or resample it with `sox IN -r 48000 OUT.wav`")


def _open_error(name: str, exc: Exception, tag: int | None) -> WavError:
    """libsndfile could not open a file that passed our checks: say so with its words."""
    said = str(exc).split("': ", 1)[-1].rstrip(".") if "': " in str(exc) else str(exc)
    with open(name, "rb") as f:
        head = f.read(4)
    if tag is not None:
        label = _FORMAT_NAMES.get(tag, "unknown")
        return WavError(name, f"cannot decode WAV format 0x{tag:04X} ({label}): libsndfile says {said!r}", _CONVERT_HINT)
    kind = _MAGIC.get(head)
    if kind:
        return WavError(name, f"cannot decode this {kind} file: libsndfile says {said!r}", _CONVERT_HINT)
    if said == "Format not recognised":
        return WavError(name, f"not an audio file voxpipe reads: it starts with {head!r} "
                              "(WAV, FLAC, Ogg Vorbis/Opus, AIFF and MP3 are read)", _CONVERT_HINT)
    return WavError(name, f"cannot decode: libsndfile says {said!r}", _CONVERT_HINT)


def _check_file(name: str) -> tuple[int | None, int | None]:
    """Open ``name`` and check what libsndfile does not: for RIFF/WAVE, walk its chunks.

    Returns ``(frames, tag)`` for RIFF/WAVE: the whole frames the data chunk holds for PCM
    or float (so that a partial frame or a streamed size are handled alike; else None) and
    the format tag; ``(None, None)`` for other files.
    """
    try:
        f = open(name, "rb", buffering=0)  # noqa: SIM115 - closed below
    except FileNotFoundError:
        raise WavError(name, "no such file", "check the path; in a pipeline a relative `path` is looked up next to the pipeline file, then in the current directory") from None
    except IsADirectoryError:
        raise WavError(name, "is a directory, not an audio file") from None
    except OSError as exc:
        raise WavError(name, f"cannot open: {exc.strerror or exc}") from None
    with f:
        head = f.read(12)
        if not head:
            raise WavError(name, "empty file, not an audio file")
        if head[:4] != b"RIFF":
            return None, None  # RF64, FLAC, Ogg, ...: libsndfile's to read and to report
        if len(head) < 12:
            raise WavError(name, f"truncated header: the file ends after {len(head)} bytes")
        if head[8:12] != b"WAVE":
            raise WavError(name, f"not a WAV file: a RIFF file of type {head[8:12]!r}, not b'WAVE'")
        return _walk_chunks(f, name)


def _walk_chunks(f: BinaryIO, name: str) -> tuple[int | None, int]:
    """Walk the RIFF chunks of ``f`` until ``fmt `` and ``data`` are both found."""
    f.seek(0, os.SEEK_END)
    file_size = f.tell()
    f.seek(12)
    fmt: tuple[int, int, int] | None = None  # tag, block align, bits
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
                raise WavError(name, f"'fmt ' chunk of {size} bytes is too short (16 needed)", _CORRUPT_HINT)
            if body + size > file_size:
                raise WavError(name, f"truncated 'fmt ' chunk: {size} bytes declared, {file_size - body} in the file")
            fmt = _check_fmt(f.read(size), name)
        elif cid == b"data":
            if fmt is None:
                raise WavError(name, "'data' chunk comes before the 'fmt ' chunk", _CONVERT_HINT)
            tag, block, _bits = fmt
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
            return (size // block if tag in _DEPTHS and block else None), tag
        pos = body + size + (size & 1)
        f.seek(pos)


def _check_fmt(body: bytes, name: str) -> tuple[int, int, int]:
    tag, channels, rate, _byte_rate, _block, bits = struct.unpack("<HHIIHH", body[:16])
    extensible = tag == FORMAT_EXTENSIBLE
    if extensible:
        if len(body) < 40:
            raise WavError(name, f"truncated WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk ({len(body)} bytes, 40 needed)")
        tag = struct.unpack("<H", body[24:26])[0]  # first two bytes of the subformat GUID
    _check_layout(name, rate, channels, "'fmt ' chunk")
    if tag in _DEPTHS and bits not in _DEPTHS[tag]:
        kind = "float" if tag == FORMAT_FLOAT else "PCM"
        depths = "/".join(str(b) for b in _DEPTHS[tag])
        raise WavError(name, f"unsupported bit depth: {bits}-bit {kind} (supported: {depths}-bit)", _CONVERT_HINT)
    return tag, channels * bits // 8, bits


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

    Why not soundfile's writer: libsndfile writes the RIFF and data sizes only at close
    (unless ``SFC_SET_UPDATE_HEADER_AUTO``, which soundfile does not expose), and
    ``SoundFile.flush()`` does not patch them. Measured with soundfile 0.14 / libsndfile
    1.2.2: after ``write`` + ``flush`` the header says RIFF size 8 and data size 0, and so
    it stays after ``os._exit``; libsndfile itself then reads to the end of the file, but
    the stdlib ``wave`` module, and every reader that trusts the header, finds no audio.
    A recording must survive a cancelled graph or a killed process, so we keep this writer.
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
