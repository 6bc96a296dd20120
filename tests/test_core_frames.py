"""Frames: kinds, slots, audio properties, caps."""

import numpy as np
import pytest

from pipeline import frames as F
from pipeline.frames import AudioFormat, AudioFrame, FrameKind


def test_every_frame_kind_is_as_designed():
    """System frames are out of band, control in order, data droppable."""
    system = [F.InterruptionFrame, F.ErrorFrame, F.MetricsFrame, F.UserStartedSpeakingFrame,
              F.UserStoppedSpeakingFrame, F.PlaybackProgressFrame, F.ToolsAvailableFrame]
    control = [F.EndFrame, F.ResponseStartFrame, F.ResponseEndFrame, F.ToolResultFrame]
    data = [F.AudioFrame, F.TextFrame, F.TranscriptionFrame, F.ToolCallFrame]
    assert all(c.kind is FrameKind.SYSTEM for c in system)
    assert all(c.kind is FrameKind.CONTROL for c in control)
    assert all(c.kind is FrameKind.DATA for c in data)


def test_frames_are_slotted_and_carry_a_turn():
    """Frames have no per-instance dict and a keyword-only turn."""
    f = AudioFrame(np.zeros(480, np.int16), 24000, turn=3)
    assert not hasattr(f, "__dict__")
    assert f.turn == 3
    with pytest.raises(AttributeError):
        f.colour = "red"


def test_audio_frame_properties():
    """Channels, length, duration and caps come from the array."""
    f = AudioFrame(np.zeros((960, 2), np.float32), 48000, pts=960)
    assert (f.channels, f.num_samples, f.duration_ms) == (2, 960, 20.0)
    assert f.format == AudioFormat(48000, 2, "float32")


def test_caps_accept_and_merge():
    """None in caps means any; merge fills unset fields."""
    want = AudioFormat(24000, 1, "int16")
    assert want.accepts(AudioFormat(24000, 1, "int16"))
    assert not want.accepts(AudioFormat(48000, 1, "int16"))
    assert AudioFormat(24000).accepts(AudioFormat(24000, 2, "float32"))
    assert AudioFormat(16000).merge(AudioFormat(48000, 2, "int16")) == AudioFormat(16000, 2, "int16")
    assert str(want) == "24000 Hz int16 mono"
