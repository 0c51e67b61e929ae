"""The plugin manager, the registry and the common checks every registered component must pass."""

from __future__ import annotations

import argparse
import inspect
import re
import types

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

import audit_sdk
from audit_sdk import Attack, AttackResult, hookimpl, hookspecs
from audit_sdk.errors import InvalidParameterError, PluginError, PluginWarning, UnknownComponentError
from audit_sdk.registry import get_registry

NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*\.[a-z0-9]+([-.][a-z0-9]+)*$")


def _fake_attack(name: str = "mia.fake", summary: str = "A fake attack for tests.") -> type[Attack]:
    class Fake(Attack):
        access = "black-box"

        class Params(BaseModel):
            model_config = ConfigDict(extra="forbid")
            k: int = 1

        def run(self, target, data, *, rng=None, context=None):
            x, y, truth = data.combined()
            return AttackResult(attack=self.name, scores=np.zeros(len(y)), truth=truth)

    Fake.name = name
    Fake.summary = summary
    return Fake


def _plugin(*classes: type, hook: str = "register_attacks") -> types.SimpleNamespace:
    ns = types.SimpleNamespace()
    setattr(ns, hook, hookimpl(lambda: list(classes)))
    getattr(ns, hook).__name__ = hook
    return ns


def _module_plugin(name: str, classes: list[type]) -> types.ModuleType:
    mod = types.ModuleType(name)

    @hookimpl
    def register_attacks():
        return classes

    mod.register_attacks = register_attacks  # type: ignore[attr-defined]
    return mod


def test_builtins_come_through_entry_points(pm):
    names = [n for n, _ in pm.list_name_plugin()]
    assert "mia-loss-threshold" in names and "adapter-onnx" in names
    assert pm.distributions["mia-loss-threshold"][0] == "audit-sdk"


def test_duplicate_name_is_rejected_naming_both_packages(pm):
    plugin = _module_plugin("my_pkg.attacks", [_fake_attack("mia.loss-threshold")])
    pm.register(plugin, name="my-dup")
    with pytest.raises(PluginError, match=r"duplicate attack name 'mia.loss-threshold'.*audit-sdk.*my_pkg.attacks"):
        get_registry(pm)


def test_bad_names_and_summaries_are_rejected(pm):
    pm.register(_module_plugin("bad_name", [_fake_attack("FakeAttack")]), name="bad-name")
    with pytest.raises(PluginError, match="kebab-case"):
        get_registry(pm)


def test_multiline_summary_is_rejected(pm):
    pm.register(_module_plugin("bad_summary", [_fake_attack("mia.fake2", "two\nlines")]), name="bad-summary")
    with pytest.raises(PluginError, match="one non-empty line"):
        get_registry(pm)


def test_non_class_is_rejected(pm):
    pm.register(_module_plugin("not_a_class", [object()]), name="not-a-class")  # type: ignore[list-item]
    with pytest.raises(PluginError, match="not a Attack subclass"):
        get_registry(pm)


def test_unknown_name_suggests_nearest(registry):
    with pytest.raises(UnknownComponentError, match=r"Did you mean 'mia.loss-threshold'"):
        registry.get("attack", "mia.loss-treshold")
    with pytest.raises(KeyError):  # also a KeyError for callers that expect one
        registry.get("attack", "nothing-like-it")


def test_bare_name_resolves_when_unambiguous(registry):
    assert registry.get("attack", "loss-threshold").name == "mia.loss-threshold"


def test_unknown_hook_is_a_plugin_error(monkeypatch):
    from importlib import metadata

    import audit_sdk.registry as r

    mod = types.ModuleType("typo_plugin")

    @hookimpl
    def register_atacks():  # typo: no such hook
        return []

    mod.register_atacks = register_atacks  # type: ignore[attr-defined]

    class EP:
        name = "typo-plugin"
        dist = None

        def load(self):
            return mod

    monkeypatch.setattr(r.metadata, "entry_points", lambda group: [EP()])
    monkeypatch.delenv("AUDIT_SDK_DISABLE_PLUGINS", raising=False)
    # a third-party plugin: fatal in strict mode, else skipped with one warning (issue 15)
    with pytest.raises(PluginError, match="register_atacks"):
        r.get_plugin_manager(strict=True)
    with pytest.warns(PluginWarning, match="register_atacks.*AUDIT_SDK_DISABLE_PLUGINS=typo-plugin"):
        pm = r.get_plugin_manager()
    assert pm.get_plugin("typo-plugin") is None and pm.broken["typo-plugin"].stage == "hooks"
    assert metadata  # the real metadata module is untouched


def test_broken_third_party_plugin_names_its_package(monkeypatch):
    import audit_sdk.registry as r

    class Dist:
        name = "audit-sdk-broken"
        version = "0.1"

    class EP:
        name = "broken"
        dist = Dist()

        def load(self):
            raise ImportError("no module named nowhere")

    monkeypatch.setattr(r.metadata, "entry_points", lambda group: [EP()])
    monkeypatch.delenv("AUDIT_SDK_DISABLE_PLUGINS", raising=False)
    with pytest.raises(PluginError, match="audit-sdk-broken.*AUDIT_SDK_DISABLE_PLUGINS=broken") as info:
        r.get_plugin_manager(strict=True)
    assert info.value.plugin_name == "audit-sdk-broken"
    monkeypatch.setenv("AUDIT_SDK_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="failed to import"):
        r.get_plugin_manager()
    monkeypatch.delenv("AUDIT_SDK_STRICT_PLUGINS")
    with pytest.warns(PluginWarning, match=r"'broken' \(audit-sdk-broken 0.1\) failed to import: ImportError.*plugin skipped"):
        pm = r.get_plugin_manager()
    assert pm.broken["broken"].to_dict()["package"] == "audit-sdk-broken"
    # ...and the env var skips it
    monkeypatch.setenv("AUDIT_SDK_DISABLE_PLUGINS", "broken")
    assert r.get_plugin_manager().get_plugin("broken") is None
    monkeypatch.setenv("AUDIT_SDK_DISABLE_PLUGINS", "1")
    assert r.get_plugin_manager().get_plugin("broken") is None


def test_every_hookspec_is_documented_and_callable(pm):
    specs = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(f, "audit_sdk_spec")]
    assert {
        "register_attacks",
        "register_defenses",
        "register_mechanisms",
        "register_accountants",
        "make_target",
        "on_train_step",
        "on_epoch_end",
        "on_attack_finished",
        "report_sections",
    } <= set(specs)
    for name in specs:
        assert (getattr(hookspecs, name).__doc__ or "").strip(), f"hookspec {name} has no docstring"
        caller = getattr(pm.hook, name)
        params = [p for p in inspect.signature(getattr(hookspecs, name)).parameters]
        real = {"subparsers": argparse.ArgumentParser().add_subparsers()}  # register_commands adds to a real parser
        caller(**{p: real[p] if p in real else ({} if p in ("options", "metrics") else None) for p in params})


def test_trace_env_var_prints_hook_calls(monkeypatch, capsys):
    monkeypatch.setenv("AUDIT_SDK_TRACE_PLUGINS", "1")
    pm = audit_sdk.get_plugin_manager(third_party=False)
    pm.hook.register_attacks()
    assert "register_attacks" in capsys.readouterr().err


# ----------------------------------------------------------------- common checks over every component
def _all_components():
    reg = get_registry(audit_sdk.get_plugin_manager(third_party=False))
    return [pytest.param(info.cls, id=info.cls.name) for info in reg.infos()]


@pytest.mark.parametrize("cls", _all_components())
def test_component_common_checks(cls):
    assert NAME_RE.match(cls.name), cls.name
    family = cls.name.split(".")[0]
    assert family in {"mia", "dp", "acct", "defense", "inversion", "audit"} or cls.kind not in ("attack",), cls.name
    assert cls.summary.strip() and "\n" not in cls.summary.strip()
    assert cls.Params.model_config.get("extra") == "forbid", f"{cls.name}.Params must forbid unknown options"
    cls.Params()  # defaults validate
    with pytest.raises(InvalidParameterError, match="unknown option 'no_such_option'"):
        cls.parse_params({"no_such_option": 1})
    assert isinstance(cls.options_schema(), dict)
    if cls.kind == "attack":
        assert cls.access in ("label-only", "black-box", "white-box", "gradients", "training", "sequence")
        assert cls.result_kind in ("membership", "reconstruction")
    if cls.kind == "defense":
        assert cls.points and set(cls.points) <= {"input", "objective", "gradient", "parameters", "output"}


def test_unknown_component_says_third_party_plugins_are_disabled(monkeypatch):
    from audit_sdk.errors import UnknownComponentError
    from audit_sdk.registry import get_registry

    monkeypatch.setenv("AUDIT_SDK_DISABLE_PLUGINS", "1")
    with pytest.raises(UnknownComponentError, match="every third-party plugin is disabled by AUDIT_SDK_DISABLE_PLUGINS"):
        get_registry().get("attack", "mia.my-confidence")
    monkeypatch.setenv("AUDIT_SDK_DISABLE_PLUGINS", "")
    with pytest.raises(UnknownComponentError) as info:
        get_registry().get("attack", "mia.my-confidence")
    assert "AUDIT_SDK_DISABLE_PLUGINS" not in str(info.value)
