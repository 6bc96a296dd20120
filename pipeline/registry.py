"""Registry: how a YAML ``type`` becomes a Processor class.

A type is found, in this order, among the built-in names below, the ``voxpipe.processors``
entry-point group of installed packages (read once per process), or as an import path
``package.module:Class``.
Built-ins are import paths resolved lazily, so listing them imports nothing heavy.
"""

from __future__ import annotations

import functools
import importlib
from importlib.metadata import entry_points

from .errors import RegistryError

__all__ = ["BUILTINS", "available_types", "resolve_type"]

#: Built-in processor types: YAML name -> "module:Class".
BUILTINS: dict[str, str] = {
    # audio (DSP)
    "audio.resample": "processors.audio.transforms:ResampleProcessor",
    "audio.gain": "processors.audio.transforms:GainProcessor",
    "audio.mix": "processors.audio.transforms:MixProcessor",
    "audio.g711": "processors.audio.g711:G711Processor",
    "vad.energy": "processors.audio.vad:EnergyVADProcessor",
    "vad.silero": "processors.audio.vad:SileroVADProcessor",
    "audio.aec": "processors.audio.echo:EchoCancellerProcessor",
    "audio.denoise": "processors.audio.denoise:NoiseSuppressorProcessor",
    "turn.semantic": "processors.turn.semantic:SemanticTurnProcessor",
    # edges
    "capture.wav": "processors.files.capture:WavCapture",
    "capture.tone": "processors.files.capture:ToneCapture",
    "capture.noise": "processors.files.capture:NoiseCapture",
    "capture.microphone": "processors.devices.sound:MicrophoneCapture",
    "playback.wav": "processors.files.playback:WavPlayback",
    "playback.null": "processors.files.playback:NullPlayback",
    "playback.speaker": "processors.devices.sound:SpeakerPlayback",
    "record": "processors.files.record:ConversationRecorder",
    # model, tools, speech
    "realtime.openai": "processors.realtime.client:OpenAIRealtime",
    "live.openai": "processors.live.client:OpenAILive",
    "tools.router": "processors.tools.router:ToolRouter",
    "stt.pocketsphinx": "processors.speech.stt:PocketsphinxSTT",
    "tts.espeak": "processors.speech.tts:EspeakTTS",
    "brain.scripted": "processors.brain.scripted:ScriptedResponder",
    # debugging
    "debug.console": "processors.debug.console:ConsolePrinter",
    # browser
    "transport.websocket.input": "processors.web.transport:WebsocketInput",
    "transport.websocket.output": "processors.web.transport:WebsocketOutput",
    # phone calls (Twilio, Telnyx, Plivo media streams)
    "transport.phone.input": "processors.telephony.transport:PhoneInput",
    "transport.phone.output": "processors.telephony.transport:PhoneOutput",
    # WebRTC peers (browsers, aiortc clients): processors/webrtc, docs/webrtc.md
    "transport.webrtc.input": "processors.webrtc.transport:WebRTCInput",
    "transport.webrtc.output": "processors.webrtc.transport:WebRTCOutput",
    # the local realtime server's per-connection graph (pipelines/realtime_server.yaml)
    "realtime_server.input": "processors.realtime.server.graph_io:ProtocolInput",
    "realtime_server.output": "processors.realtime.server.graph_io:ProtocolOutput",
    "realtime_server.stt": "processors.realtime.server.stages:SegmentRecognizer",
    "realtime_server.responder": "processors.realtime.server.stages:SessionResponder",
    "realtime_server.tts": "processors.realtime.server.stages:SessionSynthesizer",
}

#: Short names kept for convenience.
ALIASES: dict[str, str] = {"resample": "audio.resample", "gain": "audio.gain", "mix": "audio.mix"}


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, str]:
    try:
        eps = entry_points(group="voxpipe.processors")
    except Exception:  # a broken third-party install must not break voxpipe
        return {}
    return {ep.name: ep.value for ep in eps}


def available_types() -> dict[str, str]:
    """Every registered type name -> "module:Class" (built-ins, then entry points)."""
    types = dict(BUILTINS)
    for name, target in _entry_points().items():
        types.setdefault(name, target)
    return types


def _import(target: str, shown: str):
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise RegistryError(
            f"processor type {shown!r} is not a registered name nor an import path",
            "an import path looks like `package.module:Class`",
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"cannot import {module_name!r} for type {shown!r}: {exc}",
                            "check the module is installed and on PYTHONPATH") from None
    except Exception as exc:  # the module itself is broken
        raise RegistryError(f"importing {module_name!r} for type {shown!r} failed: {type(exc).__name__}: {exc}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise RegistryError(f"module {module_name!r} has no {attr!r} (type {shown!r})", _did_you_mean(attr, names)) from None
    from .processor import Processor

    if not (isinstance(obj, type) and issubclass(obj, Processor)):
        raise RegistryError(f"{target!r} is not a subclass of pipeline.Processor (type {shown!r})")
    return obj


def resolve_type(name: str):
    """The Processor class for a YAML ``type``; raises RegistryError with a suggestion."""
    name = ALIASES.get(name, name)
    types = available_types()
    if name in types:
        return _import(types[name], name)
    if ":" in name:
        return _import(name, name)
    raise RegistryError(f"unknown processor type {name!r}", _did_you_mean(name, list(types) + list(ALIASES))
                        or "run `voxpipe processors` to list types, or give an import path `package.module:Class`")


def name_of(cls: type) -> str:
    """The registered name of ``cls``, or its import path when it has none."""
    path = f"{cls.__module__}:{cls.__qualname__}"
    for name, target in available_types().items():
        if target == path:
            return name
    return path


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None
