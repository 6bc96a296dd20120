"""The Realtime API's voice names as eSpeak NG voices, one distinct voice each.

A session's ``audio.output.voice`` (``"alloy"``, ``"coral"``...) picks the eSpeak NG
variant the local server speaks with. Each variant was chosen because pocketsphinx
recognises the demo rules' 13 phrases spoken by it exactly (13/13 each, measured with
the demo grammar; the variants left out, such as ``m2``, ``linda`` or ``travis``, got
between 1 and 12), so the demo's loop stays exact whatever voice a session asks for.
"""

from __future__ import annotations

from typing import Any

from .espeak import DEFAULT_VOICE

__all__ = ["VOICES", "espeak_voice"]

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


def espeak_voice(voice: Any, default: str = DEFAULT_VOICE) -> str:
    """The eSpeak NG voice for a session's ``voice`` (a name, or ``{"id": name}``); ``default`` otherwise."""
    if isinstance(voice, dict):
        voice = voice.get("id")
    return VOICES.get(voice, default) if isinstance(voice, str) else default
