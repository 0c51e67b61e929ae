"""Framework-neutral training contract (``Trainer``) and the ``make_trainer`` hook's front door.

Reference models of the membership attacks, and anything else that must train "a model like the
target", go through a ``Trainer``: a framework adapter answers the ``make_trainer(model, options)``
hook for what it can train (a torch module, factory or named architecture; a scikit-learn,
LightGBM or XGBoost estimator named as data) and the caller never imports a framework::

    from audit_sdk.training import make_trainer

    trainer = make_trainer({"family": "sklearn", "estimator": "RandomForestClassifier", "params": {"n_estimators": 50}},
                           {"input_shape": (64,), "n_classes": 10})
    models = trainer.fit_many([x1, x2], [y1, y2], seeds=[0, 1])
    probs = trainer.predict_proba(models[0], x)        # (n, n_classes), float64

``options`` (all optional): ``input_shape`` and ``n_classes`` of the data, ``train`` (the
adapter's training options, e.g. epochs / batch_size / lr for torch) and ``device``.

No framework is imported here: the torch adapter's classic ``Trainer`` (``audit_sdk.adapters.torch``,
training with defenses and observers) keeps its own API; this contract is what a framework-neutral
caller needs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InvalidParameterError

__all__ = ["Trainer", "make_trainer"]


class Trainer(ABC):
    """Builds, re-initialises, fits and queries classifiers of one family (contract).

    Attributes:
        family: the model family, e.g. ``torch``, ``sklearn``, ``lightgbm``, ``xgboost``.
        n_classes: columns of ``predict_proba`` (labels are 0..n_classes-1).
        file_suffix: suffix of the files ``save`` writes (``.pt``, ``.pkl``).
    """

    family: str = "?"
    n_classes: int = 0
    file_suffix: str = ".bin"

    @abstractmethod
    def identity(self) -> str:
        """The architecture and training recipe as text, stable across processes: part of cache keys."""

    def describe(self) -> dict[str, Any]:
        """What a report says about the models this trainer makes (family, architecture, recipe)."""
        return {"family": self.family}

    @abstractmethod
    def build(self, seed: int) -> Any:
        """A freshly initialised, untrained model (the same seed gives the same model)."""

    @abstractmethod
    def fit(self, model: Any, x: np.ndarray, y: np.ndarray, *, seed: int) -> Any:
        """Train ``model`` on (x, y) and return the trained model (possibly the same object)."""

    def fit_many(self, xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], seeds: Sequence[int]) -> list[Any]:
        """Train one fresh model per (x, y, seed). Adapters override this to train them at once (vectorised)."""
        return [self.fit(self.build(s), x, y, seed=s) for x, y, s in zip(xs, ys, seeds)]

    @abstractmethod
    def predict_proba(self, model: Any, x: np.ndarray) -> np.ndarray:
        """Class probabilities (n, n_classes), float64, columns in label order."""

    def predict_proba_many(self, models: Sequence[Any], x: np.ndarray) -> np.ndarray:
        """Probabilities of every model on ``x``: (n_models, n, n_classes). Adapters may vectorise it."""
        return np.stack([self.predict_proba(m, x) for m in models]) if models else np.zeros((0, len(x), self.n_classes))

    def accuracy(self, model: Any, x: np.ndarray, y: np.ndarray) -> float:
        """Top-1 accuracy on (x, y)."""
        if len(y) == 0:
            return float("nan")
        return float((self.predict_proba(model, x).argmax(axis=1) == np.asarray(y)).mean())

    @abstractmethod
    def save(self, model: Any, path: str) -> None:
        """Write ``model`` to ``path`` (the caller makes the write atomic)."""

    @abstractmethod
    def load(self, path: str, seed: int) -> Any:
        """Read a model written by ``save`` (``seed``: the one it was built with)."""


def make_trainer(model: Any, options: dict[str, Any] | None = None, *, registry: Any = None) -> Trainer:
    """The Trainer an installed adapter offers for ``model`` (first ``make_trainer`` hook result).

    Args:
        model: a model object (e.g. a torch module to re-initialise, an unfitted estimator), a
            named architecture (``"cnn"``), or a spec mapping ``{"family": ..., ...}``, e.g.
            ``{"family": "sklearn", "estimator": "RandomForestClassifier", "params": {...}}`` or
            ``{"family": "torch", "architecture": "mlp", "options": {"hidden": 64}}``.
        options: ``input_shape``, ``n_classes``, ``train`` (training options) and ``device``.

    Raises:
        InvalidParameterError: no installed adapter can train ``model``.
    """
    from .registry import get_registry

    reg = registry or get_registry()
    trainer = reg.pm.hook.make_trainer(model=model, options=dict(options or {}))
    if trainer is None:
        what = model if isinstance(model, (str, dict)) else type(model).__name__
        raise InvalidParameterError(
            f"no installed adapter can train {what!r}. Pass a torch module, factory or architecture name ('cnn', 'mlp', 'lenet'), "
            "or a spec such as {'family': 'sklearn', 'estimator': 'RandomForestClassifier', 'params': {...}} "
            "(families: torch, sklearn, lightgbm, xgboost)."
        )
    return trainer  # type: ignore[no-any-return]
