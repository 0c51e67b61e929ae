"""Membership inference by per-example loss (Yeom et al. 2018): members have lower loss."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.data import AuditData
from audit_sdk.target import Target

from ._common import finish


class LossThreshold(Attack):
    """Membership inference: a loss below the population's suggests a member.

    The score is the negative cross-entropy loss, so thresholding it at every value traces the
    ROC. With ``calibration="per-class"`` each sample's loss is first centred on the median loss
    of its class in reference data (the population when given, else all audited samples; the
    truth is never used), which removes the easy/hard-class effect.

        result = LossThreshold().run(target, data)
    """

    name = "mia.loss-threshold"
    summary = "Threshold per-example loss against reference data (Yeom et al. 2018)."
    access = "black-box"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        calibration: Literal["global", "per-class"] = "global"

    params: Params

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        x, y, truth = data.combined()
        loss = raw_loss = target.loss(x, y)
        if self.params.calibration == "per-class":
            if data.population is not None:
                ref_loss, ref_y = target.loss(data.population.x, data.population.y), data.population.y
            else:
                ref_loss, ref_y = loss, y
            centre = np.array(
                [np.median(ref_loss[ref_y == k]) if (ref_y == k).any() else np.median(ref_loss) for k in range(data.n_classes)]
            )
            loss = loss - centre[y]
        # slices by class and loss decile, the verdict, and saved scores, as every membership attack has
        return finish(self, scores=-loss, truth=truth, labels=y, predicted=None, loss=raw_loss, context=context)


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [LossThreshold]
