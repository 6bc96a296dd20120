"""Playout accounting and the playout ring shared by the playback sinks.

Theory of operation
-------------------
A playback sink queues audio faster than it plays (a model sends a response in bursts)
and must tell the model how much of each assistant item was actually heard, so that a
barge-in truncates the item at the right place (``conversation.item.truncate`` with
``audio_end_ms``). Two plain objects do this, with no clock and no asyncio:

* :class:`PlayoutProgress` counts positions on the playout timeline, in samples:
  ``written`` grows as audio is queued (tagged with its item), ``played`` grows as the
  consumer (a sound card callback, or a media-time clock) takes it. ``updates()`` turns
  the change into :class:`~pipeline.frames.PlaybackProgressFrame` s: ``played_ms`` of each
  item, and ``done=True`` once the item is over and fully played. An item is over when a
  response end arrives, when another item starts, or when an interruption drops what was
  still queued (then ``played_ms`` is final: that is the truncation point).
* :class:`PlayoutRing` is a preallocated single-producer single-consumer ring of samples
  between the event loop (writer) and a PortAudio callback thread (reader). Each side
  owns one counter and only reads the other's, so neither takes a lock and the callback
  never blocks. A flush (interruption) is a request the callback carries out itself: it
  fades out what it is about to play over ``fade`` samples and skips to the position the
  writer had reached when it asked.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from pipeline.dsp.gain import ramp
from pipeline.frames import PlaybackProgressFrame

__all__ = ["PlayoutProgress", "PlayoutRing", "fade_out_ramp"]


@dataclass(slots=True)
class _Item:
    item_id: str
    turn: int
    start: int  # first position of the item on the playout timeline
    end: int  # one past its last queued position
    complete: bool = False  # no more audio will be queued for it
    reported_ms: int = -1


class PlayoutProgress:
    """Which assistant items have been played, and how much of each, in samples.

    Items are played in the order they are queued; audio without an item id (a prompt,
    a file) takes its place on the timeline but is not reported.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.written = 0
        self.played = 0
        self._items: deque[_Item] = deque()
        self._last: _Item | None = None

    @property
    def queued(self) -> int:
        """Samples queued and not yet played."""
        return self.written - self.played

    def write(self, n: int, item_id: str | None, turn: int = 0) -> None:
        """``n`` samples of ``item_id`` were queued after everything else."""
        start = self.written
        self.written += n
        last = self._last
        if item_id is None:
            if last is not None:
                last.complete = True
                self._last = None
            return
        if last is not None and last.item_id == item_id and last.end == start:
            last.end = self.written
            return
        if last is not None:
            last.complete = True
        self._last = _Item(item_id, turn, start, self.written)
        self._items.append(self._last)

    def finish_items(self) -> None:
        """Everything queued so far is complete (the response ended or the stream ends)."""
        for item in self._items:
            item.complete = True
        self._last = None

    def advance(self, position: int) -> None:
        """The consumer has played up to ``position`` (clamped to what was written)."""
        self.played = max(self.played, min(position, self.written))

    def drop(self, played: int | None = None, resume: int | None = None) -> int:
        """An interruption: drop what is queued after ``played``; return how many samples.

        ``played`` defaults to :attr:`played` (a sound card passes what its callback will
        still fade out). The next audio is queued at ``resume``: a ring skips to where its
        writer was; by default right at the cut. Every queued item is over: its played
        time is final, and an item cut before it started reports ``played_ms=0``.
        """
        cut = self.played if played is None else max(self.played, min(played, self.written))
        dropped = self.written - cut
        for item in self._items:
            item.end = min(item.end, max(item.start, cut))
            item.complete = True
        self._last = None
        self.written = cut if resume is None else max(cut, resume)
        self.played = self.written
        return dropped

    def updates(self) -> list[PlaybackProgressFrame]:
        """Progress frames for items whose played time changed or that just finished."""
        out: list[PlaybackProgressFrame] = []
        items = self._items
        while items:
            item = items[0]
            heard = min(max(self.played - item.start, 0), item.end - item.start)
            ms = heard * 1000 // self.sample_rate
            if item.complete and item.start + heard >= item.end:
                out.append(PlaybackProgressFrame(item.item_id, ms, True, turn=item.turn))
                items.popleft()
                continue
            if heard > 0 and ms != item.reported_ms:
                out.append(PlaybackProgressFrame(item.item_id, ms, False, turn=item.turn))
                item.reported_ms = ms
            break  # items play in order: the ones behind have not started
        return out


def fade_out_ramp(n: int) -> np.ndarray:
    """A raised-cosine gain from near 1 down to 0 over ``n`` samples (float32, ``(n, 1)``)."""
    return np.ascontiguousarray(ramp(max(0, n), "cosine")[::-1]).reshape(-1, 1)


class PlayoutRing:
    """A preallocated ring of samples: the event loop writes, an audio callback reads.

    ``write`` copies as much as fits and returns the count; ``read_into`` fills a
    callback's output buffer, with silence for what is missing. ``request_flush`` asks the
    reader to fade out and drop what is queued. Counters only grow, so ``written - read``
    is the fill level and the two threads never write the same attribute.
    """

    def __init__(self, capacity: int, channels: int, dtype: str, *, fade: int = 0) -> None:
        if capacity < 1:
            raise ValueError("playout ring capacity must be at least one sample")
        self.capacity = capacity
        self.channels = channels
        self.dtype = np.dtype(dtype)
        self._buf = np.zeros((capacity, channels), dtype=self.dtype)
        self._ramp = fade_out_ramp(fade)
        self._scratch = np.zeros((fade, channels), dtype=np.float32)
        self.written = 0  # writer-owned
        self.read = 0  # reader-owned
        self.expect_more = False  # writer-owned: an item is still arriving (an empty ring is an underrun)
        self.underruns = 0  # reader-owned
        self._flush_at = 0  # writer-owned
        self._flush_gen = 0  # writer-owned
        self._flush_seen = 0  # reader-owned

    @property
    def available(self) -> int:
        return self.written - self.read

    @property
    def space(self) -> int:
        return self.capacity - (self.written - self.read)

    def write(self, samples: np.ndarray) -> int:
        """Copy as many leading frames of ``samples`` ((n,) or (n, ch)) as fit; return how many."""
        n = min(samples.shape[0], self.capacity - (self.written - self.read))
        if n <= 0:
            return 0
        x = samples[:n]
        if x.ndim == 1:
            x = x[:, None]
        cap = self.capacity
        i = self.written % cap
        first = min(n, cap - i)
        self._buf[i : i + first] = x[:first]
        if first < n:
            self._buf[: n - first] = x[first:]
        self.written += n  # publish after the copy: the reader never sees unwritten samples
        return n

    def request_flush(self) -> int:
        """Ask the reader to fade out and drop what is queued; return the resume position."""
        self._flush_at = self.written
        self._flush_gen += 1
        return self._flush_at

    def read_into(self, out: np.ndarray) -> int:
        """Fill ``out`` (frames, channels) from the ring, silence after; return frames played."""
        frames = out.shape[0]
        if self._flush_gen != self._flush_seen:
            return self._read_flush(out)
        avail = self.written - self.read
        n = min(frames, avail)
        if n:
            self._copy_out(out, n)
        if n < frames:
            out[n:] = 0
            if self.expect_more:
                self.underruns += 1
        self.read += n
        return n

    def _copy_out(self, out: np.ndarray, n: int) -> None:
        cap = self.capacity
        i = self.read % cap
        first = min(n, cap - i)
        out[:first] = self._buf[i : i + first]
        if first < n:
            out[first:n] = self._buf[: n - first]

    def _read_flush(self, out: np.ndarray) -> int:
        self._flush_seen = self._flush_gen
        flush_at = self._flush_at
        k = min(out.shape[0], max(0, flush_at - self.read), self._ramp.shape[0])
        if k:
            self._copy_out(out, k)
            faded = np.multiply(out[:k], self._ramp[:k], out=self._scratch[:k])
            if self.dtype.kind == "f":
                out[:k] = faded
            else:
                out[:k] = np.rint(faded)
        out[k:] = 0
        self.read = max(self.read + k, flush_at)
        return k
