"""The input audio buffer: wire audio in, millisecond accounting, commits.

Audio arrives as bytes in the session's input format (``pcm16`` at 24 kHz, G.711 at 8 kHz;
reference §5, the facts in :mod:`..wire`) and is kept as those bytes, so a committed item holds exactly what the client
sent. Two clocks are kept in samples:

* the **session timeline**: every sample ever appended; ``speech_started.audio_start_ms``
  and ``speech_stopped.audio_end_ms`` are positions on it (reference §7.1);
* the **buffer**: the samples not yet committed or cleared, from ``start`` to ``end`` on
  that timeline. A commit takes a prefix of it (a VAD commit stops at the speech end, the
  audio after it stays for the next turn); ``trim_to`` drops old audio that no speech can
  claim any more, so an idle VAD session holds only its prefix padding.

An odd trailing byte of ``pcm16`` is held (:class:`..wire.SampleCarry`) until its pair
arrives, so clients may cut their byte stream anywhere.
"""

from __future__ import annotations

import numpy as np

from ..wire import BYTES_PER_SAMPLE, SAMPLE_RATE, SampleCarry, decode

__all__ = ["InputAudioBuffer"]


class InputAudioBuffer:
    """Uncommitted input audio of one session, with its place on the session timeline."""

    def __init__(self, fmt: str = "pcm16") -> None:
        self.format = fmt
        self.rate = SAMPLE_RATE[fmt]
        self._width = BYTES_PER_SAMPLE[fmt]
        self._data = bytearray()
        self._carry = SampleCarry(fmt)
        self.end = 0  # session timeline position after the last whole sample appended

    @property
    def start(self) -> int:
        """Session timeline position of the first buffered sample."""
        return self.end - len(self._data) // self._width

    @property
    def width(self) -> int:
        """Bytes per sample of the wire format."""
        return self._width

    @property
    def samples(self) -> int:
        return len(self._data) // self._width

    @property
    def buffered_ms(self) -> float:
        return 1000.0 * self.samples / self.rate

    def ms(self, position: int) -> int:
        """A session-timeline position in whole milliseconds."""
        return (position * 1000) // self.rate

    def position(self, ms: float) -> int:
        """Milliseconds on the session timeline as a sample position."""
        return int(round(ms * self.rate / 1000.0))

    def append(self, data: bytes) -> np.ndarray:
        """Add wire bytes; returns the new whole samples decoded (for the VAD)."""
        data = self._carry.whole(data)
        self._data += data
        new = len(data) // self._width
        self.end += new
        return decode(self.format, data)

    def commit(self, upto: int | None = None) -> bytes:
        """Take the buffered audio up to timeline position ``upto`` (all of it by default)."""
        if upto is None or upto >= self.end:
            taken, self._data = bytes(self._data), bytearray()
            return taken
        count = max(0, upto - self.start) * self._width
        taken = bytes(self._data[:count])
        del self._data[:count]
        return taken

    def trim_to(self, position: int) -> None:
        """Drop buffered audio before timeline position ``position``."""
        drop = min(self.samples, max(0, position - self.start))
        if drop:
            del self._data[:drop * self._width]

    def clear(self) -> None:
        """Drop everything buffered (the timeline keeps counting)."""
        self._data.clear()
        self._carry.reset()

    def reformat(self, fmt: str) -> None:
        """Switch the wire format: buffered audio is dropped, the timeline is kept in ms."""
        if fmt == self.format:
            return
        ms = self.ms(self.end)
        self.format, self.rate, self._width = fmt, SAMPLE_RATE[fmt], BYTES_PER_SAMPLE[fmt]
        self._data, self._carry = bytearray(), SampleCarry(fmt)
        self.end = self.position(ms)
