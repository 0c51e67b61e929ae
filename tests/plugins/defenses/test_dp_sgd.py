"""defense.dp-sgd: per-sample clipping against a per-sample reference, noise, accounting, monitor, API, CLI."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import audit_sdk
from audit_sdk import InvalidParameterError, hookimpl
from audit_sdk.adapters.torch import TrainConfig, Trainer, evaluate_accuracy, make_model
from audit_sdk.adapters.torch.training import TrainContext, _per_example_ce
from audit_sdk.errors import AccountingAssumptionWarning, InvalidModelError, PrivacyBudgetExceededError
from audit_sdk.plugins.defenses._grad_sample import clipped_grad_sum
from audit_sdk.plugins.defenses.dp_sgd import DPSGD, combined_noise_multiplier


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "cnn": make_model("cnn", input_shape=(1, 8, 8), n_classes=10, seed=0),
        "norms": nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, stride=2),
            nn.GroupNorm(2, 4),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64, 16),
            nn.LayerNorm(16),
            nn.ReLU(),
            nn.Linear(16, 10),
        ),
        "seq": nn.Sequential(nn.Linear(8, 12), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 12, 10)),
        "conv1d": nn.Sequential(nn.Conv1d(8, 6, 3, dilation=2, padding=1, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(36, 10)),
    }


def _data(name: str, n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 8, 8, generator=g) if name in ("seq", "conv1d") else torch.randn(n, 1, 8, 8, generator=g)
    return x, torch.randint(0, 10, (n,), generator=g)


def _reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clip: float, per_layer: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
    # Independent reference: one backward pass per sample (a loop is fine in a test).
    params = [p for p in model.parameters() if p.requires_grad]
    owners = [mod for mod in model.modules() for p in mod.parameters(recurse=False) if p.requires_grad]
    layers = list(dict.fromkeys(id(m) for m in owners))
    sums = [torch.zeros_like(p) for p in params]
    norms = []
    for i in range(len(x)):
        grads = torch.autograd.grad(_per_example_ce(model(x[i : i + 1]), y[i : i + 1]).sum(), params)
        total = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        norms.append(total)
        for j, g in enumerate(grads):
            if per_layer:
                lay = id(owners[j])
                ln = torch.sqrt(sum(gg.pow(2).sum() for gg, o in zip(grads, owners) if id(o) == lay))
                c = min(1.0, clip / math.sqrt(len(layers)) / float(ln))
            else:
                c = min(1.0, clip / float(total))
            sums[j] += c * g
    return sums, torch.stack(norms)


@pytest.mark.parametrize("name", ["cnn", "norms", "seq", "conv1d"])
@pytest.mark.parametrize("mode", ["ghost", "vmap"])
@pytest.mark.parametrize("per_layer", [False, True])
def test_clipped_sum_equals_per_sample_reference(name, mode, per_layer):
    model = _models()[name].double()
    x, y = _data(name)
    x = x.double()
    clip = 0.5
    res = clipped_grad_sum(model, _per_example_ce, x, y, clip=clip, per_layer=per_layer, mode=mode)
    ref, ref_norms = _reference(model, x, y, clip, per_layer)
    torch.testing.assert_close(res.norms, ref_norms, rtol=1e-8, atol=1e-10)
    for got, want in zip(res.grads, ref):
        torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)
    # every clipped per-sample norm <= C: the clipped sum of n samples has norm <= n * C, and each term did
    assert float(torch.sqrt(sum(g.pow(2).sum() for g in res.grads))) <= len(x) * clip + 1e-9
    assert (ref_norms > clip).any()  # the test clips something


def test_each_clipped_per_sample_gradient_is_within_the_bound():
    model = _models()["cnn"].double()
    x, y = _data("cnn", 16)
    x = x.double()
    for i in range(len(x)):  # a batch of one returns that sample's clipped gradient
        res = clipped_grad_sum(model, _per_example_ce, x[i : i + 1], y[i : i + 1], clip=0.1)
        assert float(torch.sqrt(sum(g.pow(2).sum() for g in res.grads))) <= 0.1 + 1e-12


def _ctx(model: nn.Module, n: int, batch_size: int, **cfg) -> TrainContext:
    config = TrainConfig(epochs=1, batch_size=batch_size, device="cpu", optimizer="sgd", **cfg)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return TrainContext(
        model=model,
        optimizer=opt,
        config=config,
        loss_fn=_per_example_ce,
        device=torch.device("cpu"),
        n_samples=n,
        sample_rate=batch_size / n,
        generator=torch.Generator().manual_seed(0),
        rng=np.random.default_rng(0),
    )


def test_sigma_zero_equals_plain_per_sample_clipped_sgd_with_virtual_batches():
    model = _models()["cnn"].double()
    x, y = _data("cnn", 20)
    x = x.double()
    for phys in (None, 7):
        dp = DPSGD(noise_multiplier=0.0, max_grad_norm=0.3, max_physical_batch_size=phys)
        ctx = _ctx(model, n=100, batch_size=20)
        dp.on_train_begin(ctx)
        assert dp.compute_gradients(ctx, (x, y)) is True
        ref, _ = _reference(model, x, y, 0.3, False)
        for p, r in zip(model.parameters(), ref):
            torch.testing.assert_close(p.grad, r / 20.0, rtol=1e-8, atol=1e-12)  # divided by the expected batch q * n


def test_noise_has_the_scheduled_scale_and_is_charged():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 200)).double()
    x, y = _data("cnn", 10)
    dp = DPSGD(
        noise_multiplier=2.0,
        max_grad_norm=1.0,
        mechanism="dp.ada-gaussian",
        mechanism_params={"decay_policy": "step", "noise_decay_rate": 0.5},
        accountant_params={"sigma_resolution": 0.0},
    )
    ctx = _ctx(model, n=100, batch_size=10)
    dp.on_train_begin(ctx)
    ctx.step = 2  # sigma_2 = 2 * 0.25
    with torch.no_grad():
        dp.compute_gradients(ctx, (x[:0].double(), y[:0]))  # empty Poisson batch: pure noise
    noise = torch.cat([p.grad.flatten() for p in model.parameters()]) * 10.0
    assert float(noise.std()) == pytest.approx(0.5, rel=0.05)
    ((event, q, count),) = dp.accountant_.history
    assert event.params["noise_multiplier"] == pytest.approx(0.5) and q == 0.1 and count == 1


def test_batchnorm_is_refused_with_a_fix():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 10))
    with pytest.raises(InvalidModelError, match="GroupNorm"):
        Trainer(TrainConfig(epochs=1, device="cpu"), defenses=[DPSGD(noise_multiplier=1.0)]).fit(
            model, np.zeros((8, 1, 8, 8), np.float32), np.zeros(8, np.int64)
        )


def test_needs_noise_or_target_and_a_gaussian_mechanism():
    ctx = _ctx(_models()["cnn"], n=100, batch_size=10)
    with pytest.raises(InvalidParameterError, match="noise_multiplier or target_epsilon"):
        DPSGD().on_train_begin(ctx)
    with pytest.raises(InvalidParameterError, match="Gaussian-family"):
        DPSGD(noise_multiplier=1.0, mechanism="dp.vmf").on_train_begin(ctx)


def _digits(n_train: int = 1400):
    d = audit_sdk.load_digits_data()
    perm = np.random.default_rng(0).permutation(len(d.x))
    return d.x[perm[:n_train]], d.y[perm[:n_train]], d.x[perm[n_train:]], d.y[perm[n_train:]]


def test_shuffled_batches_warn_and_are_reported():
    x, y, _, _ = _digits(300)
    model = make_model("mlp", input_shape=(1, 8, 8), n_classes=10, seed=0)
    with pytest.warns(AccountingAssumptionWarning, match="Poisson"):
        res = Trainer(TrainConfig(epochs=1, batch_size=100, device="cpu"), defenses=[DPSGD(noise_multiplier=1.0, sampling="shuffle")]).fit(
            model, x, y
        )
    assert any("Poisson" in n for n in res.notes)
    assert "accounting_assumption_violated" in res.defenses["defense.dp-sgd"]


class _Monitor:
    def __init__(self) -> None:
        self.steps: list[dict] = []

    @hookimpl
    def on_train_step(self, step, epoch, metrics, context):
        self.steps.append(dict(metrics))


def test_monitor_reports_epsilon_and_stops_before_the_budget(pm):
    x, y, _, _ = _digits(400)
    mon = _Monitor()
    pm.register(mon, name="test-monitor")
    model = make_model("mlp", input_shape=(1, 8, 8), n_classes=10, seed=0)
    dp = DPSGD(noise_multiplier=1.5, target_epsilon=2.0, delta=1e-5, epsilon_every="step")
    res = Trainer(TrainConfig(epochs=50, batch_size=100, device="cpu", optimizer="sgd", lr=0.1), defenses=[dp], pm=pm).fit(model, x, y)
    rep = res.defenses["defense.dp-sgd"]
    eps = [m["epsilon"] for m in mon.steps]
    assert len(eps) == rep["steps"] < rep["planned_steps"]
    assert all(a < b for a, b in zip(eps, eps[1:]))
    assert rep["epsilon"] <= 2.0 < dp.accountant_.epsilon_if([(dp.step_event(rep["steps"]), 0.25, 1)], delta=1e-5)
    assert res.stop_reason and "privacy budget" in res.stop_reason
    with pytest.raises(PrivacyBudgetExceededError, match="single step"):
        Trainer(TrainConfig(epochs=1, batch_size=100, device="cpu"), defenses=[DPSGD(noise_multiplier=0.3, target_epsilon=0.01)]).fit(
            model, x, y
        )


def test_adaptive_clipping_tracks_the_quantile_and_charges_the_count_noise():
    x, y, _, _ = _digits(600)
    for rule in ("geometric", "linear"):
        model = make_model("mlp", input_shape=(1, 8, 8), n_classes=10, seed=0)
        dp = DPSGD(
            noise_multiplier=1.0,
            max_grad_norm=50.0,
            adaptive_clipping=True,
            clip_update=rule,
            clip_learning_rate=0.5,
            target_unclipped_quantile=0.5,
            min_clip=0.05,
            max_clip=60.0,
        )
        res = Trainer(TrainConfig(epochs=6, batch_size=120, device="cpu"), defenses=[dp]).fit(model, x, y)
        rep = res.defenses["defense.dp-sgd"]
        assert 0.05 <= rep["final_max_grad_norm"] < 50.0  # per-sample norms are far below 50: the bound falls
        ((event, _, _),) = dp.accountant_.history
        exact = combined_noise_multiplier(1.0, 120 / 20)
        # charged on the accountant's 0.01% grid, rounded down (conservative)
        assert exact * (1 - 1e-4) <= event.params["noise_multiplier"] <= exact
        assert event.params["noise_multiplier"] < 1.0


def test_target_epsilon_with_decay_schedule_and_adaptive_clipping():
    x, y, _, _ = _digits(500)
    model = make_model("mlp", input_shape=(1, 8, 8), n_classes=10, seed=0)
    dp = DPSGD(
        target_epsilon=2.0,
        mechanism="dp.ada-gaussian",
        mechanism_params={"decay_policy": "exp", "noise_decay_rate": 0.01},
        adaptive_clipping=True,
    )
    res = Trainer(TrainConfig(epochs=4, batch_size=100, device="cpu"), defenses=[dp]).fit(model, x, y)
    rep = res.defenses["defense.dp-sgd"]
    assert rep["noise_multiplier_calibrated"] and rep["steps"] == rep["planned_steps"] == 20
    assert 1.9 <= rep["epsilon"] <= 2.0
    assert rep["final_noise_multiplier"] == pytest.approx(rep["noise_multiplier"] * math.exp(-0.01 * 19))


def test_dp_digits_model_at_epsilon_one_learns():
    x, y, xt, yt = _digits()
    res = audit_sdk.train("mlp", x, y, target_epsilon=1.0, delta=1e-5, epochs=40, batch_size=350, lr=2e-2, seed=0)
    rep = res.defenses["defense.dp-sgd"]
    assert rep["epsilon"] <= 1.0
    acc = evaluate_accuracy(res.model, xt, yt)
    assert acc > 0.6, acc  # chance is 0.1


def test_cli_epsilon_calibrate_train(tmp_path, capsys):
    from audit_sdk.cli import main

    assert (
        main(
            [
                "epsilon",
                "--accountant",
                "rdp",
                "--noise-multiplier",
                "1.1",
                "--sample-rate",
                "0.0042667",
                "--steps",
                "15000",
                "--delta",
                "1e-5",
                "--json",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["accountant"] == "acct.rdp" and 2.5 < out["epsilon"] < 3.0 and out["optimal_order"] > 1
    assert main(["calibrate", "--target-epsilon", "3", "--sample-rate", "0.0042667", "--steps", "15000", "--delta", "1e-5", "--json"]) == 0
    cal = json.loads(capsys.readouterr().out)
    assert 0.9 < cal["noise_multiplier"] < 1.1 and cal["epsilon"] <= 3.0
    assert (
        main(["epsilon", "--accountant", "rdp", "--noise-multiplier", "1", "--sample-rate", "256", "--steps", "3", "--delta", "1e-5"]) == 2
    )
    assert "sample_rate" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.onnx exporter internals
        rc = main(
            [
                "train",
                "--defense",
                "dp-sgd",
                "--target-epsilon",
                "3",
                "--delta",
                "1e-5",
                "--model",
                "mlp",
                "--epochs",
                "3",
                "--out",
                str(tmp_path),
                "--json",
            ]
        )
    assert rc == 0
    priv = json.loads((tmp_path / "privacy.json").read_text())
    assert (tmp_path / "model.onnx").stat().st_size > 0
    assert priv["epsilon"] <= 3.0 and priv["delta"] == 1e-5 and priv["accountant"] == "acct.rdp" and priv["test_accuracy"] > 0.1


def test_unsupported_layers_fall_back_to_vmap_or_are_refused_in_ghost_mode():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, groups=1), nn.PReLU(), nn.Flatten(), nn.Linear(144, 10)).double()
    x, y = _data("cnn", 6)
    res = clipped_grad_sum(model, _per_example_ce, x.double(), y, clip=0.5)  # PReLU owns a parameter: vmap
    ref, norms = _reference(model, x.double(), y, 0.5, False)
    torch.testing.assert_close(res.norms, norms, rtol=1e-8, atol=1e-10)
    with pytest.raises(InvalidParameterError, match="PReLU"):
        clipped_grad_sum(model, _per_example_ce, x.double(), y, clip=0.5, mode="ghost")


def test_seeded_training_repeats_and_secure_mode_does_not():
    x, y, _, _ = _digits(300)

    def weights(**kw) -> torch.Tensor:
        model = make_model("mlp", input_shape=(1, 8, 8), n_classes=10, seed=0)
        Trainer(TrainConfig(epochs=2, batch_size=100, device="cpu", seed=3), defenses=[DPSGD(noise_multiplier=1.0, **kw)]).fit(model, x, y)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    assert torch.equal(weights(), weights())
    assert not torch.equal(weights(secure_mode=True), weights(secure_mode=True))


@pytest.mark.parametrize("accountant", ["acct.pld", "acct.gdp", "acct.zcdp"])
def test_every_accountant_calibrates_and_monitors_dp_sgd(accountant):
    x, y, _, _ = _digits(400)
    model = make_model("mlp", input_shape=(1, 8, 8), n_classes=10, seed=0)
    dp = DPSGD(target_epsilon=4.0, delta=1e-5, accountant=accountant)
    res = Trainer(TrainConfig(epochs=2, batch_size=100, device="cpu"), defenses=[dp]).fit(model, x, y)
    rep = res.defenses["defense.dp-sgd"]
    assert rep["accountant"] == accountant and rep["steps"] == 8
    assert 3.9 <= rep["epsilon"] <= 4.0
    assert [h["epsilon"] for h in res.history] == [e["epsilon"] for e in rep["epsilon_per_epoch"]]
    assert rep["accountant_is_upper_bound"] == (accountant != "acct.gdp")
