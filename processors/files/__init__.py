"""Files as sources and sinks: ``capture.wav`` (and the generated ``capture.tone`` / ``capture.noise``),
``playback.wav``, ``playback.null`` (a speaker with no device) and the two-channel ``record``er.

:mod:`.wavfile` reads and writes the audio files themselves.
"""

__all__: list[str] = []
