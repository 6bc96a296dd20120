"""The local model's responder: YAML rules that answer transcripts and call tools.

:mod:`.rules` is the pure rules engine (:class:`~.rules.Brain`); :mod:`.tools` hears, chooses
and fills a session's declared tools without rules and speaks their results; :mod:`.scripted`
is the ``brain.scripted`` processor; ``demo_rules.yaml`` is the rules file voxpipe ships.
"""

__all__: list[str] = []
