"""The built-in processors of voxpipe, one module (or sub-package) per family.

Each module imports its heavy dependencies (onnxruntime, pocketsphinx, sounddevice, ...)
lazily, in ``start()``, so that listing or validating pipelines stays fast.
"""

__all__: list[str] = []
