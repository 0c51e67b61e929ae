"""LiRA: the likelihood-ratio membership attack with reference models (Carlini et al. 2022)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.data import AuditData
from audit_sdk.target import Target

from ._common import finish, logit_confidence, true_class_stats
from ._reference import ReferenceParams, describe, get_reference_set, reference_problems

__all__ = ["LiRA", "lira_scores"]

#: Below this many IN (or OUT) models per example, "auto" variance pools the variance over examples.
_AUTO_GLOBAL_BELOW = 16


def _moments(phi: np.ndarray, mask: np.ndarray, *, global_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    cnt = mask.sum(axis=0)
    mu = np.where(mask, phi, 0.0).sum(axis=0) / np.maximum(cnt, 1)
    sq = np.where(mask, (phi - mu) ** 2, 0.0)
    if global_variance:
        dof = max(int(cnt.sum()) - int((cnt > 0).sum()), 1)
        var = np.full(phi.shape[1], sq.sum() / dof)
    else:
        var = sq.sum(axis=0) / np.maximum(cnt - 1, 1)
    # A floor keeps the Gaussian proper when every reference model gives the same value.
    return mu, np.sqrt(np.maximum(var, 1e-8))


def lira_scores(phi_target: np.ndarray, phi_ref: np.ndarray, in_mask: np.ndarray | None, *, global_variance: bool) -> np.ndarray:
    """LiRA membership scores (higher = member) from logit-scaled confidences.

    Args:
        phi_target: (n,) the target's logit-scaled confidence on each example.
        phi_ref: (n_models, n) the reference models' on the same examples.
        in_mask: (n_models, n) True where a reference model trained on the example (online), or
            None for offline (every reference model is OUT).
        global_variance: one variance for all examples (better with few reference models).

    Returns:
        online: log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out); offline: the one-sided
        log P[Z <= phi] under Z ~ N(mu_out, s_out) (Carlini et al. 2022, Algorithm 1 and sec. 5).
    """
    from scipy.stats import norm

    phi_ref = np.asarray(phi_ref, dtype=np.float64)
    out_mask = np.ones(phi_ref.shape, bool) if in_mask is None else ~in_mask
    mu_out, sd_out = _moments(phi_ref, out_mask, global_variance=global_variance)
    if in_mask is None:
        return np.asarray(norm.logcdf(phi_target, mu_out, sd_out))
    mu_in, sd_in = _moments(phi_ref, in_mask, global_variance=global_variance)
    return np.asarray(norm.logpdf(phi_target, mu_in, sd_in) - norm.logpdf(phi_target, mu_out, sd_out))


class LiRA(Attack):
    """Membership inference by a per-example likelihood ratio against reference models.

    Reference models are trained like the target on random halves of the target points plus the
    population if any (online, the default: each point is IN for half the models; no population
    needed), or of the population only (offline).
    For each example the logit-scaled confidence of the reference models is fitted with a
    Gaussian (IN and OUT online, OUT only offline) and the target's confidence is scored under it.

        result = LiRA(mode="online", n_references=16).run(target, data, context=ctx)
    """

    name = "mia.lira"
    summary = "Likelihood-ratio attack with reference models, online or offline (Carlini et al. 2022)."
    access = "black-box"

    class Params(ReferenceParams):
        mode: Literal["online", "offline"] = Field(
            "online", description="online trains references on halves of the target points (+ population); offline on the population only"
        )
        variance: Literal["auto", "per-example", "global"] = Field(
            "auto", description=f"auto: global when fewer than {_AUTO_GLOBAL_BELOW} IN/OUT models per example"
        )

    params: Params

    def check(self, target: Target, data: AuditData) -> list[str]:
        return reference_problems(self.params, data, kind=self.params.mode, attack_name=self.name)

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        p = self.params
        x, y, truth = data.combined()
        probs = target.predict_proba(x)
        stats = true_class_stats(probs, y)
        ref = get_reference_set(p, target, data, kind=p.mode, context=context, attack_name=self.name)
        phi_ref = logit_confidence(ref.predict_proba(x), y)
        in_mask = ref.masks[:, : len(y)] if p.mode == "online" else None
        per_side = ref.n_models // 2 if p.mode == "online" else ref.n_models
        global_var = p.variance == "global" or (p.variance == "auto" and per_side < _AUTO_GLOBAL_BELOW)
        scores = lira_scores(stats["logit"], phi_ref, in_mask, global_variance=global_var)
        return finish(
            self,
            scores=scores,
            truth=truth,
            labels=y,
            predicted=probs.argmax(axis=1),
            loss=stats["loss"],
            context=context,
            extra={**describe(ref), "global_variance": global_var},
        )


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [LiRA]
