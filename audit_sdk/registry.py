"""The plugin manager and the registry of components it collects.

``get_plugin_manager()`` builds a fresh manager on each call: add the specs, load the entry-point
group ``audit_sdk`` (built-ins and third-party packages alike), drop disabled plugins, check
pending hooks, then validate what the register hooks returned. No module-level manager, no work
at import time.

Environment:
    AUDIT_SDK_DISABLE_PLUGINS: ``1`` disables every third-party plugin; otherwise a comma-separated
        list of entry-point or distribution names to skip.
    AUDIT_SDK_TRACE_PLUGINS: ``1`` prints every hook call to stderr.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from ._markers import PROJECT
from .errors import PluginError, UnknownComponentError
from .interfaces import Accountant, Attack, Component, Defense, Mechanism

__all__ = ["ENTRY_POINT_GROUP", "Registry", "get_plugin_manager", "get_registry"]

ENTRY_POINT_GROUP = "audit_sdk"
_OWN_DIST = "audit-sdk"
_NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*\.[a-z0-9]+(?:[-.][a-z0-9]+)*$")

_KINDS: dict[str, tuple[str, type[Component]]] = {
    "mechanism": ("register_mechanisms", Mechanism),
    "accountant": ("register_accountants", Accountant),
    "defense": ("register_defenses", Defense),
    "attack": ("register_attacks", Attack),
}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _disabled() -> tuple[bool, set[str]]:
    raw = os.environ.get("AUDIT_SDK_DISABLE_PLUGINS", "").strip()
    if raw in ("1", "true", "all", "*"):
        return True, set()
    return False, {_norm(s) for s in raw.split(",") if s.strip()}


class AuditPluginManager(pluggy.PluginManager):
    """A pluggy PluginManager that remembers which distribution each plugin came from."""

    def __init__(self) -> None:
        super().__init__(PROJECT)
        #: plugin name -> (distribution name, version)
        self.distributions: dict[str, tuple[str, str]] = {}


def get_plugin_manager(*, third_party: bool | None = None) -> AuditPluginManager:
    """Build a fresh plugin manager with built-in and (unless disabled) third-party plugins.

    Args:
        third_party: load third-party entry points; None follows ``AUDIT_SDK_DISABLE_PLUGINS``.

    Raises:
        PluginError: a plugin cannot be imported, or implements a hook that does not exist.
    """
    pm = AuditPluginManager()
    pm.add_hookspecs(hookspecs)
    all_off, names_off = _disabled()
    load_third = (not all_off) if third_party is None else third_party
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        own = _norm(dist) == _norm(_OWN_DIST)
        if not own and (not load_third or _norm(ep.name) in names_off or _norm(dist) in names_off):
            continue
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"plugin {ep.name!r} from {dist} failed to import: {type(exc).__name__}: {exc}. "
                f"Fix or uninstall {dist}, or skip it with AUDIT_SDK_DISABLE_PLUGINS={ep.name}.",
                plugin_name=dist,
            ) from exc
        pm.register(plugin, name=ep.name)
        pm.distributions[ep.name] = (dist, ep.dist.version if ep.dist is not None else "")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{exc}. The plugin implements a hook audit-sdk does not define.", plugin_name=str(exc.plugin)) from exc
    if os.environ.get("AUDIT_SDK_TRACE_PLUGINS") == "1":
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    return pm


def _package_of(pm: pluggy.PluginManager, plugin_name: str, plugin: object) -> tuple[str, str]:
    dists = getattr(pm, "distributions", {})
    if plugin_name in dists:
        return dists[plugin_name]
    # registered by hand (tests, notebooks): name the module it lives in
    mod = getattr(plugin, "__name__", type(plugin).__module__)
    return str(mod), ""


@dataclass
class ComponentInfo:
    """A registered component and where it came from."""

    cls: type[Component]
    kind: str
    plugin: str
    package: str
    version: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.cls.name,
            "kind": self.kind,
            "summary": self.cls.summary,
            "package": self.package,
            "version": self.version,
            "plugin": self.plugin,
            "access": getattr(self.cls, "access", None) if self.kind == "attack" else None,
            "points": list(getattr(self.cls, "points", ())) if self.kind == "defense" else None,
            "options": self.cls.options_schema(),
        }


@dataclass
class Registry:
    """Every registered component by kind and name, with lookups that suggest near misses::

    reg = get_registry()
    LossThreshold = reg.get("attack", "mia.loss-threshold")
    """

    pm: pluggy.PluginManager
    components: dict[str, dict[str, ComponentInfo]] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> type[Any]:
        """The class registered as ``name`` of ``kind`` (attack, defense, mechanism, accountant).

        Raises:
            UnknownComponentError: naming the nearest registered names.
        """
        table = self.components.get(kind, {})
        if name in table:
            return table[name].cls
        # Accept the bare name when it is unambiguous ("loss-threshold" for "mia.loss-threshold").
        tails = [n for n in table if n.split(".", 1)[-1] == name]
        if len(tails) == 1:
            return table[tails[0]].cls
        near = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
        near += [n for n in table if name in n and n not in near][:3]
        hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
        everything, some = _disabled()
        off = ""
        if everything or some:
            what = "every third-party plugin is" if everything else f"third-party plugins {', '.join(sorted(some))} are"
            off = f" Note: {what} disabled by AUDIT_SDK_DISABLE_PLUGINS; unset it if {name!r} comes from one."
        raise UnknownComponentError(
            f"unknown {kind} {name!r}.{hint} Registered {kind}s: {', '.join(sorted(table)) or 'none'} "
            f"(list them with `audit-sdk plugins`).{off}",
            plugin_name=name,
        )

    def names(self, kind: str) -> list[str]:
        return sorted(self.components.get(kind, {}))

    def infos(self) -> list[ComponentInfo]:
        return [info for kind in _KINDS for info in self.components.get(kind, {}).values()]

    def create(self, kind: str, name: str, params: Any = None) -> Any:
        """Instantiate ``name`` with validated ``params``."""
        return self.get(kind, name)(params)


def get_registry(pm: pluggy.PluginManager | None = None) -> Registry:
    """Collect and validate the classes every plugin registers.

    Raises:
        PluginError: a registered object is not a class of the right interface, has no valid
            kebab-case namespaced ``name`` or no one-line ``summary``, or two plugins register the
            same name (both packages are named).
    """
    pm = pm if pm is not None else get_plugin_manager()
    reg = Registry(pm=pm)
    for kind, (hook_name, base) in _KINDS.items():
        table: dict[str, ComponentInfo] = {}
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            package, version = _package_of(pm, impl.plugin_name, impl.plugin)
            classes = impl.function() or []
            for cls in classes:
                where = f"{impl.plugin_name} ({package})"
                if not (isinstance(cls, type) and issubclass(cls, base)):
                    raise PluginError(
                        f"{where}: {hook_name} returned {cls!r}, which is not a {base.__name__} subclass.", plugin_name=package
                    )
                name = getattr(cls, "name", None)
                if not isinstance(name, str) or not _NAME_RE.match(name):
                    raise PluginError(
                        f"{where}: {cls.__name__}.name = {name!r} is not a namespaced kebab-case name like 'mia.loss-threshold'.",
                        plugin_name=package,
                    )
                summary = getattr(cls, "summary", None)
                if not isinstance(summary, str) or not summary.strip() or "\n" in summary.strip():
                    raise PluginError(f"{where}: {cls.__name__}.summary must be one non-empty line.", plugin_name=package)
                if name in table:
                    other = table[name]
                    raise PluginError(
                        f"duplicate {kind} name {name!r}: registered by {other.package} ({other.cls.__module__}.{other.cls.__qualname__}) "
                        f"and by {package} ({cls.__module__}.{cls.__qualname__}). Rename one, or disable one package with "
                        "AUDIT_SDK_DISABLE_PLUGINS.",
                        plugin_name=package,
                    )
                table[name] = ComponentInfo(cls=cls, kind=kind, plugin=impl.plugin_name, package=package, version=version)
        reg.components[kind] = table
    return reg
