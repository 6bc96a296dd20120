"""voxpipe's framework core: frames, the Processor base, graphs, the YAML loader and the runner.

The names a user needs are re-exported here::

    from pipeline import Processor, AudioFrame, Direction, load, run
"""

from typing import TYPE_CHECKING

# Names are imported on first use (PEP 562) so that `voxpipe --help` does not pay for
# numpy and pydantic.
_EXPORTS = {
    "MediaError": "errors", "PipelineError": "errors", "VoxpipeError": "errors",
    "Graph": "graph", "load": "loader", "load_text": "loader", "Processor": "processor",
    "RunResult": "runner", "Runner": "runner", "run": "runner", "SessionContext": "session",
}
_FRAMES = (
    "AudioFormat AudioFrame Direction EndFrame ErrorFrame Frame FrameKind InterruptionFrame "
    "MetricsFrame PlaybackProgressFrame ResponseEndFrame ResponseStartFrame TextFrame "
    "ToolCallFrame ToolResultFrame ToolsAvailableFrame TranscriptionFrame "
    "UserStartedSpeakingFrame UserStoppedSpeakingFrame"
).split()
_EXPORTS.update({name: "frames" for name in _FRAMES})


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:  # pragma: no cover
    from .errors import MediaError, PipelineError, VoxpipeError
    from .frames import *  # noqa: F403
    from .graph import Graph
    from .loader import load, load_text
    from .processor import Processor
    from .runner import RunResult, Runner, run
    from .session import SessionContext

__version__ = "0.1.0"

__all__ = [
    "AudioFormat",
    "AudioFrame",
    "Direction",
    "EndFrame",
    "ErrorFrame",
    "Frame",
    "FrameKind",
    "Graph",
    "InterruptionFrame",
    "MediaError",
    "MetricsFrame",
    "PipelineError",
    "PlaybackProgressFrame",
    "Processor",
    "ResponseEndFrame",
    "ResponseStartFrame",
    "RunResult",
    "Runner",
    "SessionContext",
    "TextFrame",
    "ToolCallFrame",
    "ToolResultFrame",
    "ToolsAvailableFrame",
    "TranscriptionFrame",
    "UserStartedSpeakingFrame",
    "UserStoppedSpeakingFrame",
    "VoxpipeError",
    "load",
    "load_text",
    "run",
]
