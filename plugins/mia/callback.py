"""Training-time membership audit: run an attack every N epochs (TensorFlow Privacy's MembershipInferenceCallback)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from audit_sdk import hookimpl
from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidParameterError
from audit_sdk.interfaces import Attack
from audit_sdk.results import AttackResult

__all__ = ["MembershipInferenceCallback"]


class MembershipInferenceCallback:
    """An ``on_epoch_end`` observer that audits the model being trained every ``every`` epochs.

    Register it on the plugin manager a Trainer reports to; it works with plain and DP training
    alike (with a DP-SGD defense the epoch's ``epsilon``, when the defense reports one, is
    recorded beside the attack's metrics)::

        cb = MembershipInferenceCallback(data, attack="mia.threshold", every=5)
        pm = audit_sdk.get_plugin_manager()
        pm.register(cb)
        Trainer(TrainConfig(epochs=30), pm=pm).fit(model, data.members.x, data.members.y)
        cb.history   # [{"epoch": 4, "auc": ..., "tpr@1%": ..., "train_loss": ...}, ...]

    Args:
        data: the audit data (members are what the model is trained on).
        attack: an attack name, or an Attack instance.
        params: options of the named attack.
        every: run after epochs every-1, 2*every-1, ... (1-based multiples of ``every``).
        rng: seed of the attack runs (each epoch's run gets its own stream derived from it).
        context: the RunContext given to the attack (cache directory for reference models, ...).
        at_end: also run after the last epoch when it is not a multiple of ``every``; needs
            ``epochs`` (the callback cannot know the last epoch otherwise).
    """

    def __init__(
        self,
        data: AuditData,
        *,
        attack: str | Attack = "mia.threshold",
        params: Mapping[str, Any] | None = None,
        every: int = 1,
        rng: int = 0,
        context: Any = None,
        epochs: int | None = None,
    ) -> None:
        from audit_sdk.registry import get_registry
        from audit_sdk.run import RunContext

        if every < 1:
            raise InvalidParameterError(f"every must be >= 1 (epochs between audits); got {every}.")
        self.context = context or RunContext(registry=get_registry())
        self.attack = attack if isinstance(attack, Attack) else self.context.registry.create("attack", attack, dict(params or {}))
        if self.attack.result_kind != "membership":
            raise InvalidParameterError(f"{self.attack.name} is not a membership attack; the callback records membership metrics.")
        self.data = data
        self.every = every
        self.epochs = epochs
        self._seeds = np.random.SeedSequence(rng)
        self.history: list[dict[str, Any]] = []
        self.results: list[AttackResult] = []

    @hookimpl
    def on_epoch_end(self, epoch: int, metrics: dict[str, Any], context: Any) -> None:
        last = self.epochs is not None and epoch == self.epochs - 1
        if (epoch + 1) % self.every and not last:
            return
        from audit_sdk.adapters.torch import TorchTarget
        from audit_sdk.run import run_attack

        model = context.model
        was_training = model.training
        try:
            target = TorchTarget(model, input_shape=self.data.feature_shape, n_classes=self.data.n_classes, device=context.device)
            child = np.random.default_rng(self._seeds.spawn(1)[0])
            result = run_attack(self.attack, target, self.data, rng=child, context=self.context)
        finally:
            model.train(was_training)
        m = result.metrics
        rec: dict[str, Any] = {
            "epoch": epoch,
            "attack": self.attack.name,
            "auc": m["auc"],
            "advantage": m["advantage"],
            **{f"tpr@{float(k):.1%}": v for k, v in m["tpr_at_fpr"].items()},
            "epsilon_lower_bound": m["epsilon_lower_bound"],
            "leakage_risk": result.extra.get("verdict", {}).get("leakage_risk"),
        }
        rec.update(
            {f"train_{k}": v for k, v in metrics.items() if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        )
        self.history.append(rec)
        self.results.append(result)
