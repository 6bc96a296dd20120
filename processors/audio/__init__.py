"""Audio processors over the DSP core: resample, gain, mix (:mod:`.transforms`) and voice activity (:mod:`.vad`).

Importing this package imports numpy and soxr, not onnxruntime (Silero loads in ``start()``).
"""

from .transforms import GainProcessor, MixProcessor, ResampleProcessor

__all__ = ["GainProcessor", "MixProcessor", "ResampleProcessor"]
