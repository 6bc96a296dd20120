"""The phone transports' formats: G.711 passes through without resampling, and the graph check says so."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.dsp.g711 import ulaw_decode
from pipeline.errors import PipelineError
from pipeline.loader import load, load_text
from pipelines import shipped
from processors.realtime.wire import AudioCodec
from processors.telephony.transport import decode_audio, encode_audio


def test_phone_agent_has_no_resampler():
    """The shipped phone agent is G.711 end to end: the graph check inserts nothing."""
    graph = load(shipped("phone_agent.yaml"))
    kinds = {type(n.processor).__name__ for n in graph.nodes.values()}
    assert kinds == {"PhoneInput", "OpenAIRealtime", "ToolRouter", "PhoneOutput"}


PCM16_AGENT = """
voxpipe: 1
name: phone-pcm16
{auto}
processors:
  caller: {{type: transport.phone.input}}
  model: {{type: realtime.openai, params: {{url: local}}}}
  ear: {{type: transport.phone.output}}
links:
  - caller -> model -> ear
"""


def test_a_24khz_model_gets_resamplers_or_a_fix():
    """A pcm16 model needs 8 <-> 24 kHz: inserted with auto_resample, else an error naming the fix."""
    graph = load_text(PCM16_AGENT.format(auto="auto_resample: true"), file="pcm16.yaml")
    assert sum(type(n.processor).__name__ == "ResampleProcessor" for n in graph.nodes.values()) == 2
    with pytest.raises(PipelineError, match="resample"):
        load_text(PCM16_AGENT.format(auto=""), file="pcm16.yaml")


def test_model_mulaw_reaches_the_caller_unchanged():
    """With decoding at the edge (sample_type: int16), mu-law -> int16 -> mu-law is the same bytes (0x7F aside)."""
    codes = np.random.default_rng(1).integers(0, 256, 8000, dtype=np.uint8)
    codes[codes == 0x7F] = 0xFF  # -0 and +0 decode alike; the encoder writes +0
    import base64

    samples = AudioCodec("g711_ulaw").decode(base64.b64encode(codes.tobytes()).decode())
    assert encode_audio(samples, "pcmu") == codes.tobytes()
    assert np.array_equal(decode_audio(codes.tobytes(), "pcmu"), ulaw_decode(codes))


def test_l16_and_alaw_round_trip():
    """Plivo's 16-bit linear and Telnyx's PCMA decode and encode losslessly."""
    x = np.arange(-32768, 32768, 97, dtype=np.int16)
    assert np.array_equal(decode_audio(encode_audio(x, "l16"), "l16"), x)
    a = np.arange(256, dtype=np.uint8).tobytes()
    assert encode_audio(decode_audio(a, "pcma"), "pcma") == a


def test_frame_ms_must_fit_the_backlog():
    """A frame larger than the backlog could never fill: refused with the fix."""
    from processors.telephony.transport import PhoneInput

    assert PhoneInput.Params(frame_ms=60).frame_ms == 60
    with pytest.raises(ValueError, match="lower frame_ms or raise max_backlog_ms"):
        PhoneInput.Params(frame_ms=200, max_backlog_ms=100)
