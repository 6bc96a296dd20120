"""``tts.espeak``: speak text frames with eSpeak NG, offline.

Each assistant :class:`TextFrame` is passed on (so a protocol downstream can send its
transcript) and followed by its speech: int16 mono :class:`AudioFrame` s of ``chunk_ms``
at ``sample_rate``, tagged with the text's ``item_id`` and ``turn``. Synthesis streams:
eSpeak NG runs in a worker thread and each ~60 ms block it produces is resampled and cut
into frames at once, so the first audio leaves after the first block, not the whole reply.

An interruption that makes the text's turn stale aborts the synthesis between blocks and
drops the partial frame; ``pts`` keeps counting output samples across replies.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from pipeline.frames import AudioFormat, AudioFrame, Direction, Frame, TextFrame
from pipeline.processor import Processor

__all__ = ["EspeakTTS"]


class EspeakTTS(Processor):
    """Turns assistant text into speech with eSpeak NG (library and voices from a wheel).

    The default voice, ``en-us+klatt``, is the one pocketsphinx recognises best, which
    makes synthesised speech usable as test input for a whole voice graph.
    """

    class Params(BaseModel, extra="forbid"):
        voice: str = Field("en-us+klatt", description="eSpeak NG voice: language[+variant]")
        rate_wpm: int = Field(160, ge=80, le=450, description="speaking rate, words per minute")
        sample_rate: int = Field(24000, gt=0, description="output sample rate in Hz")
        chunk_ms: float = Field(20.0, gt=0, description="audio frame length in ms")
        roles: list[str] = Field(default_factory=lambda: ["assistant"], description="TextFrame roles to speak")

    def output_format(self, upstream: AudioFormat | None) -> AudioFormat | None:
        return AudioFormat(self.params.sample_rate, 1, "int16")

    async def start(self) -> None:
        import anyio

        from pipeline.dsp.rechunk import Rechunker, frame_samples
        from pipeline.dsp.resample import Resampler

        from . import espeak

        p = self.params
        # Loads the library and checks the voice now, so a typo fails at start, not mid-call.
        native = await anyio.to_thread.run_sync(_prepare, p.voice, p.rate_wpm)
        self._resampler = Resampler(native, p.sample_rate, dtype="int16")
        self._rechunker = Rechunker(frame_samples(p.sample_rate, p.chunk_ms), dtype="int16")
        self._pts = 0
        self._espeak = espeak

    async def process(self, frame: Frame, direction: Direction) -> None:
        await self.push(frame, direction)
        if (isinstance(frame, TextFrame) and direction is Direction.DOWNSTREAM
                and frame.role in self.params.roles and frame.text.strip()):
            await self._speak(frame)

    async def _speak(self, text: TextFrame) -> None:
        import anyio

        p = self.params
        blocks = self._espeak.synthesize_chunks(text.text, voice=p.voice, rate_wpm=p.rate_wpm)
        completed = False
        try:
            while not (0 < text.turn < self.turn):
                block = await anyio.to_thread.run_sync(next, blocks, None)
                if block is None:
                    completed = True
                    break
                await self._emit(self._resampler.process(block), text)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(blocks.close)
        if completed:
            await self._emit(self._resampler.flush(), text)
            tail = self._rechunker.flush()
            if tail is not None:
                await self._push_audio(tail, text)
        else:  # interrupted: what is held belongs to the abandoned reply
            self._resampler.reset()
            self._rechunker.reset()

    async def _emit(self, samples, text: TextFrame) -> None:
        if samples.size:
            for chunk in self._rechunker.process(samples):
                await self._push_audio(chunk, text)

    async def _push_audio(self, samples, text: TextFrame) -> None:
        frame = AudioFrame(samples, self.params.sample_rate, pts=self._pts, item_id=text.item_id, turn=text.turn)
        self._pts += samples.shape[0]
        await self.push(frame)


def _prepare(voice: str, rate_wpm: int) -> int:
    from . import espeak

    espeak.synthesize_chunks("", voice=voice, rate_wpm=rate_wpm)
    return espeak.native_sample_rate()
