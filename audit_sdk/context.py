"""``RunContext``: what the attacks of one run share (a leaf of the core, typed for plugins).

An attack's ``run(target, data, rng=..., context=...)`` receives it from the pipeline (or None when
called alone): read its fields directly, ``context.executor``, ``context.cache_dir``; a field
never needs ``getattr`` with a default. The registry is typed by the ``ComponentRegistry``
protocol rather than the concrete class so this module stays below the registry and the
interfaces (no import circle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pluggy

from .executors.base import Executor
from .executors.local import LocalExecutor

__all__ = ["ComponentRegistry", "RunContext"]


@runtime_checkable
class ComponentRegistry(Protocol):
    """What a plugin may use of ``audit_sdk.Registry``: the components and the plugin manager."""

    @property
    def pm(self) -> pluggy.PluginManager:
        """The plugin manager (call hooks as ``registry.pm.hook.<name>(...)``)."""
        ...

    def get(self, kind: str, name: str) -> type[Any]:
        """The registered class of ``kind`` (``attack``, ``defense``, ...) called ``name``."""
        ...

    def names(self, kind: str) -> list[str]:
        """Registered names of one kind, sorted."""
        ...

    def create(self, kind: str, name: str, params: Any = None) -> Any:
        """An instance of the component ``name`` with ``params`` validated."""
        ...


@dataclass
class RunContext:
    """Resources shared by the attacks of one run.

    Attributes:
        registry: components and the plugin manager (hooks are called through ``registry.pm.hook``).
        executor: runs fan-out work (reference models).
        cache_dir: where trained reference models are cached (None: no cache).
        out_dir: where artefacts (per-sample scores, images) are written (None: nowhere).
        progress: show progress bars.
        extras: anything an attack family shares between its attacks (e.g. ``model_factory``,
            ``budget_seconds``).
    """

    registry: ComponentRegistry
    executor: Executor = field(default_factory=LocalExecutor)
    cache_dir: Path | None = None
    out_dir: Path | None = None
    progress: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
