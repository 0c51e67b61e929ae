"""The plugin manager and the registry of components it collects.

``get_plugin_manager()`` builds a fresh manager on each call: add the specs, load the entry-point
group ``audit_sdk`` (built-ins and third-party packages alike), drop disabled plugins, check
pending hooks, then validate what the register hooks returned. No module-level manager, no work
at import time.

A third-party plugin is isolated: one that fails to import, implements an unknown hook, raises in
(or returns something other than a list of classes from) a register hook, registers an invalid
class, or raises in any other hook (``make_target``, observers, ``report_sections``) is skipped,
with one ``PluginWarning`` naming its distribution, the error and the switch that silences it;
``audit-sdk plugins`` lists it as broken, and the rest of the run goes on. Strict mode
(``strict=True``, ``AUDIT_SDK_STRICT_PLUGINS=1``, ``audit-sdk --strict-plugins``) makes each such
fault a ``PluginError`` instead. Built-in plugins (and plugins registered by hand with
``pm.register``) are not isolated: their faults are bugs and surface as such.

Environment:
    AUDIT_SDK_DISABLE_PLUGINS: ``1`` disables every third-party plugin; otherwise a comma-separated
        list of entry-point or distribution names to skip.
    AUDIT_SDK_STRICT_PLUGINS: ``1`` makes a broken third-party plugin fatal.
    AUDIT_SDK_TRACE_PLUGINS: ``1`` prints every hook call to stderr.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import PluginError, PluginWarning, UnknownComponentError
from .interfaces import Accountant, Attack, Component, Defense, Mechanism
from .markers import PROJECT

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


def _strict_from_env() -> bool:
    return os.environ.get("AUDIT_SDK_STRICT_PLUGINS", "").strip().lower() in ("1", "true", "yes", "on")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300].rstrip(".")
    if isinstance(exc, PluginError):  # our own message already says what is wrong
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class BrokenPlugin:
    """A third-party plugin that was isolated, and why."""

    name: str
    package: str
    version: str
    stage: str  # "import", "hooks", "register_attacks", "make_target", "on_attack_finished", ...
    error: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "package": self.package, "version": self.version, "stage": self.stage, "error": self.error}


class AuditPluginManager(pluggy.PluginManager):
    """A pluggy PluginManager that remembers which distribution each plugin came from and
    isolates broken third-party plugins (see the module docstring).

    Attributes:
        distributions: plugin name -> (distribution name, version), for entry-point plugins.
        broken: plugin name -> BrokenPlugin, the third-party plugins isolated so far (first fault).
        strict: raise PluginError on a third-party plugin's fault instead of isolating it.
    """

    def __init__(self, *, strict: bool | None = None) -> None:
        super().__init__(PROJECT)
        self.distributions: dict[str, tuple[str, str]] = {}
        self.broken: dict[str, BrokenPlugin] = {}
        self.strict = _strict_from_env() if strict is None else strict
        self._isolated: set[str] = set()
        self._reported: set[tuple[str, str]] = set()

    def is_isolated(self, plugin_name: str) -> bool:
        """Whether faults of this plugin are isolated (a third-party entry-point plugin)."""
        return plugin_name in self._isolated

    def plugin_fault(self, plugin_name: str, stage: str, exc: BaseException | str, *, disable: bool = False) -> None:
        """Record a third-party plugin's fault: warn once (per plugin and stage), or raise in strict mode.

        Args:
            stage: where it failed (``import``, a hook name, ...).
            disable: also unregister the plugin, so none of its hooks runs again.

        Raises:
            PluginError: in strict mode, naming the plugin, its distribution and the error.
        """
        dist, version = self.distributions.get(plugin_name, (plugin_name, ""))
        error = (exc if isinstance(exc, str) else _one_line(exc)).removeprefix(f"{plugin_name} ({dist}): ")
        what = "failed to import" if stage == "import" else f"failed in {stage}"
        where = f"plugin {plugin_name!r} ({dist}{' ' + version if version else ''})"
        if self.strict:
            raise PluginError(
                f"{where} {what}: {error}. Fix or uninstall {dist}, or skip it with AUDIT_SDK_DISABLE_PLUGINS={plugin_name} "
                "(strict plugin mode is on).",
                plugin_name=dist,
            ) from (exc if isinstance(exc, BaseException) else None)
        self.broken.setdefault(plugin_name, BrokenPlugin(plugin_name, dist, version, stage, error))
        if disable and self.get_plugin(plugin_name) is not None:
            self.unregister(name=plugin_name)
        if (plugin_name, stage) in self._reported:
            return
        self._reported.add((plugin_name, stage))
        # a failed register_commands costs the plugin its commands only (the CLI removes them); its components still work
        whole = disable or stage in ("import", "hooks") or (stage.startswith("register") and stage != "register_commands")
        outcome = (
            "plugin skipped"
            if whole
            else (
                "its commands are skipped, the rest of it still works"
                if stage == "register_commands"
                else f"its {stage} hook is skipped, the run goes on"
            )
        )
        warnings.warn(
            f"{where} {what}: {error}; {outcome}. Silence it with AUDIT_SDK_DISABLE_PLUGINS={plugin_name}, "
            "or make it fatal with --strict-plugins (AUDIT_SDK_STRICT_PLUGINS=1).",
            PluginWarning,
            stacklevel=2,
        )

    def isolate(self, plugin_name: str) -> None:
        """Guard every hook of a registered plugin: an exception is a fault of that plugin, not of the run.

        Register hooks are guarded by ``get_registry`` (which also checks what they return), hook
        wrappers are left alone.
        """
        plugin = self.get_plugin(plugin_name)
        self._isolated.add(plugin_name)
        for caller in self.get_hookcallers(plugin) or []:
            if caller.name.startswith("register_") and caller.name != "register_commands":
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin_name == plugin_name and not (impl.hookwrapper or impl.wrapper):
                    # pluggy calls impl.function(*args); the guard keeps its argument names
                    setattr(impl, "function", self._guard(plugin_name, caller.name, impl.function))  # noqa: B010 - Final in pluggy's stubs

    def _guard(self, plugin_name: str, hook: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def guarded(*args: Any) -> Any:
            try:
                return fn(*args)
            except Exception as exc:  # noqa: BLE001 - a third-party hook's fault is isolated (module docstring)
                self.plugin_fault(plugin_name, hook, exc)
                return None

        return guarded


def get_plugin_manager(*, third_party: bool | None = None, strict: bool | None = None) -> AuditPluginManager:
    """Build a fresh plugin manager with built-in and (unless disabled) third-party plugins.

    Args:
        third_party: load third-party entry points; None follows ``AUDIT_SDK_DISABLE_PLUGINS``.
        strict: a broken third-party plugin raises instead of being skipped with a warning;
            None follows ``AUDIT_SDK_STRICT_PLUGINS``.

    Raises:
        PluginError: a built-in plugin cannot be imported or implements a hook that does not
            exist; in strict mode, the same for a third-party plugin.
    """
    pm = AuditPluginManager(strict=strict)
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
        version = ep.dist.version if ep.dist is not None else ""
        try:
            plugin = ep.load()
        except Exception as exc:
            if own:
                raise PluginError(
                    f"plugin {ep.name!r} from {dist} failed to import: {type(exc).__name__}: {exc}. "
                    f"Fix or uninstall {dist}, or skip it with AUDIT_SDK_DISABLE_PLUGINS={ep.name}.",
                    plugin_name=dist,
                ) from exc
            pm.distributions[ep.name] = (dist, version)
            pm.plugin_fault(ep.name, "import", exc)
            continue
        pm.distributions[ep.name] = (dist, version)
        if own:
            pm.register(plugin, name=ep.name)
            continue
        try:
            pm.register(plugin, name=ep.name)
            unknown = [c.name for c in pm.get_hookcallers(plugin) or [] if not c.has_spec()]
        except Exception as exc:  # noqa: BLE001 - pluggy rejects bad signatures (PluginValidationError) and more
            pm.plugin_fault(ep.name, "hooks", exc, disable=True)
            continue
        if unknown:
            pm.plugin_fault(ep.name, "hooks", f"implements {', '.join(unknown)}, which audit-sdk does not define", disable=True)
            continue
        pm.isolate(ep.name)
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


def _check_class(cls: Any, base: type[Component], hook_name: str, where: str, package: str) -> None:
    """Raise PluginError unless ``cls`` is a valid component class for ``base``."""
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(f"{where}: {hook_name} returned {cls!r}, which is not a {base.__name__} subclass.", plugin_name=package)
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise PluginError(
            f"{where}: {cls.__name__}.name = {name!r} is not a namespaced kebab-case name like 'mia.loss-threshold'.",
            plugin_name=package,
        )
    summary = getattr(cls, "summary", None)
    if not isinstance(summary, str) or not summary.strip() or "\n" in summary.strip():
        raise PluginError(f"{where}: {cls.__name__}.summary must be one non-empty line.", plugin_name=package)
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and hasattr(params, "model_validate")):
        raise PluginError(f"{where}: {cls.__name__}.Params must be a pydantic model class.", plugin_name=package)


def _collect(pm: pluggy.PluginManager, impl: Any, hook_name: str, base: type[Component], package: str) -> list[Any]:
    """Call one register hook implementation and validate what it returned."""
    where = f"{impl.plugin_name} ({package})"
    classes = impl.function()
    if classes is None:
        return []
    if not isinstance(classes, (list, tuple)):
        raise PluginError(
            f"{where}: {hook_name} returned {classes!r}; expected a list of {base.__name__} classes (return [MyClass]).",
            plugin_name=package,
        )
    for cls in classes:
        _check_class(cls, base, hook_name, where, package)
    return list(classes)


def get_registry(pm: pluggy.PluginManager | None = None, *, strict: bool | None = None) -> Registry:
    """Collect and validate the classes every plugin registers.

    A third-party plugin whose register hook raises, returns something other than a list of
    valid classes, or clashes with a name already registered is isolated (skipped, with one
    ``PluginWarning``; see the module docstring) unless strict mode is on.

    Args:
        strict: with ``pm`` None, passed to ``get_plugin_manager``; otherwise it overrides the
            manager's own setting.

    Raises:
        PluginError: a registered object is not a class of the right interface, has no valid
            kebab-case namespaced ``name`` or no one-line ``summary``, or two plugins register the
            same name (both packages are named): always for built-in and hand-registered
            plugins, in strict mode for third-party ones.
    """
    pm = pm if pm is not None else get_plugin_manager(strict=strict)
    if strict is not None and isinstance(pm, AuditPluginManager):
        pm.strict = strict
    reg = Registry(pm=pm)
    isolated = pm.is_isolated if isinstance(pm, AuditPluginManager) else (lambda _name: False)
    collected: list[tuple[str, type[Component], Any, str, str, list[Any]]] = []
    failed: set[str] = set()  # isolated plugins that failed while registering: they contribute nothing
    for kind, (hook_name, base) in _KINDS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            package, version = _package_of(pm, impl.plugin_name, impl.plugin)
            if not isolated(impl.plugin_name):
                collected.append((kind, base, impl, package, version, _collect(pm, impl, hook_name, base, package)))
                continue
            try:
                classes = _collect(pm, impl, hook_name, base, package)
            except Exception as exc:  # noqa: BLE001 - a third-party plugin's fault is isolated
                pm.plugin_fault(impl.plugin_name, hook_name, exc, disable=True)  # type: ignore[attr-defined]
                failed.add(impl.plugin_name)
                continue
            collected.append((kind, base, impl, package, version, classes))
    # built-ins first, so a third-party clash is the one skipped
    collected.sort(key=lambda c: isolated(c[2].plugin_name))
    for kind, _base, impl, package, version, classes in collected:
        if impl.plugin_name in failed:
            continue
        table = reg.components.setdefault(kind, {})
        for cls in classes:
            name = cls.name
            if name in table:
                other = table[name]
                err = PluginError(
                    f"duplicate {kind} name {name!r}: registered by {other.package} ({other.cls.__module__}.{other.cls.__qualname__}) "
                    f"and by {package} ({cls.__module__}.{cls.__qualname__}). Rename one, or disable one package with "
                    "AUDIT_SDK_DISABLE_PLUGINS.",
                    plugin_name=package,
                )
                if not isolated(impl.plugin_name):
                    raise err
                pm.plugin_fault(impl.plugin_name, f"register ({kind} {name!r})", err, disable=True)  # type: ignore[attr-defined]
                failed.add(impl.plugin_name)
                continue
            table[name] = ComponentInfo(cls=cls, kind=kind, plugin=impl.plugin_name, package=package, version=version)
    for kind in _KINDS:
        reg.components.setdefault(kind, {})
    for kind, table in reg.components.items():  # failed after contributing to an earlier kind
        reg.components[kind] = {n: i for n, i in table.items() if i.plugin not in failed}
    return reg
