"""Membership inference with a trained attack classifier (MindArmour's way and Shokri et al. 2017's)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidDataError
from audit_sdk.metrics import precision_recall_accuracy
from audit_sdk.rng import as_generator
from audit_sdk.target import Target

from ._common import finish, true_class_stats
from ._reference import ReferenceParams, describe, get_reference_set

__all__ = ["ClassifierAttack", "attack_features", "make_search"]

#: Attack models, their MindArmour names, and the grid used when a config gives no params.
METHODS = ("lr", "knn", "mlp", "rf", "gb")
_DEFAULT_GRIDS: dict[str, dict[str, list[Any]]] = {
    "lr": {"C": [0.1, 1.0, 10.0]},
    "knn": {"n_neighbors": [5, 15, 31]},
    "mlp": {"hidden_layer_sizes": [(32,), (64,)], "alpha": [1e-4, 1e-2]},
    "rf": {"n_estimators": [50, 100], "max_depth": [2, 4, 8], "min_samples_leaf": [1, 5]},
    "gb": {"learning_rate": [0.05, 0.1], "max_depth": [2, 3, None], "max_iter": [50, 100]},
}


def _estimator(method: str) -> Any:
    # The base settings are MindArmour's (attacker.py), plus gradient boosting.
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier

    return {
        "lr": lambda: LogisticRegression(C=1.0, max_iter=300),
        "knn": lambda: KNeighborsClassifier(),
        "mlp": lambda: MLPClassifier(random_state=1, max_iter=300),
        "rf": lambda: RandomForestClassifier(max_depth=2, random_state=0),
        "gb": lambda: HistGradientBoostingClassifier(random_state=0),
    }[method]()


def make_search(method: str, grid: dict[str, list[Any]], *, seed: int = 0) -> Any:
    """The scikit-learn search of one attack model: a scaler then the classifier.

    lr, knn and mlp use ``GridSearchCV(cv=3)``; rf and gb ``RandomizedSearchCV(n_iter<=7, cv=3)``
    (MindArmour's choice for rf). Both maximise ROC AUC.
    """
    from sklearn.model_selection import GridSearchCV, ParameterGrid, RandomizedSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    pipe = Pipeline([("scale", StandardScaler()), ("clf", _estimator(method))])
    pgrid = {f"clf__{k}": list(v) for k, v in grid.items()}
    if method in ("rf", "gb"):
        n_iter = min(7, len(ParameterGrid(pgrid)))
        return RandomizedSearchCV(pipe, pgrid, n_iter=n_iter, cv=3, scoring="roc_auc", random_state=seed, n_jobs=1)
    return GridSearchCV(pipe, pgrid, cv=3, scoring="roc_auc", n_jobs=1)


def attack_features(probs: np.ndarray, y: np.ndarray, *, kind: str) -> np.ndarray:
    """Per-example attack features: [loss, probabilities sorted high to low] or MindArmour's [loss, probabilities]."""
    loss = true_class_stats(probs, y)["loss"]
    p = np.sort(probs, axis=1)[:, ::-1] if kind == "loss-sorted" else probs
    return np.column_stack([loss, p])


def _all_metrics() -> list[Literal["precision", "recall", "accuracy"]]:
    return ["precision", "recall", "accuracy"]


class AttackModelConfig(BaseModel):
    """One entry of MindArmour's ``attack_config``: ``{"method": "lr", "params": {"C": [0.1, 1]}}``."""

    model_config = ConfigDict(extra="forbid")
    method: str
    params: dict[str, list[Any]] = Field(default_factory=dict)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        m = v.lower()  # MindArmour accepts any case
        if m not in METHODS:
            raise ValueError(f"unknown attack model {v!r}; expected one of {list(METHODS)}")
        return m

    @field_validator("params", mode="before")
    @classmethod
    def _grid(cls, v: Any) -> Any:
        if isinstance(v, dict):
            bad = [k for k, vals in v.items() if not isinstance(vals, (list, tuple)) or len(vals) == 0]
            if bad:
                raise ValueError(f"each param must map to a non-empty list of candidate values (a search grid); not so for {bad}")
            return {k: list(vals) for k, vals in v.items()}
        return v

    def check_names(self) -> None:
        valid = set(_estimator(self.method).get_params())
        unknown = sorted(set(self.params) - valid)
        if unknown:
            from audit_sdk.errors import InvalidParameterError

            raise InvalidParameterError(
                f"mia.classifier: {self.method} has no parameter(s) {unknown}; valid ones include {sorted(valid)[:12]}."
            )


class ClassifierAttack(Attack):
    """Membership inference with an attack model fitted on per-example output features.

    ``setting="target-split"`` (MindArmour's MembershipInference): the attack model is fitted on
    a labelled fraction of the target's own members and non-members and evaluated on the rest
    (an auditor's upper bound, not a realistic attacker). ``setting="shadow"`` (Shokri et al. 2017):
    it is fitted on shadow models, each trained on a random half of the population, with that half
    as members and the other half as non-members, then applied to the target on every audited
    example. Several attack models may be given (MindArmour's ``attack_config``); the one with the
    best cross-validated AUC scores the result, and every model's precision, recall and accuracy
    are reported in ``extra["models"]``.

        ClassifierAttack(attack_config=[{"method": "lr", "params": {"C": [0.1, 1.0]}}, {"method": "rf"}])
    """

    name = "mia.classifier"
    summary = "Attack models (lr, knn, mlp, rf, gb) on output features, target-split or shadow models (MindArmour; Shokri et al. 2017)."
    access = "black-box"

    class Params(ReferenceParams):
        setting: Literal["target-split", "shadow"] = "target-split"
        attack_config: list[AttackModelConfig] = Field(
            default_factory=lambda: [AttackModelConfig(method="lr")],
            min_length=1,
            description="MindArmour format: [{'method': 'lr', 'params': {...}}]",
        )
        features: Literal["loss-sorted", "loss-probs"] = Field("loss-sorted", description="loss-probs is MindArmour's [loss, outputs]")
        train_fraction: float = Field(0.5, gt=0.0, lt=1.0, description="target-split: labelled fraction used to fit the attack model")
        cross_fit: bool = Field(
            True,
            description="target-split: score every sample, each by attack models fitted on the other folds "
            "(K = round(1 / (1 - train_fraction)) folds); False scores only one held-out part, as MindArmour does "
            "(per_class attack models always use the single held-out part)",
        )
        metrics: list[Literal["precision", "recall", "accuracy"]] = Field(default_factory=_all_metrics)
        n_references: int = Field(4, ge=1, le=1024, description="shadow setting: number of shadow models")
        per_class: bool = Field(False, description="one attack model per class (Shokri et al. 2017), global where a class has too few rows")

    params: Params

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        p = self.params
        for cfg in p.attack_config:
            cfg.check_names()
        gen = as_generator(rng)
        seed = int(gen.integers(0, 2**31 - 1))
        x, y, truth = data.combined()
        probs = target.predict_proba(x)
        feats = attack_features(probs, y, kind=p.features)
        extra: dict[str, Any] = {"setting": p.setting}
        if p.setting == "target-split":
            train_idx, eval_idx = _stratified_split(truth, p.train_fraction, gen)
            if p.cross_fit and not p.per_class:
                return self._cross_fit(target, probs, feats, y, truth, gen, seed, context)
            fx, fy, fc = feats[train_idx], truth[train_idx], y[train_idx]
        else:
            # offline on the population; without one, online on halves of the audited points
            has_pop = data.population is not None and len(data.population) >= 4
            ref = get_reference_set(p, target, data, kind="offline" if has_pop else "online", context=context, attack_name=self.name)
            ref_probs = ref.predict_proba(ref.pool_x)
            fx = np.concatenate([attack_features(ref_probs[i], ref.pool_y, kind=p.features) for i in range(ref.n_models)])
            fy = ref.masks.reshape(-1)
            fc = np.tile(ref.pool_y, ref.n_models)
            eval_idx = np.arange(len(y))
            extra.update(describe(ref))
        order = gen.permutation(len(fy))  # shuffled, as MindArmour does, so CV folds mix members and non-members
        fx, fy, fc = fx[order], fy[order], fc[order]
        if fy.all() or (~fy).all():
            raise InvalidDataError("mia.classifier: the attack training set holds only one class; use more members and non-members.")
        ex, et = feats[eval_idx], truth[eval_idx]
        best, models = _fit_select(p.attack_config, fx, fy, ex, et, seed=seed, metrics=p.metrics)
        scores = best.predict_proba(ex)[:, 1]
        extra.update({"models": models, "selected": max(models, key=lambda m: m["cv_auc"])["method"]})
        if p.per_class:
            # Shokri et al. 2017: one attack model per class, where the class has enough of both kinds
            per_class: dict[str, Any] = {}
            ey = y[eval_idx]
            for k in np.unique(ey):
                rows = fc == k
                n_in, n_out = int((fy & rows).sum()), int((~fy & rows).sum())
                if min(n_in, n_out) < 6:
                    per_class[str(int(k))] = {"selected": "global", "reason": f"{n_in} member / {n_out} non-member training rows"}
                    continue
                model_k, entries_k = _fit_select(p.attack_config, fx[rows], fy[rows], None, None, seed=seed, metrics=[])
                scores[ey == k] = model_k.predict_proba(ex[ey == k])[:, 1]
                top = max(entries_k, key=lambda m: m["cv_auc"])
                per_class[str(int(k))] = {"selected": top["method"], "cv_auc": top["cv_auc"]}
            extra["per_class"] = per_class
            pra = precision_recall_accuracy(scores, et, 0.5)
            extra["mindarmour"] = {m: pra[m] for m in p.metrics}
        extra.update({"n_eval": int(len(eval_idx)), "n_attack_train": int(len(fy))})
        stats = true_class_stats(probs[eval_idx], y[eval_idx])
        return finish(
            self,
            scores=scores,
            truth=et,
            labels=y[eval_idx],
            predicted=probs[eval_idx].argmax(axis=1),
            loss=stats["loss"],
            context=context,
            extra=extra,
        )

    def _cross_fit(
        self,
        target: Target,
        probs: np.ndarray,
        feats: np.ndarray,
        y: np.ndarray,
        truth: np.ndarray,
        gen: np.random.Generator,
        seed: int,
        context: Any,
    ) -> AttackResult:
        """Target-split with cross-fitting: every sample is scored by a model that never saw it.

        Scoring all samples instead of one held-out part halves the variance of the metrics at
        the same data cost (a model that saw nothing then lands much closer to AUC 0.5).
        """
        p = self.params
        k = max(2, int(round(1.0 / (1.0 - p.train_fraction))))
        folds = np.empty(len(truth), dtype=np.int64)
        for cls in (True, False):  # stratified: each fold holds members and non-members
            idx = gen.permutation(np.flatnonzero(truth == cls))
            folds[idx] = np.arange(len(idx)) % k
        scores = np.empty(len(truth), dtype=np.float64)
        models: list[dict[str, Any]] = []
        for f in range(k):
            tr, ev = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            order = gen.permutation(tr)
            best, entries = _fit_select(p.attack_config, feats[order], truth[order], feats[ev], truth[ev], seed=seed, metrics=p.metrics)
            scores[ev] = best.predict_proba(feats[ev])[:, 1]
            for e in entries:
                e["fold"] = f
            models += entries
        extra: dict[str, Any] = {
            "setting": "target-split",
            "cross_fit_folds": k,
            "models": models,
            "selected": max(models, key=lambda m: m["cv_auc"])["method"],
            "n_eval": int(len(truth)),
            "n_attack_train": int(len(truth) - len(truth) // k),
        }
        stats = true_class_stats(probs, y)
        return finish(
            self, scores=scores, truth=truth, labels=y, predicted=probs.argmax(axis=1), loss=stats["loss"], context=context, extra=extra
        )


def _fit_select(
    configs: list[AttackModelConfig],
    fx: np.ndarray,
    fy: np.ndarray,
    ex: np.ndarray | None,
    et: np.ndarray | None,
    *,
    seed: int,
    metrics: Sequence[str],
) -> tuple[Any, list[dict[str, Any]]]:
    """Fit every configured search; return the one with the best cross-validated AUC and a summary of each.

    With evaluation features ``ex`` and truth ``et``, each summary carries MindArmour's metrics of
    that model's hard predictions (member iff probability >= 0.5).
    """
    from sklearn.exceptions import ConvergenceWarning

    best, entries = None, []
    for cfg in configs:
        search = make_search(cfg.method, cfg.params or _DEFAULT_GRIDS[cfg.method], seed=seed)
        with warnings.catch_warnings():
            # MindArmour silences these too: a grid point that does not converge is just scored lower.
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(fx, fy)
        entry: dict[str, Any] = {
            "method": cfg.method,
            "best_params": {k.removeprefix("clf__"): _plain(v) for k, v in search.best_params_.items()},
            "cv_auc": float(search.best_score_),
        }
        if ex is not None and et is not None:
            pra = precision_recall_accuracy(search.predict_proba(ex)[:, 1], et, 0.5)
            entry.update({m: pra[m] for m in metrics})
        entries.append(entry)
        if best is None or search.best_score_ > best.best_score_:
            best = search
    if best is None:  # unreachable: Params require at least one attack model
        raise InvalidDataError("mia.classifier: no attack model was fitted.")
    return best, entries


def _plain(v: Any) -> Any:
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    return v


def _stratified_split(truth: np.ndarray, fraction: float, gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    train, held = [], []
    for cls in (True, False):
        idx = gen.permutation(np.flatnonzero(truth == cls))
        k = int(round(fraction * len(idx)))
        if k < 3 or len(idx) - k < 1:
            raise InvalidDataError(
                f"mia.classifier: {len(idx)} {'members' if cls else 'non-members'} cannot be split {fraction:g}/{1 - fraction:g} "
                "into an attack training part (>= 3, for 3-fold CV) and a held-out part (>= 1); audit more samples."
            )
        train.append(idx[:k])
        held.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [ClassifierAttack]
