"""The Accountant contract lives in the core: a third-party accountant written against the ABC alone
(``step``, ``epsilon``, ``delta``) works in ``audit-sdk epsilon``, ``calibrate``, DP-SGD and audit.dp;
plugins add commands through ``register_commands``, and a plugin that breaks there is isolated."""

from __future__ import annotations

import ast
import contextlib
import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import audit_sdk
from audit_sdk.accounting import (
    PrivacyEvent,
    calibrate,
    calibrate_noise_multiplier,
    gaussian_schedule,
    group_events,
    round_down,
)
from audit_sdk.cli import main
from audit_sdk.errors import InvalidParameterError
from audit_sdk.interfaces import Mechanism

ROOT = Path(__file__).resolve().parents[2]

# A third-party distribution, audit-sdk-naive: an accountant implementing only the core ABC, a
# command, and (with NAIVE_BROKEN_COMMANDS set) a register_commands that adds a command, then raises.
NAIVE_PLUGIN = '''
"""audit-sdk-naive: a naive RDP accountant for the Gaussian mechanism, and a command."""
import math
import os

from pydantic import BaseModel, ConfigDict

from audit_sdk import Accountant, hookimpl
from audit_sdk.errors import InvalidParameterError

ORDERS = (1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0, 128.0, 256.0)


class NaiveRDP(Accountant):
    """Gaussian steps cost alpha / (2 sigma^2) RDP each, with no credit for subsampling (a valid upper bound)."""

    name = "acct.naive-rdp"
    summary = "Naive RDP of the Gaussian mechanism (no subsampling credit)."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def __init__(self, params=None, **options):
        super().__init__(params, **options)
        self.rho = 0.0  # RDP(alpha) = alpha * rho

    def step(self, event, *, sample_rate, count=1):
        if event.kind != "gaussian":
            raise InvalidParameterError(f"acct.naive-rdp charges gaussian events only; got {event.kind!r}.")
        s = float(event.params["noise_multiplier"])
        if sample_rate > 0 and count > 0:
            self.rho += math.inf if s == 0 else count / (2 * s * s)

    def epsilon(self, delta):
        if self.rho == 0:
            return 0.0
        return min(a * self.rho + math.log(1 / delta) / (a - 1) for a in ORDERS)

    def delta(self, epsilon):
        return min(1.0, min(math.exp((a - 1) * (a * self.rho - epsilon)) for a in ORDERS))


@hookimpl
def register_accountants():
    return [NaiveRDP]


def _hello(args):
    print(f"hello {args.name} from audit-sdk-naive")
    return 0


@hookimpl
def register_commands(subparsers):
    if os.environ.get("NAIVE_BROKEN_COMMANDS"):
        subparsers.add_parser("naive-half", help="added before the plugin raised")
        raise RuntimeError("boom in register_commands")
    p = subparsers.add_parser("naive-hello", help="say hello (a command from a third-party plugin)")
    p.add_argument("--name", default="world", help="who to greet")
    p.set_defaults(func=_hello)
'''


@pytest.fixture(scope="module")
def naive_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("naive-site")
    info = site / "audit_sdk_naive-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: audit-sdk-naive\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[audit_sdk]\nnaive = audit_sdk_naive_plugin\n")
    (site / "audit_sdk_naive_plugin.py").write_text(NAIVE_PLUGIN)
    return site


@pytest.fixture
def naive(naive_site, monkeypatch):
    """Install audit-sdk-naive in this process (third-party plugins on); returns its module."""
    import importlib

    monkeypatch.syspath_prepend(str(naive_site))
    importlib.invalidate_caches()
    monkeypatch.delenv("AUDIT_SDK_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("AUDIT_SDK_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("NAIVE_BROKEN_COMMANDS", raising=False)
    sys.modules.pop("audit_sdk_naive_plugin", None)
    yield importlib.import_module("audit_sdk_naive_plugin")
    sys.modules.pop("audit_sdk_naive_plugin", None)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def gauss(sigma: float) -> PrivacyEvent:
    return PrivacyEvent("gaussian", {"noise_multiplier": sigma})


# ----------------------------------------------------------------- the ABC's defaults
def test_a_minimal_accountant_gets_history_copy_reset_and_queries(naive):
    acct = naive.NaiveRDP()
    acct.step(gauss(1.0), sample_rate=0.01, count=10)
    acct.extend([(gauss(1.0), 0.01, 5), (gauss(2.0), 0.01, 3)])
    assert acct.history == [(gauss(1.0), 0.01, 15), (gauss(2.0), 0.01, 3)]  # grouped, first-seen order
    assert acct.steps == 18
    twin = acct.copy()
    assert twin is not acct and twin.history == acct.history and twin.epsilon(1e-5) == acct.epsilon(1e-5)
    twin.step(gauss(1.0), sample_rate=0.01)
    assert acct.steps == 18 and twin.steps == 19  # independent
    before = acct.epsilon(1e-5)
    assert acct.epsilon_if([(gauss(1.0), 0.01, 100)], delta=1e-5) > before == acct.epsilon(1e-5)  # not recorded
    assert acct.group_epsilon(1e-5, 2) > before
    assert acct.is_upper_bound and acct.describe()["steps"] == 18
    acct.reset()
    assert acct.history == [] and acct.rho == 0.0 and acct.epsilon(1e-5) == 0.0


def test_a_rejected_step_is_not_recorded_and_super_step_is_recorded_once(naive):
    acct = naive.NaiveRDP()
    with pytest.raises(InvalidParameterError, match="gaussian events only"):
        acct.step(PrivacyEvent("laplace", {"scale": 1.0}), sample_rate=1.0)
    assert acct.history == []

    class Chained(naive.NaiveRDP):
        name = "acct.naive-chained"
        summary = "Calls super().step."

        def step(self, event, *, sample_rate, count=1):
            super().step(event, sample_rate=sample_rate, count=count)

    c = Chained()
    c.step(gauss(1.0), sample_rate=0.5, count=4)
    assert c.history == [(gauss(1.0), 0.5, 4)]


def test_built_in_accountants_keep_their_own_history():
    from audit_sdk.plugins.accountants.rdp import RDPAccountant

    acct = RDPAccountant()
    acct.step(gauss(1.1), sample_rate=0.01, count=7)
    assert acct.history == [(gauss(1.1), 0.01, 7)] and "_recorded" not in vars(acct)
    assert acct.copy()._cache is acct._cache  # copies share the curve cache


# ----------------------------------------------------------------- calibration over any accountant
@pytest.mark.parametrize("target", [0.5, 2.0, 8.0])
def test_calibration_over_a_third_party_accountant_meets_the_target(naive, target):
    acct = naive.NaiveRDP()
    acct.step(gauss(0.1), sample_rate=1.0, count=1000)  # its own history is ignored, and left alone
    sigma = calibrate_noise_multiplier(acct, target_epsilon=target, delta=1e-5, sample_rate=0.01, steps=200)
    charged = naive.NaiveRDP().extend([(gauss(sigma), 0.01, 200)])
    assert charged.epsilon(1e-5) <= target  # certified: never above the target
    assert naive.NaiveRDP().extend([(gauss(sigma * 0.999), 0.01, 200)]).epsilon(1e-5) > target  # and tight
    assert acct.steps == 1000
    assert acct.calibrate(target_epsilon=target, delta=1e-5, sample_rate=0.01, steps=200) == sigma


def test_calibration_of_a_decaying_mechanism_meets_the_target(naive):
    from audit_sdk.plugins.dp.mechanisms import AdaGaussian

    mech = AdaGaussian(decay_policy="time", noise_decay_rate=1e-2)
    s0 = calibrate_noise_multiplier(naive.NaiveRDP(), target_epsilon=3.0, delta=1e-5, sample_rate=0.02, steps=300, mechanism=mech)
    ran = AdaGaussian(noise_multiplier=s0, decay_policy="time", noise_decay_rate=1e-2)
    acct = naive.NaiveRDP().extend((ran.event(t), 0.02, 1) for t in range(300))  # every step as it ran
    assert acct.epsilon(1e-5) <= 3.0


def test_calibration_never_answers_above_the_target_even_with_a_bad_guess(naive):
    acct = naive.NaiveRDP()

    def build(s: float) -> list:
        return [(gauss(s), 1.0, 50)]

    for guess in (1e-2, 0.9, 50.0):
        s = calibrate(acct, build, target_epsilon=1.0, delta=1e-6, guess=guess)
        assert naive.NaiveRDP().extend(build(s)).epsilon(1e-6) <= 1.0


def test_an_approximate_accountant_is_refused_unless_allowed(naive):
    class Approx(naive.NaiveRDP):
        name = "acct.naive-approx"
        summary = "Not an upper bound."
        is_upper_bound = False

    with pytest.raises(InvalidParameterError, match="approximation"):
        calibrate_noise_multiplier(Approx(), target_epsilon=1.0, delta=1e-5, sample_rate=0.01, steps=10)
    assert calibrate_noise_multiplier(Approx(), target_epsilon=1.0, delta=1e-5, sample_rate=0.01, steps=10, allow_approximate=True) > 0


# ----------------------------------------------------------------- schedules, grouping and rounding (written once)
def test_rounding_is_down_and_on_a_geometric_grid():
    sig = np.geomspace(0.5, 5.0, 1000)
    r = round_down(sig, 1e-2)
    assert np.all(r <= sig) and np.all(r > sig / 1.0101)
    assert len(np.unique(r)) < 300
    assert round_down(0.0, 1e-2) == 0.0 and math.isinf(round_down(math.inf, 1e-2)) and round_down(1.234, 0.0) == 1.234


def test_the_vectorised_schedule_equals_the_generic_one():
    from audit_sdk.plugins.dp.mechanisms import AdaGaussian

    mech = AdaGaussian(noise_multiplier=2.0, decay_policy="exp", noise_decay_rate=1e-3)
    for kw in ({}, {"resolution": 1e-2}, {"max_distinct": 20}):
        fast = mech.schedule(500, **kw)
        generic = Mechanism.schedule(mech, 500, **kw)  # the ABC's default: event(t) per step, grouped
        a = np.array(sorted((e.params["noise_multiplier"], c) for e, c in fast))
        b = np.array(sorted((e.params["noise_multiplier"], c) for e, c in generic))
        assert a.shape == b.shape and np.allclose(a, b, rtol=1e-12, atol=0)
        assert sum(c for _e, c in fast) == 500
    assert len(mech.schedule(500, max_distinct=20)) <= 21
    # a constant schedule is left exact, whatever the resolution
    assert gaussian_schedule(np.full(10, 1.234), resolution=1e-2) == [(gauss(1.234), 10)]


def test_group_events_keeps_other_kinds_apart_and_in_order():
    evs = [
        PrivacyEvent("laplace", {"scale": 1.0}),
        gauss(1.0),
        PrivacyEvent("laplace", {"scale": 1.0}),
        PrivacyEvent("pure", {"epsilon": 0.1}),
    ]
    assert group_events(evs) == [(PrivacyEvent("laplace", {"scale": 1.0}), 2), (gauss(1.0), 1), (PrivacyEvent("pure", {"epsilon": 0.1}), 1)]


# ----------------------------------------------------------------- the commands over a third-party accountant
EPS = ["--noise-multiplier", "1.1", "--sample-rate", "0.01", "--steps", "1000", "--delta", "1e-5", "--json"]


def test_epsilon_command_with_a_third_party_accountant(naive):
    code, out, err = _run(["epsilon", "--accountant", "acct.naive-rdp", *EPS])
    assert code == 0, err
    got = json.loads(out)
    expected = naive.NaiveRDP().extend([(gauss(1.1), 0.01, 1000)]).epsilon(1e-5)
    assert got == {"epsilon": pytest.approx(expected), "accountant": "acct.naive-rdp", "certified": True}
    code, out, err = _run(["epsilon", "--accountant", "naive-rdp", *EPS, "--max-examples-per-user", "4"])
    assert code == 0, err
    assert json.loads(out)["epsilon"] > expected and json.loads(out)["max_examples_per_user"] == 4
    code, out, err = _run(["epsilon", "--accountant", "naive-rdp", *EPS, "--decay-policy", "exp", "--decay-rate", "1e-3"])
    assert code == 0, err
    assert json.loads(out)["epsilon"] > expected  # less noise as it decays


def test_calibrate_command_with_a_third_party_accountant(naive):
    argv = ["calibrate", "--accountant", "acct.naive-rdp", "--target-epsilon", "3", "--sample-rate", "0.01", "--steps", "500"]
    code, out, err = _run([*argv, "--delta", "1e-5", "--json"])
    assert code == 0, err
    got = json.loads(out)
    assert got["accountant"] == "acct.naive-rdp" and got["epsilon"] <= 3.0 and got["certified"] is True
    assert naive.NaiveRDP().extend([(gauss(got["noise_multiplier"]), 0.01, 500)]).epsilon(1e-5) <= 3.0
    code, out, err = _run([*argv, "--delta", "1e-5", "--decay-policy", "time", "--decay-rate", "1e-3"])
    assert code == 0, err
    assert out.startswith("sigma0 = ") and "[acct.naive-rdp]" in out


def test_dp_sgd_trains_with_a_third_party_accountant(naive):
    from audit_sdk.adapters.torch import TrainConfig, Trainer, make_model
    from audit_sdk.plugins.defenses.dp_sgd import DPSGD

    x, y = audit_sdk.load_digits_data().x[:400], audit_sdk.load_digits_data().y[:400]
    pm = audit_sdk.get_plugin_manager()
    assert "acct.naive-rdp" in audit_sdk.get_registry(pm).names("accountant")
    cfg = TrainConfig(epochs=2, batch_size=50, lr=1e-2, device="cpu", seed=0)
    # the noise calibrated for a budget, through the core's calibration over the naive accountant
    dp = DPSGD(target_epsilon=4.0, delta=1e-5, accountant="acct.naive-rdp")
    rep = (
        Trainer(cfg, defenses=[dp], pm=pm).fit(make_model("mlp", input_shape=(64,), n_classes=10, seed=0), x, y).defenses["defense.dp-sgd"]
    )
    assert rep["accountant"] == "acct.naive-rdp" and rep["noise_multiplier_calibrated"]
    assert 0 < rep["epsilon"] <= 4.0 and rep["steps"] == 16 and sum(e["count"] for e in rep["events"]) == 16
    # a given noise with a budget: training stops when one more step would exceed it (bisection over copies)
    dp = DPSGD(noise_multiplier=5.0, target_epsilon=3.0, delta=1e-5, accountant="acct.naive-rdp")
    rep = (
        Trainer(cfg, defenses=[dp], pm=pm).fit(make_model("mlp", input_shape=(64,), n_classes=10, seed=0), x, y).defenses["defense.dp-sgd"]
    )
    assert 0 < rep["steps"] < 16 and rep["epsilon"] <= 3.0 < dp.accountant_.epsilon_if(
        [(dp.step_event(rep["steps"]), dp.sample_rate_, 1)], delta=1e-5
    )


def test_audit_dp_with_a_third_party_accountant(naive):
    from audit_sdk.adapters.torch import make_model

    data, _ = audit_sdk.make_audit_data(audit_sdk.load_digits_data(), n_members=300, n_non_members=100, rng=0)
    reg = audit_sdk.get_registry(audit_sdk.get_plugin_manager())
    report = audit_sdk.audit_dp(
        make_model("mlp", input_shape=data.feature_shape, n_classes=10, seed=0),
        data,
        defense_params={"target_epsilon": 4.0, "accountant": "acct.naive-rdp"},
        accountants=["acct.naive-rdp", "acct.rdp"],
        canaries=50,
        epochs=1,
        registry=reg,
    )
    info = report.results[0].extra["dp_audit"]
    naive_eps = info["accountants"]["acct.naive-rdp"]["epsilon"]
    assert info["defense_epsilon"] == pytest.approx(naive_eps) and naive_eps <= 4.0
    assert info["accountants"]["acct.rdp"]["epsilon"] < naive_eps  # RDP credits the subsampling


# ----------------------------------------------------------------- register_commands
def test_a_third_party_command_shows_in_help_and_runs(naive):
    code, out, err = _run(["--help"])
    assert code == 0 and "naive-hello" in out and "say hello" in out, err
    assert out.index("calibrate") < out.index("naive-hello") < out.index("config")  # computing commands, then the helpers
    code, out, err = _run(["naive-hello", "--name", "auditor"])
    assert code == 0 and out == "hello auditor from audit-sdk-naive\n", err


def test_a_plugin_whose_register_commands_raises_is_skipped_with_a_warning(naive, monkeypatch):
    monkeypatch.setenv("NAIVE_BROKEN_COMMANDS", "1")
    code, out, err = _run(["--help"])
    assert code == 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "audit-sdk-naive" in lines[0] and "register_commands" in lines[0] and "boom" in lines[0], err
    assert "AUDIT_SDK_DISABLE_PLUGINS=naive" in lines[0]
    assert "naive-half" not in out and "naive-hello" not in out and "epsilon" in out  # what it half-added is gone
    # the rest of the plugin still works
    code, out, err = _run(["epsilon", "--accountant", "acct.naive-rdp", *EPS])
    assert code == 0 and json.loads(out)["accountant"] == "acct.naive-rdp", err
    # strict mode: fatal, one line
    code, out, err = _run(["--strict-plugins", "epsilon", *EPS])
    assert code == 2 and err.startswith("audit-sdk: error: plugin 'naive' (audit-sdk-naive 0.1) failed in register_commands"), err


# ----------------------------------------------------------------- layering
def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):  # module level and inside functions alike
        if isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


# cli/train_cmd.py still reaches the torch adapter: the Trainer contract is being reworked apart (issue 17)
@pytest.mark.parametrize(
    "module",
    [
        "accounting.py",
        "interfaces.py",
        "hookspecs.py",
        "registry.py",
        *[f"cli/{p.name}" for p in sorted((ROOT / "audit_sdk" / "cli").glob("*.py")) if p.name != "train_cmd.py"],
    ],
)
def test_the_core_contract_and_cli_import_no_plugin_or_adapter(module):
    bad = [
        n
        for n in _imports(ROOT / "audit_sdk" / module)
        if n.lstrip(".").startswith(("plugins", "adapters")) or ".plugins" in n or ".adapters" in n
    ]
    assert not bad, f"audit_sdk/{module} imports {bad}"
