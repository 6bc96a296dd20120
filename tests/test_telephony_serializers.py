"""The provider serializers: exact messages both ways, and every kind of bad input named."""

from __future__ import annotations

import base64
import json

import pytest

from processors.telephony.plivo import PlivoProtocol
from processors.telephony.serializer import (
    StreamCleared,
    StreamConnected,
    StreamDtmf,
    StreamError,
    StreamMark,
    StreamMedia,
    StreamNotice,
    StreamStart,
    StreamStop,
)
from processors.telephony.telnyx import TelnyxProtocol
from processors.telephony.twilio import TwilioProtocol

ULAW_20MS = bytes(range(160))
B64 = base64.b64encode(ULAW_20MS).decode()

TWILIO_START = {"event": "start", "sequenceNumber": "1", "streamSid": "MZ11", "start": {
    "accountSid": "AC22", "streamSid": "MZ11", "callSid": "CA33", "tracks": ["inbound"],
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    "customParameters": {"from": "+15550001111", "to": "+15550002222", "agent": "sales"}}}
TELNYX_START = {"event": "start", "sequence_number": "1", "stream_id": "32DE", "start": {
    "user_id": "u-1", "call_control_id": "v3:abc", "call_session_id": "sess", "from": "+15550001111",
    "to": "+15550002222", "client_state": "aGk=", "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1}}}
PLIVO_START = {"event": "start", "sequenceNumber": 0, "start": {
    "callId": "c-1", "streamId": "s-1", "accountId": "MA1", "tracks": ["inbound"],
    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}}, "extra_headers": "from=15550001111,agent=sales"}


def started(cls, start):
    p = cls()
    p.receive(json.dumps(start))
    return p


def test_twilio_inbound_events():
    """Twilio's connected/start/media/dtmf/mark/stop become stream events with every fact kept."""
    p = TwilioProtocol()
    assert p.receive('{"event":"connected","protocol":"Call","version":"1.0.0"}') == StreamConnected()
    start = p.receive(json.dumps(TWILIO_START))
    assert start == StreamStart("MZ11", "CA33", "AC22", "+15550001111", "+15550002222",
                                {"from": "+15550001111", "to": "+15550002222", "agent": "sales"}, "pcmu", 8000, ("inbound",))
    media = {"event": "media", "sequenceNumber": "3", "streamSid": "MZ11",
             "media": {"track": "inbound", "chunk": "1", "timestamp": "5", "payload": B64}}
    assert p.receive(json.dumps(media)) == StreamMedia(ULAW_20MS, 5, 1)
    assert p.receive('{"event":"dtmf","streamSid":"MZ11","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"7"}}') \
        == StreamDtmf("7")
    assert p.receive('{"event":"mark","sequenceNumber":"4","streamSid":"MZ11","mark":{"name":"m1"}}') == StreamMark("m1")
    assert p.receive('{"event":"stop","sequenceNumber":"9","streamSid":"MZ11","stop":{"accountSid":"AC22","callSid":"CA33"}}') \
        == StreamStop("stop")
    assert p.stopped


def test_twilio_outbound_messages_are_exact():
    """media, mark and clear carry the streamSid, in Twilio's shape."""
    p = started(TwilioProtocol, TWILIO_START)
    assert p.media(b"\xff\x7f") == '{"event":"media","streamSid":"MZ11","media":{"payload":"/38="}}'
    assert p.mark("7") == '{"event":"mark","streamSid":"MZ11","mark":{"name":"7"}}'
    assert p.clear() == '{"event":"clear","streamSid":"MZ11"}'


def test_telnyx_both_ways():
    """Telnyx's start names the call control id and parties; outbound messages have no stream id."""
    p = TelnyxProtocol()
    assert p.receive('{"event":"connected","version":"1.0.0"}') == StreamConnected()
    start = p.receive(json.dumps(TELNYX_START))
    assert start == StreamStart("32DE", "v3:abc", "u-1", "+15550001111", "+15550002222", {"client_state": "aGk="})
    media = {"event": "media", "sequence_number": "4", "stream_id": "32DE",
             "media": {"track": "inbound", "chunk": "2", "timestamp": "5", "payload": B64}}
    assert p.receive(json.dumps(media)) == StreamMedia(ULAW_20MS, 5, 2)
    assert p.receive('{"event":"mark","stream_id":"32DE","mark":{"name":"a"}}') == StreamMark("a")
    assert p.receive('{"event":"dtmf","stream_id":"32DE","dtmf":{"digit":"#"}}') == StreamDtmf("#")
    assert p.receive('{"event":"error","stream_id":"32DE","payload":{"code":100002,"title":"Unknown error",'
                     '"detail":"x"}}') == StreamNotice("Telnyx error 100002: Unknown error x")
    assert p.media(b"\x00") == '{"event":"media","media":{"payload":"AA=="}}'
    assert p.mark("a") == '{"event":"mark","mark":{"name":"a"}}'
    assert p.clear() == '{"event":"clear"}'
    assert p.receive('{"event":"stop","stream_id":"32DE","stop":{}}') == StreamStop()


def test_plivo_both_ways():
    """Plivo's playAudio/checkpoint/clearAudio and playedStream/clearedAudio; extraHeaders become parameters."""
    p = PlivoProtocol()
    start = p.receive(json.dumps(PLIVO_START))
    assert start == StreamStart("s-1", "c-1", "MA1", "15550001111", None, {"from": "15550001111", "agent": "sales"})
    media = {"event": "media", "sequenceNumber": 2, "streamId": "s-1",
             "media": {"track": "inbound", "timestamp": "1700000000000", "chunk": 1, "payload": B64}}
    assert p.receive(json.dumps(media)) == StreamMedia(ULAW_20MS, 1700000000000, 1)
    assert p.receive('{"event":"playedStream","streamId":"s-1","name":"cp1"}') == StreamMark("cp1")
    assert p.receive('{"event":"played","streamId":"s-1","name":"cp2"}') == StreamMark("cp2")
    assert p.receive('{"event":"clearedAudio","streamId":"s-1"}') == StreamCleared()
    assert p.receive('{"event":"dtmf","streamId":"s-1","dtmf":{"digit":"5","track":"inbound","duration":"100"}}') \
        == StreamDtmf("5", 100)
    assert p.media(b"\xff") == ('{"event":"playAudio","media":{"contentType":"audio/x-mulaw","sampleRate":8000,'
                                '"payload":"/w=="}}')
    assert p.mark("cp1") == '{"event":"checkpoint","streamId":"s-1","name":"cp1"}'
    assert p.clear() == '{"event":"clearAudio","streamId":"s-1"}'


def test_plivo_l16_needs_whole_samples():
    """A 16-bit stream refuses an odd byte count; a JSON extra_headers object is read too."""
    start = json.loads(json.dumps(PLIVO_START))
    start["start"]["mediaFormat"] = {"encoding": "audio/x-l16", "sampleRate": 16000}
    start["extra_headers"] = '{"agent": "sales"}'
    p = PlivoProtocol()
    assert p.receive(json.dumps(start)).custom == {"agent": "sales"}
    odd = base64.b64encode(b"\x01\x02\x03").decode()
    with pytest.raises(StreamError) as err:
        p.receive(json.dumps({"event": "media", "streamId": "s-1", "media": {"track": "inbound", "payload": odd}}))
    assert err.value.code == "partial_sample"
    assert p.media(b"\x00\x00").startswith('{"event":"playAudio","media":{"contentType":"audio/x-l16","sampleRate":16000')


MEDIA = {"event": "media", "streamSid": "MZ11", "media": {"track": "inbound", "payload": B64}}


@pytest.mark.parametrize("message, code", [
    ("{not json", "bad_json"),
    ('["event"]', "bad_json"),
    ('{"event": 3}', "bad_json"),
    ('{"event":"hello"}', "unknown_event"),
    (json.dumps({**MEDIA, "streamSid": "MZ99"}), "wrong_stream"),
    (json.dumps({**MEDIA, "media": {"payload": "%%%"}}), "bad_base64"),
    (json.dumps({**MEDIA, "media": {"payload": 5}}), "bad_payload"),
    (json.dumps({**MEDIA, "media": {"track": "outbound", "payload": B64}}), "wrong_track"),
    ('{"event":"media","streamSid":"MZ11"}', "bad_media"),
    ('{"event":"dtmf","streamSid":"MZ11","dtmf":{"digit":"x"}}', "bad_dtmf"),
    ('{"event":"mark","streamSid":"MZ11","mark":{}}', "bad_mark"),
    (json.dumps(TWILIO_START), "second_start"),
    (b"\x00\x01", "binary_message"),
    ("x" * 70000, "message_too_large"),
])
def test_bad_input_is_named(message, code):
    """Each malformed message raises StreamError with the rule it broke; the protocol stays usable."""
    p = started(TwilioProtocol, TWILIO_START)
    with pytest.raises(StreamError) as err:
        p.receive(message)
    assert err.value.code == code and err.value.message
    assert p.receive(json.dumps(MEDIA)) == StreamMedia(ULAW_20MS)


def test_media_before_start_is_refused():
    """Audio of a stream whose format is unknown is refused, for every provider."""
    for cls in (TwilioProtocol, TelnyxProtocol, PlivoProtocol):
        with pytest.raises(StreamError) as err:
            cls().receive(json.dumps({"event": "media", "media": {"track": "inbound", "payload": B64}}))
        assert err.value.code == "media_before_start"


def test_unsupported_formats_say_what_to_set():
    """A start in a format the transport does not take is refused with the setting to change."""
    bad = json.loads(json.dumps(TELNYX_START))
    bad["start"]["media_format"]["encoding"] = "OPUS"
    with pytest.raises(StreamError, match="PCMU"):
        TelnyxProtocol().receive(json.dumps(bad))
    bad = json.loads(json.dumps(TWILIO_START))
    bad["start"]["mediaFormat"]["sampleRate"] = 16000
    with pytest.raises(StreamError) as err:
        TwilioProtocol().receive(json.dumps(bad))
    assert err.value.code == "bad_start"


@pytest.mark.parametrize("stream_id", ["MZ11", 'MZ"odd\\id', "MZ\u00e9"])
@pytest.mark.parametrize("name", ["7", "123456", "a b", "\u00b2", 'q"'])
def test_outbound_templates_write_what_the_json_encoder_would(stream_id, name):
    """Twilio's and Telnyx's media/mark are filled-in templates: byte for byte the encoder's output."""
    tw = TwilioProtocol()
    tw.receive(json.dumps({"event": "start", "streamSid": stream_id, "start": {"streamSid": stream_id, "callSid": "CA1"}}))
    assert tw.mark(name) == tw.encode({"event": "mark", "streamSid": stream_id, "mark": {"name": name}})
    assert tw.media(bytes(range(160))) == tw.encode({"event": "media", "streamSid": stream_id, "media": {
        "payload": base64.b64encode(bytes(range(160))).decode()}})
    tx = TelnyxProtocol()
    assert tx.mark(name) == tx.encode({"event": "mark", "mark": {"name": name}})
    assert tx.media(b"\x01\x02") == tx.encode({"event": "media", "media": {"payload": "AQI="}})
