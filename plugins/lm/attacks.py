"""Membership inference on causal language models (access level ``sequence``).

Each attack scores whole sequences (higher = more likely member) from the target's per-token
log-probabilities (``audit_sdk.sequence.SequenceTarget.token_stats``):

- ``mia.lm-loss``: the sequence loss, mean next-token NLL (Yeom et al. 2018 on text);
- ``mia.lm-zlib``: the total NLL divided by the text's zlib size (Carlini et al. 2021);
- ``mia.min-k``: the mean of the k% least likely tokens' log-probabilities (Min-K% Prob, Shi et al. 2024);
- ``mia.min-k-plus-plus``: the same over tokens standardised by the next-token distribution's mean
  and std of log p (Min-K%++, Zhang et al. 2024);
- ``mia.lm-reference``: the loss relative to a reference LM's (Carlini et al. 2021), one the user
  gives or one the SDK trains on the population text;
- ``mia.lm-quantile``: the loss compared with a per-example quantile predicted from the text by a
  quantile regressor fitted on population text (Bertran et al. 2023): no reference models;
- ``mia.lm-blind``: a blind baseline, never looking at the model: a cross-fitted classifier on
  the text's length, zlib size and token rarity. When it is far from chance, members and
  non-members differ in distribution and no attack's AUC on this data measures the model.

Every LM attack records ``blind_baseline_auc`` in its result, and the report warns when it is far
from 0.5 (the ``report_sections`` hook below).
"""

from __future__ import annotations

import html
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidDataError, InvalidParameterError
from audit_sdk.metrics import auc, roc_curve
from audit_sdk.rng import as_generator
from audit_sdk.sequence import SequenceTarget, TokenStats, sequence_lengths
from audit_sdk.slicing import SlicingSpec, membership_verdict, slice_membership
from audit_sdk.target import Target

from ._text import text_features, zlib_sizes

__all__ = [
    "BlindBaseline",
    "LMLoss",
    "MinK",
    "MinKPlusPlus",
    "QuantileRegression",
    "ReferenceLoss",
    "ZlibLoss",
    "blind_baseline_scores",
    "min_k_mean",
]

#: |AUC - 0.5| of the blind baseline above which the report warns.
BLIND_WARN = 0.1


def min_k_mean(values: np.ndarray, k: float) -> np.ndarray:
    """Mean of the lowest ``ceil(k * count)`` non-NaN values of each row (at least one), NaN-padded rows."""
    v = np.asarray(values, dtype=np.float64)
    valid = ~np.isnan(v)
    cnt = valid.sum(1)
    m = np.maximum(1, np.ceil(k * cnt).astype(np.int64))
    srt = np.sort(np.where(valid, v, np.inf), axis=1)  # NaN (padding) sorts last as +inf
    csum = np.cumsum(np.where(np.isfinite(srt), srt, 0.0), axis=1)
    if srt.shape[1] == 0:
        return np.full(len(v), np.nan)
    out = csum[np.arange(len(v)), np.minimum(m, srt.shape[1]) - 1] / m
    return np.where(cnt > 0, out, np.nan)


def blind_baseline_scores(x: np.ndarray, truth: np.ndarray, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold membership scores of a logistic regression on text-only features (never the model)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    feats = text_features(x)
    k = int(min(folds, np.bincount(truth.astype(int)).min()))
    if k < 2:
        return np.zeros(len(x))
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return cross_val_predict(clf, feats, truth.astype(int), cv=cv, method="decision_function")


class _SequenceAttack(Attack):
    access = "sequence"

    def _stats(self, target: Target, x: np.ndarray) -> TokenStats:
        if not isinstance(target, SequenceTarget):
            raise InvalidParameterError(f"{self.name} needs a causal language model target (SequenceTarget); got {type(target).__name__}.")
        return target.token_stats(x)

    def _finish(self, scores: np.ndarray, data: AuditData, context: Any, extra: dict[str, Any] | None = None) -> AttackResult:
        x, y, truth = data.combined()
        scores = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(scores).all():
            raise InvalidDataError(f"{self.name}: {int((~np.isfinite(scores)).sum())} sequences got no score (fewer than 2 tokens?).")
        ex = dict(extra or {})
        fpr, tpr, _ = roc_curve(blind_baseline_scores(x, truth), truth)
        ex["blind_baseline_auc"] = float(auc(fpr, tpr))
        result = AttackResult(attack=self.name, params=self.params.model_dump(), scores=scores, truth=truth, labels=y, extra=ex)
        slices = slice_membership(
            result.scores, result.truth, spec=SlicingSpec(entire_dataset=False, by_class=True), labels=y, predicted=None, loss=None
        )
        result.extra["slices"] = [s.to_dict() for s in slices]
        result.extra["verdict"] = membership_verdict(result.metrics)
        return result


class LMLoss(_SequenceAttack):
    """Membership by sequence loss: text the model trained on has a lower mean next-token NLL.

    result = LMLoss().run(target, data)
    """

    name = "mia.lm-loss"
    summary = "Sequence loss (mean next-token NLL) of a causal language model."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        x, _, _ = data.combined()
        return self._finish(-self._stats(target, x).mean_nll(), data, context)


class ZlibLoss(_SequenceAttack):
    """Membership by NLL relative to zlib entropy: discounts text that is simply easy to predict (Carlini et al. 2021)."""

    name = "mia.lm-zlib"
    summary = "Total NLL divided by the text's zlib-compressed size (Carlini et al. 2021)."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        x, _, _ = data.combined()
        st = self._stats(target, x)
        total = -np.nansum(st.logp, axis=1)  # nats; a ratio, so the unit only scales it
        return self._finish(-total / zlib_sizes(x), data, context)


class MinK(_SequenceAttack):
    """Min-K% Prob (Shi et al. 2024): the mean log-probability of the k% least likely tokens."""

    name = "mia.min-k"
    summary = "Min-K% Prob: mean log-probability of the k% least likely tokens (Shi et al. 2024)."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        k: float = Field(0.2, gt=0, le=1, description="fraction of tokens (the least likely) averaged")

    params: Params

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        x, _, _ = data.combined()
        return self._finish(min_k_mean(self._stats(target, x).logp, self.params.k), data, context)


class MinKPlusPlus(_SequenceAttack):
    """Min-K%++ (Zhang et al. 2024): Min-K% over log p(x_t) standardised by the next-token distribution's mean and std of log p."""

    name = "mia.min-k-plus-plus"
    summary = "Min-K%++: Min-K% over token log-probabilities standardised per position (Zhang et al. 2024)."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        k: float = Field(0.2, gt=0, le=1, description="fraction of tokens (the lowest standardised scores) averaged")

    params: Params

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        x, _, _ = data.combined()
        st = self._stats(target, x)
        z = (st.logp - st.mu) / np.maximum(st.sigma, 1e-6)
        return self._finish(min_k_mean(z, self.params.k), data, context)


class ReferenceLoss(_SequenceAttack):
    """Loss calibrated by a reference LM's loss on the same text (Carlini et al. 2021, "comparing to other models").

    ``reference`` is anything ``audit_sdk.load_target`` turns into a causal LM (an ONNX file, a torch
    LM); without it a TinyGPT is trained on the population text (torch). Score: ``-loss / ref_loss``
    (``ratio``) or ``ref_loss - loss`` (``difference``).
    """

    name = "mia.lm-reference"
    summary = "Target loss relative to a reference LM's (given, or trained on population text)."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        reference: str | None = Field(None, description="path of a reference LM (.onnx); None: train a TinyGPT on the population")
        calibration: Literal["ratio", "difference"] = "ratio"
        epochs: int = Field(20, ge=1, description="epochs of the reference TinyGPT trained on the population")
        d_model: int = Field(64, ge=8)
        n_layers: int = Field(2, ge=1)
        lr: float = Field(3e-3, gt=0)

    params: Params

    def _reference(self, target: Target, data: AuditData, rng: Any) -> Any:
        p = self.params
        if p.reference is not None:
            from audit_sdk.run import load_target

            ref = load_target(p.reference)
            if not isinstance(ref, SequenceTarget):
                raise InvalidParameterError(f"{self.name}: reference {p.reference!r} is not a causal language model.")
            return ref
        if data.population is None:
            raise InvalidDataError(f"{self.name}: without a reference model it trains one on the population text; the data has none.")
        from audit_sdk.adapters.torch.lm import LMTrainer, TinyGPT, TorchLMTarget

        pop = data.population.x
        T = int(sequence_lengths(pop).max())
        vocab = int(getattr(target, "vocab_size", 0) or int(pop.max()) + 1)
        seed = int(as_generator(rng).integers(0, 2**31))
        import torch

        with torch.random.fork_rng():  # the initial weights follow rng too, so a seeded run repeats (audit_sdk.testing)
            torch.manual_seed(seed)
            model = TinyGPT(
                vocab_size=vocab, d_model=p.d_model, n_layers=p.n_layers, n_heads=4, max_len=max(T, int(data.members.x.shape[1]))
            )
        LMTrainer({"epochs": p.epochs, "batch_size": 16, "lr": p.lr, "seed": seed, "device": "cpu"}).fit(model, pop)
        return TorchLMTarget(model, device="cpu")

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        x, _, _ = data.combined()
        loss = self._stats(target, x).mean_nll()
        ref = self._reference(target, data, rng)
        ref_loss = ref.token_stats(x).mean_nll()
        score = -loss / np.maximum(ref_loss, 1e-12) if self.params.calibration == "ratio" else ref_loss - loss
        return self._finish(score, data, context, extra={"reference": self.params.reference or "TinyGPT trained on the population"})


class QuantileRegression(_SequenceAttack):
    """Quantile-regression membership inference (Bertran et al. 2023): no reference models.

    A gradient-boosted quantile regressor learns, on population text (non-members by construction),
    the ``1 - alpha`` quantile of the target's score (-loss) from text-only features; a sequence's
    membership score is its own score minus its predicted quantile, so each text is judged against
    what is usual for text like it. Thresholding at 0 gives a false-positive rate near ``alpha``.
    """

    name = "mia.lm-quantile"
    summary = "Loss against a per-example quantile predicted from the text (Bertran et al. 2023); no reference models."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        alpha: float = Field(0.1, gt=0, lt=1, description="target false-positive rate; the regressor fits the 1 - alpha quantile")
        max_iter: int = Field(200, ge=10)

    params: Params

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        from sklearn.ensemble import HistGradientBoostingRegressor

        if data.population is None or len(data.population) < 20:
            raise InvalidDataError(f"{self.name} fits its quantile model on population text (at least 20 sequences); the data has none.")
        x, _, truth = data.combined()
        pop = data.population.x
        s_pop = -self._stats(target, pop).mean_nll()
        s = -self._stats(target, x).mean_nll()
        seed = int(as_generator(rng).integers(0, 2**31))
        reg = HistGradientBoostingRegressor(
            loss="quantile", quantile=1.0 - self.params.alpha, max_iter=self.params.max_iter, random_state=seed, min_samples_leaf=10
        )
        reg.fit(text_features(pop, pop), s_pop)
        q = reg.predict(text_features(x, pop))
        fpr = float(np.mean(s[~truth] > q[~truth]))
        return self._finish(s - q, data, context, extra={"fpr_at_zero": fpr})


class BlindBaseline(_SequenceAttack):
    """A blind baseline: membership guessed from the text alone (length, zlib size, token rarity), never the model.

    Cross-fitted (out-of-fold) logistic regression, so its AUC is honest. Near 0.5 is what a fair
    benchmark shows; far from it, members and non-members differ in distribution and the model
    attacks' AUCs are not evidence of leakage.
    """

    name = "mia.lm-blind"
    summary = "Blind baseline: membership from the text alone (length, zlib size), to detect a distribution shift."

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        folds: int = Field(5, ge=2)

    params: Params

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        x, _, truth = data.combined()
        return self._finish(blind_baseline_scores(x, truth, folds=self.params.folds), data, context)


def _blind_section(report: Any) -> list[dict[str, Any]]:
    rows = [(r.attack, r.metrics["auc"], r.extra["blind_baseline_auc"]) for r in report.results if "blind_baseline_auc" in r.extra]
    if not rows:
        return []
    blind = rows[0][2]
    shifted = abs(blind - 0.5) > BLIND_WARN
    if shifted:
        msg = (
            f"Warning: a blind baseline that never queries the model (text length, zlib size, token rarity) separates members from "
            f"non-members with AUC {blind:.3f}. Members and non-members differ in distribution, so the language-model attacks' AUCs "
            "below say little about what the model memorised. Audit with non-members drawn from the same distribution "
            "(e.g. a random held-out split of the fine-tuning text)."
        )
    else:
        msg = f"Blind baseline (text only, never the model): AUC {blind:.3f}, near chance: members and non-members look alike, so the attacks' AUCs measure the model."
    body = "".join(f"<tr><td>{html.escape(a)}</td><td>{auc:.3f}</td></tr>" for a, auc, _ in rows)
    style = ' style="color:#b00;font-weight:bold"' if shifted else ""
    page = f"<p{style}>{html.escape(msg)}</p><table><tr><th>attack</th><th>AUC</th></tr>{body}</table>"
    return [
        {
            "title": "Language-model audit: blind baseline",
            "html": page,
            "data": {"blind_baseline_auc": blind, "distribution_shift": shifted, "warning": msg if shifted else None},
        }
    ]


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [LMLoss, ZlibLoss, MinK, MinKPlusPlus, ReferenceLoss, QuantileRegression, BlindBaseline]


@hookimpl
def report_sections(report: Any) -> list[dict[str, Any]]:
    return _blind_section(report) if report is not None else []
