"""Picklable model builders behind the torch ``make_trainer`` hook (worker processes import them)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

from audit_sdk.errors import InvalidParameterError

from .models import MODEL_NAMES, make_model, reinitialised
from .reference import TorchTrainer

__all__ = ["trainer_for"]


def build_named(name: str, options: dict[str, Any], input_shape: tuple[int, ...], n_classes: int, seed: int) -> nn.Module:
    return make_model(name, input_shape=input_shape, n_classes=n_classes, seed=seed, **options)


def build_factory(factory: Callable[..., Any], input_shape: tuple[int, ...], n_classes: int, seed: int) -> nn.Module:
    import torch

    torch.manual_seed(seed)
    model = factory(input_shape, n_classes, seed)
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(f"model_factory returned {type(model).__name__}; it must return a torch.nn.Module.")
    return model


def build_reinit(template: nn.Module, seed: int) -> nn.Module:
    return reinitialised(template, seed)


def trainer_for(model: Any, options: dict[str, Any]) -> TorchTrainer:
    """The TorchTrainer for a module, factory, architecture name or ``{"family": "torch", ...}`` spec."""
    shape = tuple(int(s) for s in options.get("input_shape") or ())
    n_classes = int(options.get("n_classes") or 0)
    train = dict(options.get("train") or {})
    if options.get("device"):
        train["device"] = options["device"]
    spec = model if isinstance(model, dict) else None
    if spec is not None:
        unknown = set(spec) - {"family", "architecture", "options", "factory"}
        if unknown:
            raise InvalidParameterError(
                f"torch reference_model: unknown keys {sorted(unknown)}; expected architecture, options (or factory)."
            )
        model = spec.get("factory") or spec.get("architecture") or "auto"
        arch_options = dict(spec.get("options") or {})
    else:
        arch_options = {}
    if model == "auto":
        model = "cnn" if len(shape) == 3 and min(shape[1:]) >= 4 else "mlp"
    if isinstance(model, nn.Module):
        builder: Callable[[int], nn.Module] = functools.partial(build_reinit, model)
        name = f"re-initialised {type(model).__name__}"
    elif isinstance(model, str):
        if model not in MODEL_NAMES:
            raise InvalidParameterError(f"unknown torch architecture {model!r}; expected one of {', '.join(MODEL_NAMES)} (or a factory).")
        if not shape or n_classes < 2:
            raise InvalidParameterError("a named torch architecture needs options input_shape and n_classes (>= 2).")
        bad = set(arch_options) - {"hidden"}
        if bad:
            raise InvalidParameterError(f"torch architecture {model!r}: unknown options {sorted(bad)}; known: hidden.")
        builder = functools.partial(build_named, model, arch_options, shape, n_classes)
        name = model + (f"({', '.join(f'{k}={v}' for k, v in sorted(arch_options.items()))})" if arch_options else "")
    elif callable(model):
        builder = functools.partial(build_factory, model, shape, n_classes)
        name = f"factory:{getattr(model, '__module__', '?')}.{getattr(model, '__qualname__', type(model).__name__)}"
    else:
        raise InvalidParameterError(f"cannot build a torch model from {type(model).__name__}.")
    if not n_classes:
        probe = builder(0)
        last = [m for m in probe.modules() if isinstance(m, nn.Linear)]
        n_classes = last[-1].out_features if last else 0
    trainer = TorchTrainer(builder, name=name, n_classes=n_classes, train=train, vectorise=bool(options.get("vectorise", True)))
    trainer.input_shape = shape
    return trainer
