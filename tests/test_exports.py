"""The public surface: every module declares __all__, every name exists and is documented."""

import importlib
import inspect
import pkgutil

import pytest

import pipeline
import processors

HEAVY_OPTIONAL = {"processors.devices.sound"}  # imports fine without PortAudio, but say so if not


def modules():
    for pkg in (pipeline, processors):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if info.name.split(".")[-1].startswith("_"):
                continue
            yield info.name


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_has_a_documented_public_surface(name):
    """__all__ is declared, every name in it exists, and public classes have docstrings."""
    module = importlib.import_module(name)
    assert module.__doc__, f"{name} has no module docstring"
    assert hasattr(module, "__all__"), f"{name} does not declare __all__"
    for attr in module.__all__:
        obj = getattr(module, attr)  # raises if __all__ names something missing
        if inspect.isclass(obj):
            assert obj.__doc__ and obj.__doc__.strip(), f"{name}.{attr} has no docstring"


def test_root_reexports_the_user_facing_names():
    """pipeline re-exports what a processor author needs, lazily, and nothing it lacks."""
    for attr in pipeline.__all__:
        assert getattr(pipeline, attr) is not None
    assert {"Processor", "AudioFrame", "Direction", "load", "run", "Graph"} <= set(pipeline.__all__)
