"""Offline speech for voxpipe: eSpeak NG synthesis and pocketsphinx recognition.

The pure cores (:mod:`.espeak`, :mod:`.sphinx`) work on numpy arrays and load their C
libraries lazily, on first use. The processors ``tts.espeak`` (:mod:`.tts`) and
``stt.pocketsphinx`` (:mod:`.stt`) wrap them for graphs. Importing this package imports
neither library.
"""

__all__: list[str] = []
