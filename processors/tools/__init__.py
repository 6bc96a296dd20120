"""Tools: Python functions the model can call.

* :func:`tool` (from :mod:`.schema`) declares a function's description and options;
  :mod:`.schema` turns a signature and docstring into a JSON-schema tool definition;
* :class:`~.router.ToolRouter` (``tools.router``) answers the model's tool calls;
* :mod:`.examples` holds the sample tools the shipped pipelines use (``get_weather``).
"""

from .schema import ToolError, tool

__all__ = ["ToolError", "tool"]
