"""AttackResult: what an attack returns, scored by ``audit_sdk.metrics``."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from . import metrics as _metrics
from .errors import InvalidDataError

__all__ = ["AttackResult"]


@dataclass
class AttackResult:
    """The per-sample outcome of one attack.

    Membership attacks fill ``scores`` (higher = more likely member) and ``truth``; reconstruction
    attacks fill ``reconstructions`` and ``originals``. Metrics are computed by the core, so every
    attack is scored the same way::

        result.metrics["auc"], result.metrics["tpr_at_fpr"]["0.01"]

    Attributes:
        attack: the attack's registered name.
        params: the options it ran with.
        kind: ``"membership"`` or ``"reconstruction"``.
        labels: true class of each scored sample (for slicing), when known.
        extra: attack-specific figures (e.g. LiRA's number of reference models).
        data_range: value range of the images, for SSIM/PSNR.
        bound: how the empirical epsilon lower bound is computed, as options of
            ``metrics.membership_metrics``: empty for the ROC (Clopper-Pearson) bound of independent
            membership trials; ``{"bound": "one-run", "delta": 1e-5, "alpha": 0.05}`` for canaries
            included with probability 1/2 in one training run (``audit.dp``).
    """

    attack: str
    params: dict[str, Any] = field(default_factory=dict)
    kind: str = "membership"
    scores: np.ndarray | None = None
    truth: np.ndarray | None = None
    labels: np.ndarray | None = None
    reconstructions: np.ndarray | None = None
    originals: np.ndarray | None = None
    data_range: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    bound: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind == "membership":
            if self.scores is None or self.truth is None:
                raise InvalidDataError(f"{self.attack}: a membership result needs scores and truth.")
            self.scores = np.asarray(self.scores, dtype=np.float64).ravel()
            self.truth = np.asarray(self.truth).ravel().astype(bool)
            if self.scores.shape != self.truth.shape:
                raise InvalidDataError(f"{self.attack}: {self.scores.size} scores for {self.truth.size} samples.")
        elif self.kind == "reconstruction":
            if self.reconstructions is None or self.originals is None:
                raise InvalidDataError(f"{self.attack}: a reconstruction result needs reconstructions and originals.")
        else:
            raise InvalidDataError(f"{self.attack}: kind must be 'membership' or 'reconstruction'; got {self.kind!r}.")

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """The core's metrics for this result (computed once)."""
        if self.kind == "membership":
            return _metrics.membership_metrics(self.scores, self.truth, **self.bound)
        orig, rec = np.asarray(self.originals), np.asarray(self.reconstructions)
        if orig.ndim == 2:  # tabular (N, D): a batch of 1 x D "images", not one N x D image
            orig, rec = orig[:, None, None, :], rec.reshape(len(rec), 1, 1, -1)
        return _metrics.reconstruction_metrics(orig, rec, data_range=self.data_range)

    def roc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(fpr, tpr, thresholds) of a membership result."""
        if self.kind != "membership":
            raise InvalidDataError(f"{self.attack}: a reconstruction result has no ROC curve.")
        return _metrics.roc_curve(self.scores, self.truth)

    def to_dict(self) -> dict[str, Any]:
        """The report.json entry for this attack (no per-sample arrays)."""
        return {
            "name": self.attack,
            "kind": self.kind,
            "params": self.params,
            "metrics": self.metrics,
            "extra": self.extra,
            "seconds": round(float(self.seconds), 4),
        }
