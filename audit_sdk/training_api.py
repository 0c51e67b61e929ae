"""``audit_sdk.train``: train a classifier with defenses (DP-SGD by default) in one call.

    result = audit_sdk.train("cnn", target_epsilon=3.0, delta=1e-5, epochs=30)   # embedded digits
    result.defenses["defense.dp-sgd"]["epsilon"], result.history[-1]["val_accuracy"]

Training goes through the ``make_trainer`` hook (``audit_sdk.training``): the adapter that can
train the model (torch for a module or a named architecture) answers, so no framework is named
here and none is imported when ``audit_sdk`` is imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidDataError, InvalidParameterError
from .rng import RNGLike

__all__ = ["train"]


def _digits_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from .data import load_digits_data

    d = load_digits_data()
    perm = np.random.default_rng(seed).permutation(len(d.x))
    cut = int(0.8 * len(perm))
    return d.x[perm[:cut]], d.y[perm[:cut]], d.x[perm[cut:]], d.y[perm[cut:]]


def train(
    model: Any = "cnn",
    x: Any = None,
    y: Any = None,
    *,
    defense: Any = "defense.dp-sgd",
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-2,
    optimizer: str = "adam",
    device: str = "cpu",
    seed: int | None = 0,
    x_val: Any = None,
    y_val: Any = None,
    pm: Any = None,
    rng: RNGLike = None,
    progress: bool | None = None,
    **defense_options: Any,
) -> Any:
    """Train ``model`` on (x, y) with ``defense`` and return the Trainer's ``TrainResult``.

    Args:
        model: a ``torch.nn.Module`` or a default architecture name (``mlp``, ``cnn``, ``lenet``)
            sized from the data.
        x: training data (n, ...); with ``y`` None too, trains on 80% of the embedded digits and
            validates on the other 20% (``history[i]["val_accuracy"]``).
        y: integer labels of ``x``.
        defense: a Defense instance, a registered name (``"dp-sgd"`` or ``"defense.dp-sgd"``), a
            sequence of those, or None for plain training.
        progress: show epochs, loss and epsilon spent on stderr (a bar in a terminal, plain lines
            in a log; None follows ``audit_sdk.progress.progress_mode``, off by default).
        **defense_options: options of a single named defense, e.g. ``target_epsilon=3.0,
            delta=1e-5, max_grad_norm=1.0`` for DP-SGD.

    Returns:
        TrainResult: ``.model``, ``.history`` (per epoch: loss, epsilon, val_accuracy),
        ``.defenses`` (each defense's report, e.g. the privacy spent), ``.stop_reason``, ``.notes``.

    Raises:
        InvalidParameterError: unknown defense or options; options given with several defenses.
        InvalidDataError: x without y, or data the model does not fit.
    """
    from .interfaces import Defense
    from .registry import get_plugin_manager, get_registry
    from .training import TrainConfig, make_trainer

    if (x is None) != (y is None):
        raise InvalidDataError("pass both x and y, or neither (to train on the embedded digits).")
    if x is None:
        x, y, dx, dy = _digits_split(seed or 0)
        if x_val is None:
            x_val, y_val = dx, dy
    xa = np.asarray(x, dtype=np.float32)
    ya = np.asarray(y)
    reg = None
    items = [] if defense is None else list(defense) if isinstance(defense, (list, tuple)) else [defense]
    if defense_options and len(items) != 1:
        raise InvalidParameterError(f"defense options {sorted(defense_options)} need exactly one defense; got {len(items)}.")
    defenses: list[Defense] = []
    for item in items:
        if isinstance(item, Defense):
            if defense_options:
                item = type(item)(item.params, **defense_options)
            defenses.append(item)
            continue
        if not isinstance(item, str):
            raise InvalidParameterError(f"defense must be a Defense, a registered name or None; got {type(item).__name__}.")
        if reg is None:
            reg = get_registry(pm if pm is not None else get_plugin_manager())
        defenses.append(reg.get("defense", item)(defense_options))
    cfg = TrainConfig.coerce({"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer, "device": device, "seed": seed})
    n_classes = int(ya.max()) + 1 if ya.size and ya.dtype.kind in "iu" else 0
    if y_val is not None and len(np.asarray(y_val)):
        n_classes = max(n_classes, int(np.asarray(y_val).max()) + 1)
    options = {"input_shape": xa.shape[1:], "n_classes": n_classes, "train": cfg.model_dump()}
    if reg is None and pm is not None:
        reg = get_registry(pm)
    trainer = make_trainer(model, options, registry=reg)
    if isinstance(model, str):  # a named architecture sized from the data; a given model is trained as it is
        model = trainer.build(seed if seed is not None else int(np.random.default_rng().integers(2**31)))
    return trainer.train(model, xa, ya, cfg, defenses=defenses, observers=pm, x_val=x_val, y_val=y_val, rng=rng, progress=progress)
