"""Shared pieces of the membership attacks: per-example statistics and result finishing.

Every membership attack ends through ``finish``: it builds the AttackResult (scored by the core)
and hands it to the core's ``enrich_membership`` with what only the attack knows (predicted classes
and per-example loss, for richer slices); the pipeline enriches third-party results the same way.
No framework import here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from audit_sdk.context import RunContext
from audit_sdk.membership import enrich_membership
from audit_sdk.results import AttackResult

__all__ = ["finish", "logit_confidence", "true_class_stats"]

_TINY = 1e-300


def true_class_stats(probs: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-example statistics of class probabilities ``probs`` (n, K) for true labels ``y``.

    Returns:
        ``loss`` (cross-entropy, probabilities clipped at 1e-12 as the core does), ``confidence``
        (p_y), ``entropy`` and ``modified_entropy`` (Song & Mittal 2021), and ``logit``: the
        logit-scaled confidence log(p_y / sum_{j != y} p_j) of LiRA (Carlini et al. 2022).
    """
    p = np.asarray(probs, dtype=np.float64)
    yy = np.asarray(y, dtype=np.int64)
    rows = np.arange(len(yy))
    py = p[rows, yy]
    logp = np.log(np.clip(p, _TINY, 1.0))
    log1mp = np.log(np.clip(1.0 - p, _TINY, 1.0))
    entropy = -(p * logp).sum(axis=1)
    # Mentr(F(x), y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)   (Song & Mittal 2021, eq. 4)
    others = p * log1mp
    mentr = -(1.0 - py) * logp[rows, yy] - (others.sum(axis=1) - others[rows, yy])
    return {
        "loss": -np.log(np.clip(py, 1e-12, 1.0)),
        "confidence": py,
        "entropy": entropy,
        "modified_entropy": mentr,
        "logit": logit_confidence(p, yy),
    }


def logit_confidence(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """LiRA's logit-scaled confidence log(p_y) - log(sum_{j != y} p_j), for probs of shape (..., n, K).

    The sum of the other classes is added up directly instead of computed as 1 - p_y, which
    would round to 0 for a confidently memorised sample (Carlini et al. 2022, sec. 4.2).
    """
    p = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(p.shape[-1], dtype=bool)[np.asarray(y, dtype=np.int64)]  # (n, K), broadcasts over leading axes
    py = np.where(onehot, p, 0.0).sum(axis=-1)
    rest = np.where(onehot, 0.0, p).sum(axis=-1)
    return np.log(np.clip(py, _TINY, None)) - np.log(np.clip(rest, _TINY, None))


def finish(
    attack: Any,
    *,
    scores: np.ndarray,
    truth: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray | None,
    loss: np.ndarray | None,
    context: RunContext | None,
    extra: dict[str, Any] | None = None,
) -> AttackResult:
    """Build the membership AttackResult, with slices, verdict and saved per-example scores.

    Args:
        attack: the Attack instance (its ``name`` and ``params``).
        predicted, loss: the target's predicted classes and per-example loss on the scored samples
            (for slicing by correctness and by loss percentile); None where the access level
            does not give them.
    """
    result = AttackResult(
        attack=attack.name, params=attack.params.model_dump(), scores=scores, truth=truth, labels=labels, extra=dict(extra or {})
    )
    return enrich_membership(result, out_dir=context.out_dir if context is not None else None, predicted=predicted, loss=loss)
