"""eSpeak NG speech synthesis through ctypes, from the ``espeakng-loader`` wheel.

Theory of operation
-------------------
eSpeak NG is a C library with process-global state: one output mode, one synth callback,
one current voice. We initialise it once, lazily, in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode:
``espeak_Synth`` then runs the synthesis in the calling thread and hands each block of
int16 samples (about ``_BLOCK_MS`` of audio) to the synth callback before returning. The
callback returns 1 to abort a synthesis early.

Because the state is global and the library is not thread-safe, every call into it (set
voice, set rate, synth) happens under one module lock, and the callback forwards blocks
to whichever synthesis currently holds the lock.

:func:`synthesize` returns the whole utterance. :func:`synthesize_chunks` streams it for a
low first-audio latency: the synthesis runs in a worker thread that queues each block as
the callback produces it; closing the iterator early aborts the synthesis.

The library's native rate is 22050 Hz; resample at the edge that needs another rate.

eSpeak NG keeps some waveform-generator state from one utterance to the next, so the same
text synthesised twice can differ by a few samples of length and by low-level detail; the
sequence of outputs in a fresh process is reproducible. Compare durations and envelopes,
not sample values.
"""

from __future__ import annotations

import ctypes
import difflib
import os
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

__all__ = [
    "DEFAULT_VOICE",
    "UnknownVoiceError",
    "available_voices",
    "native_sample_rate",
    "phonemize",
    "synthesize",
    "synthesize_chunks",
]

#: A voice pocketsphinx's US English model recognises well.
DEFAULT_VOICE = "en-us+klatt"

MIN_RATE_WPM = 80
MAX_RATE_WPM = 450

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_EE_OK = 0
_EE_NOT_FOUND = 2
_BLOCK_MS = 60  # audio per callback: small enough for streaming, large enough to be cheap

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class UnknownVoiceError(ValueError):
    """The requested eSpeak NG voice (language or ``+variant``) does not exist."""


class _VoiceStruct(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


class _Engine:
    """The initialised library: its functions, native rate, and the callback's current sink."""

    def __init__(self) -> None:
        import espeakng_loader

        self.data_path = espeakng_loader.get_data_path()
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceStruct))
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BLOCK_MS, self.data_path.encode(), _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise RuntimeError(
                f"eSpeak NG failed to initialise with data at {self.data_path}; "
                "reinstall the wheel: `pip install --force-reinstall espeakng-loader`"
            )
        self.lib = lib
        self.sample_rate = rate
        self.sink: Callable[[np.ndarray], bool] | None = None
        self._callback = _CALLBACK(self._on_samples)  # keep a reference: C holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        self.voices = self._list_voices()
        variants_dir = os.path.join(self.data_path, "voices", "!v")
        self.variants = sorted(os.listdir(variants_dir)) if os.path.isdir(variants_dir) else []
        self._voice: tuple[str, int] | None = None

    def _on_samples(self, wav, n, _events) -> int:
        if n <= 0 or not wav or self.sink is None:
            return 0
        block = np.ctypeslib.as_array(wav, shape=(n,)).copy()  # the C buffer is reused
        return 0 if self.sink(block) else 1

    def _list_voices(self) -> list[str]:
        names: set[str] = set()
        voices = self.lib.espeak_ListVoices(None)
        i = 0
        while voices[i]:
            v = voices[i].contents
            if v.identifier:
                names.add(v.identifier.decode().rsplit("/", 1)[-1].lower())
            if v.name:
                names.add(v.name.decode().lower())
            i += 1
        return sorted(names)

    def configure(self, voice: str, rate_wpm: int) -> None:
        """Select ``voice`` and ``rate_wpm``; call under the lock."""
        if self._voice == (voice, rate_wpm):
            return
        self._check_voice(voice)
        if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise UnknownVoiceError(self._unknown_voice_message(voice.partition("+")[0], self.voices))
        self.lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
        self._voice = (voice, rate_wpm)

    def _check_voice(self, voice: str) -> None:
        language, _, variant = voice.partition("+")
        if not language:
            raise UnknownVoiceError(self._unknown_voice_message(language, self.voices))
        # The library accepts any variant name silently; check it against the data files.
        if variant and variant not in self.variants:
            close = difflib.get_close_matches(variant, self.variants, n=3)
            hint = f"did you mean {', '.join(repr(f'{language}+{c}') for c in close)}?" if close else (
                f"variants are files in {os.path.join(self.data_path, 'voices', '!v')}")
            raise UnknownVoiceError(f"eSpeak NG has no voice variant {variant!r} (voice {voice!r}); {hint}")

    @staticmethod
    def _unknown_voice_message(language: str, voices: list[str]) -> str:
        close = difflib.get_close_matches(language.lower(), voices, n=3)
        hint = f"did you mean {', '.join(map(repr, close))}?" if close else "try 'en-us', 'en-gb' or 'en'"
        return (f"eSpeak NG has no voice {language!r}; {hint} "
                f"(a voice is a language, optionally with a variant: {DEFAULT_VOICE!r})")

    def synth(self, text: str, sink: Callable[[np.ndarray], bool]) -> None:
        """Synthesise ``text`` with the configured voice into ``sink``; call under the lock."""
        data = text.replace("\x00", " ").encode("utf-8")
        self.sink = sink
        try:
            err = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        finally:
            self.sink = None
        if err != _EE_OK:
            raise RuntimeError(f"eSpeak NG synthesis failed with error {err} for text {text[:40]!r}")


_lock = threading.Lock()
_engine: _Engine | None = None


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = _Engine()
    return _engine


def _check_rate(rate_wpm: int) -> None:
    if not MIN_RATE_WPM <= rate_wpm <= MAX_RATE_WPM:
        raise ValueError(f"rate_wpm={rate_wpm} is outside eSpeak NG's range; use {MIN_RATE_WPM}..{MAX_RATE_WPM} (160 is natural)")


def native_sample_rate() -> int:
    """The sample rate eSpeak NG synthesises at (22050 Hz with the shipped data)."""
    return _get_engine().sample_rate


def available_voices() -> list[str]:
    """Voice (language) names accepted by :func:`synthesize`, lower-case, without variants."""
    return list(_get_engine().voices)


def synthesize(text: str, *, voice: str = DEFAULT_VOICE, rate_wpm: int = 160) -> tuple[np.ndarray, int]:
    """Speak ``text``: returns ``(int16 mono samples, native sample rate)``.

    ``voice`` is a language with an optional variant (``"en-us+klatt"``); an unknown one
    raises :class:`UnknownVoiceError` with suggestions. Blank text gives an empty array.
    """
    _check_rate(rate_wpm)
    engine = _get_engine()
    blocks: list[np.ndarray] = []
    with _lock:
        engine.configure(voice, rate_wpm)
        if text.strip():
            engine.synth(text, lambda block: blocks.append(block) or True)
    samples = np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int16)
    return samples, engine.sample_rate


_PHONEMES_IPA = 0x02  # speak_lib.h espeakPHONEMES_IPA: phoneme names as IPA (UTF-8)


def phonemize(text: str, *, voice: str = "en-us") -> list[str]:
    """``text`` as IPA phonemes, one string per clause (what Piper voices are trained on)."""
    engine = _get_engine()
    data = ctypes.create_string_buffer(text.replace("\x00", " ").encode("utf-8"))
    pointer = ctypes.c_void_p(ctypes.addressof(data))
    clauses: list[str] = []
    with _lock:
        engine.configure(voice, 160)
        while pointer.value:
            out = engine.lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, _PHONEMES_IPA)
            if out:
                clauses.append(out.decode("utf-8", "replace").strip())
    return [c for c in clauses if c]


def synthesize_chunks(text: str, *, voice: str = DEFAULT_VOICE, rate_wpm: int = 160) -> Iterator[np.ndarray]:
    """Stream ``text`` as int16 blocks (about 60 ms each) as eSpeak NG produces them.

    The voice and rate are checked at once (:class:`UnknownVoiceError`, ``ValueError``);
    the synthesis starts at the first ``next()``, in a worker thread. Closing the iterator
    early (``close()``, or leaving a ``for`` loop) aborts the synthesis. The samples are at
    :func:`native_sample_rate`.
    """
    _check_rate(rate_wpm)
    engine = _get_engine()
    with _lock:
        engine.configure(voice, rate_wpm)
    return _stream(engine, text, voice, rate_wpm)


_DONE = object()


def _stream(engine: _Engine, text: str, voice: str, rate_wpm: int) -> Iterator[np.ndarray]:
    if not text.strip():
        return
    blocks: queue.SimpleQueue = queue.SimpleQueue()
    cancelled = threading.Event()

    def sink(block: np.ndarray) -> bool:
        blocks.put(block)
        return not cancelled.is_set()

    def work() -> None:
        try:
            with _lock:
                engine.configure(voice, rate_wpm)
                if not cancelled.is_set():
                    engine.synth(text, sink)
        except BaseException as exc:  # handed to the consumer, raised there
            blocks.put(exc)
        finally:
            blocks.put(_DONE)

    worker = threading.Thread(target=work, name="espeak-synth", daemon=True)
    worker.start()
    try:
        while (item := blocks.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancelled.set()
        worker.join()
