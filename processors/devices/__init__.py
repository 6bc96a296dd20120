"""Sound devices through PortAudio: ``capture.microphone`` and ``playback.speaker`` (:mod:`.sound`).

:mod:`.playout` is their sans-I/O core (the playout ring and the heard-position tracker),
shared with ``playback.null``. ``sounddevice`` is imported only when a device is opened.
"""

__all__: list[str] = []
