"""Errors that tell a user what to change.

Hierarchy::

    VoxpipeError                 base of everything voxpipe raises on purpose
    ├── PipelineError            a pipeline (YAML or Python graph) is wrong; holds Problems
    ├── RegistryError            a processor type cannot be found or imported
    └── MediaError               an input file or device is unusable (names it and why)

A :class:`Problem` is one finding: where (file and line), what is wrong, and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MediaError", "PipelineError", "Problem", "RegistryError", "VoxpipeError"]


class VoxpipeError(Exception):
    """Base class of the errors voxpipe raises for a user to act on."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a pipeline: ``file:line: message`` plus an optional fix."""

    message: str
    file: str | None = None
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        text = f"{where}{self.message}"
        if self.hint:
            text += f"\n  {self.hint}"
        from .logs import redact  # a key put in the wrong param must not be printed back

        return redact(text)


class PipelineError(VoxpipeError):
    """A pipeline cannot be built; ``problems`` lists every finding, each with its line."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class RegistryError(VoxpipeError):
    """A processor type is unknown or its import path does not import."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} ({hint})")


class MediaError(VoxpipeError):
    """An audio file or device cannot be used; the message names it and what is wrong."""
