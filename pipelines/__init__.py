"""What voxpipe ships to run: YAML pipelines, their sample audio, and the programs around them.

This package is mostly data. The YAML files (``demo.yaml``, ``realtime_server.yaml``,
``web_agent.yaml``, ...) and ``samples/*.wav`` are installed with the wheel as package
data, and code finds them with :func:`shipped`, never by walking out of the source tree,
so ``voxpipe demo`` works from any directory of a plain ``pip install``. The two programs
beside them drive shipped pipelines: :mod:`.demo` (``voxpipe demo``) and :mod:`.bench`
(``voxpipe bench``).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["available", "shipped"]


def shipped(name: str) -> Path:
    """The path of a file shipped in this package, e.g. ``shipped("demo.yaml")``.

    Raises :class:`FileNotFoundError` naming what is shipped when ``name`` is not.
    """
    resource = files(__name__).joinpath(*name.split("/"))
    path = Path(str(resource))
    if not resource.is_file() or not path.is_file():
        raise FileNotFoundError(f"voxpipe ships no pipeline file {name!r}; shipped: {', '.join(available())}")
    return path


def available() -> list[str]:
    """The names of the shipped YAML pipelines."""
    return sorted(p.name for p in files(__name__).iterdir() if p.name.endswith(".yaml"))
