"""Wire audio codecs of the Realtime API: base64 pcm16 (24 kHz) and G.711 mu-law / A-law (8 kHz).

Inside the graph audio is int16 numpy; on the wire it is base64 text (reference §5, "Audio
formats"). This is the one place where audio becomes bytes and back. G.711 comes from the
DSP core (:mod:`pipeline.dsp.g711`: table lookups, bit-exact with the ITU-T reference).
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from pipeline.dsp.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

__all__ = ["AudioCodec"]


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
