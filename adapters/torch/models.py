"""Small default architectures, sized from the input shape (surrogates, demo and tests)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from audit_sdk.errors import InvalidParameterError

__all__ = ["make_model", "MODEL_NAMES", "reinitialised"]

MODEL_NAMES = ("mlp", "cnn", "lenet")


def _flat_dim(body: nn.Module, input_shape: Sequence[int]) -> int:
    with torch.no_grad():
        return int(body(torch.zeros(1, *input_shape)).numel())


def make_model(name: str, *, input_shape: Sequence[int], n_classes: int, hidden: int = 128, seed: int | None = None) -> nn.Module:
    """Build a default classifier for per-sample ``input_shape`` (C, H, W) or (D,).

    Args:
        name: ``mlp`` (flatten, one hidden layer), ``cnn`` (two conv blocks), ``lenet`` (LeNet-5 style).
        seed: seeds torch's initialisation so the same seed gives the same weights.

    Architectures use no BatchNorm, so they are valid for per-sample-gradient DP training.
    """
    if seed is not None:
        torch.manual_seed(seed)
    shape = tuple(int(s) for s in input_shape)
    if name == "mlp":
        d = 1
        for s in shape:
            d *= s
        return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
    if len(shape) != 3:
        raise InvalidParameterError(f"model {name!r} needs image inputs (C, H, W); got input_shape={shape}. Use 'mlp'.")
    c, h, w = shape
    if name == "cnn":
        body = nn.Sequential(
            nn.Conv2d(c, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2) if min(h, w) >= 4 else nn.Identity(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2) if min(h, w) >= 8 else nn.Identity(),
            nn.Flatten(),
        )
        return nn.Sequential(*body, nn.Linear(_flat_dim(body, shape), hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
    if name == "lenet":
        pad = 2 if min(h, w) < 28 else 0
        body = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=pad + 2 if min(h, w) < 12 else pad),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, padding=2 if min(h, w) < 20 else 0),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        return nn.Sequential(
            *body, nn.Linear(_flat_dim(body, shape), 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, n_classes)
        )
    raise InvalidParameterError(f"unknown model {name!r}; expected one of {MODEL_NAMES}.")


def reinitialised(template: nn.Module, seed: int) -> nn.Module:
    """A copy of ``template`` with freshly initialised weights (every ``reset_parameters``), seeded.

    The architecture of a given model, trained again from scratch (reference models, DP audits).
    """
    import copy

    torch.manual_seed(seed)
    model = copy.deepcopy(template)
    for m in model.modules():
        reset = getattr(m, "reset_parameters", None)
        if callable(reset):
            reset()
    return model
