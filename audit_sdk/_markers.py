"""Old private name of :mod:`audit_sdk.markers`, kept so code written against it keeps working."""

from .markers import PROJECT, hookimpl, hookspec

__all__ = ["PROJECT", "hookimpl", "hookspec"]
