"""torch adapter: white-box targets, training with defenses, ONNX export, default models.

    from audit_sdk.adapters.torch import TorchTarget, Trainer, TrainConfig, export_onnx, make_model

    model = make_model("cnn", input_shape=(1, 8, 8), n_classes=10)
    result = Trainer(TrainConfig(epochs=30, lr=1e-3)).fit(model, x_train, y_train)
    export_onnx(result.model, x_train[:1], "model.onnx")

This package is the ``adapter-torch`` plugin. Importing it does not import torch (the registry
imports every plugin); its names load torch on first use.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

from audit_sdk import hookimpl

if TYPE_CHECKING:
    from audit_sdk.target import Target

    from .export import export_onnx
    from .models import make_model
    from .reference import TorchTrainer
    from .target import TorchTarget
    from .training import TrainConfig, TrainContext, Trainer, TrainResult, evaluate_accuracy

_LAZY = {
    "TorchTarget": ".target",
    "TrainConfig": ".training",
    "TrainContext": ".training",
    "TrainResult": ".training",
    "Trainer": ".training",
    "evaluate_accuracy": ".training",
    "export_onnx": ".export",
    "make_model": ".models",
    "TorchTrainer": ".reference",
}

__all__ = [
    "TorchTarget",
    "TorchTrainer",
    "TrainConfig",
    "TrainContext",
    "TrainResult",
    "Trainer",
    "evaluate_accuracy",
    "export_onnx",
    "make_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def make_target(model: Any, options: dict[str, Any]) -> Target | None:
    torch = sys.modules.get("torch")
    if torch is None:  # no torch imported means the model cannot be a torch module
        return None
    if isinstance(model, torch.nn.Module):
        from .target import TorchTarget

        known = {"batch_size", "device", "input_shape", "n_classes"}
        return TorchTarget(model, **{k: v for k, v in options.items() if k in known})
    return None


_NAMED = ("mlp", "cnn", "lenet")


@hookimpl
def make_trainer(model: Any, options: dict[str, Any]) -> Any:
    """A TorchTrainer (the whole ``audit_sdk.training.Trainer`` contract) for a torch module, a factory, a named architecture or a torch spec.

    Specs (data): ``{"family": "torch", "architecture": "cnn", "options": {"hidden": 64}}``; in
    Python also ``{"family": "torch", "factory": f}`` with ``f(input_shape, n_classes, seed)``.
    """
    spec = model if isinstance(model, dict) else None
    if spec is not None and spec.get("family") != "torch":
        return None
    torch = sys.modules.get("torch")
    is_module = torch is not None and isinstance(model, torch.nn.Module)
    if (
        spec is None
        and not is_module
        and not (isinstance(model, str) and model in _NAMED)
        and not (callable(model) and not isinstance(model, type))
    ):
        return None
    from .builders import trainer_for

    return trainer_for(model, options)
