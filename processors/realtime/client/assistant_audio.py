"""AssistantAudio: per assistant item, the audio received and the audio heard, and where to cut it.

Theory of operation
-------------------
Over a websocket the server cannot know how much of its audio the user heard; the client
must tell it on a barge-in (reference §4.3, §7.1), in milliseconds of that item's audio
counted from its first sample. This ledger keeps, per assistant item, the samples received
(from the audio deltas) and the milliseconds that playback reported as played
(:class:`~pipeline.frames.PlaybackProgressFrame`, upstream). When the user barges in,
every item not fully heard is *cut*: truncated at the played position, clamped to what
was received (the server refuses more), or deleted when nothing was played (it refuses a
truncation to 0).

The cut waits for playback's final report: playback answers an interruption with
``done=True`` and the exact position it stopped at for each item it dropped; until then
the last periodic report is behind by up to one report interval. :meth:`settle` cuts at the
last report for items that never get one (playback never received them). Until playback
has reported anything in the session, received audio counts as heard and the cut is at
once: without information, nothing the user may have heard is removed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wire import SAMPLE_RATE, AudioCodec

__all__ = ["AssistantAudio", "AudioItem", "Cut"]

#: An item played to within one reference frame of its end counts as heard.
HEARD_SLACK_MS = 20
#: Settled items kept for late reports before the oldest are forgotten.
MAX_ITEMS = 64


@dataclass
class AudioItem:
    """One assistant message item: audio received versus heard."""

    id: str
    response_id: str
    epoch: int  # the connection it belongs to: items of a gone session cannot be cut
    codec: AudioCodec
    received: int = 0  # samples
    played_ms: int = 0  # as reported by playback
    playback_done: bool = False
    closed: bool = False  # cut, or otherwise settled: no more accounting
    cut_pending: bool = False  # interrupted: waits for playback's final report


@dataclass(frozen=True, slots=True)
class Cut:
    """Where an interrupted item ends: ``end_ms`` of its audio; 0 means delete it."""

    item_id: str
    end_ms: int
    epoch: int


class AssistantAudio:
    """The ledger of assistant audio items of one client (across reconnections)."""

    def __init__(self, output_format: str) -> None:
        self.format = output_format
        self.rate = SAMPLE_RATE[output_format]
        self.progress_seen = False
        self.unknown_reports = 0
        self._items: dict[str, AudioItem] = {}
        self._pending: set[str] = set()

    def track(self, item_id: str, response_id: str, epoch: int) -> AudioItem:
        """Start accounting for a new item (idempotent)."""
        item = self._items.get(item_id)
        if item is None:
            item = self._items[item_id] = AudioItem(item_id, response_id, epoch, AudioCodec(self.format))
        return item

    def get(self, item_id: str | None) -> AudioItem | None:
        return self._items.get(item_id) if item_id is not None else None

    def latest(self) -> AudioItem | None:
        """The most recently tracked item."""
        return self._items[next(reversed(self._items))] if self._items else None

    def ids(self) -> list[str]:
        return list(self._items)

    def forget(self, item_id: str) -> None:
        self._items.pop(item_id, None)
        self._pending.discard(item_id)

    def received_ms(self, item: AudioItem) -> int:
        return item.received * 1000 // self.rate

    def unheard(self, running_response_id: str | None) -> list[AudioItem]:
        """Items the user has not fully heard: of the running response, or still playing."""
        out = []
        for item in self._items.values():
            if item.closed:
                continue
            if item.response_id == running_response_id or (
                    self.progress_seen and not item.playback_done
                    and item.played_ms < self.received_ms(item) - HEARD_SLACK_MS):
                out.append(item)
        return out

    def interrupt(self, items: list[AudioItem], *, epoch: int | None) -> list[Cut]:
        """Close ``items``; return the cuts due now (the others wait for playback's final report).

        Items of another ``epoch`` (or all, with ``None``: no session) are closed uncut.
        """
        cuts = []
        for item in items:
            item.closed = True
            if epoch is None or item.epoch != epoch:
                continue
            if self.progress_seen:
                item.cut_pending = True
                self._pending.add(item.id)
            else:
                cuts.append(self.cut(item, None))
        return cuts

    def progress(self, item_id: str, played_ms: int, done: bool) -> list[Cut]:
        """Playback's report; returns the cut of an interrupted item when this is its final report."""
        self.progress_seen = True
        item = self._items.get(item_id)
        if item is None:
            self.unknown_reports += 1
            return []
        item.played_ms = max(item.played_ms, int(played_ms))
        item.playback_done = item.playback_done or done
        if item.cut_pending and done:
            item.cut_pending = False
            self._pending.discard(item.id)
            return [self.cut(item, item.played_ms)]
        return []

    @property
    def pending(self) -> bool:
        """True while an interrupted item waits for playback's final report."""
        return bool(self._pending)

    def settle(self) -> list[Cut]:
        """Cut every waiting item at its last reported position."""
        cuts = []
        for item_id in sorted(self._pending, key=list(self._items).index):
            item = self._items[item_id]
            item.cut_pending = False
            cuts.append(self.cut(item, item.played_ms))
        self._pending.clear()
        return cuts

    def cut(self, item: AudioItem, played_ms: int | None) -> Cut:
        """The cut of ``item`` at ``played_ms`` (None: all received), clamped to what was received."""
        received_ms = self.received_ms(item)
        end_ms = received_ms if played_ms is None else max(0, min(int(played_ms), received_ms))
        item.closed = True
        return Cut(item.id, end_ms, item.epoch)

    def prune(self, epoch: int, running_response_id: str | None) -> None:
        """Forget the oldest settled items beyond :data:`MAX_ITEMS`."""
        excess = len(self._items) - MAX_ITEMS
        if excess <= 0:
            return
        unheard = {it.id for it in self.unheard(running_response_id)}
        settled = [k for k, it in self._items.items() if not it.cut_pending and (
                   it.closed or it.playback_done or it.epoch != epoch or k not in unheard)]
        for k in settled[:excess]:
            del self._items[k]
