"""scikit-learn adapter: any fitted estimator with ``predict_proba`` is a black-box Target."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit_sdk import hookimpl
from audit_sdk.errors import InvalidModelError, InvalidParameterError
from audit_sdk.signing import read_signed, write_signed
from audit_sdk.target import Target
from audit_sdk.training import Trainer

__all__ = ["SklearnTarget", "SklearnTrainer"]


class SklearnTarget(Target):
    """Wrap a fitted scikit-learn classifier (flattening image inputs for it).

        target = SklearnTarget(LogisticRegression().fit(x, y), input_shape=(64,))

    Classes must be 0..K-1 (``estimator.classes_``), so columns of ``predict_proba`` are labels.
    """

    outputs_logits = False
    capabilities = frozenset({"labels", "probabilities"})

    def __init__(self, estimator: Any, *, input_shape: tuple[int, ...] | None = None, batch_size: int = 4096) -> None:
        if not hasattr(estimator, "predict_proba"):
            raise InvalidModelError(f"{type(estimator).__name__} has no predict_proba; audit a probabilistic classifier.")
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise InvalidModelError(f"{type(estimator).__name__} is not fitted (no classes_); fit it before auditing.")
        if not np.array_equal(np.asarray(classes), np.arange(len(classes))):
            raise InvalidModelError(f"estimator classes are {list(classes)[:10]}; expected 0..K-1 so labels index probabilities.")
        if batch_size < 1:
            raise InvalidParameterError(f"batch_size must be >= 1; got {batch_size}.")
        self.estimator = estimator
        self.n_classes = len(classes)
        nf = getattr(estimator, "n_features_in_", None)
        self.input_shape = tuple(input_shape) if input_shape is not None else ((int(nf),) if nf else ())
        self._n_features = nf
        self.batch_size = batch_size
        self.input_dtype = np.dtype(np.float64)

    def check_input(self, x: Any) -> np.ndarray:
        arr = np.asarray(x)
        if self._n_features and arr.ndim > 2 and int(np.prod(arr.shape[1:])) == self._n_features and not self.input_shape[1:]:
            arr = arr.reshape(len(arr), -1)
        return super().check_input(arr)

    def _predict_raw(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(x.reshape(len(x), -1)), dtype=np.float64)


@hookimpl
def make_target(model: Any, options: dict[str, Any]) -> Target | None:
    if hasattr(model, "predict_proba") and hasattr(model, "fit") and type(model).__module__.startswith(("sklearn", "xgboost", "lightgbm")):
        return SklearnTarget(model, **{k: v for k, v in options.items() if k in {"input_shape", "batch_size"}})
    return None


# --------------------------------------------------------------------------- training (make_trainer)
_FAMILIES = {"sklearn": "sklearn", "lightgbm": "lightgbm", "xgboost": "xgboost"}
_GBM_DEFAULT = {"lightgbm": "LGBMClassifier", "xgboost": "XGBClassifier"}


def _estimator_class(family: str, name: str | None) -> Any:
    if family == "sklearn":
        from sklearn.utils import all_estimators

        classes = dict(all_estimators(type_filter="classifier"))
        if name not in classes:
            near = [n for n in classes if name and name.lower()[:6] in n.lower()][:5]
            raise InvalidParameterError(
                f"unknown scikit-learn classifier {name!r}"
                + (f"; did you mean {', '.join(near)}?" if near else "; e.g. RandomForestClassifier, LogisticRegression, MLPClassifier.")
            )
        return classes[name]
    import importlib

    try:
        mod = importlib.import_module(family)
    except ImportError:
        raise InvalidParameterError(f"reference_model family {family!r} needs the {family} package: pip install {family}.") from None
    cls = getattr(mod, name or _GBM_DEFAULT[family], None)
    if cls is None:
        raise InvalidParameterError(f"{family} has no estimator {name!r}; use {_GBM_DEFAULT[family]}.")
    return cls


class SklearnTrainer(Trainer):
    """Trains scikit-learn-interface classifiers (scikit-learn, LightGBM, XGBoost) as reference models.

    The estimator is named as data: ``{"family": "sklearn", "estimator": "RandomForestClassifier",
    "params": {"n_estimators": 50}}``. Each model gets ``random_state=seed`` when the estimator
    takes one. Labels missing from a model's training half still get their (zero) column.
    """

    file_suffix = ".pkl"

    def __init__(self, family: str, cls: Any, params: dict[str, Any], *, n_classes: int) -> None:
        self.family = family
        self.cls = cls
        self.params = dict(params)
        self.n_classes = int(n_classes)
        try:
            accepted = set(cls().get_params())
        except Exception as exc:
            raise InvalidParameterError(f"cannot build {cls.__name__}: {exc}") from None
        bad = set(self.params) - accepted
        if bad:
            raise InvalidParameterError(f"{cls.__name__} has no parameters {sorted(bad)}; see its documentation.")
        self._seeded = "random_state" in accepted and "random_state" not in self.params
        if family == "lightgbm":
            self.params.setdefault("verbosity", -1)

    def identity(self) -> str:
        return f"{self.family}:{self.cls.__module__}.{self.cls.__name__}:{sorted(self.params.items())!r}"

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "estimator": self.cls.__name__, "params": self.params}

    def build(self, seed: int) -> Any:
        return self.cls(**self.params, **({"random_state": int(seed) % (2**31 - 1)} if self._seeded else {}))

    def fit(self, model: Any, x: np.ndarray, y: np.ndarray, *, seed: int) -> Any:
        ya = np.asarray(y)
        classes = np.unique(ya)
        model.fit(np.asarray(x).reshape(len(ya), -1), np.searchsorted(classes, ya))
        model.audit_sdk_classes_ = classes  # the labels behind the estimator's columns
        return model

    def predict_proba(self, model: Any, x: np.ndarray) -> np.ndarray:
        xa = np.asarray(x)
        out = np.zeros((len(xa), self.n_classes))
        if len(xa):
            out[:, model.audit_sdk_classes_] = model.predict_proba(xa.reshape(len(xa), -1))
        return out

    def save(self, model: Any, path: str) -> None:
        import pickle

        # estimators have no safe format of their own: pickle, signed with this user's key
        write_signed(path, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))

    def load(self, path: str, seed: int) -> Any:
        import pickle

        # the signature is checked before anything is unpickled: a planted or altered file raises
        return pickle.loads(read_signed(path))  # noqa: S301


@hookimpl
def make_trainer(model: Any, options: dict[str, Any]) -> Trainer | None:
    n_classes = int(options.get("n_classes") or 0)
    if isinstance(model, dict):
        family = model.get("family")
        if family not in _FAMILIES:
            return None
        unknown = set(model) - {"family", "estimator", "params"}
        if unknown:
            raise InvalidParameterError(f"{family} reference_model: unknown keys {sorted(unknown)}; expected estimator and params.")
        params = model.get("params") or {}
        if not isinstance(params, dict):
            raise InvalidParameterError(f"{family} reference_model params must be a mapping; got {type(params).__name__}.")
        return SklearnTrainer(family, _estimator_class(family, model.get("estimator")), params, n_classes=n_classes)
    mod = type(model).__module__
    if hasattr(model, "fit") and hasattr(model, "predict_proba") and mod.startswith(("sklearn", "xgboost", "lightgbm")):
        family = "sklearn" if mod.startswith("sklearn") else mod.split(".")[0]
        # the estimator's class and hyperparameters; each reference model gets its own random_state
        params = {k: v for k, v in model.get_params(deep=False).items() if k != "random_state"}
        return SklearnTrainer(family, type(model), params, n_classes=n_classes)
    return None
