"""Ready-made training set-ups on the embedded digits data (demo, tests, benchmarks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from audit_sdk.data import AuditData, Split, load_digits_data, make_audit_data

from .models import make_model
from .training import TrainConfig, Trainer, evaluate_accuracy

__all__ = ["DigitsSetup", "digits_setup"]


@dataclass
class DigitsSetup:
    """A digits model and the audit data it was trained on (members) or not (the rest)."""

    model: torch.nn.Module
    data: AuditData
    train_accuracy: float
    test_accuracy: float
    history: list[dict[str, Any]]


def digits_setup(
    *,
    n_members: int = 250,
    n_non_members: int = 250,
    n_population: int = 1000,
    architecture: str = "cnn",
    epochs: int = 60,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    label_noise: float = 0.0,
    train: bool = True,
    defenses: tuple[Any, ...] = (),
) -> DigitsSetup:
    """Split digits into members / non-members / population and train ``architecture`` on the members.

    Few members and many epochs make the model memorise (train accuracy 1.0, test accuracy
    clearly lower), so membership attacks have something to find. ``train=False`` returns the
    untrained-split with a freshly initialised model: a model that has seen nothing.

    ``label_noise`` relabels that fraction of the whole data set at random before the split, so
    members and non-members come from the same (noisy) distribution and the model must memorise
    its mislabelled members: a planted leak that membership attacks must catch.
    """
    digits = load_digits_data()
    if label_noise:
        gen = np.random.default_rng(seed + 1)
        y = digits.y.copy()
        flip = gen.random(len(y)) < label_noise
        y[flip] = (y[flip] + gen.integers(1, 10, int(flip.sum()))) % 10
        digits = Split(digits.x, y)
    data, _ = make_audit_data(digits, n_members=n_members, n_non_members=n_non_members, n_population=n_population, rng=seed)
    model = make_model(architecture, input_shape=data.feature_shape, n_classes=data.n_classes, seed=seed)
    history: list[dict[str, Any]] = []
    if train:
        cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, optimizer="adam", seed=seed, device="cpu")
        result = Trainer(cfg, defenses=list(defenses)).fit(model, data.members.x, data.members.y)
        model, history = result.model, result.history
    return DigitsSetup(
        model=model,
        data=data,
        train_accuracy=evaluate_accuracy(model, data.members.x, data.members.y, device="cpu"),
        test_accuracy=evaluate_accuracy(model, data.non_members.x, data.non_members.y, device="cpu"),
        history=history,
    )
