"""The Inbox: a stream's frames reach its call from the socket's callback, in order, whatever they hold."""

from __future__ import annotations

import json

import anyio
import pytest
from websockets.frames import Frame, Opcode

from processors.telephony.call import PhoneCall
from processors.telephony.inbox import MAX_EARLY_MESSAGES, install
from processors.telephony.serializer import MAX_MESSAGE_CHARS
from processors.telephony.twilio import TwilioProtocol

pytestmark = pytest.mark.anyio

START = json.dumps({"event": "start", "streamSid": "MZ1", "start": {
    "streamSid": "MZ1", "callSid": "CA1", "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}}})


def media(byte: int) -> str:
    return json.dumps({"event": "media", "streamSid": "MZ1", "media": {"track": "inbound", "payload":
                       __import__("base64").b64encode(bytes([byte]) * 160).decode()}})


def dtmf(digit: str) -> str:
    return json.dumps({"event": "dtmf", "streamSid": "MZ1", "dtmf": {"digit": digit}})


class Connection:
    """What install() needs of a websockets connection: its process_event and a protocol."""

    def __init__(self) -> None:
        self.protocol = object()
        self.passed: list[object] = []  # what went on to websockets' own process_event

    def process_event(self, event: object) -> None:
        self.passed.append(event)


def text(message: str, fin: bool = True) -> Frame:
    return Frame(Opcode.TEXT, message.encode(), fin=fin)


def feed(conn: Connection, *frames: Frame) -> None:
    for frame in frames:
        conn.process_event(frame)  # what data_received calls, once per parsed frame


async def test_messages_before_the_call_are_handed_over_in_order_then_delivered_at_once():
    conn = Connection()
    inbox = install(conn)
    assert inbox is not None
    feed(conn, text(START), text(media(1)))  # the provider is quick: no call yet
    call = PhoneCall(TwilioProtocol(), None)  # type: ignore[arg-type]
    inbox.attach(call)
    assert inbox.settled.is_set() and not inbox.stopped.is_set()
    feed(conn, text(media(2)), text(dtmf("5")), text(media(3)))
    got = [await call.next_inbound() for _ in range(4)]
    assert [(k, p[0] if k == "audio" else p.digit) for k, p in got] == [("audio", 1), ("audio", 2), ("dtmf", "5"),
                                                                        ("audio", 3)]
    assert conn.passed == []  # no data frame reached websockets' assembler


async def test_control_frames_and_other_events_go_to_websockets():
    conn = Connection()
    inbox = install(conn)
    ping, close = Frame(Opcode.PING, b"x"), Frame(Opcode.CLOSE, b"\x03\xe8")
    feed(conn, ping, close)
    conn.process_event("a handshake request")
    assert conn.passed == [ping, close, "a handshake request"]
    assert inbox.call is None and not inbox.settled.is_set()


async def test_a_fragmented_message_is_put_together():
    conn = Connection()
    inbox = install(conn)
    call = PhoneCall(TwilioProtocol(), None)  # type: ignore[arg-type]
    inbox.attach(call)
    message = media(7)
    feed(conn, text(START), text(message[:50], fin=False), Frame(Opcode.CONT, message[50:100].encode(), fin=False),
         Frame(Opcode.CONT, message[100:].encode()))
    kind, payload = await call.next_inbound()
    assert kind == "audio" and payload == bytes([7]) * 160 and not call.bad_input


async def test_an_oversized_fragmented_message_is_refused_whole():
    conn = Connection()
    inbox = install(conn)
    call = PhoneCall(TwilioProtocol(), None)  # type: ignore[arg-type]
    inbox.attach(call)
    part = b"x" * MAX_MESSAGE_CHARS
    feed(conn, text(START), Frame(Opcode.TEXT, part, fin=False), *[Frame(Opcode.CONT, part, fin=False)] * 5,
         Frame(Opcode.CONT, b"}"), text(media(1)))
    assert dict(call.bad_input) == {"message_too_large": 1}
    assert (await call.next_inbound())[0] == "audio"  # the call goes on


async def test_bad_utf8_binary_and_a_failing_call_are_counted_and_the_call_goes_on(caplog):
    conn = Connection()
    inbox = install(conn)
    call = PhoneCall(TwilioProtocol(), None)  # type: ignore[arg-type]
    inbox.attach(call)
    feed(conn, text(START), Frame(Opcode.TEXT, b'{"event": "\xff"}'), Frame(Opcode.BINARY, b"\x00\x01"))
    receive = call.receive
    call.receive = lambda message: 1 / 0  # type: ignore[method-assign]
    feed(conn, text(media(1)), text(media(2)))  # a bug: logged once, counted, never raised into the transport
    call.receive = receive  # type: ignore[method-assign]
    feed(conn, text(media(3)))
    assert dict(call.bad_input) == {"bad_utf8": 1, "binary_message": 1, "internal": 2}
    assert caplog.text.count("could not be handled") == 1
    assert (await call.next_inbound())[1][0] == 3


async def test_stop_ends_the_delivery():
    conn = Connection()
    inbox = install(conn)
    call = PhoneCall(TwilioProtocol(), None)  # type: ignore[arg-type]
    inbox.attach(call)
    feed(conn, text(START), text(json.dumps({"event": "stop", "streamSid": "MZ1"})), text(media(1)))
    assert inbox.stopped.is_set() and call.media_in == 0  # what follows stop is not read


async def test_early_messages_are_bounded():
    conn = Connection()
    inbox = install(conn)
    feed(conn, text(START), *[text(media(1))] * (MAX_EARLY_MESSAGES + 50))
    call = PhoneCall(TwilioProtocol(), None, max_backlog_ms=10_000)  # type: ignore[arg-type]
    inbox.attach(call)
    assert call.media_in == MAX_EARLY_MESSAGES - 1  # the start was the first of them


async def test_the_input_gets_frame_bytes_at_a_time_and_keys_in_order():
    """With frame_bytes set the input wakes once per frame; a key press flushes the audio before it."""
    call = PhoneCall(TwilioProtocol(), None)  # type: ignore[arg-type]
    call.receive(START)
    call.frame_bytes = 480  # 60 ms
    woken = []

    async def reader() -> None:
        while (entry := await call.next_inbound()) is not None:
            woken.append((entry[0], len(entry[1]) if entry[0] == "audio" else entry[1].digit))

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader)
        for message in [media(1), media(2)]:
            call.receive(message)
            await anyio.sleep(0.01)
        assert woken == []  # 40 ms queued: not a frame yet
        call.receive(media(3))
        await anyio.sleep(0.01)
        for message in [media(4), dtmf("9"), media(5)]:
            call.receive(message)
        await anyio.sleep(0.01)
        call.end("stop")
    assert woken == [("audio", 480), ("audio", 160), ("dtmf", "9"), ("audio", 160)]

