"""Regenerate the shipped sample WAV files (spoken sentences synthesised with eSpeak NG).

Run from the repository root: ``python tests/make_samples.py``. The output is
deterministic for a given eSpeak NG version, so the committed files only change when the
texts below do. Speech comes from ``processors.speech.espeak.synthesize`` when that module
is installed, else straight from the ``espeakng-loader`` wheel through ctypes; it is then
resampled to 16 kHz mono int16 and framed with silence so that a VAD sees clear turns.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np
import soxr

ROOT = Path(__file__).resolve().parents[1]
HERE = ROOT / "pipelines" / "samples"  # where the shipped samples live
sys.path.insert(0, str(ROOT))  # run from anywhere in a checkout

from processors.files.wavfile import write_wav

RATE = 16000
VOICE = "en-us+klatt"
#: file name -> sentences; each sentence is one user turn, separated by a pause.
SAMPLES = {
    "hello_16k.wav": ["Hello, this is a short test of the voxpipe audio pipeline."],
    "two_turns_16k.wav": ["What is the weather like in Paris today?", "Thank you, that is all."],
    "weather_16k.wav": ["What is the weather like in Paris today?"],  # docs/python-api.md's agent.py
}
LEAD_S, PAUSE_S, TAIL_S = 0.3, 1.0, 0.5


def synthesize(text: str, voice: str = VOICE) -> tuple[np.ndarray, int]:
    """Speech for ``text`` as int16 samples and their rate."""
    try:
        from processors.speech.espeak import synthesize as espeak_synthesize
    except ImportError:
        return _synthesize_ctypes(text, voice)
    return espeak_synthesize(text, voice=voice)


def _synthesize_ctypes(text: str, voice: str) -> tuple[np.ndarray, int]:
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    data_dir = str(Path(espeakng_loader.get_data_path()).parent).encode()
    rate = lib.espeak_Initialize(2, 0, data_dir, 0)  # AUDIO_OUTPUT_SYNCHRONOUS
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate})")
    chunks: list[np.ndarray] = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def on_audio(wav, n, _events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = callback_type(on_audio)
    lib.espeak_SetSynthCallback(callback)
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise RuntimeError(f"eSpeak NG has no voice {voice!r}")
    encoded = text.encode("utf-8") + b"\0"
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    err = lib.espeak_Synth(encoded, len(encoded), 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
    lib.espeak_Synchronize()
    if err != 0:
        raise RuntimeError(f"espeak_Synth failed ({err})")
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.int16)), rate


def render(sentences: list[str]) -> np.ndarray:
    """The sentences at 16 kHz with lead, pause and tail silence."""
    parts = [np.zeros(int(LEAD_S * RATE), np.int16)]
    for i, sentence in enumerate(sentences):
        speech, rate = synthesize(sentence)
        if rate != RATE:
            speech = soxr.resample(speech, rate, RATE)
        parts.append(speech.astype(np.int16))
        parts.append(np.zeros(int((PAUSE_S if i < len(sentences) - 1 else TAIL_S) * RATE), np.int16))
    return np.concatenate(parts)


def main() -> None:
    for name, sentences in SAMPLES.items():
        audio = render(sentences)
        write_wav(HERE / name, audio, RATE)
        print(f"{name}: {audio.shape[0] / RATE:.2f} s, {len(sentences)} sentence(s)")


if __name__ == "__main__":
    main()
