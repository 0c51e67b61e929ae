"""pluggy markers for the ``audit_sdk`` project (kept apart so hookspecs.py holds specs only).

Plugins import ``hookimpl`` from ``audit_sdk`` itself; this leaf module exists so the core can mark
its specs without importing the package.
"""

import pluggy

PROJECT = "audit_sdk"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
