"""Framework-neutral training: the ``Trainer`` contract and the ``make_trainer`` front door.

Everything in the SDK that trains a model goes through a ``Trainer``: reference models of the
membership attacks, DP audits, defense x attack grids (``compare``), ``audit_sdk.train`` and
``audit-sdk train``. A framework adapter answers the ``make_trainer(model, options)`` hook for what
it can train (a torch module, factory or named architecture; a scikit-learn, LightGBM or XGBoost
estimator named as data; a third party's own family) and the caller never imports a framework.
The contract itself is documented in ``audit_sdk.training_contract`` (re-exported here).
"""

from __future__ import annotations

from typing import Any

from .errors import InvalidParameterError
from .registry import get_registry
from .training_contract import TrainConfig, TrainContext, Trainer, TrainResult, observer_hooks, training_defenses

__all__ = ["TrainConfig", "TrainContext", "TrainResult", "Trainer", "make_trainer", "observer_hooks", "training_defenses"]


def make_trainer(model: Any, options: dict[str, Any] | None = None, *, registry: Any = None) -> Trainer:
    """The Trainer an installed adapter offers for ``model`` (first ``make_trainer`` hook result).

    Args:
        model: a model object (e.g. a torch module to re-initialise, an unfitted estimator), a
            named architecture (``"cnn"``), or a spec mapping ``{"family": ..., ...}``, e.g.
            ``{"family": "sklearn", "estimator": "RandomForestClassifier", "params": {...}}`` or
            ``{"family": "torch", "architecture": "mlp", "options": {"hidden": 64}}``.
        options: ``input_shape``, ``n_classes``, ``train`` (TrainConfig fields) and ``device``.
        registry: the Registry (or plugin manager) whose adapters answer (default: ``get_registry()``).

    Raises:
        InvalidParameterError: no installed adapter can train ``model``.
    """
    pm = observer_hooks(registry) if registry is not None else get_registry().pm
    trainer = pm.hook.make_trainer(model=model, options=dict(options or {}))
    if trainer is None:
        what = model if isinstance(model, (str, dict)) else type(model).__name__
        raise InvalidParameterError(
            f"no installed adapter can train {what!r}. Pass a torch module, factory or architecture name ('cnn', 'mlp', 'lenet'), "
            "or a spec such as {'family': 'sklearn', 'estimator': 'RandomForestClassifier', 'params': {...}} "
            "(families: torch, sklearn, lightgbm, xgboost)."
        )
    return trainer  # type: ignore[no-any-return]
