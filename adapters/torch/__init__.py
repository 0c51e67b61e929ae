"""torch adapter: white-box targets, training with defenses, ONNX export, default models.

    from audit_sdk.adapters.torch import TorchTarget, Trainer, TrainConfig, export_onnx, make_model

    model = make_model("cnn", input_shape=(1, 8, 8), n_classes=10)
    result = Trainer(TrainConfig(epochs=30, lr=1e-3)).fit(model, x_train, y_train)
    export_onnx(result.model, x_train[:1], "model.onnx")

``import audit_sdk.adapters.torch`` imports torch; the core never does.
"""

from __future__ import annotations

from typing import Any

from audit_sdk._markers import hookimpl
from audit_sdk.target import Target

from .export import export_onnx
from .models import make_model
from .target import TorchTarget
from .training import TrainConfig, TrainContext, Trainer, TrainResult, evaluate_accuracy

__all__ = [
    "TorchTarget",
    "TrainConfig",
    "TrainContext",
    "TrainResult",
    "Trainer",
    "evaluate_accuracy",
    "export_onnx",
    "make_model",
]


@hookimpl
def make_target(model: Any, options: dict[str, Any]) -> Target | None:
    import torch

    if isinstance(model, torch.nn.Module):
        known = {"batch_size", "device", "input_shape", "n_classes"}
        return TorchTarget(model, **{k: v for k, v in options.items() if k in known})
    return None
