"""Slicing membership results (TensorFlow Privacy's ``SlicingSpec``) and the membership verdict.

A membership attack that looks weak on the whole data set can be strong on one class, on the
misclassified samples or on the highest-loss decile. ``slice_membership`` re-scores a result on
each slice with the core metrics (``audit_sdk.metrics``), so every slice is scored like the whole::

    spec = SlicingSpec(by_class=True, by_percentiles=True, by_classification_correctness=True)
    for s in slice_membership(result.scores, result.truth, spec=spec, labels=y, predicted=pred, loss=loss):
        print(s.name, s.metrics["auc"] if s.metrics else s.skipped)

``membership_verdict`` states MindArmour's rule (precision, recall and accuracy all above 0.6
means a leakage risk) beside the low-FPR view (TPR at 0.1% and 1% FPR; Carlini et al. 2022).

Pure numpy; no framework.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidDataError, InvalidParameterError
from .metrics import membership_metrics

__all__ = ["MINDARMOUR_THRESHOLD", "Slice", "SlicingSpec", "membership_verdict", "slice_membership"]

#: MindArmour's rule: precision, recall and accuracy all above this mean a leakage risk.
MINDARMOUR_THRESHOLD = 0.6


@dataclass(frozen=True)
class SlicingSpec:
    """Which slices to score, as in TensorFlow Privacy.

    Attributes:
        entire_dataset: the whole result as one slice.
        by_class: True for every class, or a list of class indices.
        by_percentiles: ten slices by loss percentile (0-10%, ..., 90-100%), lowest loss first.
        by_classification_correctness: correctly vs incorrectly classified samples.
    """

    entire_dataset: bool = True
    by_class: bool | Sequence[int] = False
    by_percentiles: bool = False
    by_classification_correctness: bool = False

    @classmethod
    def all(cls) -> SlicingSpec:
        """Every slice kind (the default of the membership attacks)."""
        return cls(entire_dataset=True, by_class=True, by_percentiles=True, by_classification_correctness=True)


@dataclass
class Slice:
    """One slice: its name, kind, sizes, and the core metrics (None when it cannot be scored)."""

    name: str
    kind: str
    n_members: int
    n_non_members: int
    metrics: dict[str, Any] | None = None
    skipped: str | None = None
    value: Any = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "value": self.value,
            "n_members": self.n_members,
            "n_non_members": self.n_non_members,
        }
        if self.metrics is not None:
            m = self.metrics
            d["metrics"] = {
                "auc": m["auc"],
                "advantage": m["advantage"],
                "tpr_at_fpr": m["tpr_at_fpr"],
                "epsilon_lower_bound": m["epsilon_lower_bound"],
                "precision": m["precision"],
                "recall": m["recall"],
                "accuracy": m["accuracy"],
            }
        else:
            d["skipped"] = self.skipped
        return d


def _vector(name: str, v: Any, n: int, *, dtype: Any = None) -> np.ndarray:
    a = np.asarray(v) if dtype is None else np.asarray(v, dtype=dtype)
    if a.ndim != 1 or len(a) != n:
        raise InvalidDataError(f"{name} must have one entry per scored sample ({n}); got shape {a.shape}.")
    return a


def slice_membership(
    scores: Any,
    truth: Any,
    *,
    spec: SlicingSpec | None = None,
    labels: Any = None,
    predicted: Any = None,
    loss: Any = None,
) -> list[Slice]:
    """Score a membership result on each slice of ``spec``.

    Args:
        scores, truth: the result's per-sample scores (higher = member) and membership truth.
        labels: true classes (needed for ``by_class`` and ``by_classification_correctness``).
        predicted: the target's predicted classes (needed for ``by_classification_correctness``).
        loss: the target's per-sample loss (needed for ``by_percentiles``).

    Returns:
        one Slice per requested slice; a slice with only members or only non-members is kept
        with ``metrics=None`` and the reason in ``skipped``.

    Raises:
        InvalidParameterError: a requested slice kind whose input is missing.
    """
    spec = spec or SlicingSpec()
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = _vector("truth", truth, len(s)).astype(bool)
    out: list[Slice] = []

    def add(name: str, kind: str, mask: np.ndarray, value: Any) -> None:
        n_in, n_out = int((mask & t).sum()), int((mask & ~t).sum())
        sl = Slice(name=name, kind=kind, n_members=n_in, n_non_members=n_out, value=value)
        if n_in == 0 or n_out == 0:
            sl.skipped = f"slice holds {n_in} members and {n_out} non-members; both are needed to score it"
        else:
            sl.metrics = membership_metrics(s[mask], t[mask])
        out.append(sl)

    if spec.entire_dataset:
        add("entire dataset", "entire_dataset", np.ones(len(s), bool), None)
    if spec.by_class is not False:
        if labels is None:
            raise InvalidParameterError("by_class slicing needs labels; pass labels= (the true class of each sample).")
        y = _vector("labels", labels, len(s), dtype=np.int64)
        classes = np.unique(y) if spec.by_class is True else [int(c) for c in spec.by_class]  # type: ignore[union-attr]
        for c in classes:
            add(f"class={int(c)}", "class", y == c, int(c))
    if spec.by_percentiles:
        if loss is None:
            raise InvalidParameterError("by_percentiles slicing needs the per-sample loss; pass loss=.")
        lo = _vector("loss", loss, len(s), dtype=np.float64)
        # Rank-based deciles: ties and heavy tails cannot leave a decile empty by accident.
        ranks = np.argsort(np.argsort(lo, kind="mergesort"), kind="mergesort")
        decile = np.minimum(ranks * 10 // max(1, len(lo)), 9)
        for d in range(10):
            add(f"loss percentile {10 * d}-{10 * (d + 1)}", "percentile", decile == d, [10 * d, 10 * (d + 1)])
    if spec.by_classification_correctness:
        if labels is None or predicted is None:
            raise InvalidParameterError("by_classification_correctness slicing needs labels= and predicted=.")
        correct = _vector("predicted", predicted, len(s), dtype=np.int64) == _vector("labels", labels, len(s), dtype=np.int64)
        add("correctly classified", "correctness", correct, True)
        add("incorrectly classified", "correctness", ~correct, False)
    return out


def _tpr_exceeds_fpr(tpr: float, fpr: float, n_pos: int, n_neg: int, alpha: float) -> bool:
    """Whether TPR is above FPR with confidence 1 - alpha (Clopper-Pearson, each bound at 1 - alpha/2).

    At most floor(fpr * n_neg) non-members are flagged at that operating point; the lower bound on
    the TPR must exceed the upper bound on that false-positive rate. A handful of members ranked
    above every non-member (which chance alone produces) is therefore not called a leak.
    """
    from scipy.stats import beta

    tp = int(round(tpr * n_pos))
    fp = int(np.floor(fpr * n_neg + 1e-9))
    if tp == 0:
        return False
    tpr_lo = float(beta.ppf(alpha / 2, tp, n_pos - tp + 1))
    fpr_hi = 1.0 if fp >= n_neg else float(beta.ppf(1 - alpha / 2, fp + 1, n_neg - fp))
    return tpr_lo > fpr_hi


def membership_verdict(metrics: dict[str, Any], *, threshold: float = MINDARMOUR_THRESHOLD, alpha: float = 0.05) -> dict[str, Any]:
    """MindArmour's rule and the low-FPR view of one membership result, side by side.

    MindArmour flags a leakage risk when precision, recall and accuracy all exceed 0.6. That rule
    reads an average-case operating point; an attack can pass it and still identify a few members
    with near certainty, which the TPR at 0.1% / 1% FPR shows (Carlini et al. 2022). A TPR above
    the FPR at a low FPR beyond what chance explains (Clopper-Pearson bounds at ``1 - alpha``) is a
    leak even when the rule says otherwise. The rule is read from the core's precision, recall and
    accuracy, taken at the threshold of maximal advantage.

    Args:
        metrics: ``AttackResult.metrics`` of a membership result (or one slice's metrics).
    """
    pra = {k: float(metrics[k]) for k in ("precision", "recall", "accuracy")}
    rule_risk = all(v > threshold for v in pra.values())
    tprs = metrics["tpr_at_fpr"]
    n_pos, n_neg = int(metrics["n_members"]), int(metrics["n_non_members"])
    significant = {k: _tpr_exceeds_fpr(float(v), float(k), n_pos, n_neg, alpha) for k, v in tprs.items()}
    low_fpr_risk = any(significant.values())
    text = (
        f"MindArmour rule (precision, recall, accuracy > {threshold:g}): "
        f"{'leakage risk' if rule_risk else 'no risk flagged'} "
        f"(precision {pra['precision']:.3f}, recall {pra['recall']:.3f}, accuracy {pra['accuracy']:.3f}). "
        "Low-FPR view: "
        + ", ".join(f"TPR {float(v):.3%} at {float(k):.1%} FPR" for k, v in tprs.items())
        + (
            " -> some members identified at a low FPR, significantly above chance."
            if low_fpr_risk
            else " -> no identification at a low FPR beyond what chance explains."
        )
    )
    return {
        "mindarmour": {**pra, "threshold": threshold, "leakage_risk": rule_risk},
        "low_fpr": {"tpr_at_fpr": dict(tprs), "significant": significant, "confidence": 1 - alpha, "leakage_risk": low_fpr_risk},
        "leakage_risk": bool(rule_risk or low_fpr_risk),
        "text": text,
    }
