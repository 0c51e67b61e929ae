"""scikit-learn adapter: any fitted estimator with ``predict_proba`` is a black-box Target."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit_sdk._markers import hookimpl
from audit_sdk.errors import InvalidModelError, InvalidParameterError
from audit_sdk.target import Target

__all__ = ["SklearnTarget"]


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
