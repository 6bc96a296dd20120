"""Turn-taking processors: when the user's turn is over (:mod:`.semantic`)."""

__all__: list[str] = []
