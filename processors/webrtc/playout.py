"""What the server sends on its audio track, 20 ms at a time (sans-I/O).

The outgoing track is a continuous 48 kHz stream: :class:`Playout` hands out one 960-sample
frame per call of :meth:`Playout.read`, assistant audio when some is queued and silence
otherwise, so the stream's sample position (and so its RTP timestamp, which aiortc derives
from it) advances with the wall clock. Each write returns the stream position where its
first sample will go out: with the RTP timestamp origin that is the number the page compares
with ``RTCRtpReceiver.getSynchronizationSources()[0].rtpTimestamp`` to know how much of an
item it has played. :meth:`Playout.clear` drops everything queued at once (barge-in).
"""

from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["FRAME", "RATE", "Playout"]

#: The track's rate: Opus in WebRTC is always 48 kHz on the RTP clock.
RATE = 48000
#: Samples per frame (20 ms, Opus's usual packet).
FRAME = 960


class Playout:
    """A bounded queue of assistant audio read as fixed frames; positions are in stream samples.

    ``max_queued_s`` bounds what a runaway producer can queue (the oldest is dropped and
    counted); a realtime model sends at most a few seconds ahead.
    """

    def __init__(self, *, max_queued_s: float = 120.0) -> None:
        self._chunks: deque[np.ndarray] = deque()
        self._head = 0  # samples of _chunks[0] already read
        self.queued = 0  # samples waiting
        self.position = 0  # stream samples handed out so far
        self.max_queued = int(RATE * max_queued_s)
        self.sent_samples = 0  # assistant samples handed out
        self.cleared_samples = 0
        self.dropped_samples = 0
        self._silence = np.zeros(FRAME, np.int16)

    def write(self, samples: np.ndarray) -> int:
        """Queue int16 mono samples; returns the stream position of the first one."""
        start = self.position + self.queued
        n = samples.shape[0]
        if n:
            self._chunks.append(samples)
            self.queued += n
            while self.queued > self.max_queued and len(self._chunks) > 1:
                old = self._chunks.popleft()
                self.queued -= old.shape[0] - self._head
                self.dropped_samples += old.shape[0] - self._head
                self._head = 0
        return start

    def read(self) -> np.ndarray:
        """The next frame of FRAME samples (silence where nothing is queued)."""
        self.position += FRAME
        if not self.queued:
            return self._silence
        out = np.zeros(FRAME, np.int16)
        k = 0
        while k < FRAME and self._chunks:
            c = self._chunks[0]
            take = min(FRAME - k, c.shape[0] - self._head)
            out[k:k + take] = c[self._head:self._head + take]
            k += take
            self._head += take
            if self._head == c.shape[0]:
                self._chunks.popleft()
                self._head = 0
        self.queued -= k
        self.sent_samples += k
        return out

    def clear(self) -> int:
        """Drop everything queued (barge-in); returns the samples dropped."""
        n = self.queued
        self._chunks.clear()
        self._head = 0
        self.queued = 0
        self.cleared_samples += n
        return n
