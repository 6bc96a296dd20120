"""turn.semantic: Smart Turn v3 + final pitch + words at each pause, against a 500 ms silence timer.

Scenes (tests/quality_fixtures.py): sentences cut by a 0.6-1.2 s pause mid-sentence ("My number
is four one five," ... "two three four, ..."), the first part spoken with a continuing
intonation, and complete sentences, in several eSpeak voices, 3 s apart. Figures: premature
ends (an end of turn inside a mid-sentence pause) and the delay from the end of speech to the
end of the turn (media time), for turn.semantic and for the same energy VAD with a 500 ms
timer. The rule's thresholds were chosen on the four TURN_VOICES; HELD_OUT_VOICE was not
looked at while choosing, and its figures are asserted separately.

"With words": a pocketsphinx recogniser with a bigram model of the scene's whole sentences (the
domain, as a session's grammar would know it; not where the pauses fall) decodes the turn so
far at each pause, as ``stt.pocketsphinx``'s partial transcripts would give them.
"""

from __future__ import annotations

import numpy as np
import pytest
from quality_fixtures import (
    COMPLETE_SENTENCES,
    HELD_OUT_VOICE,
    PAUSED_SENTENCES,
    TURN_VOICES,
    noisy_speech,
    speech,
    to_int16,
    turn_figures,
    turn_scene,
)

from dataclasses import dataclass

from pipeline.dsp.vad import EnergyVAD
from pipeline.frames import AudioFrame, TextFrame, TranscriptionFrame, UserStartedSpeakingFrame, UserStoppedSpeakingFrame
from pipeline.testing import run_frames
from processors.turn.decision import TurnRule, Verdict, judge_pause
from processors.turn.lexical import incomplete_reason
from processors.turn.prosody import final_pitch_movement, pitch_track

pytest.importorskip("onnxruntime")

from pipeline.dsp.smart_turn import SMART_TURN_RATE, SmartTurnModel, log_mel_features, smart_turn_model_path  # noqa: E402
from pipeline.dsp.turn import SemanticTurnDetector  # noqa: E402

try:
    smart_turn_model_path()
except FileNotFoundError as exc:  # pragma: no cover - the test command installs it
    pytest.skip(str(exc), allow_module_level=True)

RATE = 16000
FRAME = RATE // 50


@pytest.fixture(scope="module")
def model():
    return SmartTurnModel()


def timer_ends(x: np.ndarray) -> list[tuple[int, int]]:
    """(decision, speech end) of each stop of the energy VAD with a 500 ms silence timer."""
    vad = EnergyVAD(RATE, silence_duration_ms=500)
    out = []
    for i in range(0, x.shape[0] - FRAME + 1, FRAME):
        out += [(e.detected_pts, e.pts) for e in vad.process(x[i : i + FRAME], i) if not e.started]
    return out


def semantic_ends(x: np.ndarray, model, *, rule: TurnRule | None = TurnRule(), words=None,
                  **params) -> tuple[list[tuple[int, int]], int]:
    """(decision, speech end) of each end of turn; ``rule`` None: Smart Turn alone (the old detector).

    ``words(audio16k)`` gives the words heard in the turn so far (None: no recogniser).
    """
    if rule is None:
        det = SemanticTurnDetector(RATE, model=model, **params)
    else:
        det = SemanticTurnDetector(RATE, model=model, defer_model=True, threshold=rule.threshold,
                                   max_silence_ms=rule.max_wait_ms, **params)
    out = []
    for i in range(0, x.shape[0] - FRAME + 1, FRAME):
        events = det.process(x[i : i + FRAME], i)
        if det.query is not None:
            v = judge_pause(rule, model, det.query, words(det.query) if words else None)
            events += det.answer(v.probability, complete=v.complete, wait_ms=v.wait_ms)
        out += [(e.pts, e.speech_end) for e in events if not e.started]
    return out, det.model_calls


def scene_words():
    """A ``words(audio16k)`` function: pocketsphinx with a bigram model of the scene's whole sentences."""
    from processors.speech.sphinx import Grammar, Recognizer, normalize_words

    corpus = tuple(" ".join(normalize_words(a + " " + b)) for a, b in PAUSED_SENTENCES)
    corpus += tuple(" ".join(normalize_words(c)) for c in COMPLETE_SENTENCES)
    rec = Recognizer(Grammar((), corpus))
    return lambda audio: rec.recognize(to_int16(audio), SMART_TURN_RATE)


def judge(scene, ends):
    """(premature ends, pauses, mean delay ms, median delay ms) against the scene's truth."""
    premature = sum(any(a <= d <= b for d, _ in ends) for a, b in scene.pauses)
    delays = []
    for _, b in scene.turns:
        late = [d for d, _ in ends if b - RATE // 10 <= d <= b + 3 * RATE]
        assert late, f"no end of turn after the speech ending at {b / RATE:.2f} s"
        delays.append((late[0] - b) / RATE * 1000)
    return premature, len(scene.pauses), float(np.mean(delays)), float(np.median(delays))


def test_log_mel_features_follow_whisper():
    """(80, 800) frames of 10 ms; a 1 kHz tone lights the band around 1 kHz; short audio is front-padded."""
    t = np.arange(2 * SMART_TURN_RATE) / SMART_TURN_RATE
    tone = (0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    f = log_mel_features(tone)
    assert f.shape == (80, 800) and f.dtype == np.float32
    assert f.max() - f.min() <= 2.0 + 1e-6  # clamped to 8 decades below the peak: (x + 4) / 4 spans 2
    tail = f[:, -150:].mean(axis=1)
    # Slaney mel: 1 kHz is mel 15 of 45.2 at 8 kHz, i.e. band ~26 of 80
    assert 23 <= int(np.argmax(tail)) <= 29
    padded = np.concatenate((np.zeros(8 * SMART_TURN_RATE - tone.shape[0], np.float32), tone))
    assert np.array_equal(log_mel_features(padded), f)
    long = np.concatenate((np.ones(SMART_TURN_RATE, np.float32), padded))
    assert np.array_equal(log_mel_features(long), f)  # only the last 8 s count


def test_log_mel_features_reuse_work_arrays_safely():
    """The kept work arrays give np.pad's reflection exactly, the front padding's frames computed once give
    the plain definition's values, and threads computing at once do not mix them."""
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.dsp.smart_turn import _hann, _mel_matrix

    rng = np.random.default_rng(11)
    clips = [(0.05 * rng.standard_normal(k)).astype(np.float32) for k in (3 * SMART_TURN_RATE, 9 * SMART_TURN_RATE)]

    def reference(audio):  # the module docstring's definition, with np.pad and fresh arrays
        n = 8 * SMART_TURN_RATE
        x = np.concatenate((np.zeros(max(n - audio.shape[0], 0), np.float32), audio))[-n:]
        x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        frames = np.lib.stride_tricks.sliding_window_view(np.pad(x.astype(np.float64), 200, mode="reflect"), 400)[::160]
        mel = np.log10(np.maximum((np.abs(np.fft.rfft(frames * _hann(), axis=1)) ** 2) @ _mel_matrix().T, 1e-10)).T
        mel = mel[:, :-1]
        return ((np.maximum(mel, mel.max() - 8.0) + 4.0) / 4.0).astype(np.float32)

    want = [reference(c) for c in clips]
    assert all(np.allclose(log_mel_features(c), w, atol=1e-6) for c, w in zip(clips, want))
    # a turn shorter than 8 s: the frames wholly in the front padding are transformed once, to the same bits
    for k in (0, 200, 201, 361, 521, 47_999, 3 * SMART_TURN_RATE + 7, 8 * SMART_TURN_RATE - 1):
        short = (0.05 * rng.standard_normal(k)).astype(np.float32)
        assert np.array_equal(log_mel_features(short), reference(short)), k
    first = [log_mel_features(c) for c in clips]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: log_mel_features(clips[i % 2]), range(16)))
    assert all(np.array_equal(g, first[i % 2]) for i, g in enumerate(got))


def test_log_mel_features_run_blas_on_one_thread_and_restore_it():
    """The mel projection runs with one BLAS thread (OpenBLAS's spinning workers cost ~130 ms CPU a pause),
    and the process's own BLAS setting is back afterwards."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from pipeline.dsp.smart_turn import _one_blas_thread

    def blas_threads():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()
    assert before, "numpy has no BLAS that threadpoolctl sees"
    with _one_blas_thread()():
        assert set(blas_threads()) == {1}
    assert blas_threads() == before
    # two callers that overlap (sessions judging pauses on two worker threads): one thread until both are out
    first, second = _one_blas_thread()(), _one_blas_thread()()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert set(blas_threads()) == {1}
    second.__exit__(None, None, None)
    assert blas_threads() == before


def test_smart_turn_softmax_runs_in_float(model):
    """Each Softmax of the model file is also a graph output (so ORT does not fuse it into QLinearSoftmax);
    the session still answers with the logits first, and a file the edit cannot read is left as it is."""
    from pipeline.dsp.smart_turn import float_softmax_graph

    outputs = [o.name for o in model.session.get_outputs()]
    assert outputs[0] == model._output == "logits" and len(outputs) == 6  # 4 attention maps + the pooling softmax
    with open(model.path, "rb") as f:
        raw = f.read()
    edited = float_softmax_graph(raw)
    assert len(edited) > len(raw) and float_softmax_graph(edited) == edited  # outputs listed once
    assert float_softmax_graph(b"not a model") == b"not a model"
    assert float_softmax_graph(b"") == b""
    p = model.probability(np.zeros(SMART_TURN_RATE, np.float32))
    assert 0.0 <= p <= 1.0


def test_semantic_turn_cuts_fewer_pauses_and_answers_sooner(model):
    """One voice (en-us), 8 paused + 8 complete sentences, no words: fewer cuts than the timer, sooner on average."""
    scene = turn_scene(RATE, voices=("en-us",))
    x = to_int16(scene.samples)
    timer = judge(scene, timer_ends(x))
    semantic = judge(scene, semantic_ends(x, model)[0])
    assert timer[0] == timer[1] == 8  # every 0.6-1.2 s pause outlasts a 500 ms timer
    # measured: 1/8 premature, mean 438 ms, median 213 ms (timer 8/8, 509 / 510 ms)
    assert semantic[0] <= 3, semantic
    assert semantic[2] < timer[2] and semantic[3] < 300 < timer[3], (semantic, timer)


@pytest.mark.slow
def test_semantic_turn_four_voices(model):
    """The four voices the rule was chosen on, 32 paused + 32 complete sentences: docs/quality.md's figures."""
    scene = turn_scene(RATE, voices=TURN_VOICES)
    x = to_int16(scene.samples)
    timer = judge(scene, timer_ends(x))
    alone = judge(scene, semantic_ends(x, model, rule=None)[0])
    ends, calls = semantic_ends(x, model)
    semantic = judge(scene, ends)
    worded = judge(scene, semantic_ends(x, model, words=scene_words())[0])
    for name, r in (("timer 500 ms", timer), ("Smart Turn alone", alone), ("turn.semantic", semantic),
                    ("turn.semantic + words", worded)):
        print(f"\n{name}: premature {r[0]}/{r[1]}, delay mean {r[2]:.0f} ms median {r[3]:.0f} ms", end="")
    assert timer[0] == timer[1]
    # measured (float softmax, 2026-12-03): timer 32/32 at 506 ms; Smart Turn alone 15/32 at 690 ms; the
    # rule 3/32 at 418 ms (median 211); with words 0/32 at 471 ms (median 213: misheard complete
    # sentences wait 1.5 s). ORT's fused softmax gave 3/32 at 415 ms, 0/32 at 476 ms.
    # eSpeak's output varies a little with what it synthesised before: margins, not equalities.
    assert alone[0] >= 12
    assert semantic[0] <= 6 and semantic[2] < 480 and semantic[3] < 300, semantic
    assert worded[0] <= 2 and worded[2] < 560 and worded[3] < 300, worded


@pytest.mark.slow
def test_semantic_turn_held_out_voice(model):
    """A voice not used to choose the thresholds (HELD_OUT_VOICE): 8 paused + 8 complete sentences."""
    scene = turn_scene(RATE, voices=(HELD_OUT_VOICE,))
    x = to_int16(scene.samples)
    timer = judge(scene, timer_ends(x))
    semantic = judge(scene, semantic_ends(x, model)[0])
    worded = judge(scene, semantic_ends(x, model, words=scene_words())[0])
    print(f"\nheld out {HELD_OUT_VOICE}: timer {timer}, turn.semantic {semantic}, + words {worded}")
    assert timer[0] == timer[1] == 8
    # measured: 2/8 premature (3/8 with ORT's fused softmax), mean 309 ms; with words 0/8, mean 420 ms
    # (timer 8/8, 510 ms) when run alone; after the other quality tests (eSpeak's output moves with what it synthesised before)
    # 2/8 at 390 ms, with words 0/8 at 502 ms
    assert semantic[0] <= 5 and semantic[2] < 460, semantic
    assert worded[0] <= 1 and worded[2] < 560, worded


def test_pitch_tracker_follows_a_glide():
    """A pulse train gliding 200 -> 160 Hz (4 semitones in 1 s): the track follows it; the end falls ~1.2 st."""
    t = np.arange(RATE) / RATE
    f = 200.0 * 2 ** (-4.0 * t / 12.0)
    phase = 2 * np.pi * np.cumsum(f) / RATE
    x = (0.2 * np.sign(np.sin(phase)) + 0.1 * np.sin(phase)).astype(np.float32)
    times, f0 = pitch_track(x, RATE)
    truth = 200.0 * 2 ** (-4.0 * times / 12.0)
    voiced = ~np.isnan(f0)
    assert voiced.mean() > 0.9
    assert np.max(np.abs(12 * np.log2(f0[voiced] / truth[voiced]))) < 0.5  # within half a semitone
    end = final_pitch_movement(x, RATE)
    assert end is not None and -1.5 < end.semitones < -0.9  # 300 ms of a 4 st/s fall
    rising = final_pitch_movement(x[::-1].copy(), RATE)
    assert rising is not None and 0.9 < rising.semitones < 1.5
    assert final_pitch_movement(np.zeros(RATE, np.float32), RATE) is None  # nothing voiced
    noise = np.random.default_rng(1).standard_normal(RATE).astype(np.float32) * 0.1
    assert final_pitch_movement(noise, RATE) is None


def test_pitch_track_gives_the_plain_steps_values():
    """The tracker's work arrays, skipped quiet frames and float64 FFTs give the plain steps' F0 bit for bit
    (the module docstring's steps on float32 frames, every frame transformed), threads at once included."""
    from concurrent.futures import ThreadPoolExecutor

    from processors.turn.prosody import _fast_size

    def reference(x, rate=RATE, fmin=70.0, fmax=400.0, voicing=0.45, floor_db=-30.0):
        x = np.asarray(x, np.float32)
        n, hop = int(0.04 * rate), int(0.01 * rate)
        frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop]
        frames = frames - frames.mean(axis=1, keepdims=True)
        lo, hi = int(rate / fmax), min(int(rate / fmin), n - 1)
        w = np.hanning(n)
        wac = np.correlate(w, w, "full")[n - 1 : n + hi]
        size = _fast_size(n + hi)
        spec = np.fft.rfft(frames * w.astype(np.float32), size, axis=1)
        ac = np.fft.irfft(spec.real**2 + spec.imag**2, size, axis=1)[:, : hi + 1]
        energy = ac[:, 0]
        norm = ac[:, lo : hi + 1] / np.maximum(energy[:, None], 1e-12) * (wac[0] / wac[lo : hi + 1])
        peak = norm.max(axis=1)
        local = np.zeros(norm.shape, bool)
        local[:, 1:-1] = (norm[:, 1:-1] >= norm[:, :-2]) & (norm[:, 1:-1] >= norm[:, 2:])
        cand = (norm >= 0.9 * peak[:, None]) & local
        i = np.clip(np.where(cand.any(axis=1), cand.argmax(axis=1), norm.argmax(axis=1)), 1, norm.shape[1] - 2)
        rows = np.arange(norm.shape[0])
        a, b, c = norm[rows, i - 1], norm[rows, i], norm[rows, i + 1]
        den = a - 2 * b + c
        ok = np.abs(den) > 1e-9
        lag = lo + i + np.clip(np.where(ok, 0.5 * (a - c) / np.where(ok, den, 1.0), 0.0), -0.5, 0.5)
        voiced = (peak >= voicing) & (energy >= energy.max() * 10 ** (floor_db / 10)) & (energy > 0)
        runs = np.flatnonzero(np.diff(np.concatenate(([0], voiced, [0])).astype(np.int8)))
        for s, e in zip(runs[::2], runs[1::2]):
            if e - s < 3:
                voiced[s:e] = False
        return np.where(voiced, rate / lag, np.nan)

    rng = np.random.default_rng(4)
    t = np.arange(3 * RATE) / RATE
    phase = 2 * np.pi * np.cumsum(180.0 * 2 ** (np.sin(2 * np.pi * t) / 12.0)) / RATE
    voice = (0.2 * np.sign(np.sin(phase)) + 0.1 * np.sin(phase)).astype(np.float32)
    voice[RATE : RATE + 4000] = 0.0  # silence inside, then a pause at the end
    voice[-3000:] *= 0.001
    clips = [voice, voice[-int(1.2 * RATE) :], speech("Thank you very much.", RATE, "en-us", -26.0),
             speech("My number is four one five,", RATE, "en-gb-x-rp", -26.0),
             (0.1 * rng.standard_normal(RATE)).astype(np.float32), np.zeros(RATE, np.float32), voice[:700]]
    for x in clips:
        assert np.array_equal(pitch_track(x, RATE)[1], reference(x), equal_nan=True)
    assert np.array_equal(pitch_track(voice, RATE, voicing=0.2, floor_db=-50.0)[1],
                          reference(voice, voicing=0.2, floor_db=-50.0), equal_nan=True)
    low = voice[::2].copy()  # other frame and lag sizes at 8 kHz: other work arrays
    assert np.array_equal(pitch_track(low, 8000)[1], reference(low, 8000), equal_nan=True)
    first = [pitch_track(x, RATE)[1] for x in clips]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: pitch_track(clips[i % len(clips)], RATE)[1], range(28)))
    assert all(np.array_equal(g, first[i % len(clips)], equal_nan=True) for i, g in enumerate(got))


def test_pitch_ends_of_espeak_fragments_rise_and_statements_fall():
    """eSpeak's comma-final fragments end rising, its statements falling. The held-out voice's "Thank you
    very much." falls by less than the rule's fall_st (the model decides it), and by how much moves with
    eSpeak's history (its pitch flutter's phase carries over from one utterance to the next): -0.3 to
    -1.55 st measured, in the file's order and alone; it only has to fall."""
    for voice in ("en-us", HELD_OUT_VOICE):
        for text in ("Can you tell me the,", "I would like to book a table for,"):
            assert final_pitch_movement(speech(text, RATE, voice, -26.0)).semitones > 0.5, (voice, text)
        for text in ("Thank you very much.", "I want to fly to Boston tomorrow."):
            weak = voice == HELD_OUT_VOICE and text.startswith("Thank")
            assert final_pitch_movement(speech(text, RATE, voice, -26.0)).semitones < (0.0 if weak else -0.5), \
                (voice, text)


@pytest.mark.parametrize("text, unfinished", [
    ("my number is four one five", True),
    ("my number is 415", True),
    ("the address is twelve", True),
    ("can you tell me the", True),
    ("I would like to book a table for", True),
    ("I want to fly to Boston and then", True),
    ("so what I was thinking is", True),
    ("I need to change my", True),
    ("could you remind me to", True),
    ("um", True),
    ("book a table for two please", False),
    ("what is the weather like", False),
    ("here it is", False),
    ("yes I can", False),
    ("that's it", False),
    ("my number is four one five five five five one two three four", False),  # ten digits read out
    ("", False),
])
def test_lexical_check(text, unfinished):
    assert (incomplete_reason(text) is not None) is unfinished, incomplete_reason(text)


def test_judge_pause_computes_only_what_can_change_the_verdict(model):
    """Unfinished words decide without Smart Turn; where the pitch cannot matter it is not tracked, and
    everywhere the verdict is the one the full rule gives with every signal computed."""
    from processors.turn.prosody import PitchEnd, final_pitch_movement

    rule = TurnRule()
    scene = turn_scene(RATE, voices=("en-us",))
    pauses = [scene.samples[max(0, a - 2 * RATE) : a + RATE // 5] for a, _ in scene.pauses[:3]]
    runs = []

    class Counting:  # the real model, its inferences counted
        def probability(self, audio):
            runs.append(audio.shape[0])
            return model.probability(audio)

    for audio in pauses:
        full = rule.judge(model.probability(audio), final_pitch_movement(audio), "my number is")
        v = judge_pause(rule, Counting(), audio, "my number is")
        assert not runs and v == Verdict(False, rule.max_wait_ms, full.reason, None)
        full = rule.judge(model.probability(audio), final_pitch_movement(audio), "thank you")
        v = judge_pause(rule, Counting(), audio, "thank you")
        assert len(runs) == 1 and (v.complete, v.wait_ms, v.reason) == (full.complete, full.wait_ms, full.reason)
        runs.clear()
    # below low_p and fall_min_p every pitch gives max_wait_ms; at or above either, some pitch changes it
    up, down, level = PitchEnd(2.0, 300, 100), PitchEnd(-2.0, 300, 100), PitchEnd(0.0, 300, 100)
    for p in (0.0, 0.005, 0.0099, 0.01, 0.02, 0.3, 0.9):
        verdicts = {(v.complete, v.wait_ms) for v in (rule.judge(p, s, None) for s in (up, down, level, None))}
        assert rule.pitch_matters(p) is (len(verdicts) > 1), (p, verdicts)
    loose = TurnRule(fall_min_p=0.005)  # a falling pitch ends the turn from p 0.005: the pitch matters there
    assert loose.pitch_matters(0.007) and loose.judge(0.007, down, None).complete


def test_turn_rule_steps():
    """Each step of the documented rule, in order: words, rising pitch, model, falling pitch, low p, unsure."""
    from processors.turn.prosody import PitchEnd

    rule = TurnRule()
    up, down, level = PitchEnd(2.0, 300, 100), PitchEnd(-2.0, 300, 100), PitchEnd(0.0, 300, 100)
    v = rule.judge(0.99, down, "my number is")
    assert not v.complete and v.wait_ms == rule.max_wait_ms and v.reason.startswith("words")
    assert rule.judge(0.95, up, None).wait_ms == rule.unsure_wait_ms  # a question's rise, the model sure
    assert rule.judge(0.3, up, None).wait_ms == rule.max_wait_ms
    assert rule.judge(0.85, level, "thank you").complete
    assert rule.judge(0.85, None, None).complete
    assert rule.judge(0.1, down, None).complete and rule.judge(0.1, down, None).reason == "falling pitch"
    assert not rule.judge(0.005, down, None).complete
    assert rule.judge(0.005, level, None).wait_ms == rule.max_wait_ms
    assert rule.judge(0.3, level, None).wait_ms == rule.unsure_wait_ms
    with pytest.raises(ValueError, match="unsure_wait_ms"):
        TurnRule(unsure_wait_ms=2000.0, max_wait_ms=1500.0)


def test_detector_defers_the_model_when_asked():
    """defer_model leaves the turn's audio in `query`; answer() with a high probability ends the turn there."""
    u = speech("Thank you very much.", RATE, "en-us", -26.0)
    x = to_int16(np.concatenate((np.zeros(RATE // 2, np.float32), u, np.zeros(RATE, np.float32))))
    det = SemanticTurnDetector(RATE, defer_model=True)
    events, queries = [], 0
    for i in range(0, x.shape[0] - FRAME + 1, FRAME):
        events += det.process(x[i : i + FRAME], i)
        if det.query is not None:
            queries += 1
            assert 0 < det.query.shape[0] <= 8.5 * SMART_TURN_RATE
            events += det.answer(0.99)
    assert queries == 1
    assert [e.started for e in events] == [True, False]
    end = events[1]
    assert end.reason == "complete" and 0 < end.pts - end.speech_end <= 0.25 * RATE
    with pytest.raises(RuntimeError, match="without a pending query"):
        det.answer(0.5)


def test_detector_skips_a_pause_that_ends_in_the_same_chunk():
    """500 ms chunks: a 250 ms gap found and over within one chunk is not judged (one model call, one turn)."""

    class Model:
        calls = 0

        def probability(self, audio):
            self.calls += 1
            return 0.99

    rng = np.random.default_rng(5)
    t = np.arange(RATE) / RATE
    tone = (0.1 * np.sin(2 * np.pi * 200 * t) * (1 + 0.1 * rng.standard_normal(RATE))).astype(np.float32)
    gap = int(0.25 * RATE)
    x = to_int16(np.concatenate((np.zeros(RATE + RATE // 20, np.float32), tone[: RATE // 2], np.zeros(gap, np.float32),
                                 tone, np.zeros(2 * RATE, np.float32))))  # the gap: 1.55-1.80 s, in chunk 1.5-2.0 s
    model = Model()
    det = SemanticTurnDetector(RATE, model=model)
    events = []
    for i in range(0, x.shape[0], RATE // 2):
        events += det.process(x[i : i + RATE // 2], i)
    assert [(e.started, e.reason) for e in events] == [(True, "start"), (False, "complete")]
    assert model.calls == det.model_calls == 1 and events[1].speech_end > 2.7 * RATE


def test_detector_falls_back_to_max_silence():
    """A model that never says complete: the turn ends max_silence_ms after the speech."""
    u = speech("My number is four one five,", RATE, "en-us", -26.0)
    x = to_int16(np.concatenate((np.zeros(RATE // 2, np.float32), u, np.zeros(2 * RATE, np.float32))))
    det = SemanticTurnDetector(RATE, defer_model=True, max_silence_ms=1000)
    events = []
    for i in range(0, x.shape[0] - FRAME + 1, FRAME):
        events += det.process(x[i : i + FRAME], i)
        if det.query is not None:
            events += det.answer(0.01)
    assert [(e.started, e.reason) for e in events] == [(True, "start"), (False, "timeout")]
    assert events[1].pts - events[1].speech_end == RATE


@pytest.mark.anyio
async def test_semantic_turn_processor_announces_the_turn():
    """Audio passes unchanged; the turn's start and end come out as speaking frames; a VAD's own are dropped."""
    u = speech("What is the weather like in Paris?", 24000, "en-us", -26.0)
    x = to_int16(np.concatenate((np.zeros(12000, np.float32), u, np.zeros(24000, np.float32))))
    frames = [AudioFrame(x[i : i + 480], 24000, i) for i in range(0, x.shape[0] - 479, 480)]
    frames.insert(3, UserStoppedSpeakingFrame(pts=0, sample_rate=24000))  # from a VAD upstream: not ours
    from processors.turn.semantic import SemanticTurnProcessor

    proc = SemanticTurnProcessor()
    out = await run_frames(proc, frames + [TextFrame("after")])
    assert np.array_equal(out.audio(), x[: len(frames[:3] + frames[4:]) * 480])
    speaking = [f for f in out.downstream if isinstance(f, (UserStartedSpeakingFrame, UserStoppedSpeakingFrame))]
    assert [type(f) for f in speaking] == [UserStartedSpeakingFrame, UserStoppedSpeakingFrame]
    assert speaking[1].sample_rate == 24000 and 12000 < speaking[1].pts <= 12000 + u.shape[0]
    assert proc.statistics()["dropped_speaking_frames"] == 1
    assert proc.statistics()["model_calls"] >= 1


@pytest.mark.anyio
async def test_semantic_turn_processor_weighs_the_words():
    """A recogniser's partial text in the graph: "my number is four one five" waits max_silence_ms;
    "thank you very much" ends at the first pause (media time from the end of speech to the decision)."""
    from processors.turn.semantic import SemanticTurnProcessor

    async def decide(text: str, words: str) -> tuple[float, dict]:
        u = speech(text, 16000, "en-us", -26.0)
        x = to_int16(np.concatenate((np.zeros(8000, np.float32), u, np.zeros(40000, np.float32))))
        frames: list = [AudioFrame(x[i : i + 320], 16000, i) for i in range(0, x.shape[0] - 319, 320)]
        frames.insert((8000 + u.shape[0]) // 320, TranscriptionFrame(words, final=False))  # as speech ends
        proc = SemanticTurnProcessor()
        out = await run_frames(proc, frames)
        assert sum(isinstance(f, UserStoppedSpeakingFrame) for f in out.downstream) == 1
        end = proc.last_end
        return (end.pts - end.speech_end) / 16000 * 1000, proc.statistics()["verdicts"]

    wait, verdicts = await decide("My number is four one five,", "my number is four one five")
    assert verdicts == {"words": 1} and wait >= 1400, (wait, verdicts)
    wait, verdicts = await decide("Thank you very much.", "thank you very much")
    assert wait <= 300 and sum(verdicts.values()) == 1 and "words" not in verdicts, (wait, verdicts)


def _server_turns(config: dict, x: np.ndarray, rate: int = 24000) -> list[tuple[str, int]]:
    from processors.realtime.server.turns import TurnDetector

    det = TurnDetector(config, rate)
    out = []
    for i in range(0, x.shape[0], 2400):  # 100 ms appends
        out += det.process(x[i : i + 2400])
    return out


def server_ends(x: np.ndarray, eagerness: str = "auto", rate: int = RATE) -> list[tuple[int, int]]:
    """(decision, decision) of each stop of the local server's semantic_vad (its stop is the decision point)."""
    return [(p, p) for kind, p in _server_turns({"type": "semantic_vad", "eagerness": eagerness}, x, rate)
            if kind == "stop"]


def test_local_server_semantic_vad_weighs_pitch_like_turn_semantic(model):
    """The server's semantic_vad (eagerness auto) on one voice's 8 paused + 8 complete sentences: the rule's figures."""
    scene = turn_scene(RATE, voices=("en-us",))
    x = to_int16(scene.samples)
    server = judge(scene, server_ends(x))
    client = judge(scene, semantic_ends(x, model)[0])
    timer = judge(scene, timer_ends(x))
    # measured: the server 1/8 premature, mean 438 ms (the same decisions as turn.semantic's: same rule,
    # same detector; Smart Turn alone at the server's old threshold 0.5 cut more)
    assert server[0] == client[0] and abs(server[2] - client[2]) < 25, (server, client)
    assert server[0] <= 3 and server[2] < timer[2], (server, timer)


def test_local_server_semantic_vad_uses_smart_turn():
    """semantic_vad ends a finished question within 0.5 s; a pause after an unfinished phrase waits out eagerness low's 3 s."""
    rate = 24000
    lead = rate // 2
    done = speech("What is the weather like in Paris?", rate, "en-us", -26.0)
    x = to_int16(np.concatenate((np.zeros(lead, np.float32), done, np.zeros(4 * rate, np.float32))))
    end = lead + done.shape[0]
    turns = _server_turns({"type": "semantic_vad", "eagerness": "auto"}, x)
    assert [k for k, _ in turns] == ["start", "stop"]
    assert turns[1][1] - end < rate // 2  # a timer at eagerness auto would be 600 ms; the model said done
    unfinished = speech("My number is four one five,", rate, "en-us", -26.0)
    x = to_int16(np.concatenate((np.zeros(lead, np.float32), unfinished, np.zeros(4 * rate, np.float32))))
    turns = _server_turns({"type": "semantic_vad", "eagerness": "low"}, x)
    assert [k for k, _ in turns] == ["start", "stop"]
    assert turns[1][1] - (lead + unfinished.shape[0]) > 2 * rate  # the model heard it unfinished: the turn stayed open


# --- babble: turn.semantic's foreground_db ------------------------------------------------------


def semantic_events(x: np.ndarray, model, **params) -> list:
    """Every TurnEvent of turn.semantic's detector and rule (no words) over ``x``, the stream's end included."""
    rule = TurnRule()
    det = SemanticTurnDetector(RATE, model=model, defer_model=True, threshold=rule.threshold,
                               max_silence_ms=rule.max_wait_ms, **params)
    out = []
    for i in range(0, x.shape[0] - FRAME + 1, FRAME):
        out += det.process(x[i : i + FRAME], i)
        if det.query is not None:
            v = judge_pause(rule, model, det.query, None)
            out += det.answer(v.probability, complete=v.complete, wait_ms=v.wait_ms)
    return out + det.finish()


@dataclass
class BabbleTurns:
    lines: int
    false_per_min: float  # turns started with no user line there (turn_figures: 200 ms slack)
    missed: int  # lines no turn overlaps
    ended: int  # lines followed by an end of turn before the next line starts
    complete: int  # ... of which the rule ended at once ("complete"); the rest waited ("timeout")
    delay_ms: float  # mean, from the line's last active sample to that end of turn (media time)
    cuts: int  # ends of turn inside a line (at a comma, or a dip the gate silenced)


def babble_turns(scene, events) -> BabbleTurns:
    """How turn.semantic's turns match the user's lines of a noisy_speech scene."""
    slack = RATE // 5
    segs, start = [], None
    for e in events:
        if e.started:
            start = e.pts
        else:
            segs.append((start, e.speech_end))
    f = turn_figures(segs, scene.truth, RATE, scene.samples.shape[0])
    ends = [e for e in events if not e.started and e.reason != "finish"]
    nexts = [a for a, _ in scene.truth[1:]] + [scene.samples.shape[0]]
    first = [next((e for e in ends if b - slack <= e.pts < nb), None) for (_, b), nb in zip(scene.truth, nexts)]
    delays = [(e.pts - b) / RATE * 1000 for e, (_, b) in zip(first, scene.truth) if e is not None]
    return BabbleTurns(len(scene.truth), f.false_per_min, f.missed, len(delays),
                       sum(e is not None and e.reason == "complete" for e in first),
                       float(np.mean(delays)) if delays else float("nan"),
                       sum(any(a + slack < e.pts < b - slack for a, b in scene.truth) for e in ends))


@pytest.mark.parametrize("snr", [10, 5])
def test_semantic_turn_foreground_db_in_babble(model, snr):
    """Six-voice babble, 2 min, 29 user lines: without the gate turn.semantic hears one turn that never ends;
    with foreground_db 6 each line starts a turn and an end of turn follows it, no turn starts in the crowd."""
    scene = noisy_speech(120, RATE, noise="babble", snr_db=snr)
    x = to_int16(scene.samples)
    raw = babble_turns(scene, semantic_events(x, model))
    gated = babble_turns(scene, semantic_events(x, model, foreground_db=6.0))
    print(f"\nbabble {snr} dB: turn.semantic {raw}\n  with foreground_db 6 {gated}")
    assert raw.ended == 0 and raw.false_per_min <= 0.5  # measured: one turn from 2 s to the stream's end
    # measured (10 / 5 dB; alone, then after the rest of this file: eSpeak's output moves with what it
    # synthesised before): 0 false turns a minute, 0 missed, 29/29 lines ended (7-8 / 11-14 at once, the
    # rest after the rule's wait: the crowd under the line makes the model and the pitch unsure), mean
    # delay 872-922 / 486-607 ms, 3-4 / 15-16 ends inside a line (at 5 dB the user's dips fall under the
    # gate). The same lines without the crowd: 29/29 ended, 19 at once, 499 ms, 3 ends inside a line ("No,").
    assert gated.false_per_min <= 1.0 and gated.missed == 0, gated
    assert gated.ended >= gated.lines - 2, gated
    assert gated.delay_ms < 1200.0 and gated.cuts <= {10: 8, 5: 22}[snr], gated


def test_foreground_gate_decides_only_what_the_vad_sees():
    """In 10 dB babble the gate silences most chunks for the VAD, yet the turn's audio the model (and the
    pitch tracker) judge at the first pause is the input itself, crowd and all, from 300 ms before the onset."""
    scene = noisy_speech(12, RATE, noise="babble", snr_db=10)
    x = to_int16(scene.samples)
    det = SemanticTurnDetector(RATE, defer_model=True, foreground_db=6.0)
    onset = None
    for i in range(0, x.shape[0] - FRAME + 1, FRAME):
        onset = next((e.pts for e in det.process(x[i : i + FRAME], i) if e.started), onset)
        if det.query is not None:
            break
    assert onset is not None and det.query is not None
    lo = onset - int(0.3 * RATE)
    assert np.array_equal(det.query, x[lo : i + FRAME].astype(np.float32) / 32768), (lo, i)
    print(f"\ngated {det.foreground.gated} of {i // FRAME + 1} chunks before the first pause")
    assert det.foreground.gated > 0.5 * i / FRAME  # measured: 141-142 of 189
    assert SemanticTurnDetector(RATE, defer_model=True).foreground is None  # off by default


@pytest.mark.anyio
async def test_semantic_turn_processor_foreground_db_in_a_graph():
    """turn.semantic with foreground_db over 20 s of 10 dB babble: each user line starts a turn and is
    followed by its end, nothing in the crowd starts one; the audio passes unchanged. Without: one turn."""
    from processors.turn.semantic import SemanticTurnProcessor

    scene = noisy_speech(20, RATE, noise="babble", snr_db=10)
    x = to_int16(scene.samples)
    frames = [AudioFrame(x[i : i + FRAME], RATE, i) for i in range(0, x.shape[0] - FRAME + 1, FRAME)]
    gated = SemanticTurnProcessor({"foreground_db": 6.0})
    out = await run_frames(gated, frames)
    assert np.array_equal(out.audio(), x[: len(frames) * FRAME])
    assert 0 < gated.statistics()["foreground_gated"] < len(frames)
    starts = [f.pts for f in out.of_type(UserStartedSpeakingFrame)]
    stops = [f.pts for f in out.of_type(UserStoppedSpeakingFrame)]
    slack = RATE // 4
    assert all(any(a - slack <= p <= b for a, b in scene.truth) for p in starts), (starts, scene.truth)  # none false
    assert all(any(abs(p - a) < slack for p in starts) for a, _ in scene.truth), (starts, scene.truth)  # each line
    assert all(any(abs(p - b) < slack for p in stops) for _, b in scene.truth), (stops, scene.truth)  # each ends
    ungated = SemanticTurnProcessor()
    plain = await run_frames(ungated, frames)
    assert "foreground_gated" not in ungated.statistics()
    assert len(plain.of_type(UserStartedSpeakingFrame)) == 1  # the babble is one long turn
    assert len(plain.of_type(UserStoppedSpeakingFrame)) <= 1  # ended by the stream's end, if at all
