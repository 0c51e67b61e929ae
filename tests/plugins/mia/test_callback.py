"""The training-time membership audit (TF Privacy's MembershipInferenceCallback) on the on_epoch_end hook."""

from __future__ import annotations

import numpy as np
import pytest

import audit_sdk
from audit_sdk.errors import InvalidParameterError
from audit_sdk.interfaces import Defense
from audit_sdk.plugins.mia.callback import MembershipInferenceCallback


@pytest.fixture(scope="module")
def fresh_digits():
    """The digits split with 10% label noise, no model yet (the callback watches one memorise)."""
    from audit_sdk.adapters.torch.recipes import digits_setup

    return digits_setup(n_members=250, n_non_members=250, n_population=0, train=False, label_noise=0.1, seed=0).data


def _train(data, cb, *, epochs, defenses=()):
    from audit_sdk.adapters.torch import TrainConfig, Trainer, make_model

    pm = audit_sdk.get_plugin_manager(third_party=False)
    pm.register(cb)
    model = make_model("mlp", input_shape=data.feature_shape, n_classes=10, seed=0)
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=5e-3, device="cpu", seed=0)
    return Trainer(cfg, defenses=list(defenses), pm=pm).fit(model, data.members.x, data.members.y)


def test_runs_every_n_epochs_and_sees_memorisation_grow(fresh_digits):
    cb = MembershipInferenceCallback(fresh_digits, attack="mia.threshold", params={"statistic": "loss"}, every=10, epochs=25)
    result = _train(fresh_digits, cb, epochs=25)
    assert [h["epoch"] for h in cb.history] == [9, 19, 24]  # every 10, plus the last epoch
    assert all(r.attack == "mia.threshold" for r in cb.results)
    aucs = [h["auc"] for h in cb.history]
    assert aucs[-1] > aucs[0] and aucs[-1] > 0.55  # memorisation grows with training
    assert cb.history[0]["train_loss"] == pytest.approx(result.history[9]["loss"])
    assert result.model.training is False  # the Trainer's final eval() is not undone


class _NoisyGradients(Defense):
    """A DP-style gradient-point defense: per-batch clipped, noised gradients (enough to test the wiring)."""

    name = "defense.test-noisy-gradients"
    summary = "Clip and noise the batch gradient (test only)."
    points = ("gradient",)

    def compute_gradients(self, ctx, batch):
        import torch

        xb, yb = batch
        loss = ctx.loss_fn(ctx.model(xb), yb).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ctx.model.parameters(), 1.0)
        for p in ctx.model.parameters():
            p.grad += torch.randn(p.shape, generator=ctx.generator) * 0.5 / max(1, len(yb))
        ctx.metrics["loss"] = float(loss.detach())
        ctx.metrics["epsilon"] = 1.0 + ctx.epoch  # what a DP defense reports per step
        return True


def test_works_with_a_gradient_point_defense_and_records_its_figures(fresh_digits):
    cb = MembershipInferenceCallback(fresh_digits, attack="mia.label-only", params={"n_queries": 2, "noise_levels": [0.2]}, every=2)
    _train(fresh_digits, cb, epochs=4, defenses=[_NoisyGradients()])
    assert [h["epoch"] for h in cb.history] == [1, 3]
    assert [h["train_epsilon"] for h in cb.history] == [2.0, 4.0]
    assert all(0.0 <= h["auc"] <= 1.0 and np.isfinite(h["epsilon_lower_bound"]) for h in cb.history)


def test_rejects_bad_options(fresh_digits):
    with pytest.raises(InvalidParameterError, match="every"):
        MembershipInferenceCallback(fresh_digits, every=0)
    with pytest.raises(InvalidParameterError, match="unknown option"):
        MembershipInferenceCallback(fresh_digits, attack="mia.threshold", params={"bogus": 1})
