"""audit_sdk.testing: every built-in component passes the kit, and a broken one fails naming the rule."""

from __future__ import annotations

import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

import audit_sdk
from audit_sdk import Accountant, Attack, AttackResult, Defense, Mechanism, PrivacyEvent, hookimpl
from audit_sdk.testing import (
    check_accountant,
    check_attack,
    check_component,
    check_defense,
    check_mechanism,
    check_plugin,
    check_trainer,
    small_audit_problem,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "audit-sdk-example-plugin"

#: Small settings, so each check takes about a second.
SMALL: dict[str, dict[str, Any]] = {
    "mia.lira": {"n_references": 2},
    "mia.rmia": {"n_references": 2},
    "inversion.decoder": {"epochs": 2, "n_samples": 8, "hidden": 16, "evaluate": False},
    "inversion.representation": {"iterations": 5, "n_samples": 4, "evaluate": False},
    "inversion.model": {"iterations": 5, "classes": [0, 1], "evaluate": False},
    "inversion.gradient": {"iterations": 5, "n_batches": 1, "evaluate": False},
    "mia.lm-reference": {"epochs": 1},
}
#: Checks that cost more than a few seconds on a busy 2-core machine.
SLOW = {"inversion.decoder", "acct.dp-accounting"}
CHECKS: dict[str, Callable[..., list[str]]] = {
    "attack": check_attack,
    "defense": check_defense,
    "mechanism": check_mechanism,
    "accountant": check_accountant,
}


@pytest.fixture(scope="module")
def builtins():
    return audit_sdk.get_registry(audit_sdk.get_plugin_manager(third_party=False))


def _params(cls: Any, name: str) -> dict[str, Any] | None:
    """The small settings that the class accepts (an option a version lacks is left out)."""
    small = SMALL.get(name)
    return {k: v for k, v in small.items() if k in cls.Params.model_fields} if small else None


def _cases() -> list[Any]:
    reg = audit_sdk.get_registry(audit_sdk.get_plugin_manager(third_party=False))
    cases = []
    for kind in CHECKS:
        for name in reg.names(kind):
            marks = [pytest.mark.slow] if name in SLOW else []
            cases.append(pytest.param(kind, name, id=name, marks=marks))
    return cases


@pytest.mark.parametrize(("kind", "name"), _cases())
def test_every_builtin_passes_the_kit(kind: str, name: str, builtins) -> None:
    """On the kit's own fixture; attacks it cannot serve (white-box, sequence, ...) get their static rules here."""
    cls = builtins.get(kind, name)
    rules = CHECKS[kind](cls, params=_params(cls, name), registry=builtins)
    assert {"name", "summary", "params-model", "params-defaults", "unknown-option"} <= set(rules)
    if kind == "attack" and cls.access in ("black-box", "label-only"):
        assert "seeded-repeat" in rules
    if kind == "accountant":
        assert {"epsilon-monotone", "delta-inverts-epsilon"} <= set(rules)


@pytest.mark.slow
def test_white_box_and_gradient_attacks_pass_on_a_torch_target(builtins) -> None:
    from audit_sdk.adapters.torch import TorchTarget, make_model

    data = audit_sdk.make_audit_data(audit_sdk.load_digits_data(), n_members=40, n_non_members=40, n_population=80, rng=0)[0]
    target = TorchTarget(make_model("cnn", input_shape=(1, 8, 8), n_classes=10, seed=0), device="cpu")
    for name in ("inversion.representation", "inversion.model", "inversion.gradient"):
        cls = builtins.get("attack", name)
        assert "seeded-repeat" in check_attack(cls, params=_params(cls, name), target=target, data=data, registry=builtins), name


@pytest.mark.slow
def test_sequence_attacks_pass_on_an_untrained_language_model(builtins) -> None:
    from audit_sdk.adapters.torch.lm import TinyGPT
    from audit_sdk.plugins.lm.text import stdlib_corpus, text_audit_data

    chunks = stdlib_corpus(length=32, seed=0)
    data = text_audit_data(members=chunks[:40], non_members=chunks[40:80], population=chunks[80:160])
    target = audit_sdk.load_target(TinyGPT(vocab_size=256, d_model=16, n_layers=1, max_len=32), causal_lm=True)
    for name in builtins.names("attack"):
        cls = builtins.get("attack", name)
        if cls.access == "sequence":
            assert "seeded-repeat" in check_attack(cls, params=_params(cls, name), target=target, data=data, registry=builtins), name


def test_trainers_of_both_families_pass(tmp_path: Path) -> None:
    from audit_sdk.training import make_trainer

    opts = {"input_shape": (64,), "n_classes": 10}
    sk = make_trainer({"family": "sklearn", "estimator": "LogisticRegression", "params": {"max_iter": 200}}, opts)
    assert "save-load" in check_trainer(sk, tmp_path=tmp_path)
    torch_trainer = make_trainer("mlp", {**opts, "train": {"epochs": 2, "batch_size": 64}})
    assert "seeded-repeat" in check_trainer(torch_trainer)


def test_check_plugin_runs_every_registered_class() -> None:
    from audit_sdk.plugins.dp import mechanisms

    checked = check_plugin(mechanisms)
    assert {"dp.gaussian", "dp.laplace"} <= set(checked)
    assert all("perturb-shape" in rules for rules in checked.values())


@pytest.mark.slow
def test_check_plugin_over_every_builtin_plugin_module(builtins) -> None:
    """Each built-in module that registers components passes check_plugin, as a third-party one would."""
    import importlib
    from importlib.metadata import entry_points

    from audit_sdk.testing import KIND_CHECKS

    modules = {ep.value for ep in entry_points(group="audit_sdk") if ep.dist is not None and ep.dist.name == "audit-sdk"}
    seen: set[str] = set()
    for name in sorted(modules):
        module = importlib.import_module(name)
        if not any(hasattr(module, hook) for hook in KIND_CHECKS):
            continue  # adapters and demos: make_target, make_trainer, commands
        small = {n: _params(builtins.get(k, n), n) for k in CHECKS for n in builtins.names(k) if n in SMALL}
        seen |= set(check_plugin(module, params=small, registry=builtins))
    assert seen == {n for kind in CHECKS for n in builtins.names(kind)}


# ----------------------------------------------------------------------------- broken components


class _Good(Attack):
    name = "mia.kit-good"
    summary = "Scores every sample by its top probability."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def run(self, target, data, *, rng=None, context=None):
        x, y, truth = data.combined()
        return AttackResult(attack=self.name, scores=target.predict_proba(x).max(1), truth=truth, labels=y)


def _broken(**attrs: Any) -> type[Attack]:
    return type("Broken", (_Good,), {"name": "mia.kit-broken", **attrs})


class _LooseParams(BaseModel):
    n: int = 1  # no extra="forbid": a misspelt option would be ignored


class _NoDefault(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int  # required: the defaults do not validate


def _short(self, target, data, *, rng=None, context=None):
    x, y, truth = data.combined()
    return AttackResult(attack=self.name, scores=np.zeros(len(x) - 1), truth=truth[:-1])


def _unseeded(self, target, data, *, rng=None, context=None):
    _, _, truth = data.combined()
    return AttackResult(attack=self.name, scores=np.random.default_rng().random(len(truth)), truth=truth)


def _raises(self, target, data, *, rng=None, context=None):
    raise RuntimeError("boom")


def _wrong_name(self, target, data, *, rng=None, context=None):
    _, _, truth = data.combined()
    return AttackResult(attack="mia.other", scores=np.zeros(len(truth)), truth=truth)


@pytest.mark.parametrize(
    ("attrs", "rule"),
    [
        ({"name": "MIA_Broken"}, "name"),
        ({"name": "broken"}, "name"),
        ({"name": "mia.loss-threshold"}, "name"),  # registered by the built-ins
        ({"summary": "two\nlines"}, "summary"),
        ({"summary": ""}, "summary"),
        ({"Params": _LooseParams}, "params-model"),
        ({"Params": _NoDefault}, "params-defaults"),
        ({"access": "telepathy"}, "access"),
        ({"run": _short}, "scores"),
        ({"run": _unseeded}, "seeded-repeat"),
        ({"run": _wrong_name}, "result"),
        ({"run": _raises}, "run"),
    ],
)
def test_a_broken_attack_fails_naming_the_rule(attrs: dict[str, Any], rule: str, builtins) -> None:
    with pytest.raises(AssertionError, match=rf"^mia\.kit-broken \[{rule}\]: |\[{rule}\]: "):
        check_attack(_broken(**attrs), registry=builtins)


def test_a_good_attack_passes(builtins) -> None:
    assert "seeded-repeat" in check_attack(_Good, registry=builtins)


def test_unknown_option_must_be_refused_with_the_typed_error(builtins) -> None:
    class Lenient(_Good):
        name = "mia.kit-lenient"

        @classmethod
        def parse_params(cls, params=None, **options):
            return cls.Params()  # swallows everything

    with pytest.raises(AssertionError, match=r"mia\.kit-lenient \[unknown-option\]: .*was accepted"):
        check_component(Lenient, kind=Attack, registry=builtins)

    class Untyped(_Good):
        name = "mia.kit-untyped"

        @classmethod
        def parse_params(cls, params=None, **options):
            if params:
                raise KeyError(next(iter(params)))
            return cls.Params()

    with pytest.raises(AssertionError, match=r"mia\.kit-untyped \[unknown-option\]: .*KeyError, not InvalidParameterError"):
        check_component(Untyped, kind=Attack, registry=builtins)


class _Mech(Mechanism):
    name = "dp.kit-mech"
    summary = "Adds nothing."

    def perturb(self, values, *, sensitivity, step, rng=None):
        return values

    def event(self, step):
        return PrivacyEvent("none")


def test_a_broken_mechanism_fails_naming_the_rule(builtins) -> None:
    assert "event" in check_mechanism(_Mech, registry=builtins)
    flat = type("Flat", (_Mech,), {"perturb": lambda self, values, **kw: np.ravel(values)})
    with pytest.raises(AssertionError, match=r"dp\.kit-mech \[perturb-shape\]"):
        check_mechanism(flat, registry=builtins)
    no_event = type("NoEvent", (_Mech,), {"event": lambda self, step: {"kind": "gaussian"}})
    with pytest.raises(AssertionError, match=r"dp\.kit-mech \[event\]"):
        check_mechanism(no_event, registry=builtins)
    noisy = type("Noisy", (_Mech,), {"perturb": lambda self, values, **kw: values + np.random.default_rng().normal(size=values.shape)})
    with pytest.raises(AssertionError, match=r"dp\.kit-mech \[seeded-repeat\]"):
        check_mechanism(noisy, registry=builtins)


class _Acct(Accountant):
    """Pure epsilon per step (a toy: epsilon grows by 0.01 per step, delta is 0 at any epsilon it reached)."""

    name = "acct.kit-toy"
    summary = "Adds 0.01 per step."

    def __init__(self, params=None, **options):
        super().__init__(params, **options)
        self.steps = 0

    def step(self, event, *, sample_rate, count=1):
        self.steps += count

    def epsilon(self, delta):
        return 0.01 * self.steps

    def delta(self, epsilon):
        return 0.0 if epsilon >= 0.01 * self.steps else 1.0


def test_a_broken_accountant_fails_naming_the_rule(builtins) -> None:
    assert "delta-inverts-epsilon" in check_accountant(_Acct, registry=builtins)
    shrinking = type("Shrinking", (_Acct,), {"epsilon": lambda self, delta: 1.0 / (1 + self.steps)})
    with pytest.raises(AssertionError, match=r"acct\.kit-toy \[epsilon-monotone\]"):
        check_accountant(shrinking, registry=builtins)
    negative = type("Negative", (_Acct,), {"epsilon": lambda self, delta: -0.01 * self.steps})
    with pytest.raises(AssertionError, match=r"acct\.kit-toy \[epsilon-nonnegative\]"):
        check_accountant(negative, registry=builtins)
    loose = type("Loose", (_Acct,), {"delta": lambda self, epsilon: 0.5})
    with pytest.raises(AssertionError, match=r"acct\.kit-toy \[delta-inverts-epsilon\]"):
        check_accountant(loose, registry=builtins)
    assert {"history", "copy", "extend", "reset"} <= set(check_accountant(_Acct, registry=builtins))
    sticky = type("Sticky", (_Acct,), {"reset": lambda self: None})  # the history contract: reset must forget
    with pytest.raises(AssertionError, match=r"acct\.kit-toy \[reset\]"):
        check_accountant(sticky, registry=builtins)
    shared = type("Shared", (_Acct,), {"copy": lambda self: self})  # copy must be another accountant
    with pytest.raises(AssertionError, match=r"acct\.kit-toy \[copy\]"):
        check_accountant(shared, registry=builtins)


class _Out(Defense):
    name = "defense.kit-out"
    summary = "Serves the target as is."
    points = ("output",)


def test_a_broken_defense_fails_naming_the_rule(builtins) -> None:
    assert "wrap-target" in check_defense(_Out, registry=builtins)
    nowhere = type("Nowhere", (_Out,), {"points": ("everywhere",)})
    with pytest.raises(AssertionError, match=r"defense\.kit-out \[points\]"):
        check_defense(nowhere, registry=builtins)
    not_a_target = type("NotATarget", (_Out,), {"wrap_target": lambda self, target: object()})
    with pytest.raises(AssertionError, match=r"defense\.kit-out \[wrap-target\]"):
        check_defense(not_a_target, registry=builtins)


def test_check_plugin_names_the_hook_and_duplicates(builtins) -> None:
    plugin = types.SimpleNamespace(__name__="kit_plugin")
    plugin.register_attacks = hookimpl(lambda: _Good)  # a class, not a list
    with pytest.raises(AssertionError, match=r"kit_plugin \[register\]: register_attacks\(\) returned"):
        check_plugin(plugin, registry=builtins)
    plugin.register_attacks = hookimpl(lambda: [_Good, _Good])
    with pytest.raises(AssertionError, match=r"mia\.kit-good \[name\]: kit_plugin registers 'mia.kit-good' twice"):
        check_plugin(plugin, registry=builtins)
    plugin.register_attacks = hookimpl(lambda: [_Good])
    plugin.register_mechanisms = hookimpl(lambda: [_Mech])
    assert set(check_plugin(plugin, registry=builtins)) == {"mia.kit-good", "dp.kit-mech"}
    with pytest.raises(AssertionError, match=r"\[register\]: implements no register_\* hook"):
        check_plugin(types.ModuleType("empty"), registry=builtins)


def test_the_fixture_needs_no_torch() -> None:
    code = "import sys, audit_sdk.testing as t; p = t.small_audit_problem(); assert 'torch' not in sys.modules, 'torch imported'; print(len(p.data.members))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "100"
    problem = small_audit_problem()
    assert problem.target.n_classes == 10 and problem.data.population is not None


def test_the_example_plugins_own_tests_pass() -> None:
    """The example third-party plugin tests itself with audit_sdk.testing; the main suite runs those tests."""
    tests = EXAMPLE / "tests"
    assert any(tests.glob("test_*.py")), "examples/audit-sdk-example-plugin/tests/ has no tests"
    assert "audit_sdk.testing" in "".join(p.read_text() for p in tests.glob("test_*.py"))
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(EXAMPLE), str(tests)],
        capture_output=True,
        text=True,
        cwd=EXAMPLE,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
