"""The torch side of the Trainer contract beyond reference models: train with defenses, re-initialise, export.

``TorchTrainer`` (``reference.py``, the vectorised trainer behind the ``make_trainer`` hook)
inherits these, so the object ``make_trainer`` returns for a torch module, factory or named
architecture offers the whole ``audit_sdk.training.Trainer`` contract. Training with defenses
and observers runs the classic loop of ``training.py``; building and training many reference
models at once stays in ``reference.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from audit_sdk.errors import InvalidModelError, InvalidParameterError
from audit_sdk.rng import RNGLike
from audit_sdk.training import TrainConfig, TrainResult, observer_hooks
from audit_sdk.training import Trainer as _CoreTrainer

__all__ = ["TorchContract"]


class TorchContract(_CoreTrainer):
    """The optional parts of the Trainer contract for torch classifiers (a base of ``TorchTrainer``).

    Attributes:
        config: the recipe of ``fit`` / ``fit_many`` (always set: ``TorchTrainer`` builds it).
        input_shape: per-sample input shape, when known (the example ``export_onnx`` traces with).
    """

    family = "torch"
    file_suffix = ".pt"
    config: TrainConfig
    input_shape: tuple[int, ...] = ()

    def reinitialise(self, model: Any, seed: int) -> nn.Module:
        """A copy of ``model`` with freshly initialised weights (every ``reset_parameters``), seeded."""
        from .models import reinitialised

        if not isinstance(model, nn.Module):
            raise InvalidModelError(f"the torch trainer re-initialises torch.nn.Module models; got {type(model).__name__}.")
        return reinitialised(model, seed)

    def train(
        self,
        model: Any,
        x: Any,
        y: Any,
        config: TrainConfig | Mapping[str, Any] | None = None,
        *,
        defenses: Sequence[Any] = (),
        observers: Any = None,
        x_val: Any = None,
        y_val: Any = None,
        rng: RNGLike = None,
        progress: bool | None = None,
    ) -> TrainResult:
        """Train ``model`` in place with the torch loop: every defense's callbacks, ``on_train_step`` and ``on_epoch_end``."""
        from .training import Trainer

        if not isinstance(model, nn.Module):
            raise InvalidModelError(f"the torch trainer trains torch.nn.Module models; got {type(model).__name__}.")
        cfg = TrainConfig.coerce(config if config is not None else self.config)
        loop = Trainer(cfg, defenses=defenses, pm=observer_hooks(observers), progress=progress)
        return loop.fit(model, x, y, x_val=x_val, y_val=y_val, rng=rng)

    def export_onnx(self, model: Any, path: str | Path, *, example: Any = None) -> Path:
        """Write ``model`` as ONNX (input ``input``, output ``logits``, dynamic batch), checked against torch in onnxruntime.

        Raises:
            InvalidParameterError: no ``example`` and no known input shape to make one from.
            InvalidModelError: the export fails or the file disagrees with torch.
        """
        from .export import export_onnx

        if example is None:
            if not self.input_shape:
                raise InvalidParameterError("export_onnx needs example= (inputs with the batch axis): this trainer knows no input shape.")
            example = np.zeros((2, *self.input_shape), np.float32)
        return export_onnx(model, example, path)
