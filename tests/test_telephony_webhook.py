"""Webhook markup and the three providers' request signatures, against published or hand-built vectors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import xml.etree.ElementTree as ET

import pytest

from processors.telephony.webhook import (
    StreamTokens,
    plivo_signature,
    plivo_xml,
    telnyx_texml,
    twiml,
    verify_plivo,
    verify_telnyx,
    verify_twilio,
)

# Twilio's documented example (auth token 12345).
TW_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TW_PARAMS = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675309", "Digits": "1234",
             "From": "+14158675309", "To": "+18005551212"}


def test_twilio_signature_matches_the_documented_example():
    """Twilio's published vector verifies; any change to URL, params, token or signature fails."""
    assert verify_twilio("12345", TW_URL, TW_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not verify_twilio("12345", TW_URL + "&x=1", TW_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not verify_twilio("12345", TW_URL, {**TW_PARAMS, "Digits": "9"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not verify_twilio("54321", TW_URL, TW_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not verify_twilio("12345", TW_URL, TW_PARAMS, None)
    assert not verify_twilio("", TW_URL, TW_PARAMS, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_plivo_v3_base_string():
    """Plivo V3 signs url?sorted-query.sorted-params.nonce with HMAC-SHA256; several signatures may be listed."""
    url = "https://example.com/answer?b=2&a=1"
    params = {"To": "+1555", "CallUUID": "c-1", "From": "+1444"}
    base = "https://example.com/answer?a=1&b=2.CallUUIDc-1From+1444To+1555.n0nce"
    expected = base64.b64encode(hmac.new(b"tok", base.encode(), hashlib.sha256).digest()).decode()
    assert plivo_signature("tok", url, "n0nce", params) == expected
    assert verify_plivo("tok", url, params, "n0nce", f"other=,{expected}")
    assert not verify_plivo("tok", url, params, "n0nce2", expected)
    # no query: "url?" then the params; a GET without params: the bare url
    base = "https://example.com/answer?CallUUIDc-1.n"
    assert plivo_signature("tok", "https://example.com/answer", "n", {"CallUUID": "c-1"}) == \
        base64.b64encode(hmac.new(b"tok", base.encode(), hashlib.sha256).digest()).decode()
    base = "wss://example.com/s/t.n"
    assert plivo_signature("tok", "wss://example.com/s/t", "n") == \
        base64.b64encode(hmac.new(b"tok", base.encode(), hashlib.sha256).digest()).decode()


def test_telnyx_ed25519():
    """Telnyx's Ed25519 signature of timestamp|body verifies with the public key, and only while fresh."""
    ed = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    from cryptography.hazmat.primitives import serialization

    key = ed.Ed25519PrivateKey.generate()
    public = base64.b64encode(key.public_key().public_bytes(serialization.Encoding.Raw,
                                                            serialization.PublicFormat.Raw)).decode()
    body = b"CallSid=v3%3Aabc&From=%2B1555"
    sig = base64.b64encode(key.sign(b"1700000000|" + body)).decode()
    assert verify_telnyx(public, body, "1700000000", sig, now=1700000010)
    assert not verify_telnyx(public, body + b"x", "1700000000", sig, now=1700000010)
    assert not verify_telnyx(public, body, "1700000000", sig, now=1700000400)  # replay after 5 min
    assert not verify_telnyx(public, body, "1700000001", sig, now=1700000010)
    assert not verify_telnyx(public, body, None, sig)
    assert not verify_telnyx(public, body, "1700000000", "%%%", now=1700000010)


def test_markup_is_well_formed_and_escaped():
    """Each provider's answer parses as XML and carries the stream URL and the parameters."""
    params = {"from": "+1555", "note": 'a "quoted" <tag> & more'}
    tw = ET.fromstring(twiml("wss://h/telephony/twilio/stream/t", params))
    stream = tw.find("./Connect/Stream")
    assert stream.get("url") == "wss://h/telephony/twilio/stream/t"
    assert {p.get("name"): p.get("value") for p in stream.findall("Parameter")} == params
    tx = ET.fromstring(telnyx_texml("wss://h/s", params)).find("./Connect/Stream")
    assert tx.get("bidirectionalMode") == "rtp" and tx.get("bidirectionalCodec") == "PCMU"
    pv = ET.fromstring(plivo_xml("wss://h/s?a=1&b=2", {"from": "15550001", "x": "a b"})).find("./Stream")
    assert pv.text == "wss://h/s?a=1&b=2" and pv.get("bidirectional") == "true"
    assert pv.get("extraHeaders") == "from=15550001"  # Plivo allows letters and digits only
    assert pv.get("contentType") == "audio/x-mulaw;rate=8000"


def test_stream_tokens_are_signed_single_use_and_expire():
    """A token opens one stream of its provider before it expires; its facts come back once."""
    tokens = StreamTokens(b"k" * 32, ttl_s=60)
    t = tokens.issue("twilio", {"from": "+1555"}, now=1000)
    assert tokens.redeem("telnyx", t, now=1001) is None
    assert tokens.redeem("twilio", t, now=1001) == {"from": "+1555"}
    assert tokens.redeem("twilio", t, now=1002) is None  # used
    late = tokens.issue("twilio", {}, now=1000)
    assert tokens.redeem("twilio", late, now=1061) is None  # expired
    forged = t[:-2] + ("AA" if not t.endswith("AA") else "BB")
    assert tokens.redeem("twilio", forged, now=1001) is None
    assert tokens.redeem("twilio", "garbage", now=1001) is None
    # another worker with the same key accepts it, without the facts
    other = StreamTokens(b"k" * 32)
    t2 = tokens.issue("plivo", {"a": "1"}, now=1000)
    assert other.redeem("plivo", t2, now=1001) == {}
