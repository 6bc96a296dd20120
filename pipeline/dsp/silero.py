"""Silero VAD: the neural voice activity detector, run with onnxruntime, sans-I/O.

The model is the ONNX file shipped in the ``silero-vad`` wheel (``silero_vad/data/
silero_vad.onnx``). We locate it with ``importlib.util.find_spec`` and never import the
package: ``import silero_vad`` imports torch, which costs seconds and a gigabyte.

The model takes 512-sample chunks at 16 kHz (256 at 8 kHz), each preceded by the last 64
(32) samples of the previous chunk as context, plus a recurrent state of shape (2, 1, 128)
carried from chunk to chunk; it returns the probability that the chunk holds speech.
The session runs single-threaded (intra- and inter-op threads 1): a VAD per call is ~100 us
of work, where thread hand-offs cost more than they save and would compete with the rest
of the pipeline on a small machine. Its inputs and outputs are bound once to arrays of ours
(IO binding, two bindings that swap the state buffers): a chunk costs a conversion into the
bound input and one ``run_with_iobinding``, no feed dict, no new arrays, and none of
``session.run``'s per-call input checks and output wrapping (10-15% of the model's time).

Probabilities feed the same :class:`~pipeline.dsp.vad.SpeechSegmenter` as the energy VAD,
with Silero's own hysteresis: a chunk is active at ``neg_threshold`` (default
``threshold - 0.15``) and strong at ``threshold``. Onsets are placed at the first active
chunk. The model's probability lags the end of speech (its recurrent state decays over 2
or 3 chunks, up to ~100 ms in noise), so the end is placed with the help of energy: at the
end of the last chunk of the trailing active run that is still 3 dB above the noise floor
(the energy VAD's minimum statistics, a dot product per chunk). For other rates resample
first (:class:`~pipeline.dsp.resample.Resampler`); the ``vad.silero`` processor does.
"""

from __future__ import annotations

import importlib.util
import os
from collections import deque

import numpy as np

from .vad import _SILENCE, _SPEECH, NoiseFloor, SpeechSegmenter, VADEvent, VADState, energy_thresholds

__all__ = ["SILERO_RATES", "SileroVAD", "silero_model_path"]

#: Sample rate -> chunk size the model takes.
SILERO_RATES = {16000: 512, 8000: 256}
_CONTEXT = {16000: 64, 8000: 32}
_EMPTY: tuple = ()
_I16 = np.dtype(np.int16)
_INT16_SCALE = np.float32(1.0 / 32768.0)
_TAIL_CHUNKS = 6  # how far back the end of speech is searched (6 x 32 ms)
_END_MARGIN_DB = 3.0  # above the noise floor...
_END_ABS_DBFS = energy_thresholds(0.5)[1] - 3.0  # ...and above the energy VAD's release level


def silero_model_path() -> str:
    """Path of ``silero_vad.onnx`` inside the installed ``silero-vad`` wheel (not imported)."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the silero-vad package is not installed; `pip install silero-vad` "
                                "(voxpipe only reads its ONNX model, it never imports torch)")
    for base in spec.submodule_search_locations:
        path = os.path.join(base, "data", "silero_vad.onnx")
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"silero-vad is installed but has no data/silero_vad.onnx under "
                            f"{list(spec.submodule_search_locations)}; reinstall silero-vad")


def _session(path: str):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


class SileroVAD:
    """Speech start/stop from the Silero model's probabilities (sans-I/O).

    ``process(chunk, pts)`` takes exactly :attr:`chunk_size` mono samples (int16 or float32)
    at ``sample_rate`` (16000 or 8000) and returns the :class:`VADEvent` s it completes;
    :attr:`probability` holds the model's output for the last chunk. Keeps the model's
    state and context between chunks; :meth:`reset` starts a new stream. Rechunk with
    :class:`~pipeline.dsp.rechunk.Rechunker` when frames come in other sizes.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        *,
        threshold: float = 0.5,
        neg_threshold: float | None = None,
        prefix_padding_ms: float = 300.0,
        silence_duration_ms: float = 200.0,
        min_speech_ms: float = 100.0,
        model_path: str | None = None,
    ) -> None:
        if sample_rate not in SILERO_RATES:
            raise ValueError(f"Silero VAD runs at 16000 or 8000 Hz, not {sample_rate}; resample first "
                             "(the vad.silero processor does it for you)")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"Silero threshold is a probability between 0 and 1, got {threshold}")
        self.sample_rate = sample_rate
        self.chunk_size = SILERO_RATES[sample_rate]
        self.threshold = threshold
        self.neg_threshold = max(threshold - 0.15, 0.01) if neg_threshold is None else neg_threshold
        if not 0.0 < self.neg_threshold <= threshold:
            raise ValueError(f"neg_threshold must be in (0, threshold={threshold}], got {self.neg_threshold}")
        self.segmenter = SpeechSegmenter(sample_rate, min_speech_ms=min_speech_ms,
                                         silence_duration_ms=silence_duration_ms,
                                         prefix_padding_ms=prefix_padding_ms)
        self.session = _session(model_path or silero_model_path())
        ctx = _CONTEXT[sample_rate]
        self._ctx = ctx
        # Everything the model reads and writes lives in arrays made here, bound once to the
        # session (IO binding): a call converts the chunk into the input buffer and runs.
        # The recurrent state alternates between two buffers (the output of one call is the
        # input of the next), so there are two bindings, used in turn.
        self._input = np.zeros((1, ctx + self.chunk_size), np.float32)
        self._chunk = self._input[0, ctx:]
        self._context_to = self._input[0, :ctx]
        self._context_from = self._input[0, -ctx:]
        self._states = (np.zeros((2, 1, 128), np.float32), np.zeros((2, 1, 128), np.float32))
        self._out = np.zeros((1, 1), np.float32)
        self._out_flat = self._out.reshape(1)
        self._sr = np.array(sample_rate, dtype=np.int64)
        self._bindings = self._bind()
        self._turn = 0  # which binding runs next
        self._run = self.session.run_with_iobinding
        self.probability = 0.0
        self.noise = NoiseFloor(sample_rate)
        self._tail: deque[tuple[int, float]] = deque(maxlen=_TAIL_CHUNKS)
        self._end_margin = 10.0 ** (_END_MARGIN_DB / 10.0)
        self._end_abs = 10.0 ** (_END_ABS_DBFS / 10.0)
        self._fresh = True
        self._pos = 0

    @property
    def state(self) -> VADState:
        """The segmenter's state."""
        return self.segmenter.state

    @property
    def speaking(self) -> bool:
        """True between a start and a stop event."""
        return self.segmenter.speaking

    def _bind(self) -> tuple:
        from onnxruntime import OrtValue

        names = [o.name for o in self.session.get_outputs()]  # (probability, new state)
        values = [OrtValue.ortvalue_from_numpy(a) for a in (self._input, self._sr, self._out, *self._states)]
        inp, sr, out, s0, s1 = values
        self._ort_values = values  # the bindings refer to them (and they to the arrays)
        bindings = []
        for state_in, state_out in ((s0, s1), (s1, s0)):
            b = self.session.io_binding()
            b.bind_ortvalue_input("input", inp)
            b.bind_ortvalue_input("state", state_in)
            b.bind_ortvalue_input("sr", sr)
            b.bind_ortvalue_output(names[0], out)
            b.bind_ortvalue_output(names[1], state_out)
            bindings.append(b)
        return tuple(bindings)

    def reset(self) -> None:
        """Start a new stream: zero model state and context, silence, media time 0."""
        self._input.fill(0.0)
        for state in self._states:
            state.fill(0.0)
        self._turn = 0
        self.segmenter.reset()
        self.noise.reset()
        self._tail.clear()
        self.probability = 0.0
        self._fresh = True
        self._pos = 0

    def infer(self, chunk: np.ndarray) -> float:
        """Run the model on the next chunk; returns (and stores) its speech probability."""
        if chunk.shape[0] != self.chunk_size or chunk.ndim != 1:
            raise ValueError(f"SileroVAD at {self.sample_rate} Hz takes mono chunks of {self.chunk_size} "
                             f"samples, got shape {chunk.shape}; use a Rechunker({self.chunk_size})")
        np.copyto(self._context_to, self._context_from)  # context: the previous chunk's tail
        if chunk.dtype is _I16:
            np.multiply(chunk, _INT16_SCALE, out=self._chunk)
        else:
            np.copyto(self._chunk, chunk, casting="unsafe")
        turn = self._turn
        self._turn = turn ^ 1
        self._run(self._bindings[turn])
        p = self.probability = float(self._out_flat[0])
        return p

    def process(self, chunk: np.ndarray, pts: int | None = None) -> tuple[VADEvent, ...] | list[VADEvent]:
        """Analyse the next chunk (at media time ``pts``, default: right after the previous
        one); return the events it completes (usually an empty tuple)."""
        p = self.infer(chunk)
        start = self._pos if pts is None else pts
        if self._fresh:
            self._fresh = False
            self.segmenter.begin(start)
        end = self._pos = start + self.chunk_size
        x = self._chunk
        ms = float(np.vdot(x, x)) / self.chunk_size
        floor = self.noise.update(ms, self.chunk_size)
        seg = self.segmenter
        if p >= self.neg_threshold:
            self._tail.append((end, ms))
            if seg.state is _SPEECH:
                seg.last_active = end
                return _EMPTY
            event = seg.update(True, start, end, strong=p >= self.threshold)
        elif seg.state is _SILENCE:
            return _EMPTY
        elif seg.state is _SPEECH:
            event = seg.update(False, start, end, offset=self._offset(floor, start))
        else:
            event = seg.update(False, start, end)
        return _EMPTY if event is None else [event]

    def _offset(self, floor: float, start: int) -> int:
        """End of the last loud chunk of the active run just before ``start``."""
        thr = max(self._end_abs, floor * self._end_margin)
        expected = start
        last = start
        for end, ms in reversed(self._tail):
            if end != expected:  # not contiguous with the run: stop looking
                break
            if ms > thr:
                return end
            expected = end - self.chunk_size
        return last

    def finish(self) -> tuple[VADEvent, ...] | list[VADEvent]:
        """At the end of the stream: the stop event of a segment still open, if any."""
        event = self.segmenter.finish(self._pos)
        return _EMPTY if event is None else [event]
