"""Audio file reading (soundfile) and WAV writing: every format round trip, every bad file with its message."""

from __future__ import annotations

import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pipeline.errors import MediaError
from processors.files import wavfile
from processors.files.wavfile import (
    WavError,
    WavReader,
    WavWriter,
    read_wav,
    read_wav_info,
    write_wav,
)

ROOT = Path(__file__).resolve().parents[1]
PCM_HINT = "convert it with `ffmpeg -i IN -c:a pcm_s16le OUT.wav` or `sox IN -b 16 OUT.wav`"
CORRUPT_HINT = "the header is corrupt; re-export the file"


def noise(n: int, channels: int = 1, *, seed: int = 0, scale: float = 0.3) -> np.ndarray:
    """Seeded float32 noise in [-1, 1), shaped (n,) or (n, channels)."""
    x = np.random.default_rng(seed).standard_normal((n, channels)).astype(np.float32) * scale
    x = np.clip(x, -1, 1 - 2**-15)
    return x[:, 0] if channels == 1 else x


def riff(*chunks: bytes, form: bytes = b"WAVE") -> bytes:
    body = form + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def chunk(cid: bytes, body: bytes, size: int | None = None) -> bytes:
    pad = b"\0" if len(body) % 2 else b""
    return cid + struct.pack("<I", len(body) if size is None else size) + body + pad


def fmt(tag: int, channels: int, rate: int, bits: int, extra: bytes = b"") -> bytes:
    block = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return chunk(b"fmt ", body + (struct.pack("<H", len(extra)) + extra if extra or tag != 1 else b""))


def extensible(sub_tag: int, channels: int, rate: int, bits: int, valid_bits: int | None = None) -> bytes:
    guid = struct.pack("<H", sub_tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    mask = 0x4 if channels == 1 else 0x3
    return fmt(0xFFFE, channels, rate, bits, struct.pack("<HI", valid_bits or bits, mask) + guid)


def write_stdlib(path: Path, ints: np.ndarray, width: int, rate: int) -> None:
    """Write integer samples with the stdlib wave module (an independent writer)."""
    channels = 1 if ints.ndim == 1 else ints.shape[1]
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    elif width == 3:
        raw = ints.astype("<i4").reshape(-1, 1).view(np.uint8)[:, :3].tobytes()
    else:
        raw = ints.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 44100, 48000])
def test_int16_round_trip(tmp_path, channels, rate):
    """int16 written by WavWriter reads back bit-exact, and the stdlib wave module agrees."""
    x = (noise(1234, channels) * 32768).astype(np.int16)
    path = tmp_path / "a.wav"
    write_wav(path, x, rate)
    y, r = read_wav(path)
    assert r == rate and y.dtype == np.int16 and np.array_equal(y, x)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (rate, channels, 2, 1234)
        assert np.array_equal(np.frombuffer(w.readframes(1234), "<i2").reshape(x.shape), x)


@pytest.mark.parametrize("channels", [1, 2])
def test_float32_round_trip(tmp_path, channels):
    """float32 files read back bit-exact; the header says IEEE float with a fact chunk."""
    x = noise(999, channels, seed=1)
    path = tmp_path / "f.wav"
    write_wav(path, x, 24000)
    y, r = read_wav(path)
    assert r == 24000 and y.dtype == np.float32 and np.array_equal(y, x)
    raw = path.read_bytes()
    tag, ch, rate, byte_rate, block, bits = struct.unpack("<HHIIHH", raw[20:36])
    assert (tag, ch, rate, byte_rate, block, bits) == (3, channels, 24000, 24000 * 4 * channels, 4 * channels, 32)
    assert raw[38:42] == b"fact" and struct.unpack("<I", raw[46:50])[0] == 999
    assert struct.unpack("<I", raw[4:8])[0] == len(raw) - 8


def test_conversions_between_int16_and_float32(tmp_path):
    """int16 reads as x/32768 in float32; float32 reads as rounded, clipped int16; both ways exact."""
    ints = np.array([-32768, -1, 0, 1, 16384, 32767], dtype=np.int16)
    write_wav(tmp_path / "i.wav", ints, 16000)
    as_float, _ = read_wav(tmp_path / "i.wav", "float32")
    assert np.array_equal(as_float, ints.astype(np.float32) / 32768)
    floats = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=np.float32)
    write_wav(tmp_path / "f.wav", floats, 16000)
    as_int, _ = read_wav(tmp_path / "f.wav", "int16")
    assert as_int.tolist() == [-32768, -32768, -16384, 0, 16384, 32767, 32767]
    with WavWriter(tmp_path / "g.wav", 16000, dtype="float32") as w:
        w.write(ints)
    assert np.array_equal(read_wav(tmp_path / "g.wav", "int16")[0], ints)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
def test_pcm_depths_from_stdlib_writer(tmp_path, width, channels):
    """8/16/24/32-bit PCM from the stdlib writer decode to exact float32 and truncated int16."""
    full = 2 ** (8 * width - 1)
    rng = np.random.default_rng(width)
    ints = rng.integers(-full, full, size=(500, channels) if channels > 1 else 500)
    ints.flat[:2] = [-full, full - 1]  # the extremes
    path = tmp_path / f"pcm{width}.wav"
    write_stdlib(path, ints, width, 11025)
    info = read_wav_info(path)
    assert (info.bits_per_sample, info.channels, info.sample_rate, info.num_frames) == (8 * width, channels, 11025, 500)
    as_float, _ = read_wav(path, "float32")
    assert as_float.dtype == np.float32 and as_float.shape == ints.shape
    np.testing.assert_allclose(as_float, ints / full, rtol=0, atol=1e-7)
    as_int, _ = read_wav(path, "int16")
    expected = ints << 8 if width == 1 else ints >> (8 * width - 16)
    assert as_int.dtype == np.int16 and np.array_equal(as_int, expected)
    assert read_wav(path)[0].dtype == (np.int16 if width <= 2 else np.float32)  # native: no loss


@pytest.mark.parametrize("bits", [32, 64])
def test_ieee_float_format_3(tmp_path, bits):
    """Format 3 float32 and float64 files (as other tools write them) read as float32."""
    x = noise(300, 2, seed=3)
    data = x.astype(f"<f{bits // 8}").tobytes()
    path = tmp_path / "float.wav"
    path.write_bytes(riff(fmt(3, 2, 48000, bits), chunk(b"fact", struct.pack("<I", 300)), chunk(b"data", data)))
    y, rate = read_wav(path)
    assert rate == 48000 and y.dtype == np.float32 and np.array_equal(y, x)


@pytest.mark.parametrize(
    ("sub_tag", "bits", "valid", "encode"),
    [
        (1, 16, 16, lambda x: np.round(x * 32768).astype("<i2").tobytes()),
        (1, 24, 20, lambda x: (np.round(x * 2**19).astype("<i4") << 12).reshape(-1, 1).view(np.uint8)[:, 1:].tobytes()),
        (3, 32, 32, lambda x: x.astype("<f4").tobytes()),
    ],
)
def test_wave_format_extensible(tmp_path, sub_tag, bits, valid, encode):
    """WAVE_FORMAT_EXTENSIBLE with a PCM or float subformat reads like the plain formats."""
    x = noise(400, 1, seed=4)
    path = tmp_path / "ext.wav"
    path.write_bytes(riff(extensible(sub_tag, 1, 16000, bits, valid), chunk(b"data", encode(x))))
    info = read_wav_info(path)
    assert info.extensible and info.bits_per_sample == bits and info.num_frames == 400
    y, _ = read_wav(path, "float32")
    np.testing.assert_allclose(y, x, atol=2.0 ** -(valid - 1) * 0.51 + 1e-7)


def test_skips_odd_sized_chunks_and_reads_streamed_size(tmp_path):
    """Chunks before the audio (odd sizes padded) are skipped; a 0xFFFFFFFF data size means to the end."""
    x = (noise(101, seed=5) * 32768).astype(np.int16)
    list_chunk = chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00tool\x00")  # odd: padded
    path = tmp_path / "odd.wav"
    path.write_bytes(riff(fmt(1, 1, 8000, 16), list_chunk, chunk(b"data", x.tobytes(), size=0xFFFFFFFF)))
    assert np.array_equal(read_wav(path)[0], x)
    path.write_bytes(riff(fmt(1, 1, 8000, 16), chunk(b"data", x.tobytes() + b"\x01")))  # a partial frame at the end
    assert np.array_equal(read_wav(path)[0], x)


def test_reader_blocks_equal_whole_read_and_seek_loops(tmp_path):
    """Reading in blocks of 17 and 509 frames gives the whole file; seek(0) starts again."""
    x = (noise(2000, 2, seed=6) * 32768).astype(np.int16)
    write_wav(tmp_path / "b.wav", x, 16000)
    for size in (17, 509):
        with WavReader(tmp_path / "b.wav") as r:
            parts = []
            while (block := r.read(size)).shape[0]:
                parts.append(block)
            assert np.array_equal(np.concatenate(parts), x)
            assert r.read(size).shape == (0, 2)
            r.seek(0)
            assert np.array_equal(r.read(3), x[:3])


@pytest.mark.parametrize(
    ("container", "subtype", "rate", "native"),
    [
        ("FLAC", "PCM_16", 16000, np.int16),
        ("FLAC", "PCM_24", 44100, np.float32),
        ("RF64", "PCM_16", 8000, np.int16),
        ("WAV", "ULAW", 8000, np.int16),
        ("WAVEX", "ALAW", 8000, np.int16),
        ("WAV", "IMA_ADPCM", 8000, np.int16),
        ("AIFF", "PCM_16", 22050, np.int16),
    ],
)
def test_lossless_and_telephony_formats_read_like_libsndfile(tmp_path, container, subtype, rate, native):
    """FLAC, RF64, AIFF, mu-law, A-law and ADPCM (written by soundfile) read as libsndfile decodes them."""
    x = noise(3000, 2, seed=11)
    path = tmp_path / f"a.{container.lower()}"
    soundfile.write(path, x, rate, subtype=subtype, format=container)
    info = read_wav_info(path)
    assert (info.sample_rate, info.channels, info.format, info.subtype) == (rate, 2, container, subtype)
    expected_int = soundfile.read(path, dtype="int16")[0]
    y, r = read_wav(path)
    assert r == rate and y.dtype == native and y.shape == (info.num_frames, 2)
    as_float = read_wav(path, "float32")[0]
    if subtype.startswith("PCM"):  # lossless: libsndfile's int16, and float32 within the depth's step
        assert np.array_equal(read_wav(path, "int16")[0], expected_int)
        np.testing.assert_allclose(as_float, x, atol=2**-15)
    else:  # decoded to 16 bits: int16 is libsndfile's, float32 is that over 32768
        assert np.array_equal(y, expected_int)
        assert np.array_equal(as_float, expected_int / np.float32(32768))


@pytest.mark.parametrize(("subtype", "rate"), [("VORBIS", 22050), ("OPUS", 48000)])
def test_ogg_vorbis_and_opus_read(tmp_path, subtype, rate):
    """Ogg Vorbis and Opus decode to float32 near the original tone, and to int16 from the same samples."""
    t = np.arange(rate) / rate
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / "a.ogg"
    soundfile.write(path, x, rate, subtype=subtype, format="OGG")
    info = read_wav_info(path)
    assert (info.format, info.subtype, info.sample_rate, info.channels, info.native_dtype) == ("OGG", subtype, rate, 1, "float32")
    y, r = read_wav(path)
    assert r == rate and y.dtype == np.float32 and abs(y.shape[0] - rate) < rate // 10
    rms = float(np.sqrt(np.mean(y[rate // 10 : -rate // 10] ** 2)))
    assert 0.3 < rms < 0.42  # a 0.5 peak sine has an RMS of 0.354
    assert np.array_equal(read_wav(path, "int16")[0], np.clip(np.rint(y * 32768), -32768, 32767).astype(np.int16))


def test_reads_are_bounded_whatever_is_asked(tmp_path, monkeypatch):
    """One read call never asks libsndfile for more than MAX_BLOCK_BYTES of samples; blocks join exactly."""
    x = (noise(5000, 2, seed=12) * 32768).astype(np.int16)
    write_wav(tmp_path / "b.wav", x, 16000)
    monkeypatch.setattr(wavfile, "MAX_BLOCK_BYTES", 4 * 2 * 300)  # 300 stereo frames
    asked = []
    real_read = soundfile.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        asked.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(soundfile.SoundFile, "read", spy)
    y, _ = read_wav(tmp_path / "b.wav")
    assert np.array_equal(y, x)
    assert max(asked) == 300 and sum(asked) == 5000


def test_absurd_header_of_a_non_wav_file_is_refused(tmp_path, monkeypatch):
    """The channel and rate limits apply to what libsndfile reports for FLAC and Ogg too."""
    path = tmp_path / "a.flac"
    soundfile.write(path, np.zeros(480, np.float32), 48000, format="FLAC")
    monkeypatch.setattr(wavfile, "MAX_SAMPLE_RATE", 44100)
    with pytest.raises(WavError) as exc:
        read_wav_info(path)
    assert str(exc.value) == (f"{path}: sample rate 48000 Hz in the header is above 44100 Hz; {CORRUPT_HINT}, "
                              "or resample it with `sox IN -r 48000 OUT.wav`")


def test_empty_data_chunk(tmp_path):
    """A file with an empty data chunk is valid and has no frames."""
    write_wav(tmp_path / "e.wav", np.zeros(0, np.int16), 16000)
    y, rate = read_wav(tmp_path / "e.wav")
    assert y.shape == (0,) and rate == 16000


# --- the file stays valid -----------------------------------------------------------------


def test_header_valid_after_every_write_without_close(tmp_path):
    """The header is patched after every write: reading without closing sees all the audio."""
    x = (noise(16000, seed=7) * 32768).astype(np.int16)
    path = tmp_path / "live.wav"
    w = WavWriter(path, 16000)
    for i in range(0, 16000, 320):
        w.write(x[i : i + 320])
        if i in (0, 8000):
            assert np.array_equal(read_wav(path)[0], x[: i + 320])
    assert np.array_equal(read_wav(path)[0], x)
    with wave.open(str(path)) as other:  # another reader agrees, still without close
        assert other.getnframes() == 16000
    w.close()


def test_header_interval_patches_lazily_then_flush_completes(tmp_path):
    """With header_interval_s the header lags by at most that much audio; flush() completes it."""
    x = (noise(8000, seed=8) * 32768).astype(np.int16)
    path = tmp_path / "lazy.wav"
    w = WavWriter(path, 8000, header_interval_s=0.5)
    for i in range(0, 8000, 160):
        w.write(x[i : i + 160])
    seen = read_wav(path)[0]  # valid, a prefix of what was written
    assert 8000 - 4000 <= seen.shape[0] <= 8000 and np.array_equal(seen, x[: seen.shape[0]])
    w.write(x[:160])
    w.flush()
    assert np.array_equal(read_wav(path)[0], np.concatenate([x, x[:160]]))
    w.close()


def test_header_valid_after_process_killed(tmp_path):
    """A process that dies without closing its writer leaves a readable file."""
    path = tmp_path / "killed.wav"
    script = (
        "import os, numpy as np\n"
        "from processors.files.wavfile import WavWriter\n"
        f"w = WavWriter({str(path)!r}, 24000, 2, 'float32')\n"
        "x = np.full((480, 2), 0.25, np.float32)\n"
        "for _ in range(50): w.write(x)\n"
        "os._exit(0)\n"  # no close, no flush, no finalizers
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60)
    y, rate = read_wav(path)
    assert rate == 24000 and y.shape == (24000, 2) and np.all(y == 0.25)


def test_soundfile_flush_leaves_the_header_unpatched(tmp_path):
    """Why WavWriter is ours: soundfile's flush() leaves RIFF and data sizes unwritten until close."""
    path = tmp_path / "sf.wav"
    with soundfile.SoundFile(path, "w", 16000, 1, "PCM_16", format="WAV") as f:
        f.write(np.ones(1600, np.int16))
        f.flush()
        with pytest.raises(wave.Error, match="data chunk missing"):  # if this ever reads, use soundfile's writer
            wave.open(str(path))
    with wave.open(str(path)) as w:  # close() writes the sizes
        assert w.getnframes() == 1600


def test_writer_rejects_wrong_shapes_and_types(tmp_path):
    """Writing stereo into a mono file, or an unknown sample type, names the file and the fix."""
    w = WavWriter(tmp_path / "m.wav", 16000)
    with pytest.raises(WavError) as exc:
        w.write(np.zeros((10, 2), np.int16))
    assert str(exc.value) == (
        f"{tmp_path / 'm.wav'}: samples of shape (10, 2) do not fit a 1-channel file; "
        "give (n,) arrays for mono and (n, channels) arrays otherwise"
    )
    w.close()
    with pytest.raises(WavError, match="write after close"):
        w.write(np.zeros(10, np.int16))
    with pytest.raises(WavError) as exc:
        WavWriter(tmp_path / "x.wav", 16000, dtype="int24")
    assert str(exc.value) == f"{tmp_path / 'x.wav'}: cannot write sample type 'int24'; use 'int16' or 'float32'"
    with pytest.raises(WavError) as exc:
        WavWriter(tmp_path / "no" / "dir.wav", 16000)
    assert str(exc.value) == f"{tmp_path / 'no' / 'dir.wav'}: cannot create: No such file or directory"


def test_write_silence_in_bounded_blocks(tmp_path):
    """write_silence writes exactly that many zero frames, longer than its one-second block."""
    with WavWriter(tmp_path / "s.wav", 8000, 2) as w:
        w.write(np.ones((3, 2), np.int16))
        w.write_silence(20001)
    y, _ = read_wav(tmp_path / "s.wav")
    assert y.shape == (20004, 2) and y[:3].sum() == 6 and not y[3:].any()


# --- bad files: each with its exact message -----------------------------------------------


def good_pcm16() -> bytes:
    return riff(fmt(1, 1, 16000, 16), chunk(b"data", np.arange(100, dtype="<i2").tobytes()))


BAD_FILES = {
    "missing": (None, "no such file; check the path; in a pipeline a relative `path` is looked up next to the pipeline file, then in the current directory"),
    "empty": (b"", "empty file, not an audio file"),
    "text": (b"hello world\n", f"not an audio file voxpipe reads: it starts with b'hell' (WAV, FLAC, Ogg Vorbis/Opus, "
             f"AIFF and MP3 are read); {PCM_HINT}"),
    "ogg": (b"OggS\x00\x02" + bytes(40),
            f"cannot decode this Ogg file: libsndfile says 'File contains data in an unimplemented format'; {PCM_HINT}"),
    "flac": (b"fLaC" + bytes(40),
             f"cannot decode this FLAC file: libsndfile says 'File contains data in an unimplemented format'; {PCM_HINT}"),
    "avi": (riff(chunk(b"LIST", bytes(8)), form=b"AVI "), "not a WAV file: a RIFF file of type b'AVI ', not b'WAVE'"),
    "short_riff": (b"RIFF\x10\x00", "truncated header: the file ends after 6 bytes"),
    "rf64": (b"RF64" + bytes(60), f"cannot decode this RF64 file: libsndfile says 'Format not recognised'; {PCM_HINT}"),
    "truncated_data": (
        good_pcm16()[:-50],
        ("truncated data chunk: the header says 200 bytes of audio, the file holds 150; the file was cut short "
        "while being written; re-export it, or repair its header with `sox --ignore-length IN OUT.wav`"),
    ),
    "no_fmt": (riff(chunk(b"LIST", bytes(4))), "no 'fmt ' chunk (the header is incomplete or the file was cut short)"),
    "no_data": (riff(fmt(1, 1, 16000, 16)), "no 'data' chunk (the file has a header but no audio)"),
    "data_first": (
        riff(chunk(b"data", bytes(4)), fmt(1, 1, 16000, 16)),
        f"'data' chunk comes before the 'fmt ' chunk; {PCM_HINT}",
    ),
    "truncated_fmt": (riff(chunk(b"fmt ", bytes(16), size=40)), "truncated 'fmt ' chunk: 40 bytes declared, 16 in the file"),
    "short_fmt": (riff(chunk(b"fmt ", bytes(8)), chunk(b"data", bytes(4))), f"'fmt ' chunk of 8 bytes is too short (16 needed); {CORRUPT_HINT}"),
    "adpcm_without_coefficients": (  # an MS ADPCM 'fmt ' chunk needs its coefficient table
        riff(fmt(2, 1, 8000, 4), chunk(b"data", bytes(64))),
        f"cannot decode WAV format 0x0002 (MS ADPCM): libsndfile says \"Error in WAV/W64/RF64 file. Malformed 'fmt ' "
        f"chunk\"; {PCM_HINT}",
    ),
    "unknown_format": (
        riff(fmt(0x1234, 1, 8000, 16), chunk(b"data", bytes(64))),
        f"cannot decode WAV format 0x1234 (unknown): libsndfile says \"Error in WAV/W64/RF64 file. Malformed 'fmt ' "
        f"chunk\"; {PCM_HINT}",
    ),
    "pcm12": (
        riff(fmt(1, 1, 16000, 12), chunk(b"data", bytes(64))),
        f"unsupported bit depth: 12-bit PCM (supported: 8/16/24/32-bit); {PCM_HINT}",
    ),
    "float16": (
        riff(fmt(3, 1, 16000, 16), chunk(b"data", bytes(64))),
        f"unsupported bit depth: 16-bit float (supported: 32/64-bit); {PCM_HINT}",
    ),
    "zero_channels": (
        riff(chunk(b"fmt ", struct.pack("<HHIIHH", 1, 0, 16000, 0, 0, 16)), chunk(b"data", bytes(4))),
        f"zero channels in the 'fmt ' chunk; {CORRUPT_HINT}",
    ),
    "zero_rate": (riff(fmt(1, 1, 0, 16), chunk(b"data", bytes(4))), f"sample rate 0 in the 'fmt ' chunk; {CORRUPT_HINT}"),
    "65535_channels": (
        riff(chunk(b"fmt ", struct.pack("<HHIIHH", 1, 65535, 16000, 0, 0, 16)), chunk(b"data", bytes(4))),
        f"65535 channels in the 'fmt ' chunk: voxpipe reads at most 64; {CORRUPT_HINT}, "
        "or split the channels with `sox IN OUT.wav remix 1 2`",
    ),
    "rate_above_768k": (
        riff(fmt(1, 1, 800_000, 16), chunk(b"data", bytes(4))),
        f"sample rate 800000 Hz in the 'fmt ' chunk is above 768000 Hz; {CORRUPT_HINT}, "
        "or resample it with `sox IN -r 48000 OUT.wav`",
    ),
    "rate_0xFFFFFFFF": (
        riff(chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, 0xFFFFFFFF, 0, 2, 16)), chunk(b"data", bytes(4))),
        f"sample rate 4294967295 Hz in the 'fmt ' chunk is above 768000 Hz; {CORRUPT_HINT}, "
        "or resample it with `sox IN -r 48000 OUT.wav`",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_message(tmp_path, case):
    """Each broken file gives a WavError (a MediaError) naming the file and what is wrong."""
    content, problem = BAD_FILES[case]
    path = tmp_path / f"{case}.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WavError) as exc:
        read_wav(path)
    assert isinstance(exc.value, MediaError)
    assert str(exc.value) == f"{path}: {problem}"
    assert exc.value.path == str(path)


def test_directory_is_not_a_wav_file(tmp_path):
    """A directory where a file is expected says so."""
    with pytest.raises(WavError) as exc:
        read_wav_info(tmp_path)
    assert str(exc.value) == f"{tmp_path}: is a directory, not an audio file"


def test_file_shrinking_after_header_is_reported(tmp_path):
    """A file cut short after its header was read fails the read with the frame position."""
    write_wav(tmp_path / "s.wav", np.zeros(1000, np.int16), 8000)
    with WavReader(tmp_path / "s.wav") as r:
        with open(tmp_path / "s.wav", "r+b") as f:
            f.truncate(44 + 600)
        with pytest.raises(WavError) as exc:
            r.read(1000)
    assert str(exc.value) == f"{tmp_path / 's.wav'}: truncated audio: expected 1000 more frames at frame 0, the file ends after 300"
