"""Shared pieces of the membership attacks: per-example statistics and result finishing.

Every membership attack ends through ``finish``: it builds the AttackResult (scored by the core),
adds the slices (``audit_sdk.slicing``) and the verdict, and saves the per-example scores when the
run has an ``out_dir``. No framework import here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from audit_sdk.fileio import atomic_write
from audit_sdk.results import AttackResult
from audit_sdk.slicing import SlicingSpec, membership_verdict, slice_membership

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


def _params_tag(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:10]


def finish(
    attack: Any,
    *,
    scores: np.ndarray,
    truth: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray | None,
    loss: np.ndarray | None,
    context: Any,
    extra: dict[str, Any] | None = None,
) -> AttackResult:
    """Build the membership AttackResult, with slices, verdict and saved per-example scores.

    Args:
        attack: the Attack instance (its ``name`` and ``params``).
        predicted, loss: the target's predicted classes and per-example loss on the scored samples
            (for slicing by correctness and by loss percentile); None where the access level
            does not give them.
    """
    params = attack.params.model_dump()
    result = AttackResult(attack=attack.name, params=params, scores=scores, truth=truth, labels=labels, extra=dict(extra or {}))
    spec = SlicingSpec(
        entire_dataset=False,
        by_class=True,
        by_percentiles=loss is not None,
        by_classification_correctness=predicted is not None,
    )
    slices = slice_membership(result.scores, result.truth, spec=spec, labels=labels, predicted=predicted, loss=loss)
    result.extra["slices"] = [s.to_dict() for s in slices]
    result.extra["verdict"] = membership_verdict(result.metrics)
    out_dir = getattr(context, "out_dir", None)
    if out_dir is not None:
        d = Path(out_dir) / "mia"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{attack.name}-{_params_tag(params)}.npz"
        arrays: dict[str, np.ndarray] = {"scores": result.scores, "truth": result.truth, "labels": np.asarray(labels)}  # type: ignore[dict-item]
        if predicted is not None:
            arrays["predicted"] = np.asarray(predicted)
        if loss is not None:
            arrays["loss"] = np.asarray(loss)
        with atomic_write(path) as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        result.extra["scores_file"] = str(path)
    return result
