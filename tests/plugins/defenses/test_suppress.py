"""defense.suppress: MindArmour's schedule, exact zeros with any optimizer, privacy and utility."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import audit_sdk
from audit_sdk.adapters.torch import TrainConfig, Trainer, make_model
from audit_sdk.adapters.torch.recipes import digits_setup
from audit_sdk.data import load_digits_data
from audit_sdk.errors import InvalidParameterError
from audit_sdk.interfaces import Defense
from audit_sdk.plugins.defenses.suppress import SuppressPrivacy, cubic_sparsity
from audit_sdk.plugins.mia.loss_threshold import LossThreshold

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def digits_small():
    d = load_digits_data()
    x = d.x[:300].reshape(300, -1).astype(np.float32)
    return x, d.y[:300]


def _expected_rounds(*, epochs, batch_num, start_epoch, end_epoch, mask_times):
    """MindArmour's update_status, re-derived: the 1-based steps at which a masking round runs."""
    interval = (end_epoch - start_epoch + 1) * batch_num / mask_times
    steps, prev, started = [], 0.0, False
    for epoch in range(1, epochs + 1):
        for j in range(1, batch_num + 1):
            step = (epoch - 1) * batch_num + j
            if start_epoch <= epoch <= end_epoch or started:
                started = True
                if step >= prev + interval or (epoch == end_epoch and j == batch_num - 2):
                    prev = step
                    steps.append(step)
    return steps


def test_schedule_matches_the_formula_at_every_round(digits_small):
    x, y = digits_small
    model = make_model("mlp", input_shape=(64,), n_classes=10, hidden=32, seed=0)
    sup = SuppressPrivacy(
        start_epoch=2,
        end_epoch=6,
        mask_times=13,
        sparse_start=0.1,
        sparse_end=0.8,
        layers=[{"name": "1.weight", "min_num": 100}, {"name": "3.weight"}],
    )
    Trainer(TrainConfig(epochs=8, batch_size=30, lr=1e-2, device="cpu"), defenses=[sup]).fit(model, x, y)
    batch_num = 10
    steps = [r["step"] for r in sup.rounds_]
    assert steps == _expected_rounds(epochs=8, batch_num=batch_num, start_epoch=2, end_epoch=6, mask_times=13)
    t0, all_steps = (2 - 1) * batch_num + 1, (6 - 2 + 1) * batch_num
    last = 0.0
    for r in sup.rounds_:
        s = 0.8 + (0.1 - 0.8) * (1 - (r["step"] - t0) / all_steps) ** 3
        s = max(0.1, last, min(s, 0.8))
        last = s
        assert r["sparsity"] == pytest.approx(s, abs=1e-12)
        for name, n, min_num in (("1.weight", 64 * 32, 100), ("3.weight", 32 * 10, 0)):
            k = int(n * min(1 - min(min_num, n) / n, s))
            assert r["layers"][name]["k"] == k
            assert r["layers"][name]["masked"] == k, (r["step"], name)
    assert sup.rounds_[-1]["sparsity"] == pytest.approx(0.8)
    rep = sup.report_
    assert rep["sparsity"]["3.weight"] == pytest.approx(int(320 * 0.8) / 320)
    assert rep["sparsity"]["1.weight"] == pytest.approx(int(2048 * 0.8) / 2048)
    assert "accuracy" not in rep  # no held-out data given
    assert cubic_sparsity(t0, start_step=t0, all_steps=all_steps, sparse_start=0.1, sparse_end=0.8) == pytest.approx(0.1)


class _ZeroChecker(Defense):
    """Runs before suppress's own enforcement: masked entries must not have moved in the step."""

    name = "defense.test-zero-checker"
    summary = "test helper"
    points = ("parameters",)

    def __init__(self, sup):
        super().__init__()
        self.sup, self.checked = sup, 0

    def on_step_end(self, ctx):
        if not getattr(self.sup, "rounds_", None):
            return
        for name, par in ctx.model.named_parameters():
            keep = self.sup.masks_.get(name)
            if keep is None or bool((keep != 0).all()):
                continue
            masked = keep == 0
            assert bool((par.detach()[masked] == 0).all()), f"masked weights of {name} moved at step {ctx.step}"
            for v in ctx.optimizer.state[par].values():
                if torch.is_tensor(v) and v.shape == par.shape:
                    assert bool((v[masked] == 0).all())
            self.checked += 1


@pytest.mark.parametrize("optimizer,weight_decay", [("adam", 0.0), ("adam", 1e-3), ("momentum", 1e-3), ("sgd", 0.0)])
def test_masked_weights_stay_exactly_zero(digits_small, optimizer, weight_decay):
    x, y = digits_small
    model = make_model("mlp", input_shape=(64,), n_classes=10, hidden=32, seed=1)
    sup = SuppressPrivacy(start_epoch=1, end_epoch=3, mask_times=10, sparse_end=0.7)
    checker = _ZeroChecker(sup)
    cfg = TrainConfig(epochs=6, batch_size=30, lr=1e-2, optimizer=optimizer, weight_decay=weight_decay, device="cpu")
    # the checker runs first, i.e. right after the optimizer step and before suppress re-applies its mask
    Trainer(cfg, defenses=[checker, sup]).fit(model, x, y)
    assert checker.checked > 20
    for name, par in model.named_parameters():
        if name in sup.masks_:
            assert float((par == 0).float().mean()) >= 0.69
    # the gradient hooks are removed after training
    out = model(torch.from_numpy(x[:8]))
    torch.nn.functional.cross_entropy(out, torch.from_numpy(y[:8])).backward()
    masked = sup.masks_["1.weight"] == 0
    assert bool((model[1].weight.grad[masked] != 0).any())


def _fake_ctx(model, *, epochs=1, n=10, batch_size=10):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return SimpleNamespace(
        model=model,
        optimizer=opt,
        config=TrainConfig(epochs=epochs, batch_size=batch_size),
        n_samples=n,
        sampling="shuffle",
        rng=np.random.default_rng(0),
        x_val=None,
        y_val=None,
        device=torch.device("cpu"),
    )


def test_one_round_masks_clips_and_adds_noise_as_mindarmour():
    lin = torch.nn.Linear(10, 10, bias=False)
    w = torch.linspace(-2.0, 2.0, 100).reshape(10, 10)
    w[w.abs() < 1e-6] = 1e-3
    with torch.no_grad():
        lin.weight.copy_(w)
    model = torch.nn.Sequential(lin)
    sup = SuppressPrivacy(
        start_epoch=1,
        end_epoch=1,
        mask_times=1,
        sparse_end=0.3,
        seed=0,
        layers=[{"name": "0.weight", "min_num": 80, "is_add_noise": True, "upper_bound": 1.5}],
    )
    sup.on_train_begin(_fake_ctx(model))
    sup._start_step = 1
    with torch.no_grad():
        sup._mask_round(cur_step=1 + sup.mask_all_steps_, cur_epoch=1)
    got = model[0].weight.detach().reshape(-1)
    a = w.reshape(-1).abs()
    # min_num caps the mask: k = int(100 * min(1 - 80/100, 0.3)) = 19 (1 - 0.8 is 0.19999... in floats)
    k = int(100 * min(1 - 80 / 100, 0.3))
    order = torch.argsort(a, stable=True)
    assert sup.rounds_[0]["layers"]["0.weight"]["k"] == k == 19
    assert bool((got[order[:k]] == 0).all()) and int((got == 0).sum()) == k
    big = a > 1.5
    assert torch.allclose(got[big].abs(), torch.tensor(1.5))
    noisy = (a > 0.5) & ~big
    d = (got - w.reshape(-1))[noisy]
    assert bool((d.abs() <= 0.1 + 1e-7).all()) and bool((d != 0).all())
    thd = sup.rounds_[0]["layers"]["0.weight"]["threshold"]
    # at the threshold but over the min_num budget (the tie partner): pulled to +-min(0.005, thd)
    tie = (a <= thd) & (got != 0)
    assert int(tie.sum()) == 1 and torch.allclose(got[tie].abs(), torch.tensor(0.005))
    calm = (a <= 0.5) & (a > thd)
    assert torch.equal(got[calm], w.reshape(-1)[calm])


def test_bad_options_are_rejected_with_a_fix(digits_small):
    x, y = digits_small
    with pytest.raises(InvalidParameterError, match="start_epoch"):
        SuppressPrivacy(start_epoch=5, end_epoch=2)
    with pytest.raises(InvalidParameterError, match="sparse_start"):
        SuppressPrivacy(sparse_start=0.9, sparse_end=0.5)
    model = make_model("mlp", input_shape=(64,), n_classes=10, hidden=8, seed=0)
    with pytest.raises(InvalidParameterError, match="train longer"):
        Trainer(TrainConfig(epochs=2, device="cpu"), defenses=[SuppressPrivacy(end_epoch=5)]).fit(model, x, y)
    with pytest.raises(InvalidParameterError, match="matches no parameter"):
        Trainer(
            TrainConfig(epochs=2, device="cpu"), defenses=[SuppressPrivacy(start_epoch=1, end_epoch=2, layers=[{"name": "conv9"}])]
        ).fit(model, x, y)
    with pytest.raises(InvalidParameterError, match="matches 2 parameters"):
        Trainer(
            TrainConfig(epochs=2, device="cpu"), defenses=[SuppressPrivacy(start_epoch=1, end_epoch=2, layers=[{"name": "weight"}])]
        ).fit(model, x, y)


def test_ninety_percent_sparsity_keeps_accuracy_and_lowers_the_loss_attack():
    common = dict(n_members=250, n_non_members=250, n_population=1000, epochs=80, label_noise=0.1, seed=0)
    base = digits_setup(**common)
    sup = SuppressPrivacy(start_epoch=5, end_epoch=40, mask_times=140, sparse_end=0.9)
    supp = digits_setup(**common, defenses=(sup,))
    for name, s in sup.report_["sparsity"].items():
        assert s >= 0.89, (name, s)
    pop = base.data.population
    from audit_sdk.adapters.torch import evaluate_accuracy

    acc_base = evaluate_accuracy(base.model, pop.x, pop.y, device="cpu")
    acc_sup = evaluate_accuracy(supp.model, pop.x, pop.y, device="cpu")
    assert acc_sup >= 0.95 * acc_base, (acc_base, acc_sup)  # measured: 0.809 -> 0.794
    auc_base = LossThreshold().run(audit_sdk.load_target(base.model), base.data).metrics["auc"]
    auc_sup = LossThreshold().run(audit_sdk.load_target(supp.model), supp.data).metrics["auc"]
    assert auc_sup < auc_base - 0.05, (auc_base, auc_sup)  # measured: 0.647 -> 0.541


def test_report_has_accuracy_when_validation_data_is_given(digits_small):
    x, y = digits_small
    model = make_model("mlp", input_shape=(64,), n_classes=10, hidden=32, seed=0)
    sup = SuppressPrivacy(start_epoch=1, end_epoch=3, mask_times=10, sparse_end=0.5)
    res = Trainer(TrainConfig(epochs=4, batch_size=30, lr=1e-2, device="cpu"), defenses=[sup]).fit(
        model, x[:200], y[:200], x_val=x[200:], y_val=y[200:]
    )
    rep = res.defenses["defense.suppress"]
    assert 0.0 <= rep["accuracy"] <= 1.0
    assert rep["accuracy"] == pytest.approx(res.history[-1]["val_accuracy"])
    assert rep["rounds"] == len(rep["schedule"]) and math.isclose(rep["target_sparsity"], 0.5)


def test_masks_hold_under_dp_sgd_which_writes_gradients_itself(digits_small):
    x, y = digits_small
    reg = audit_sdk.get_registry()
    if "defense.dp-sgd" not in reg.names("defense"):
        pytest.skip("defense.dp-sgd is not registered")
    dp = reg.create("defense", "defense.dp-sgd", {"noise_multiplier": 1.0, "max_grad_norm": 1.0})
    model = make_model("mlp", input_shape=(64,), n_classes=10, hidden=32, seed=0)
    sup = SuppressPrivacy(start_epoch=1, end_epoch=3, mask_times=10, sparse_end=0.7)
    checker = _ZeroChecker(sup)  # after suppress: the state every later step starts from
    cfg = TrainConfig(epochs=4, batch_size=30, lr=1e-2, optimizer="adam", sampling="poisson", device="cpu")
    res = Trainer(cfg, defenses=[dp, sup, checker]).fit(model, x, y)
    assert checker.checked > 10
    assert min(res.defenses["defense.suppress"]["sparsity"].values()) >= 0.69
    assert res.defenses["defense.dp-sgd"]["epsilon"] > 0


def _mindarmour_round(w, mul, s, *, min_num, lower_clip, upper, lb=0.005):
    """MindArmour's SuppressCtrl.update_mask + update_mask_layer for one layer, element by element
    (mindarmour/privacy/sup_privacy/sup_ctrl/conctrl.py, v2.1.0), noise off. The add mask A is
    applied as MindArmour's SGD step does with a zero gradient: w <- w - lr * A."""
    size = len(w)
    k = int(size * min(1.0 - min(min_num, size) / size, s))
    thd = np.partition(np.abs(w), k - 1)[k - 1]
    out, mul, m = w.copy(), mul.copy(), 0
    for i in range(size):
        if mul[i] <= 0:
            out[i] = 0.0
            m += 1
        elif abs(w[i]) <= thd:
            if m < size - min_num and m < k:
                mul[i], out[i] = 0.0, 0.0
                m += 1
            else:
                out[i] = min(lb, thd) if w[i] > 0 else -min(lb, thd)
        elif lower_clip and abs(w[i]) <= lb and thd > lb * 0.5:
            out[i] = lb if w[i] > 0 else -lb
        elif abs(w[i]) > upper:
            out[i] = upper if w[i] > 0 else -upper
    return out, mul


def test_two_rounds_match_an_element_by_element_port_of_mindarmour():
    gen = np.random.default_rng(0)
    w0 = gen.normal(0, 0.3, size=(20, 30))
    w0.reshape(-1)[gen.choice(600, 20, replace=False)] = gen.uniform(-0.004, 0.004, 20)  # for the lower clip
    lin = torch.nn.Linear(30, 20, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(w0))
    model = torch.nn.Sequential(lin)
    spec = {"name": "0.weight", "min_num": 30, "is_lower_clip": True, "upper_bound": 0.6}
    sup = SuppressPrivacy(start_epoch=1, end_epoch=1, mask_times=1, sparse_end=0.8, layers=[spec])
    sup.on_train_begin(_fake_ctx(model))
    sup._start_step = 1
    ref, mul = w0.reshape(-1).copy(), np.ones(600)
    for s, step in ((0.3, 1 + sup.mask_all_steps_ // 3), (0.6, 1 + sup.mask_all_steps_ // 2)):
        with torch.no_grad():
            sup.cur_sparse_ = 0.0
            sup.params = sup.params.model_copy(update={"sparse_start": s, "sparse_end": s + 1e-9})
            sup._mask_round(cur_step=step, cur_epoch=1)
        ref, mul = _mindarmour_round(ref, mul, sup.cur_sparse_, min_num=30, lower_clip=True, upper=0.6)
        got = model[0].weight.detach().numpy().reshape(-1)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-15)
        np.testing.assert_array_equal(sup.masks_["0.weight"].numpy().reshape(-1), mul)
        # "training" between rounds moves the surviving weights; masked ones stay 0
        with torch.no_grad():
            model[0].weight.add_(torch.from_numpy(gen.normal(0, 0.05, (20, 30))) * sup.masks_["0.weight"])
        ref = model[0].weight.detach().numpy().reshape(-1).copy()
    assert int((mul == 0).sum()) == int(600 * (0.6 + 1e-9))
