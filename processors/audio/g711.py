"""audio.g711: G.711 codes to linear PCM and back, at the edge of the part of a graph that needs PCM.

Phone audio (Twilio, Telnyx, Plivo media streams) and a Realtime model speaking
``g711_ulaw`` share one representation, G.711 mu-law codes, so the caller's bytes can travel
to the model and back untouched. The graph check puts this processor, decoding to int16,
in front of any processor that has not said it takes codes (``Processor.accepts_g711``),
and, with ``auto_resample``, an encoder in front of one that asks for codes. The work is
one table lookup per frame (:mod:`pipeline.dsp.g711`, bit-exact with ITU-T G.191).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.dsp.formats import to_int16
from pipeline.dsp.g711 import DECODERS as _DECODE
from pipeline.dsp.g711 import ENCODERS as _ENCODE
from pipeline.frames import AudioFormat, AudioFrame, Direction, Frame
from pipeline.processor import Processor

__all__ = ["G711Processor", "decode_codes", "encode_codes"]

_DOWN = Direction.DOWNSTREAM


def decode_codes(frame: AudioFrame) -> np.ndarray:
    """The int16 samples of an audio frame: G.711 codes decoded, float32 converted, int16 as is."""
    x = frame.samples
    if frame.codec is not None:
        return _DECODE[frame.codec](x)
    return to_int16(x)


def encode_codes(frame: AudioFrame, codec: str) -> np.ndarray:
    """The ``codec`` ("ulaw", "alaw") codes of an audio frame (mono); codes of that codec as is."""
    if frame.codec == codec:
        return frame.samples
    x = decode_codes(frame)
    return _ENCODE[codec](x if x.ndim == 1 else x[:, 0])


class G711Processor(Processor):
    """Decodes G.711 audio frames to int16 (``to: int16``) or encodes audio to mu-law or A-law codes."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        to: Literal["int16", "ulaw", "alaw"] = Field("int16", description="int16: decode G.711 codes; "
                                                                          "ulaw / alaw: encode to those codes")

    accepts_g711 = True
    inline = True  # one table lookup, never awaits anything but push

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        to = self.params.to
        self._codec = None if to == "int16" else to
        if self._codec is not None:
            self.input_format = AudioFormat(8000, 1, None)

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat | None:
        up = upstream or AudioFormat()
        return AudioFormat(up.rate, up.channels, self.params.to)

    async def process(self, frame: Frame, direction: Direction) -> None:
        if type(frame) is AudioFrame and direction is _DOWN:
            codec = self._codec
            if codec is None:
                if frame.codec is not None or frame.samples.dtype != np.int16:
                    frame = replace(frame, samples=decode_codes(frame), codec=None)
            elif frame.codec != codec:
                frame = replace(frame, samples=encode_codes(frame, codec), codec=codec)
        await self.push(frame, direction)
