"""voxpipe's DSP core: pure numpy/soxr functions and small stateful objects, no asyncio.

A pure function handles a whole signal; a small object handles a stream: ``process(x)``
returns a new array, ``flush()`` the tail at the end of the stream, ``reset()`` starts a new
stream with the same configuration. Processors in ``processors/`` are thin shells over these.

=================  ==========================================================================
``formats``        int16 <-> float32, interleaving, channel counts, PCM bytes
``resample``       :func:`resample` one-shot, :class:`Resampler` streaming (soxr)
``rechunk``        :class:`Rechunker`: fixed-size frames out of any chunk sizes
``level``          RMS, peak, dBFS
``vad``            :class:`EnergyVAD` and the speech start/stop state machine
``silero``         :class:`SileroVAD`: the Silero model with onnxruntime (loaded lazily)
``foreground``     :class:`ForegroundGate`: in babble, only audio above the room's level reaches a VAD
``gain``           gain in dB, linear and raised-cosine fades
``mix``            :func:`mix` and the stream :class:`Mixer`
``g711``           mu-law and A-law, bit-exact with ITU-T G.191
``blocks``         :class:`BlockFramer`: whole 10 ms blocks for block-based libraries, no copies
``aec``            :class:`EchoCanceller`: WebRTC AEC3 with a far-end reference (loaded lazily)
``denoise``        :class:`NoiseSuppressor`: WebRTC noise suppression (loaded lazily)
``smart_turn``     Smart Turn v3 end-of-turn model on onnxruntime (the pipecat-ai wheel's file)
``turn``           :class:`SemanticTurnDetector`: pause -> "is the sentence over?" state machine
=================  ==========================================================================

The last five are imported by their modules' names (``pipeline.dsp.aec``), not re-exported
here: each needs an optional library.
"""

from .foreground import ForegroundGate
from .formats import (
    FULL_SCALE,
    as_dtype,
    channels_of,
    deinterleave,
    downmix,
    from_pcm16,
    interleave,
    to_channels,
    to_float32,
    to_int16,
    to_pcm16,
    upmix,
)
from .g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from .gain import Fader, FadeState, Gain, apply_gain, fade_in, fade_out, ramp
from .level import SILENCE_DBFS, db_to_linear, dbfs, linear_to_db, mean_square, peak, rms
from .mix import Mixer, hard_clip, mix, soft_clip
from .rechunk import Rechunker, frame_samples
from .resample import DEFAULT_QUALITY, QUALITIES, Resampler, resample
from .silero import SileroVAD, silero_model_path
from .vad import EnergyVAD, NoiseFloor, SpeechSegmenter, VADEvent, VADInput, VADState

__all__ = [
    "DEFAULT_QUALITY",
    "FULL_SCALE",
    "QUALITIES",
    "SILENCE_DBFS",
    "EnergyVAD",
    "FadeState",
    "Fader",
    "ForegroundGate",
    "Gain",
    "Mixer",
    "NoiseFloor",
    "Rechunker",
    "Resampler",
    "SileroVAD",
    "SpeechSegmenter",
    "VADEvent",
    "VADInput",
    "VADState",
    "alaw_decode",
    "alaw_encode",
    "apply_gain",
    "as_dtype",
    "channels_of",
    "db_to_linear",
    "dbfs",
    "deinterleave",
    "downmix",
    "fade_in",
    "fade_out",
    "frame_samples",
    "from_pcm16",
    "hard_clip",
    "interleave",
    "linear_to_db",
    "mean_square",
    "mix",
    "peak",
    "ramp",
    "resample",
    "rms",
    "silero_model_path",
    "soft_clip",
    "to_channels",
    "to_float32",
    "to_int16",
    "to_pcm16",
    "ulaw_decode",
    "ulaw_encode",
    "upmix",
]
