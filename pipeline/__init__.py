"""voxpipe's framework core: frames, the Processor base, graphs, the YAML loader and the runner.

The names a user needs are re-exported here::

    from pipeline import Processor, AudioFrame, Direction, load, run
"""

from .errors import MediaError, PipelineError, VoxpipeError
from .frames import (
    AudioFormat,
    AudioFrame,
    Direction,
    EndFrame,
    ErrorFrame,
    Frame,
    FrameKind,
    InterruptionFrame,
    MetricsFrame,
    PlaybackProgressFrame,
    ResponseEndFrame,
    ResponseStartFrame,
    TextFrame,
    ToolCallFrame,
    ToolResultFrame,
    ToolsAvailableFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from .graph import Graph
from .loader import load, load_text
from .processor import Processor
from .runner import RunResult, Runner, run

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
