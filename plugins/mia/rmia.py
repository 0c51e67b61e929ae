"""RMIA: relative membership inference against population samples (Zarifzadeh et al. 2024)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.data import AuditData
from audit_sdk.rng import as_generator
from audit_sdk.target import Target

from ._common import finish, true_class_stats
from ._reference import ReferenceParams, describe, get_reference_set, reference_problems

__all__ = ["RMIA", "rmia_scores"]

_TINY = 1e-300


def rmia_scores(ratio_x: np.ndarray, ratio_z: np.ndarray, *, gamma: float) -> np.ndarray:
    """Fraction of population samples z with LR(x, z) = ratio_x / ratio_z > gamma, per x.

    Args:
        ratio_x: (n,) Pr(x | target) / Pr(x) for the audited examples.
        ratio_z: (m,) Pr(z | target) / Pr(z) for the population samples.

    Sorting the z ratios once makes this O((n + m) log m), without an n x m matrix. The fraction
    is a non-decreasing function of ratio_x, so examples that dominate every z (or none) tie; the
    ties are broken by ratio_x itself, added at a scale (< 1e-6) that never crosses a step of the
    fraction (1 / m), so the score stays the paper's to six decimals and the low-FPR end of the
    ROC is not flattened by ties.
    """
    log_z = np.sort(np.log(np.clip(ratio_z, _TINY, None)))
    log_x = np.log(np.clip(ratio_x, _TINY, None))
    frac = np.searchsorted(log_z, log_x - np.log(gamma), side="left") / len(log_z)
    return frac + 1e-7 * (np.arctan(log_x) / np.pi + 0.5)


class RMIA(Attack):
    """Membership inference by the likelihood ratio of x against population samples z.

    Pr(x) is the reference models' mean confidence on x's label. Offline (references never saw
    the audited points) it is rescaled to the IN/OUT mixture it stands for:
    Pr(x) = ((1 + a) Pr_OUT(x) + (1 - a)) / 2. Population samples z were in half of the reference
    models' training sets, so their mean is already that mixture. The score is the fraction of z
    the example dominates by a factor gamma (Zarifzadeh et al. 2024, eq. 3-5).

        result = RMIA(n_references=4, offline_a=0.3).run(target, data, context=ctx)
    """

    name = "mia.rmia"
    summary = "Relative membership inference against population samples (Zarifzadeh et al. 2024)."
    access = "black-box"

    class Params(ReferenceParams):
        mode: Literal["online", "offline"] = Field(
            "online", description="online trains references on halves of the target points (+ population); offline on the population only"
        )
        offline_a: float = Field(0.3, ge=0.0, le=1.0, description="offline scaling of Pr_OUT(x) towards the IN/OUT mixture")
        gamma: float = Field(1.0, gt=0.0, description="likelihood-ratio threshold for x to dominate z")
        n_population: int | None = Field(None, ge=1, description="number of population samples z (default: all)")

    params: Params

    def check(self, target: Target, data: AuditData) -> list[str]:
        return reference_problems(self.params, data, kind=self.params.mode, attack_name=self.name)

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        p = self.params
        x, y, truth = data.combined()
        extra_z: dict[str, Any] = {}
        ref = get_reference_set(p, target, data, kind=p.mode, context=context, attack_name=self.name)
        pop = data.population
        if pop is not None and len(pop) >= 4:
            zx, zy = pop.x, pop.y
        else:
            # no population: z are the audited points themselves; each is OUT for half of the
            # (online) reference models, and its Pr(z) is their mean, like a population z's
            zx, zy = x, y
            extra_z = {"population_z": "the audited points (no population data)"}
        z_idx = np.arange(len(zy))
        if p.n_population is not None and p.n_population < len(zy):
            z_idx = np.sort(as_generator(rng).choice(len(zy), size=p.n_population, replace=False))
        xz, yz = zx[z_idx], zy[z_idx]
        probs = target.predict_proba(np.concatenate([x, xz]))
        probs_x, probs_z = probs[: len(y)], probs[len(y) :]
        stats = true_class_stats(probs_x, y)
        ref_probs = ref.predict_proba(np.concatenate([x, xz]))
        yy = np.concatenate([y, yz])
        ref_conf = np.take_along_axis(ref_probs, np.broadcast_to(yy[None, :, None], (ref.n_models, len(yy), 1)), axis=2)[..., 0]
        px = ref_conf[:, : len(y)].mean(axis=0)
        pz = ref_conf[:, len(y) :].mean(axis=0)
        if p.mode == "offline":
            px = 0.5 * ((1.0 + p.offline_a) * px + (1.0 - p.offline_a))
        conf_z = probs_z[np.arange(len(yz)), yz]
        ratio_x = stats["confidence"] / np.clip(px, _TINY, None)
        ratio_z = conf_z / np.clip(pz, _TINY, None)
        scores = rmia_scores(ratio_x, ratio_z, gamma=p.gamma)
        return finish(
            self,
            scores=scores,
            truth=truth,
            labels=y,
            predicted=probs_x.argmax(axis=1),
            loss=stats["loss"],
            context=context,
            extra={**describe(ref), "n_population_z": len(z_idx), **extra_z},
        )


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [RMIA]
