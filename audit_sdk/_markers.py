"""pluggy markers for the ``audit_sdk`` project (kept apart so hookspecs.py holds specs only)."""

import pluggy

PROJECT = "audit_sdk"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
