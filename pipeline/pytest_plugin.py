"""A pytest plugin, installed with voxpipe: plain ``async def`` tests run on asyncio.

pytest alone skips coroutine tests ("async def functions are not natively supported").
This plugin (entry point ``voxpipe`` in the ``pytest11`` group, so it loads by itself
once voxpipe is installed) runs every ``async def`` test that no other plugin claimed
with :func:`anyio.run` on asyncio, so the harness in :mod:`pipeline.testing` works as the
README shows::

    from pipeline.testing import run_frames, sine

    async def test_gain_halves():
        out = await run_frames(Gain({"db": -6.02}), [sine(dtype="float32")])
        ...

Tests that anyio's own plugin (``@pytest.mark.anyio``) or pytest-asyncio
(``@pytest.mark.asyncio``) handle are left to them. ``pytest -p no:voxpipe`` turns it off.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest

__all__ = ["pytest_pyfunc_call"]


def _claimed_by_another_plugin(item: Any) -> bool:
    if "anyio_backend" in item.funcargs:  # anyio's plugin runs it (its hook runs first)
        return True
    return item.get_closest_marker("asyncio") is not None and item.config.pluginmanager.hasplugin("asyncio")


@pytest.hookimpl
def pytest_pyfunc_call(pyfuncitem: Any) -> bool | None:
    """Run a coroutine test function on asyncio; leave every other test to pytest."""
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn) or _claimed_by_another_plugin(pyfuncitem):
        return None
    import anyio

    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    anyio.run(functools.partial(fn, **kwargs), backend="asyncio")
    return True
