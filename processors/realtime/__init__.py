"""The OpenAI Realtime API both ways: :mod:`.client` (``realtime.openai``) and :mod:`.server` (the local server).

Importing this package imports neither side.
"""

__all__: list[str] = []
