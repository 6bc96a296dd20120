"""Hostile clients against both servers (issue 13): memory, hostile input, limits, fairness, headers.

Socket cases run on 127.0.0.1 with real servers and raw websockets clients; every loop is
bounded in count and under ``anyio.fail_after``.
"""

from __future__ import annotations

import base64
import functools
import gc
import json
import logging
import socket
import time
import weakref

import anyio
import anyio.lowlevel
import numpy as np
import pytest
from websockets.asyncio.client import connect as ws_connect

from pipeline.dsp.resample import resample
from processors.realtime.server import ServerConversation, serve_local
from processors.realtime.server import conversation as conversation_module
from processors.realtime.server import server as server_module

pytestmark = pytest.mark.anyio

AUTH = {"Authorization": "Bearer sk-local"}


@functools.lru_cache(maxsize=None)
def utterance(text: str, lead_ms: int = 300, tail_ms: int = 700) -> bytes:
    """pcm16 24 kHz bytes of eSpeak NG saying ``text`` between quiet seeded noise."""
    from processors.speech.espeak import synthesize

    x, rate = synthesize(text)
    rng = np.random.default_rng(len(text))
    quiet = lambda ms: rng.normal(0, 30, 24 * ms).astype(np.int16)
    return np.concatenate([quiet(lead_ms), resample(x, rate, 24000), quiet(tail_ms)]).astype("<i2").tobytes()


def raw(url: str, **kwargs):
    kwargs.setdefault("additional_headers", AUTH)
    return ws_connect(url + "/realtime?model=gpt-realtime", max_size=None, **kwargs)


def append(data: bytes) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()})


async def recv_until(ws, etype: str, limit: int = 5000, timeout: float = 30.0) -> list[dict]:
    """Events up to and including the first of type ``etype`` (at most ``limit`` events)."""
    out: list[dict] = []
    with anyio.fail_after(timeout):
        for _ in range(limit):
            out.append(json.loads(await ws.recv()))
            if out[-1]["type"] == etype:
                return out
    raise AssertionError(f"no {etype} in {limit} events: {[e['type'] for e in out[-5:]]}")


# --- item 1: what a conversation keeps, and when it is freed ------------------------------------


def test_a_conversation_keeps_a_bounded_amount_of_audio_and_items():
    """Old items lose their audio past AUDIO_KEPT_MS (durations stay); past MAX_ITEMS the oldest go."""
    core = ServerConversation()
    core.receive_event({"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"turn_detection": None}}}})
    second = bytes(48000)  # 1 s of pcm16 at 24 kHz
    turns = conversation_module.AUDIO_KEPT_MS // 1000 + 30
    for _ in range(turns):
        core.receive_event({"type": "input_audio_buffer.append", "audio": base64.b64encode(second).decode()})
        core.receive_event({"type": "input_audio_buffer.commit"})
    items = list(core.conversation)
    assert len(items) == turns
    held = sum(s.audio_bytes() for s in items)
    assert held == conversation_module.AUDIO_KEPT_MS // 1000 * len(second)
    assert all(s.audio_ms() == 1000.0 for s in items)  # released items keep their duration
    oldest = items[0].id
    core.events_to_send()
    core.receive_event({"type": "conversation.item.retrieve", "item_id": oldest})
    retrieved = core.events_to_send()[-1]
    assert retrieved["type"] == "conversation.item.retrieved"
    assert "audio" not in retrieved["item"]["content"][0]
    core.receive_event({"type": "conversation.item.retrieve", "item_id": items[-1].id})
    assert core.events_to_send()[-1]["item"]["content"][0]["audio"] == base64.b64encode(second).decode()


def test_past_max_items_the_oldest_item_is_deleted(monkeypatch):
    """The conversation holds MAX_ITEMS items; each one dropped is announced as deleted."""
    monkeypatch.setattr(conversation_module, "MAX_ITEMS", 5)
    core = ServerConversation()
    ids = []
    for n in range(8):
        core.receive_event({"type": "conversation.item.create", "item": {
            "id": f"it{n}", "type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}})
        ids.append(f"it{n}")
    assert core.conversation.ids() == ids[3:]
    deleted = [e["item_id"] for e in core.events_to_send() if e["type"] == "conversation.item.deleted"]
    assert deleted == ids[:3]


async def test_a_closed_connection_is_freed_without_the_garbage_collector(monkeypatch):
    """After a turn and a close, the connection and its core die by reference counting alone."""
    refs: list[weakref.ref] = []
    original = server_module._Connection.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        refs.append(weakref.ref(self))
        refs.append(weakref.ref(self.core))
        refs.append(weakref.ref(self.context))

    monkeypatch.setattr(server_module._Connection, "__init__", spy)
    async with serve_local() as server:
        gc.collect()
        gc.disable()
        try:
            for mid_response in (False, True):
                async with raw(server.url) as ws:
                    await recv_until(ws, "session.created")
                    await ws.send(append(utterance("hello")))
                    await recv_until(ws, "response.created" if mid_response else "response.done")
                with anyio.fail_after(10):
                    while server.connections:
                        await anyio.sleep(0.01)
                await anyio.sleep(0.05)  # let the handler's frames unwind
            alive = [r() for r in refs if r() is not None]
            assert not alive, [type(a).__name__ for a in alive]
        finally:
            gc.enable()
    assert len(refs) == 6


# --- item 4: nesting ----------------------------------------------------------------------------


def nested_session_update(depth: int) -> str:
    deep: object = "x"
    for _ in range(depth):
        deep = {"a": deep}
    return json.dumps({"type": "session.update", "event_id": "deep",
                       "session": {"type": "realtime", "tracing": deep}})


async def test_deep_json_is_an_invalid_event_with_one_log_line_and_the_connection_lives(caplog):
    """2,000 '[' and a session.update nested 495 deep: invalid_event each, one short log line, no traceback."""
    caplog.set_level(logging.INFO, logger="voxpipe.realtime_server")
    async with serve_local() as server:
        async with raw(server.url) as ws:
            await recv_until(ws, "session.created")
            for message in ("[" * 2000, "[" * 2000 + "]" * 2000, nested_session_update(495),
                            '{"type": "session.update", "session": ' + "[" * 5000 + "]" * 5000 + "}"):
                caplog.clear()
                await ws.send(message)
                event = json.loads(await ws.recv())
                assert event["type"] == "error" and event["error"]["code"] == "invalid_event", event
                assert event["error"]["type"] == "invalid_request_error"
                records = [r for r in caplog.records if r.name.startswith("voxpipe.realtime_server")]
                assert len(records) == 1 and records[0].exc_info is None, [r.getMessage() for r in records]
                assert len(records[0].getMessage()) < 300
            await ws.send(nested_session_update(20))  # nesting a real client might send is fine
            assert json.loads(await ws.recv())["type"] == "session.updated"
            await ws.send(append(utterance("hello")))
            done = await recv_until(ws, "response.done")
            assert done[-1]["response"]["status"] == "completed"


# --- item 6: limits -----------------------------------------------------------------------------


def _core(turn_detection: object = None) -> ServerConversation:
    core = ServerConversation()
    core.receive_event({"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"turn_detection": turn_detection}}}})
    core.events_to_send()
    return core


def _errors(core: ServerConversation) -> list[dict]:
    return [e["error"] for e in core.events_to_send() if e["type"] == "error"]


def test_the_input_buffer_is_capped_with_turn_detection_off(monkeypatch):
    """Appends past MAX_BUFFER_MS are refused (invalid_value, param audio); commit and clear still work."""
    monkeypatch.setattr(conversation_module, "MAX_BUFFER_MS", 2000)
    core = _core()
    second = base64.b64encode(bytes(48000)).decode()
    for _ in range(8):
        core.receive_event({"type": "input_audio_buffer.append", "audio": second})
    errors = _errors(core)
    assert len(errors) == 6 and {(e["code"], e["param"]) for e in errors} == {("invalid_value", "audio")}
    assert core.buffer.buffered_ms == 2000
    core.receive_event({"type": "input_audio_buffer.commit"})
    assert [e["type"] for e in core.events_to_send()][0] == "input_audio_buffer.committed"
    assert [type(c).__name__ for c in core.commands()] == ["Transcribe"]


def test_with_server_vad_a_turn_reaching_the_cap_is_ended_by_the_server(monkeypatch):
    """14 s of unbroken speech under server VAD: turns of at most MAX_BUFFER_MS, the buffer never above it."""
    monkeypatch.setattr(conversation_module, "MAX_BUFFER_MS", 3000)
    core = _core({"type": "server_vad", "create_response": False, "silence_duration_ms": 1500})
    data = utterance("what is the weather like in paris today", 50, 50) * 6
    most = 0
    for i in range(0, len(data), 4800):  # 100 ms appends
        core.receive_event({"type": "input_audio_buffer.append", "audio": base64.b64encode(data[i:i + 4800]).decode()})
        most = max(most, core.buffer.samples)
    events = core.events_to_send()
    assert not [e for e in events if e["type"] == "error"]
    assert len([e for e in events if e["type"] == "input_audio_buffer.committed"]) >= 4
    assert most <= 24 * 3000
    assert max(len(c.samples) for c in core.commands()) <= 24 * 3000


def test_one_append_over_15_mib_and_an_overlong_audio_item_are_refused():
    """An append over 15 MiB decoded and an item with more than MAX_BUFFER_MS of audio get invalid_value."""
    core = _core()
    core.receive_event({"type": "input_audio_buffer.append",
                        "audio": base64.b64encode(bytes(conversation_module.MAX_APPEND_BYTES + 3)).decode()})
    core.receive_event({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
        {"type": "input_audio", "audio": base64.b64encode(bytes(48 * (conversation_module.MAX_BUFFER_MS + 10))).decode()}]}})
    errors = _errors(core)
    assert [(e["code"], e["param"]) for e in errors] == [("invalid_value", "audio"),
                                                         ("invalid_value", "item.content[0].audio")]
    assert core.buffer.samples == 0 and len(core.conversation) == 0 and not core.commands()


def test_out_of_band_responses_are_capped():
    """Past MAX_OUT_OF_BAND running out-of-band responses, response.create is refused; the rest run."""
    core = _core()
    for _ in range(conversation_module.MAX_OUT_OF_BAND + 4):
        core.receive_event({"type": "response.create", "response": {"conversation": "none"}})
    errors = _errors(core)
    assert [(e["code"], e["param"]) for e in errors] == [("invalid_value", "response.conversation")] * 4
    assert len(core.commands()) == conversation_module.MAX_OUT_OF_BAND
    core.receive_event({"type": "response.create"})  # the default conversation is not affected
    assert not _errors(core)


def test_sessions_stay_under_one_mebibyte_and_tools_are_capped():
    """10,000 tools: array_above_max_length; 900 KB of instructions: invalid_value; session.updated < 1 MiB."""
    core = _core()
    tools = [{"type": "function", "name": f"tool_{i}", "description": "d" * 100,
              "parameters": {"type": "object", "properties": {}}} for i in range(10_000)]
    core.receive_event({"type": "session.update", "session": {"type": "realtime", "tools": tools}})
    core.receive_event({"type": "session.update", "session": {"type": "realtime", "tools": tools[:128]}})
    updated = core.events_to_send()
    assert updated[0]["error"]["code"] == "array_above_max_length" and updated[0]["error"]["param"] == "session.tools"
    assert updated[1]["type"] == "session.updated" and len(updated[1]["session"]["tools"]) == 128
    core.receive_event({"type": "session.update", "session": {"type": "realtime", "instructions": "x" * 900_000}})
    errors = _errors(core)
    assert [(e["code"], e["param"]) for e in errors] == [("invalid_value", "session")]
    core.receive_event({"type": "session.update", "session": {"type": "realtime", "instructions": "x" * 700_000}})
    event = core.events_to_send()[0]
    assert event["type"] == "session.updated" and len(json.dumps(event)) < 1024 * 1024


async def test_a_huge_event_id_is_refused_not_echoed():
    """A 10 MiB event_id: string_above_max_length, error.event_id null, the error is small."""
    async with serve_local() as server:
        async with raw(server.url) as ws:
            await recv_until(ws, "session.created")
            await ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": "e" * (10 * 1024 * 1024)}))
            message = await ws.recv()
            event = json.loads(message)
            assert event["error"]["code"] == "string_above_max_length" and event["error"]["event_id"] is None
            assert len(message) < 1024
            await ws.send(json.dumps({"type": "conversation.item.delete", "item_id": "i" * (1024 * 1024)}))
            message = await ws.recv()
            assert json.loads(message)["error"]["code"] == "item_not_found" and len(message) < 1024
            await ws.send(json.dumps({"type": "input_audio_buffer.clear", "event_id": "e" * 512}))
            assert json.loads(await ws.recv())["type"] == "input_audio_buffer.cleared"


# --- item 7: fairness ---------------------------------------------------------------------------


async def _timed_turn(url: str, text: str = "hello") -> tuple[float, float]:
    """One spoken turn on a new connection: (seconds to response.done, perf_counter at its end)."""
    async with raw(url) as ws:
        await recv_until(ws, "session.created")
        t0 = time.perf_counter()
        await ws.send(append(utterance(text)))
        done = await recv_until(ws, "response.done", timeout=120)
        assert done[-1]["response"]["status"] == "completed"
        end = time.perf_counter()
        return end - t0, end


def test_long_audio_is_cut_at_quiet_points_into_bounded_pieces():
    """quiet_cuts: pieces of at most MAX_PIECE_S, each cut in the quietest frame near the limit."""
    from processors.realtime.server.fairness import MAX_PIECE_S, quiet_cuts

    rng = np.random.default_rng(7)
    x = rng.normal(0, 3000, 24000 * 65).astype(np.int16)
    x[24000 * 18: 24000 * 18 + 480] = 0  # a pause 2 s before the first limit
    cuts = quiet_cuts(x, 24000)
    pieces = np.diff([0, *cuts, x.shape[0]])
    assert pieces.max() <= MAX_PIECE_S * 24000 and len(pieces) == 4
    assert 24000 * 18 <= cuts[0] <= 24000 * 18 + 480
    assert quiet_cuts(x[: 24000 * 5], 24000) == []


def test_the_pieces_of_a_long_utterance_keep_how_they_were_heard():
    """joined_pieces: one out-of-grammar piece makes the whole transcript out-of-grammar."""
    from processors.realtime.server.fairness import joined_pieces
    from processors.speech.sphinx import Heard

    sure = Heard("what is the weather in paris", False, -20.0)
    outside = Heard("the capital of france", True, -48.0)
    joined = joined_pieces([sure, outside])
    assert joined == "what is the weather in paris the capital of france"
    assert isinstance(joined, Heard) and joined.fallback and joined.score == -48.0
    assert not joined_pieces([sure, sure]).fallback
    plain = joined_pieces(["no", "flags"])  # a recogniser without a grammar gives plain words
    assert plain == "no flags" and not isinstance(plain, Heard)


async def test_a_long_commit_does_not_hold_back_another_clients_turn():
    """One worker; a client commits 2 minutes of speech; another client's turn ends before that transcript."""
    speech = utterance("what is the weather like in paris today")
    long_audio = (speech * (48 * 120_000 // len(speech) + 1))[: 48 * 120_000]
    async with serve_local(workers=1) as server:
        idle = [(await _timed_turn(server.url))[0] for _ in range(2)]
        async with raw(server.url) as ws:
            await recv_until(ws, "session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
                "turn_detection": None, "transcription": {"model": "whisper-1"}}}}}))
            for i in range(0, len(long_audio), 48 * 30_000):
                await ws.send(append(long_audio[i:i + 48 * 30_000]))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await recv_until(ws, "input_audio_buffer.committed")
            t0 = time.perf_counter()
            async with anyio.create_task_group() as tg:
                other: list[tuple[float, float]] = []

                async def turn() -> None:
                    other.append(await _timed_turn(server.url))

                tg.start_soon(turn)
                await recv_until(ws, "conversation.item.input_audio_transcription.completed", timeout=120)
                transcribed = time.perf_counter()
        latency, other_end = other[0]
        print(f"\nlong commit: 2 min transcribed in {transcribed - t0:.2f} s; other turn {latency * 1000:.0f} ms "
              f"(idle {min(idle) * 1000:.0f} ms)")
        assert other_end < transcribed  # the other turn did not wait for the whole long commit


async def test_loop_share_holds_back_only_the_heavier_connection():
    """A heavy account gives way while a lighter one works, within max_defer_s; equals never wait."""
    from processors.realtime.server.fairness import LoopShare

    share = LoopShare(max_defer_s=0.01, hold_s=0.0)
    heavy, light, peer = share.open(), share.open(), share.open()
    heavy.charge(0.5)
    light.charge(0.01)
    peer.charge(0.45)
    await heavy.wait_turn()  # nobody lighter is working
    assert heavy.deferred == 0
    with light.work():
        with anyio.fail_after(5):
            await heavy.wait_turn()  # waits, but never longer than max_defer_s
            await peer.wait_turn()  # so does any connection over twice the light one's usage
        assert heavy.deferred == 1 and peer.deferred == 1 and heavy.deferred_s >= 0.01
        await light.wait_turn()  # the lighter one itself never waits
        assert light.deferred == 0
    with peer.work():
        await heavy.wait_turn()  # a peer of similar weight does not hold it back
    assert heavy.deferred == 1 and heavy.messages == 3
    light.close()
    assert share.accounts == [heavy, peer]


async def test_a_young_flooder_counts_as_heavy_from_its_first_messages():
    """Usage is a rate from a connection's first message: a flooder that just connected is the heavy one.

    A light connection has been open 3 s and charged 30 ms; a flooder opened now charges 40 ms
    in its first messages. By decayed sums alone the two would be of similar weight (neither
    gives way) for the first moments of a flood; as a rate (:meth:`Account.usage`) the
    flooder is over twice the light one, so it gives way while the light one works.
    """
    from processors.realtime.server.fairness import LoopShare

    share = LoopShare(max_defer_s=0.01, hold_s=0.0)
    light = share.open()
    light._born -= 3.0  # connected three seconds ago
    light.charge(0.030)
    flooder = share.open()
    for _ in range(40):
        flooder.charge(0.001)
    raw_light, raw_flooder = light._used, flooder._used  # the decayed sums, without the age
    assert raw_flooder < 2 * raw_light  # by the sums: similar weight
    assert flooder.usage() > 2 * light.usage() * 1.5  # as rates: well past the give-way threshold
    with light.work():
        await flooder.wait_turn()
    assert flooder.deferred == 1
    with flooder.work():
        await light.wait_turn()
    assert light.deferred == 0
    # the rate estimate: 40 ms in its first moment reads as about 40 ms / (1 - e^(-0.25)) (min_age_s 0.25)
    assert flooder.usage() == pytest.approx(0.040 / (1 - np.exp(-share.min_age_s / share.tau_s)), rel=0.05)


@pytest.mark.parametrize("processes", [1, 0], ids=["worker_process", "thread"])
async def test_a_lighter_connections_work_preempts_a_heavier_ones_running_recognition(processes):
    """Real recognisers, real speech: the heavy recognition already decoding is stopped and heard again.

    One worker process (or one thread), so without pre-emption the light recognition would
    wait for the heavy one (first come, first served). The light connection's recognition starts while
    the heavy one's 20 s of speech is being decoded: the heavy one is cancelled (the worker
    stops at its next 100 ms block), the light one is heard first, then the heavy audio is
    recognised again from its start with the same words as without pre-emption. Asserted on
    the order of completion, counts and words; no timing.
    """
    from processors.realtime.server.engine import SpeechResources
    from processors.realtime.server.fairness import LoopShare, SegmentedRecognition

    def pcm(text: str) -> np.ndarray:
        return np.frombuffer(utterance(text), dtype="<i2")

    long_speech = np.tile(pcm("what is the weather like in paris today"), 6)  # about 20 s
    hello = pcm("hello")
    resources = SpeechResources(processes=processes, workers=1)
    await resources.warm_up()
    try:
        grammar = resources.grammar_for([])
        alone = await SegmentedRecognition(resources).recognize(long_speech, 24000, grammar, [])
        share = LoopShare()
        heavy, light = share.open(), share.open()
        heavy.charge(1.0)
        light.charge(0.001)
        order: list[str] = []
        heard: dict[str, str] = {}

        async def recognise(name, account, samples) -> None:
            with account.work():
                heard[name] = await SegmentedRecognition(resources, account).recognize(samples, 24000, grammar, [])
            order.append(name)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(recognise, "heavy", heavy, long_speech)
                while heavy not in share._running:  # the heavy recognition is being decoded
                    await anyio.sleep(0.001)
                await anyio.sleep(0.05)  # some blocks of it decoded
                tg.start_soon(recognise, "light", light, hello)
        stats = resources.statistics()
    finally:
        await resources.aclose()
    assert order == ["light", "heavy"]
    assert heavy.preempted == 1 and light.preempted == 0
    assert stats.get("cancelled", 1) == 1  # the worker process's job was cancelled (threads: no such count)
    assert heard["heavy"] == alone and "weather" in alone
    assert heard["light"] == "hello"


async def test_a_flooding_client_gives_way_to_another_clients_turns():
    """A client streams speech at full speed with server VAD; another client's turns go first.

    Each connection's work on the server's loop is charged to it (fairness.LoopShare), and
    the flooder, far the heaviest, is read at most one message per ``max_defer_s`` while the
    other client's turn is in flight. Asserted on counts from the same run: the flooder's
    messages read per second while the other's turns ran, against the rate in between.
    Recognition runs in worker processes, as `voxpipe realtime-server` runs it.
    """
    speech = utterance("what is the weather like in paris today")
    async with serve_local(processes=2) as server:
        idle = [(await _timed_turn(server.url))[0] for _ in range(3)]
        stop = anyio.Event()
        sent = 0

        async def flood() -> None:
            nonlocal sent
            async with raw(server.url) as ws:
                await recv_until(ws, "session.created")
                with anyio.fail_after(120):
                    while not stop.is_set():
                        for i in range(0, len(speech), 4800):
                            await ws.send(append(speech[i:i + 4800]))
                            sent += 4800
                        await anyio.lowlevel.checkpoint()

        loaded: list[float] = []
        during = [0, 0.0]  # flooder messages read, seconds: while the other client's turns ran
        between = [0, 0.0]  # ... and in the pauses between them
        async with anyio.create_task_group() as tg:
            tg.start_soon(flood)
            with anyio.fail_after(10):
                while sent < 48 * 5000:  # the flood is under way
                    await anyio.sleep(0.01)
            flooder = max(server.loop_share.accounts, key=lambda a: a.messages)
            for _ in range(5):
                m0, t0 = flooder.messages, time.perf_counter()
                await anyio.sleep(0.3)
                m1, t1 = flooder.messages, time.perf_counter()
                loaded.append((await _timed_turn(server.url))[0])
                m2, t2 = flooder.messages, time.perf_counter()
                between[0] += m1 - m0
                between[1] += t1 - t0
                during[0] += m2 - m1
                during[1] += t2 - t1
            stop.set()
        rate_during, rate_between = during[0] / during[1], between[0] / between[1]
        print(f"\nflood: {sent / 48000:.0f} s of audio sent; other turns {[round(x * 1000) for x in loaded]} ms "
              f"loaded vs {[round(x * 1000) for x in idle]} ms idle; flooder read at {rate_during:.0f} msg/s "
              f"during them vs {rate_between:.0f} msg/s between; deferred {flooder.deferred} times")
        assert len(loaded) == 5
        assert flooder.deferred > 0
        assert rate_during < 0.25 * rate_between, (rate_during, rate_between)  # 0.03-0.08 measured; 0.6 without


async def test_the_first_turn_of_a_flood_preempts_the_flooders_running_recognition():
    """The first turn after a flood starts: the flooder's recognition already decoding is pre-empted, not lost.

    The flooder streams speech at full speed with server VAD, transcription on and no
    responses, so it keeps a recognition worker decoding; the other client's turn starts
    while one of the flooder's recognitions is running (worker processes, as
    `voxpipe realtime-server` runs them). Asserted on counts and on events: the flooder's
    running recognition is cancelled for the other client's turn (``preempted``, the pool's
    ``cancelled``), the flooder is read at under a quarter of its free rate during that
    first turn, and every segment the flooder committed is still transcribed, with the
    words of the speech (a pre-empted one is recognised again, not dropped). The flooder's
    utterances are long (about 8 s, so each recognition decodes for a while) for the other
    turn to find one running.
    """
    speech = utterance(" ".join(["what is the weather like in paris today"] * 3))
    # The grammar pass only: with the gated general pass each 8 s out-of-grammar segment is
    # decoded twice, and the flood's own backlog would outlast the wait for its transcripts;
    # the pre-emption of the general pass is tested in the recognition test above.
    async with serve_local(processes=2, general_fallback="off") as server:
        await _timed_turn(server.url)
        stop, sent = anyio.Event(), [0]
        committed: list[str] = []
        transcripts: dict[str, str] = {}

        async def flood(ws) -> None:
            with anyio.fail_after(120):
                while not stop.is_set():
                    for i in range(0, len(speech), 4800):
                        await ws.send(append(speech[i:i + 4800]))
                        sent[0] += 1
                    await anyio.lowlevel.checkpoint()

        async def listen(ws) -> None:
            async for message in ws:
                event = json.loads(message)
                if event["type"] == "input_audio_buffer.committed":
                    committed.append(event["item_id"])
                elif event["type"] == "conversation.item.input_audio_transcription.completed":
                    transcripts[event["item_id"]] = event["transcript"]

        async with raw(server.url) as ws:
            await recv_until(ws, "session.created")
            await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime", "audio": {"input": {
                "turn_detection": {"type": "server_vad", "create_response": False},
                "transcription": {"model": "whisper-1"}}}}}))
            await recv_until(ws, "session.updated")
            share = server.loop_share
            flooder = max(share.accounts, key=lambda a: a.messages)
            async with anyio.create_task_group() as tg:
                tg.start_soon(listen, ws)
                tg.start_soon(flood, ws)
                with anyio.fail_after(30):
                    while sent[0] < 200 or flooder not in share._running:  # the flood is free, a recognition decoding
                        await anyio.sleep(0.001)
                m0, t0, d0 = flooder.messages, time.perf_counter(), flooder.deferred
                cancelled0 = server.resources.statistics()["cancelled"]
                await anyio.sleep(0.5)
                with anyio.fail_after(30):
                    while flooder not in share._running:
                        await anyio.sleep(0.001)
                m1, t1, d1 = flooder.messages, time.perf_counter(), flooder.deferred
                latency, _ = await _timed_turn(server.url)
                m2, t2 = flooder.messages, time.perf_counter()
                preempted, cancelled = flooder.preempted, server.resources.statistics()["cancelled"] - cancelled0
                stop.set()
                with anyio.fail_after(60):  # every committed segment gets its transcript
                    while not committed or any(item not in transcripts for item in committed):
                        await anyio.sleep(0.05)
                tg.cancel_scope.cancel()
        rate_free, rate_first = (m1 - m0) / (t1 - t0), (m2 - m1) / (t2 - t1)
        print(f"\nfirst turn of a flood: {latency * 1000:.0f} ms; flooder read at {rate_first:.0f} msg/s during it vs "
              f"{rate_free:.0f} msg/s free (deferred {d1 - d0} times then); its recognitions pre-empted {preempted}; "
              f"{len(committed)} segments, "
              f"all transcribed")
        assert preempted >= 1 and cancelled >= 1
        assert rate_first < 0.25 * rate_free, (rate_first, rate_free)
        assert len(committed) >= 3
        assert all("weather" in transcripts[item] for item in committed), transcripts


# --- items 8 and 9: odd headers, who may connect ------------------------------------------------


async def http_request(port: int, path: str = "/ws", headers: list[tuple[str, str]] | None = None,
                       host: str | None = None) -> bytes:
    """Send one websocket upgrade request by hand; the raw response (up to EOF, at most 64 KiB)."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in headers or []]
    data = b""
    with anyio.fail_after(10):
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode())
            while len(data) < 65536 and b"\r\n\r\n" not in data:
                try:
                    data += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
    return data


def status_of(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:100]
    return int(response.split(b" ", 2)[1])


@pytest.fixture
def echo_yaml(tmp_path):
    from test_web_server import ECHO

    path = tmp_path / "web_echo.yaml"
    path.write_text(ECHO)
    return path


def _our_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_duplicate_origin_and_overlong_path_get_clean_answers_on_both_servers(caplog, echo_yaml):
    """Two Origin headers: 400; a 9,000-character path: 414; each with one warning line and no traceback."""
    from processors.web.server import web_server

    caplog.set_level(logging.INFO)
    async with web_server(echo_yaml) as web, serve_local() as rt:
        cases = [(web.port, "/ws", []), (rt.port, "/v1/realtime?model=m", [("Authorization", "Bearer x")])]
        for port, path, auth in cases:
            for extra, want in (([("Origin", "http://127.0.0.1"), ("Origin", "http://127.0.0.2")], 400),
                                ([("Host", "127.0.0.1")], 400)):
                caplog.clear()
                response = await http_request(port, path, auth + extra)
                assert status_of(response) == want, response[:200]
                assert len(_our_records(caplog)) == 1 and not any(r.exc_info for r in caplog.records)
            caplog.clear()
            response = await http_request(port, "/" + "a" * 9000, auth)
            assert status_of(response) == 414
            assert [r.getMessage() for r in _our_records(caplog)] == [
                _our_records(caplog)[0].getMessage()] and "414" in _our_records(caplog)[0].getMessage()
            assert not any(r.exc_info for r in caplog.records)
            caplog.clear()
            response = await http_request(port, path, auth + [("X-Long", "b" * 9000)])
            assert status_of(response) == 431 and len(_our_records(caplog)) == 1
        async with ws_connect(web.ws_url) as ws:  # both still serve
            assert json.loads(await ws.recv())["type"] == "ready"
        async with raw(rt.url) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"


async def test_dns_rebinding_and_browser_origins_are_refused(echo_yaml):
    """A foreign Host is refused by both servers; the realtime server refuses browser Origins unless allowed."""
    from processors.web.server import web_server

    async with web_server(echo_yaml) as web, serve_local(allow_origins=["http://app.example"]) as rt:
        # the page of evil.example, its name rebound to 127.0.0.1: Host and Origin agree, so they must not pass
        rebound = [("Origin", f"http://evil.example:{web.port}")]
        assert status_of(await http_request(web.port, "/ws", rebound, host=f"evil.example:{web.port}")) == 403
        assert status_of(await http_request(web.port, "/", [], host=f"evil.example:{web.port}")) == 403
        for host in (f"localhost:{web.port}", f"127.0.0.1:{web.port}", f"[::1]:{web.port}"):
            assert status_of(await http_request(web.port, "/ws", [], host=host)) == 101
        assert status_of(await http_request(web.port, "/ws", [("Origin", f"http://localhost:{web.port}")],
                                            host=f"localhost:{web.port}")) == 101
        auth = [("Authorization", "Bearer x")]
        path = "/v1/realtime?model=m"
        assert status_of(await http_request(rt.port, path, auth, host=f"evil.example:{rt.port}")) == 403
        assert status_of(await http_request(rt.port, path, auth + [("Origin", "http://evil.example")])) == 403
        assert status_of(await http_request(rt.port, path, auth + [("Origin", f"http://127.0.0.1:{rt.port}")])) == 403
        assert status_of(await http_request(rt.port, path, auth + [("Origin", "http://app.example")])) == 101
        assert status_of(await http_request(rt.port, path, auth)) == 101  # SDKs send no Origin
    async with serve_local(allow_origins=["*"]) as rt:
        assert status_of(await http_request(rt.port, "/v1/realtime?model=m",
                                            [("Authorization", "Bearer x"), ("Origin", "http://any.example")])) == 101


def test_host_check_names():
    """HostCheck: loopback names and the configured host; IP literals only when bound to every interface."""
    from processors.guard import HostCheck

    local = HostCheck("127.0.0.1")
    assert all(local.allows(h) for h in ("localhost", "localhost:80", "app.localhost:8080", "127.0.0.1:1",
                                         "127.1.2.3", "[::1]:8080", "::1"))
    assert not any(local.allows(h) for h in ("evil.example", "evil.example:8080", "192.168.1.4", "", None,
                                             "localhost.evil.example"))
    assert HostCheck("voice.lan").allows("VOICE.lan:8080")
    everywhere = HostCheck("0.0.0.0")
    assert everywhere.allows("192.168.1.4:8080") and not everywhere.allows("evil.example")


# --- item 10: idle sessions ---------------------------------------------------------------------


async def test_serve_closes_a_session_that_sends_nothing(echo_yaml):
    """With idle_timeout_s, a silent page is closed with 1008 and a reason; a talking page stays."""
    from websockets.exceptions import ConnectionClosed

    from processors.web.server import web_server

    async with web_server(echo_yaml, idle_timeout_s=0.5, max_sessions=2) as web:
        async with ws_connect(web.ws_url) as silent, ws_connect(web.ws_url) as talking:
            assert json.loads(await silent.recv())["type"] == "ready"
            assert json.loads(await talking.recv())["type"] == "ready"
            t0 = time.perf_counter()
            with anyio.fail_after(10):
                for _ in range(40):
                    await talking.send(json.dumps({"type": "hello", "sample_rate": 16000}))
                    await anyio.sleep(0.05)
                    if silent.close_code is not None:
                        break
                with pytest.raises(ConnectionClosed):
                    while True:
                        await silent.recv()
            assert silent.close_code == 1008 and "idle" in silent.close_reason, silent.close_reason
            assert time.perf_counter() - t0 >= 0.4
            assert talking.close_code is None  # it kept sending
            with anyio.fail_after(5):
                while len(web.sessions) > 1:
                    await anyio.sleep(0.02)
            async with ws_connect(web.ws_url) as third:  # the freed slot is usable
                assert json.loads(await third.recv())["type"] == "ready"


def test_the_cli_has_the_new_flags():
    """--allow-origin (realtime-server, repeatable) and --idle-timeout (serve) parse."""
    from pipeline.cli import build_parser

    args = build_parser().parse_args(["realtime-server", "--allow-origin", "http://a", "--allow-origin", "*"])
    assert args.allow_origin == ["http://a", "*"]
    assert build_parser().parse_args(["serve", "--idle-timeout", "30"]).idle_timeout == 30.0
    assert build_parser().parse_args(["serve"]).idle_timeout == 120.0


# --- item 13: a missing API key -----------------------------------------------------------------


@pytest.mark.parametrize("argv, env", [
    (["run", "pipelines/voice_agent.yaml"], {}),
    (["serve", "--port", "0"], {"VOXPIPE_REALTIME_URL": "wss://api.openai.com/v1/realtime"}),
])
def test_a_missing_api_key_is_one_line_saying_what_to_set(argv, env):
    """No OPENAI_API_KEY: one line on stderr naming the variable, no traceback, exit 2, before anything runs."""
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | env
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], capture_output=True, text=True,
                          timeout=60, env=environ)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "OPENAI_API_KEY" in lines[0] and "Traceback" not in done.stderr, done.stderr
    assert "serving" not in done.stdout
