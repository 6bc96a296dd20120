"""Wire audio codecs of the Realtime API: base64 pcm16 (24 kHz) and G.711 mu-law / A-law (8 kHz).

Inside the graph audio is int16 numpy; on the wire it is base64 text (reference §5, "Audio
formats"). This is the one place where audio becomes bytes and back. G.711 is done with
lookup tables built once (65 536 entries to encode, 256 to decode), so a frame costs one
``np.take``; the tables follow the ITU-T G.711 reference (Sun ``g711.c``) and match the
standard library's ``audioop`` bit for bit.
"""

from __future__ import annotations

import base64
import binascii
import functools

import numpy as np

__all__ = ["AudioCodec", "alaw_decode", "alaw_encode", "ulaw_decode", "ulaw_encode"]


def _ulaw_encode_array(x: np.ndarray) -> np.ndarray:
    pcm = x.astype(np.int32) >> 2  # 14-bit
    negative = pcm < 0
    mask = np.where(negative, 0x7F, 0xFF)
    pcm = np.minimum(np.abs(pcm), 8159) + 0x21
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), pcm)
    uval = (np.minimum(seg, 7) << 4) | ((pcm >> (seg + 1)) & 0x0F)
    uval = np.where(seg >= 8, 0x7F, uval)
    return (uval ^ mask).astype(np.uint8)


def _ulaw_decode_array(u: np.ndarray) -> np.ndarray:
    u = (~u.astype(np.int32)) & 0xFF
    exponent = (u >> 4) & 0x07
    mag = (((u & 0x0F) << 3) + 0x84 << exponent) - 0x84
    return np.where(u & 0x80, -mag, mag).astype(np.int16)


def _alaw_encode_array(x: np.ndarray) -> np.ndarray:
    pcm = x.astype(np.int32) >> 3  # 13-bit
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)
    pcm = np.where(negative, -pcm - 1, pcm)
    seg = np.searchsorted(np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]), pcm)
    shift = np.where(seg < 2, 1, seg)
    aval = (np.minimum(seg, 7) << 4) | ((pcm >> shift) & 0x0F)
    aval = np.where(seg >= 8, 0x7F, aval)
    return (aval ^ mask).astype(np.uint8)


def _alaw_decode_array(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, t + 0x108)
    t = np.where(seg > 1, t << np.maximum(seg - 1, 0), t)
    return np.where(a & 0x80, t, -t).astype(np.int16)


@functools.cache
def _tables(law: str) -> tuple[np.ndarray, np.ndarray]:
    """(encode table indexed by uint16 view of int16, decode table indexed by code)."""
    every = np.arange(-32768, 32768, dtype=np.int32)
    codes = np.arange(256, dtype=np.uint8)
    if law == "ulaw":
        enc, dec = _ulaw_encode_array(every), _ulaw_decode_array(codes)
    else:
        enc, dec = _alaw_encode_array(every), _alaw_decode_array(codes)
    # index by the unsigned view of the int16 sample: -32768..-1 live at 32768..65535
    return np.roll(enc, -32768), dec


def ulaw_encode(x: np.ndarray) -> np.ndarray:
    """int16 samples -> G.711 mu-law codes (uint8)."""
    return np.take(_tables("ulaw")[0], x.astype(np.int16, copy=False).view(np.uint16))


def ulaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 mu-law codes (uint8) -> int16 samples."""
    return np.take(_tables("ulaw")[1], codes)


def alaw_encode(x: np.ndarray) -> np.ndarray:
    """int16 samples -> G.711 A-law codes (uint8)."""
    return np.take(_tables("alaw")[0], x.astype(np.int16, copy=False).view(np.uint16))


def alaw_decode(codes: np.ndarray) -> np.ndarray:
    """G.711 A-law codes (uint8) -> int16 samples."""
    return np.take(_tables("alaw")[1], codes)


class AudioCodec:
    """Converts int16 audio to the base64 text of one wire format and back.

    ``decode`` keeps a trailing odd byte of a pcm16 delta for the next call of the same
    stream (deltas are not promised to end on a sample boundary); call ``reset`` between
    streams. A delta that is not valid base64 raises ``ValueError``.
    """

    def __init__(self, fmt: str) -> None:
        if fmt not in ("pcm16", "g711_ulaw", "g711_alaw"):
            raise ValueError(f"unknown audio format {fmt!r}: use pcm16, g711_ulaw or g711_alaw")
        self.format = fmt
        self.rate = 24000 if fmt == "pcm16" else 8000
        self.bytes_per_sample = 2 if fmt == "pcm16" else 1
        self._carry = b""

    def encode(self, samples: np.ndarray) -> str:
        """Base64 text of int16 mono ``samples`` in this format."""
        if self.format == "pcm16":
            data = samples.astype("<i2", copy=False).tobytes()
        elif self.format == "g711_ulaw":
            data = ulaw_encode(samples).tobytes()
        else:
            data = alaw_encode(samples).tobytes()
        return base64.b64encode(data).decode("ascii")

    def decode(self, text: str) -> np.ndarray:
        """int16 samples of one base64 delta (may be empty)."""
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise ValueError(f"audio delta is not valid base64: {exc}") from None
        if self.format == "pcm16":
            if self._carry:
                data = self._carry + data
                self._carry = b""
            if len(data) % 2:
                data, self._carry = data[:-1], data[-1:]
            return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
        codes = np.frombuffer(data, dtype=np.uint8)
        return ulaw_decode(codes) if self.format == "g711_ulaw" else alaw_decode(codes)

    def reset(self) -> None:
        """Forget a carried odd byte (a new item's audio starts)."""
        self._carry = b""
