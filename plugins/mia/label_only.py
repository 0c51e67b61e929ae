"""Label-only membership inference by robustness to input noise (Choquette-Choo et al. 2021)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidParameterError
from audit_sdk.rng import as_generator
from audit_sdk.target import Target

from ._common import finish

__all__ = ["LabelOnly"]

#: Perturbed inputs held in memory at once (rows); queries still go out in the target's batch size.
_MAX_ROWS = 65536


class LabelOnly(Attack):
    """Membership inference from predicted labels only: members sit farther from the decision boundary.

    Each example is queried clean and with ``n_queries`` Gaussian perturbations at each noise
    level (a fraction of the feature range). The score is whether the clean prediction is correct
    plus, per level, the fraction of perturbed copies still classified correctly: a Monte-Carlo
    estimate of the distance to the boundary (Choquette-Choo et al. 2021, sec. 4, noise
    robustness). Only ``target.predict_labels`` is called, so it runs against label-only APIs.

        result = LabelOnly(noise_levels=[0.1, 0.3], n_queries=32).run(target, data, rng=0)
    """

    name = "mia.label-only"
    summary = "Decision-boundary distance by input noise, from predicted labels only (Choquette-Choo et al. 2021)."
    access = "label-only"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        noise_levels: list[float] = Field(
            default_factory=lambda: [0.05, 0.1, 0.2, 0.3, 0.5], description="Gaussian noise std as a fraction of the feature range"
        )
        n_queries: int = Field(16, ge=1, le=10_000, description="perturbed copies per example and noise level")
        clip: bool = Field(True, description="clip perturbed inputs to the range seen in the data")

        @field_validator("noise_levels")
        @classmethod
        def _positive(cls, v: list[float]) -> list[float]:
            if not v or any(not (s > 0) for s in v):
                raise ValueError("noise_levels must be a non-empty list of positive numbers")
            return v

    params: Params

    def check(self, target: Target, data: AuditData) -> list[str]:
        names = data.input_names
        if names:
            return [
                f"{self.name} perturbs continuous features with Gaussian noise; this data holds named inputs "
                f"{list(names)} (token ids), which it cannot perturb. Use mia.loss-threshold, mia.threshold or mia.classifier."
            ]
        return []

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        p = self.params
        gen = as_generator(rng)
        problems = self.check(target, data)
        if problems:
            raise InvalidParameterError(problems[0])
        x, y, truth = data.combined()
        # integer features or an integer model input (pixels 0..255): perturbed copies are rounded back to integers
        integral = x.dtype.kind in "iub" or np.dtype(getattr(target, "input_dtype", np.float32)).kind in "iub"
        xf = np.asarray(x, dtype=np.float32)
        lo, hi = float(xf.min()), float(xf.max())
        span = (hi - lo) or 1.0
        predicted = target.predict_labels(xf)
        score = (predicted == y).astype(np.float64)
        # Perturbed copies are built per chunk of examples, so memory stays bounded for large inputs.
        chunk = max(1, _MAX_ROWS // p.n_queries)
        for sigma in p.noise_levels:
            for start in range(0, len(y), chunk):
                xs, ys = xf[start : start + chunk], y[start : start + chunk]
                noisy = np.repeat(xs[None], p.n_queries, axis=0)
                noisy += gen.normal(0.0, sigma * span, size=noisy.shape).astype(np.float32)
                if p.clip:
                    np.clip(noisy, lo, hi, out=noisy)
                if integral:
                    np.rint(noisy, out=noisy)
                labels = target.predict_labels(noisy.reshape(-1, *xf.shape[1:])).reshape(p.n_queries, len(ys))
                score[start : start + chunk] += (labels == ys[None]).mean(axis=0)
        return finish(
            self,
            scores=score,
            truth=truth,
            labels=y,
            predicted=predicted,
            loss=None,
            context=context,
            extra={"queries": int(len(y) * (1 + p.n_queries * len(p.noise_levels)))},
        )


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [LabelOnly]
