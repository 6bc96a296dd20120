"""``audio.aec``: acoustic echo cancellation with the far-end (played) audio as reference.

The reference, the audio the speaker plays as it plays it, reaches the node one of two ways:

* from a second input named by ``reference`` (the id of the node it comes from)::

      processors:
        aec:     {type: audio.aec, params: {reference: played}}
      links:
        - mic -> aec -> model
        - played -> aec          # `played` emits what the speaker is playing, as it plays it

  The processor learns which input a frame came from through the runner's ``link``
  argument (``process(frame, direction, link)``). Other frames from that input are
  dropped (they travel the graph by their own path).
* upstream, along the links it already has: ``playback.speaker`` with ``echo_reference:
  true`` at the end of ``mic -> aec -> ... -> speaker`` sends each block it plays back up
  the chain (``pipelines/voice_agent.yaml``). Capture audio never travels upstream, so
  every upstream :class:`AudioFrame` that reaches ``audio.aec`` is reference.

Reference audio is consumed: it feeds the canceller and goes no further. Capture audio
comes out with the echo removed, same pts, rate and type. The delay between reference and
echo is found by WebRTC AEC3's estimator; nothing to configure. See :mod:`pipeline.dsp.aec`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from pipeline.dsp.formats import as_dtype, downmix
from pipeline.dsp.resample import Resampler
from pipeline.errors import VoxpipeError
from pipeline.frames import AudioFormat, AudioFrame, Direction, Frame
from pipeline.processor import Processor

__all__ = ["EchoCancellerProcessor"]

_DOWN = Direction.DOWNSTREAM
_UP = Direction.UPSTREAM


class EchoCancellerProcessor(Processor):
    """Removes the agent's own voice (the reference: what the speaker plays) from the microphone's audio.

    WebRTC AEC3 through ``pywebrtc-audio``; 16, 32 and 48 kHz natively, other rates through the
    next native one up (24 kHz through 32 kHz). Costs about 0.3-0.6 ms of CPU per 20 ms frame
    (``benchmarks/quality.py``; all-zero reference is handed to AEC3 as -92 dBFS noise, which
    keeps it from slowing six-fold, see :mod:`pipeline.dsp.aec`).
    Reference audio at another rate than the capture is resampled; stereo is downmixed.
    """

    class Params(BaseModel, extra="forbid"):
        reference: str | None = Field(None, description="id of the input node whose audio is what the speaker "
                                                        "plays; null: the reference comes upstream")
        max_reference_ms: float = Field(1000.0, ge=20.0, le=10000.0,
                                        description="reference kept ahead of the capture; older is dropped")
        capture_delay_ms: float = Field(0.0, ge=0.0, le=500.0,
                                        description="hold the capture back this long and pair it with the "
                                                    "reference that arrives up to half that after it, for "
                                                    "reference that can arrive after its echo (adds that latency)")
        residual_gate_db: float | None = Field(10.0, ge=3.0, le=40.0,
                                               description="while the far end plays, attenuate 10 ms blocks the "
                                                           "canceller cut by this many dB or more (residual echo "
                                                           "bursts); null: off")

    input_format = AudioFormat(channels=1)

    def __init__(self, params: BaseModel | dict[str, Any] | None = None, *, name: str | None = None) -> None:
        super().__init__(params, name=name)
        self.canceller: Any = None
        self._rate = 0
        self._dtype: Any = None
        self._ref_resampler: Resampler | None = None
        self._ref_rate = 0
        self._next_pts: int | None = None
        self.reference_frames = 0
        self.reference_early = 0  # reference frames before the first capture frame (nothing to pair with)

    async def start(self) -> None:
        try:
            inputs = self.inputs
        except RuntimeError:  # driven by hand, outside a graph: nothing to check
            inputs = None
        if inputs is not None and self.params.reference is not None and self.params.reference not in inputs:
            raise VoxpipeError(f"audio.aec {self.name!r}: reference {self.params.reference!r} is not one of its "
                               f"inputs {list(inputs)}; link the playback side to it (`- {self.params.reference} -> "
                               f"{self.name}`) or name the right node in `reference`")
        from pipeline.dsp.aec import import_webrtc

        import_webrtc()  # fail at start, with the install hint, not on the first frame

    async def process(self, frame: Frame, direction: Direction, link: str | None = None) -> None:
        if link is not None and link == self.params.reference:
            if type(frame) is AudioFrame:
                self._reference(frame)
            return
        if direction is _UP and type(frame) is AudioFrame:  # played audio sent back up the chain
            self._reference(frame)
            return
        if direction is not _DOWN or type(frame) is not AudioFrame:
            await self.push(frame, direction)
            return
        x = frame.samples
        if x.ndim != 1:
            x = downmix(x)
        if frame.sample_rate != self._rate or (x.dtype is not self._dtype and x.dtype != self._dtype):
            self._setup(frame.sample_rate, x.dtype)
        if self._next_pts is None:
            self._next_pts = frame.pts - int(self.canceller.delay)
        y = self.canceller.process(x)
        if y.shape[0]:
            pts = self._next_pts
            self._next_pts = pts + y.shape[0]
            await self.push(AudioFrame(y, frame.sample_rate, pts, frame.item_id, turn=frame.turn))

    def _setup(self, rate: int, dtype: Any) -> None:
        from pipeline.dsp.aec import EchoCanceller

        self.canceller = EchoCanceller(rate, dtype=dtype, max_reference_ms=self.params.max_reference_ms,
                                       capture_delay_ms=self.params.capture_delay_ms,
                                       residual_gate_db=self.params.residual_gate_db)
        self._rate, self._dtype = rate, dtype
        self._ref_rate = 0
        self._next_pts = None

    def _reference(self, frame: AudioFrame) -> None:
        self.reference_frames += 1
        if self.canceller is None:
            self.reference_early += 1
            return
        x = frame.samples
        if x.ndim != 1:
            x = downmix(x)
        if x.dtype != self._dtype:
            x = as_dtype(x, self._dtype)
        if frame.sample_rate != self._rate:
            if frame.sample_rate != self._ref_rate:
                self._ref_rate = frame.sample_rate
                self._ref_resampler = Resampler(frame.sample_rate, self._rate, dtype=self._dtype.name)
            x = self._ref_resampler.process(x)
        self.canceller.reference(x)

    async def stop(self) -> None:
        if self.canceller is not None and not self.cancelled:
            y = self.canceller.flush()
            if y.shape[0] and self._next_pts is not None:
                await self.push(AudioFrame(y, self._rate, self._next_pts, turn=self.turn))

    def statistics(self) -> dict[str, Any]:
        """Queue figures plus reference frames seen (and dropped before any capture), reference
        samples dropped or missing (at the canceller's work rate), and how often the pairing was
        moved to keep the reference ahead of its echo (``capture_delay_ms``)."""
        out = super().statistics()
        out["reference_frames"] = self.reference_frames
        out["reference_early"] = self.reference_early
        if self.canceller is not None:
            out["reference_dropped"] = self.canceller.reference_dropped
            out["reference_missing"] = self.canceller.reference_missing
            out["reference_realigned"] = self.canceller.realigned
        return out
