"""PlaybackLedger: heard positions come from echoed marks, and a clear credits only real-time play since."""

from __future__ import annotations

from processors.telephony.playback import PlaybackLedger


def send(ledger: PlaybackLedger, item: str, n: int, at: float, chunk: int = 160, turn: int = 1) -> list[str]:
    return [ledger.sent(item, turn, chunk, at) for _ in range(n)]


def test_marks_prove_what_was_heard_in_order():
    """An echo proves its chunk and every chunk before it; sending proves nothing."""
    ledger = PlaybackLedger(8000)
    names = send(ledger, "item_1", 10, at=0.0)
    assert ledger.heard_ms("item_1") == 0 and ledger.pending == 10
    assert ledger.echo(names[0], 0.02) == [("item_1", 20)]
    assert ledger.echo(names[3], 0.08) == [("item_1", 80)]  # 2 and 3 lost or coalesced: still in order
    assert ledger.pending == 6 and ledger.pending_ms() == 120.0
    assert ledger.echo("nope", 0.1) == [] and ledger.unknown_marks == 1


def test_positions_are_per_item():
    """Chunks of two items are counted from each item's first sample."""
    ledger = PlaybackLedger(8000)
    a = send(ledger, "a", 2, at=0.0)
    b = send(ledger, "b", 3, at=0.0, chunk=80)
    assert ledger.echo(b[1], 0.06) == [("a", 40), ("b", 20)]
    assert ledger.heard_ms("a") == 40 and ledger.heard_ms("b") == 20
    assert int(a[1]) not in {c.seq for c in ledger._pending}


def test_clear_credits_real_time_play_since_the_last_echo():
    """At a clear, the item playing gets the echoed position plus the time played since."""
    ledger = PlaybackLedger(8000)
    names = send(ledger, "item_1", 50, at=0.0)
    ledger.echo(names[9], 0.200)  # 200 ms proven at t = 0.2 s
    cut = ledger.clear(0.213)  # 13 ms into the next chunk
    assert cut == [("item_1", 1, 213)]
    assert ledger.pending == 0
    # Twilio echoes the flushed marks: they are not playback
    assert ledger.echo(names[20], 0.22) == [] and ledger.flushed_marks == 1
    assert ledger.heard_ms("item_1") == 213


def test_clear_never_credits_audio_the_provider_did_not_have():
    """A starved stream (next chunk sent late) plays from its arrival, and never past what was sent."""
    ledger = PlaybackLedger(8000)
    first = ledger.sent("i", 1, 160, 0.0)
    ledger.echo(first, 0.02)
    ledger.sent("i", 1, 160, 0.5)  # the model was slow: this chunk arrived at 0.5 s
    assert ledger.clear(0.51) == [("i", 1, 30)]
    ledger2 = PlaybackLedger(8000)
    ledger2.sent("i", 1, 160, 0.0)
    assert ledger2.clear(5.0) == [("i", 1, 20)]  # only 20 ms were ever sent


def test_clear_reports_items_not_reached_at_zero():
    """Items queued behind the one playing were not heard at all."""
    ledger = PlaybackLedger(8000)
    send(ledger, "a", 2, at=0.0)
    send(ledger, "b", 2, at=0.0)
    assert ledger.clear(0.01) == [("a", 1, 10), ("b", 1, 0)]
    assert ledger.clear(0.02) == []


def test_the_pending_list_is_bounded():
    """Past max_chunks the oldest chunks count as heard rather than growing without end."""
    ledger = PlaybackLedger(8000, max_chunks=4)
    send(ledger, "a", 6, at=0.0)
    assert ledger.pending == 4 and ledger.heard_ms("a") == 40


def test_the_least_delayed_echo_sets_the_timeline():
    """Late echoes (a busy network) do not pull the estimate back; the earliest one wins."""
    ledger = PlaybackLedger(8000)
    names = send(ledger, "i", 50, at=0.0)
    ledger.echo(names[0], 0.020)  # on time
    ledger.echo(names[4], 0.118)  # 18 ms late
    assert ledger.clear(0.150) == [("i", 1, 150)]


def test_a_stalled_provider_restarts_the_timeline():
    """An echo far behind the timeline means playback paused there: count from that echo."""
    ledger = PlaybackLedger(8000)
    names = send(ledger, "i", 50, at=0.0)
    ledger.echo(names[0], 0.020)
    ledger.echo(names[1], 0.540)  # 500 ms stall
    assert ledger.clear(0.550) == [("i", 1, 50)]


def test_the_timeline_follows_a_player_that_slips():
    """A player that fell 15 ms behind is followed once the on-time echoes have left the window."""
    ledger = PlaybackLedger(8000)
    names = send(ledger, "i", 100, at=0.0)
    ledger.echo(names[0], 0.020)
    for k in range(1, 40):  # from chunk 1 on, every echo is 15 ms late
        ledger.echo(names[k], 0.020 * (k + 1) + 0.015)
    assert ledger.clear(0.020 * 40 + 0.015 + 0.010) == [("i", 1, 810)]


def test_echo_finds_its_chunk_by_sequence_number():
    """Marks are sequence numbers: an echo deep in a long backlog, a stale one, a flushed one, a foreign one."""
    ledger = PlaybackLedger(8000)
    names = send(ledger, "i", 3000, at=0.0)  # a minute of 20 ms chunks buffered at the provider
    assert ledger.echo(names[2499], 50.0) == [("i", 50_000)] and ledger.pending == 500
    assert ledger.echo(names[10], 50.1) == [] and ledger.unknown_marks == 1  # already proven
    for bogus in ("", "-3", "1e9", "99999999999999999999999", "x1"):
        assert ledger.echo(bogus, 50.1) == []
    assert ledger.unknown_marks == 6
    ledger.clear(50.2)
    later = send(ledger, "j", 2, at=51.0)
    assert int(later[0]) == 3001  # numbering goes on across a clear
    assert ledger.echo(names[2999], 51.0) == [] and ledger.flushed_marks == 1
    assert ledger.echo(later[1], 51.04) == [("j", 40)] and ledger.pending == 0
