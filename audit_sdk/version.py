"""The installed version of audit-sdk and of the libraries that shape its numbers (a leaf module)."""

from __future__ import annotations

import platform
from importlib import metadata

__all__ = ["__version__", "versions"]

try:
    __version__ = metadata.version("audit-sdk")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"


def versions() -> dict[str, str]:
    """Versions of audit-sdk, Python and the libraries that shape the numbers (those installed)."""
    out = {"audit-sdk": __version__, "python": platform.python_version(), "platform": platform.platform(terse=True)}
    for dist in ("numpy", "scipy", "scikit-learn", "torch", "onnxruntime-gpu", "onnxruntime", "pydantic", "pluggy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out
