"""Threshold membership attacks on one per-example statistic (Yeom et al. 2018; Song & Mittal 2021)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.data import AuditData
from audit_sdk.target import Target

from ._common import finish, true_class_stats

__all__ = ["ThresholdAttack"]

# Sign that turns each statistic into "higher = more likely a member".
_SIGN = {"loss": -1.0, "confidence": 1.0, "entropy": -1.0, "modified-entropy": -1.0}
_KEY = {"loss": "loss", "confidence": "confidence", "entropy": "entropy", "modified-entropy": "modified_entropy"}


class ThresholdAttack(Attack):
    """Membership inference by thresholding the loss, the confidence, the entropy or the modified entropy.

    Members have lower loss, higher confidence on their label, lower prediction entropy and
    lower modified entropy (Song & Mittal 2021, which also uses the label). With
    ``calibration="per-class"`` each statistic is centred on its class median in reference data
    (the population when given, else all audited samples; the truth is never used), which is a
    per-class threshold.

        result = ThresholdAttack(statistic="modified-entropy", calibration="per-class").run(target, data)
    """

    name = "mia.threshold"
    summary = "Threshold loss, confidence, entropy or modified entropy, globally or per class (Song & Mittal 2021)."
    access = "black-box"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        statistic: Literal["loss", "confidence", "entropy", "modified-entropy"] = Field("modified-entropy")
        calibration: Literal["global", "per-class"] = "global"

    params: Params

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        p = self.params
        x, y, truth = data.combined()
        probs = target.predict_proba(x)
        stats = true_class_stats(probs, y)
        value = _SIGN[p.statistic] * stats[_KEY[p.statistic]]
        if p.calibration == "per-class":
            if data.population is not None:
                ref_y = data.population.y
                ref = _SIGN[p.statistic] * true_class_stats(target.predict_proba(data.population.x), ref_y)[_KEY[p.statistic]]
            else:
                ref, ref_y = value, y
            overall = np.median(ref)
            centre = np.array(
                [np.median(ref[ref_y == k]) if (ref_y == k).any() else overall for k in range(max(data.n_classes, int(y.max()) + 1))]
            )
            value = value - centre[y]
        return finish(self, scores=value, truth=truth, labels=y, predicted=probs.argmax(axis=1), loss=stats["loss"], context=context)


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [ThresholdAttack]
