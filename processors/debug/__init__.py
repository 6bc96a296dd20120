"""Seeing what a graph does: ``debug.console`` prints transcripts, tool calls and turns (:mod:`.console`)."""

__all__: list[str] = []
