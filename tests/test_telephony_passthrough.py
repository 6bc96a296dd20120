"""G.711 pass-through: the caller's mu-law bytes reach the model, and the model's reach the caller, untouched.

A relay on 127.0.0.1 between ``voxpipe serve pipelines/phone_agent.yaml`` and the offline
local realtime server records the audio of every ``input_audio_buffer.append`` and every
audio delta, as bytes, so the test compares bytes at both ends of each direction. Real
speech has mu-law code 0x7F (the "negative zero" of -1..-2); a decode and re-encode turns it
into 0xFF, so byte equality proves nothing decoded the audio on the way.
"""

from __future__ import annotations

import base64
import json

import anyio
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from phone_network import TOKENS, ask_and_listen
from pipeline.errors import PipelineError
from pipeline.frames import AudioFormat, AudioFrame
from pipeline.loader import load_text
from pipeline.processor import Processor
from pipeline.testing import run_frames
from processors.audio.g711 import G711Processor
from pipelines import shipped
from processors.realtime.server import serve_local
from processors.web.server import web_server

pytestmark = pytest.mark.anyio


class Relay:
    """Forwards each model connection to the local server; keeps the appended and the delta bytes."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.appended = bytearray()
        self.deltas = bytearray()
        self.events: list[str] = []

    async def handle(self, ws) -> None:
        headers = {k: v for k, v in ws.request.headers.raw_items() if k.lower() == "authorization"}
        async with connect(self.upstream + ws.request.path, additional_headers=headers, max_size=None) as up:
            async def down() -> None:
                async for message in up:
                    event = json.loads(message)
                    self.events.append(event["type"])
                    if event["type"] in ("response.output_audio.delta", "response.audio.delta"):
                        self.deltas += base64.b64decode(event["delta"])
                    await ws.send(message)

            async with anyio.create_task_group() as tg:
                tg.start_soon(down)
                async for message in ws:
                    event = json.loads(message)
                    if event["type"] == "input_audio_buffer.append":
                        self.appended += base64.b64decode(event["audio"])
                    await up.send(message)
                tg.cancel_scope.cancel()


async def test_mulaw_bytes_pass_untouched_both_ways(monkeypatch):
    """Caller -> model appends and model deltas -> caller media are the same bytes, 0x7F codes included."""
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKENS["twilio"])
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    async with serve_local() as local:
        relay = Relay(f"ws://127.0.0.1:{local.port}")
        async with serve(relay.handle, "127.0.0.1", 0, max_size=None) as proxy:
            port = proxy.sockets[0].getsockname()[1]
            monkeypatch.setenv("VOXPIPE_REALTIME_URL", f"ws://127.0.0.1:{port}/v1/realtime")
            async with web_server(shipped("phone_agent.yaml")) as server:
                call = await ask_and_listen(server.url, "what is the weather in paris", seed=5)
                with anyio.fail_after(10):
                    await server.telephony.wait_idle()
    sent, appended = bytes(call.sent_bytes), bytes(relay.appended)
    assert len(appended) > 8000 and 0x7F in appended  # seconds of audio, with the code a decode would change
    n = min(len(sent), len(appended))
    assert n > len(sent) - 8000  # all but the last frames the caller sent were appended before it hung up
    assert appended[:n] == sent[:n]
    heard, spoken = bytes(call.heard.raw), bytes(relay.deltas)
    assert len(heard) > 8000 and call.heard.clears == []
    assert heard == spoken[:len(heard)] and len(spoken) - len(heard) < 8000


PASSTHROUGH_VAD = """
voxpipe: 1
name: phone-vad
processors:
  caller: {type: transport.phone.input}
  vad: {type: vad.energy}
  model: {type: realtime.openai, params: {url: local, input_audio_format: g711_ulaw, output_audio_format: g711_ulaw,
                                          turn_detection: {type: none}}}
  tools: {type: tools.router, params: {modules: [processors.telephony.tools]}}
  ear: {type: transport.phone.output}
  rec: {type: playback.null}
links:
  - caller -> vad -> model -> tools -> ear
  - tools -> rec
"""


def test_the_graph_decodes_only_where_pcm_is_needed():
    """A VAD and a sink get a decoder in front; the model, the router and the phone output take codes as they are."""
    graph = load_text(PASSTHROUGH_VAD, file="vad.yaml")
    inserted = {n: node.processor.params.to for n, node in graph.nodes.items() if node.inserted}
    assert inserted == {"g711_caller_vad": "int16", "g711_tools_rec": "int16"}
    f = {n: fmt.dtype for n, fmt in graph.formats.items() if fmt is not None}
    assert f["caller"] == "ulaw" and f["vad"] == "int16" and f["model"] == "ulaw" and f["tools"] == "ulaw"


def test_a_model_that_wants_codes_gets_an_encoder_or_the_fix():
    """PCM into a processor that asks for codes: an encoder with auto_resample, else an error naming audio.g711."""
    text = """
voxpipe: 1
name: enc
{auto}
processors:
  tone: {{type: capture.tone, params: {{sample_rate: 8000, duration_s: 0.1}}}}
  enc: {{type: audio.g711, params: {{to: ulaw}}}}
  want: {{type: "test_telephony_passthrough:WantsUlaw"}}
links:
  - tone -> enc -> want
"""
    graph = load_text(text.format(auto=""), file="enc.yaml")
    assert graph.formats["enc"].dtype == "ulaw"
    bad = text.replace("tone -> enc -> want", "tone -> want")
    bad = bad.replace("  enc: {{type: audio.g711, params: {{to: ulaw}}}}\n", "")
    with pytest.raises(PipelineError, match=r"audio\.g711, params: \{to: ulaw\}"):
        load_text(bad.format(auto=""), file="enc.yaml")
    graph = load_text(bad.format(auto="auto_resample: true"), file="enc.yaml")
    assert [n for n, node in graph.nodes.items() if node.inserted] == ["g711_tone_want"]



class WantsUlaw(Processor):
    """A sink that asks for mu-law codes (as a G.711 device would)."""

    input_format = AudioFormat(8000, 1, "ulaw")
    accepts_g711 = True


async def test_g711_processor_round_trips_every_code():
    """audio.g711 decodes all 256 mu-law codes to int16 and encodes them back (the second zero aside)."""
    codes = np.arange(256, dtype=np.uint8)
    out = await run_frames(G711Processor({"to": "int16"}), [AudioFrame(codes, 8000, codec="ulaw")])
    (pcm,) = out.of_type(AudioFrame)
    assert pcm.codec is None and pcm.samples.dtype == np.int16
    back = await run_frames(G711Processor({"to": "ulaw"}), [pcm])
    (enc,) = back.of_type(AudioFrame)
    expect = codes.copy()
    expect[0x7F] = 0xFF
    assert enc.codec == "ulaw" and np.array_equal(enc.samples, expect)
