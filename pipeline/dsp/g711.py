"""G.711 mu-law and A-law, encoded and decoded by table lookup.

Bit-exact with the ITU-T reference implementation of G.711 (the G.191 Software Tools
Library, ``g711.c``: ``ulaw_compress``/``ulaw_expand``, ``alaw_compress``/``alaw_expand``)
for 16-bit linear input. Note that the widespread Sun ``g711.c`` differs from the ITU
reference for some negative inputs (it negates where the ITU takes the one's complement):
mu-law of -1 is 0x7F here, 0x7E there.

The encoder is a 65536-entry table indexed by the int16 sample's bit pattern, the decoder a
256-entry table; both are built once at import with vectorised numpy from the G.191
rules, so encoding 20 ms is one ``np.take``. Codes travel as uint8 arrays (``tobytes()``
them at the edge: RTP, Twilio media streams, Realtime ``audio/pcmu`` and ``audio/pcma``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["DECODERS", "ENCODERS", "alaw_decode", "alaw_encode", "ulaw_decode", "ulaw_encode"]

_INT16 = np.dtype(np.int16)
_UINT8 = np.dtype(np.uint8)


def _bit_length(v: np.ndarray, bits: int) -> np.ndarray:
    n = np.zeros_like(v)
    for k in range(bits):
        n += v >= (1 << k)
    return n


def _build_ulaw() -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
    # G.191 ulaw_compress: 14-bit magnitude (one's complement for negatives) plus the bias 33.
    mag = np.where(x < 0, (~x) >> 2, x >> 2) + 33
    np.minimum(mag, 0x1FFF, out=mag)
    segno = 1 + _bit_length(mag >> 6, 7)
    high = 8 - segno
    low = 15 - ((mag >> segno) & 0xF)
    code = (high << 4) | low
    code = np.where(x >= 0, code | 0x80, code)
    encode = code.astype(np.uint8)
    # G.191 ulaw_expand: 14-bit left-justified reconstruction values.
    c = np.arange(256, dtype=np.int32)
    inv = ~c
    exponent = (inv >> 4) & 7
    mantissa = inv & 0xF
    step = 4 << (exponent + 1)
    value = (0x80 << exponent) + step * mantissa + step // 2 - 4 * 33
    decode = np.where(c < 0x80, -value, value).astype(np.int16)
    return encode, decode


def _build_alaw() -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)
    # G.191 alaw_compress: 12-bit magnitude (one's complement for negatives).
    ix = np.where(x < 0, (~x) >> 4, x >> 4)
    iexp = np.maximum(_bit_length(ix, 11) - 4, 0)  # 0 for ix <= 15, else 1 + shifts to reach 16..31
    mant = np.where(iexp > 0, (ix >> np.maximum(iexp - 1, 0)) - 16, ix)
    code = (iexp << 4) + mant
    code = np.where(x >= 0, code | 0x80, code) ^ 0x55
    encode = code.astype(np.uint8)
    # G.191 alaw_expand: 13-bit left-justified reconstruction values.
    c = np.arange(256, dtype=np.int32)
    t = (c ^ 0x55) & 0x7F
    e = t >> 4
    m = t & 0xF
    m = np.where(e > 0, m + 16, m)
    m = (m << 4) + 8
    m = np.where(e > 1, m << np.maximum(e - 1, 0), m)
    decode = np.where(c > 127, m, -m).astype(np.int16)
    return encode, decode


_ULAW_ENC, _ULAW_DEC = _build_ulaw()
_ALAW_ENC, _ALAW_DEC = _build_alaw()
for _t in (_ULAW_ENC, _ULAW_DEC, _ALAW_ENC, _ALAW_DEC):
    _t.flags.writeable = False


def _indices(x: np.ndarray, what: str) -> np.ndarray:
    if x.dtype != _INT16:
        raise TypeError(f"{what}: expected int16 samples, got {x.dtype}; convert float32 audio with "
                        "pipeline.dsp.to_int16() first")
    return x.view(np.uint16)


def _codes(codes: np.ndarray | bytes | bytearray | memoryview, what: str) -> np.ndarray:
    if isinstance(codes, np.ndarray):
        if codes.dtype != _UINT8:
            raise TypeError(f"{what}: expected uint8 codes (or bytes), got {codes.dtype}")
        return codes
    return np.frombuffer(codes, dtype=np.uint8)


def ulaw_encode(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """int16 samples as G.711 mu-law codes (uint8, same shape)."""
    return np.take(_ULAW_ENC, _indices(x, "ulaw_encode"), out=out)


def ulaw_decode(codes: np.ndarray | bytes, out: np.ndarray | None = None) -> np.ndarray:
    """G.711 mu-law codes (uint8 array or bytes) as int16 samples."""
    return np.take(_ULAW_DEC, _codes(codes, "ulaw_decode"), out=out)


def alaw_encode(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """int16 samples as G.711 A-law codes (uint8, same shape)."""
    return np.take(_ALAW_ENC, _indices(x, "alaw_encode"), out=out)


def alaw_decode(codes: np.ndarray | bytes, out: np.ndarray | None = None) -> np.ndarray:
    """G.711 A-law codes (uint8 array or bytes) as int16 samples."""
    return np.take(_ALAW_DEC, _codes(codes, "alaw_decode"), out=out)


#: Codec name (an ``AudioFrame.codec``: "ulaw", "alaw") -> its decoder (codes -> int16).
DECODERS = {"ulaw": ulaw_decode, "alaw": alaw_decode}
#: Codec name -> its encoder (int16 -> codes).
ENCODERS = {"ulaw": ulaw_encode, "alaw": alaw_encode}
