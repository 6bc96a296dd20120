"""The Realtime wire facts shared by the client and the local server (processors/realtime/wire.py)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from pipeline.dsp.g711 import alaw_encode, ulaw_encode
from processors.realtime import wire
from processors.realtime.wire import AudioCodec, SampleCarry


def tone(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-20000, 20000, n).astype(np.int16)


def test_public_names():
    """The module exports exactly its public names, and each exists."""
    import inspect

    assert all(hasattr(wire, name) for name in wire.__all__)
    own = {n for n, v in vars(wire).items() if not n.startswith("_") and not inspect.ismodule(v)
           and getattr(v, "__module__", wire.__name__) == wire.__name__}
    assert own | {"AudioFormatName"} == set(wire.__all__)


def test_format_facts():
    """pcm16 is 24 kHz, 48 bytes a ms; G.711 is 8 kHz, 8 bytes a ms; names <-> GA objects round-trip."""
    assert [wire.SAMPLE_RATE[f] for f in wire.FORMATS] == [24000, 8000, 8000]
    assert [wire.bytes_per_ms(f) for f in wire.FORMATS] == [48, 8, 8]
    assert wire.ga_format("pcm16") == {"type": "audio/pcm", "rate": 24000}
    assert wire.ga_format("g711_ulaw") == {"type": "audio/pcmu"}
    assert wire.ga_format("g711_alaw") == {"type": "audio/pcma"}
    assert [wire.format_name(wire.ga_format(f)) for f in wire.FORMATS] == list(wire.FORMATS)
    assert wire.ga_format("pcm16") is not wire.ga_format("pcm16")  # callers may mutate theirs
    assert wire.duration_ms("pcm16", 4800) == 100.0 and wire.duration_ms("g711_alaw", 800) == 100.0


@pytest.mark.parametrize("chunk", [1, 17, 509])
def test_pcm16_chunked_decode_equals_one_shot(chunk):
    """Deltas cut anywhere (odd bytes too) decode to the same samples as one delta."""
    x = tone(1001)
    data = x.astype("<i2").tobytes()
    codec = AudioCodec("pcm16")
    parts = [codec.decode(base64.b64encode(data[i:i + chunk]).decode()) for i in range(0, len(data), chunk)]
    np.testing.assert_array_equal(np.concatenate(parts), x)


def test_carry_holds_the_odd_byte_until_reset():
    """A trailing odd byte waits for its pair; reset forgets it; an empty chunk gives nothing."""
    carry = SampleCarry("pcm16")
    assert carry.whole(b"\x01\x02\x03") == b"\x01\x02"
    assert carry.whole(b"") == b""
    assert carry.whole(b"\x04") == b"\x03\x04"
    assert carry.whole(b"\x05") == b""
    carry.reset()
    assert carry.whole(b"\x06\x07") == b"\x06\x07"
    assert SampleCarry("g711_ulaw").whole(b"\x01\x02\x03") == b"\x01\x02\x03"


@pytest.mark.parametrize("fmt,encoder", [("g711_ulaw", ulaw_encode), ("g711_alaw", alaw_encode)])
def test_g711_codec_matches_the_dsp_core(fmt, encoder):
    """G.711 text is the DSP core's bytes, and decoding re-encodes to the same bytes."""
    x = tone(160, seed=3)
    codec = AudioCodec(fmt)
    text = codec.encode(x)
    assert base64.b64decode(text) == encoder(x).tobytes()
    assert codec.rate == 8000 and codec.bytes_per_sample == 1
    assert AudioCodec(fmt).encode(codec.decode(text)) == text


def test_codec_errors_name_the_fix():
    """An unknown format lists the known ones; bad base64 raises ValueError."""
    with pytest.raises(ValueError, match="use pcm16, g711_ulaw or g711_alaw"):
        AudioCodec("opus")
    with pytest.raises(ValueError, match="not valid base64"):
        AudioCodec("pcm16").decode("@@@")


def test_name_maps_invert():
    """Every GA name the server renames comes back to itself through the client's map."""
    assert {wire.BETA_TO_GA[beta]: beta for beta in wire.GA_TO_BETA.values()} == wire.GA_TO_BETA
    assert wire.BETA_TO_GA["transcription_session.updated"] == "session.updated"
    assert "conversation.item.done" in wire.NOT_IN_BETA and "conversation.item.done" not in wire.GA_TO_BETA


def test_server_buffer_uses_the_same_carry():
    """The server's input buffer holds an odd pcm16 byte across appends, as the client codec does."""
    from processors.realtime.server.input_buffer import InputAudioBuffer

    x = tone(11)
    data = x.astype("<i2").tobytes()
    buf = InputAudioBuffer("pcm16")
    got = [buf.append(data[:5]), buf.append(data[5:12]), buf.append(data[12:])]
    np.testing.assert_array_equal(np.concatenate(got), x)
    assert buf.end == 11 and buf.commit() == data


def test_wire_samples_pass_codes_of_the_session_untouched():
    """Codes of the session's own format come back as the same array; others are converted once."""
    import numpy as np

    from pipeline.dsp.g711 import alaw_encode, ulaw_decode, ulaw_encode

    codes = np.arange(256, dtype=np.uint8)
    assert wire.wire_samples("g711_ulaw", codes, "ulaw") is codes
    pcm = ulaw_decode(codes)
    assert np.array_equal(wire.wire_samples("pcm16", codes, "ulaw"), pcm)
    assert np.array_equal(wire.wire_samples("g711_alaw", codes, "ulaw"), alaw_encode(pcm))
    assert np.array_equal(wire.wire_samples("g711_ulaw", pcm[:, None]), ulaw_encode(pcm))
    codec = wire.AudioCodec("g711_ulaw")
    assert np.array_equal(codec.decode_wire(codec.encode_wire(codes)), codes)  # 0x7F kept: no decode on the way
    with pytest.raises(ValueError, match="mono"):
        wire.wire_samples("g711_ulaw", np.zeros((4, 2), np.int16))
