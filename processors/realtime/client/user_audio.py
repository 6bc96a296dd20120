"""UserAudio: the user's audio on its way to the server, batched, and kept while offline.

Audio frames arrive in whatever size the graph uses (20 ms, 17 samples, a whole file); the
server gets ``input_audio_buffer.append`` events of ``append_ms`` each, to cut per-message
overhead (reference §2: appends are never acknowledged). The batch is one preallocated
array: a frame is copied into it, never concatenated. While there is no session (before
the first one, during a reconnection) audio is kept in a bounded buffer instead, oldest
dropped first, and replayed when the next session starts.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..wire import AudioCodec

__all__ = ["UserAudio", "as_int16_mono"]


def as_int16_mono(samples: np.ndarray, who: str = "realtime.openai") -> np.ndarray:
    """``samples`` as int16 mono (float32 is scaled, (n, 1) flattened); other shapes raise with the fix."""
    if samples.ndim == 2:
        if samples.shape[1] != 1:
            raise ValueError(f"{who} takes mono audio, got {samples.shape[1]} channels: put "
                             "`{type: audio.resample, params: {channels: 1}}` before it")
        samples = samples[:, 0]
    if samples.dtype == np.int16:
        return samples
    if samples.dtype.kind == "f":
        return (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    raise ValueError(f"{who} takes int16 or float32 audio, got {samples.dtype}")


class UserAudio:
    """Batches the user's wire samples into base64 appends; keeps the newest audio while offline.

    Wire samples are int16 for pcm16 and the G.711 codes themselves for G.711
    (:func:`~processors.realtime.wire.wire_samples`), so phone audio is never decoded here.
    """

    def __init__(self, codec: AudioCodec, *, batch_samples: int, keep_samples: int) -> None:
        self.codec = codec
        self._batch = np.zeros(max(1, batch_samples), dtype=codec.wire_dtype)
        self._filled = 0
        self.uncommitted = 0  # samples sent since the last commit
        self._kept: deque[np.ndarray] = deque()
        self.kept = 0  # samples kept while offline
        self._keep_cap = max(0, keep_samples)
        self.dropped = 0  # samples dropped from the offline buffer

    def add(self, x: np.ndarray) -> list[str]:
        """Add samples; return the payloads (base64) of the batches that filled up."""
        out: list[str] = []
        n, i, cap = x.shape[0], 0, self._batch.shape[0]
        while i < n:
            k = min(n - i, cap - self._filled)
            self._batch[self._filled : self._filled + k] = x[i : i + k]
            self._filled += k
            i += k
            if self._filled == cap:
                out.append(self._take())
        return out

    def flush(self) -> str | None:
        """The payload of the partly filled batch, or None when it is empty."""
        return self._take() if self._filled else None

    def _take(self) -> str:
        payload = self.codec.encode_wire(self._batch[: self._filled])
        self.uncommitted += self._filled
        self._filled = 0
        return payload

    def keep(self, x: np.ndarray) -> None:
        """Keep samples while offline (the oldest go when over the bound)."""
        if x.shape[0] > self._keep_cap:
            self.dropped += x.shape[0] - self._keep_cap
            x = x[x.shape[0] - self._keep_cap :]
        if x.shape[0] == 0:
            return
        self._kept.append(x)
        self.kept += x.shape[0]
        while self.kept > self._keep_cap:
            excess = self.kept - self._keep_cap
            head = self._kept[0]
            if head.shape[0] <= excess:
                self._kept.popleft()
                self.kept -= head.shape[0]
                self.dropped += head.shape[0]
            else:
                self._kept[0] = head[excess:]
                self.kept -= excess
                self.dropped += excess

    def take_batch(self) -> np.ndarray | None:
        """The unsent partial batch (a copy), emptied; None when empty."""
        if not self._filled:
            return None
        x = self._batch[: self._filled].copy()
        self._filled = 0
        return x

    def take_kept(self) -> np.ndarray | None:
        """All kept audio, in order (and forget it), or None."""
        if not self._kept:
            return None
        kept = np.concatenate(list(self._kept))
        self._kept.clear()
        self.kept = 0
        return kept
