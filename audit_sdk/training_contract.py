"""The training contract (``Trainer``, ``TrainConfig``, ``TrainContext``, ``TrainResult``): a low layer of the core.

Import it from ``audit_sdk.training``, which adds the ``make_trainer`` front door over the hook;
the contract lives here, below the hookspecs and the registry, so that the hookspecs can be typed
with it and the front door can use the registry without an import circle.

Everything in the SDK that trains a model goes through a ``Trainer``: reference models of the
membership attacks, DP audits, defense x attack grids (``compare``), ``audit_sdk.train`` and
``audit-sdk train``. A framework adapter answers the ``make_trainer(model, options)`` hook for what
it can train (a torch module, factory or named architecture; a scikit-learn, LightGBM or XGBoost
estimator named as data; a third party's own family) and the caller never imports a framework::

    from audit_sdk.training import TrainConfig, make_trainer

    trainer = make_trainer("cnn", {"input_shape": (1, 8, 8), "n_classes": 10})
    model = trainer.build(seed=0)
    result = trainer.train(model, x, y, TrainConfig(epochs=30), defenses=[dp_sgd], observers=registry)
    trainer.accuracy(result.model, x_test, y_test), result.defenses["defense.dp-sgd"]["epsilon"]
    trainer.export_onnx(result.model, "model.onnx", example=x[:2])

    rf = make_trainer({"family": "sklearn", "estimator": "RandomForestClassifier", "params": {"n_estimators": 50}},
                      {"input_shape": (64,), "n_classes": 10})
    models = rf.fit_many([x1, x2], [y1, y2], seeds=[0, 1])   # reference models, many at once
    probs = rf.predict_proba(models[0], x)                    # (n, n_classes), float64

``options`` (all optional): ``input_shape`` and ``n_classes`` of the data, ``train`` (TrainConfig
fields: the recipe ``fit`` / ``fit_many`` use) and ``device``.

The contract has a required core (``identity``, ``build``, ``fit``, ``predict_proba``, ``save``,
``load``: enough for reference models) and optional parts with defaults: ``train`` runs defenses
and observers (the default handles input-point defenses around ``fit`` and refuses the others),
``reinitialise`` and ``accuracy`` fall back on ``build`` and ``predict_proba``, and ``export_onnx``
refuses with ``NotSupportedError`` until a family implements it. No framework is imported here;
``docs/trainers.md`` shows a third-party trainer end to end.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import InvalidDataError, InvalidParameterError, NotSupportedError
from .interfaces import Defense
from .rng import RNGLike, as_generator

__all__ = ["TrainConfig", "TrainContext", "TrainResult", "Trainer", "observer_hooks", "training_defenses"]


class TrainConfig(BaseModel):
    """A training recipe, the same for every framework (validated; unknown keys rejected).

    A family uses what applies to it (a random forest ignores ``lr``) and says so in its docs; the
    torch trainer uses every field.
    """

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(10, ge=0)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["sgd", "momentum", "adam"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    #: ``shuffle``: fixed-size batches of a permutation; ``poisson``: each sample joins each batch
    #: independently with rate batch_size / n (what DP accountants assume).
    sampling: Literal["shuffle", "poisson"] = "shuffle"
    device: str = "auto"
    seed: int | None = 0
    #: intra-op threads while training (None: the framework's default); not part of the recipe
    threads: int | None = Field(None, ge=1)

    @classmethod
    def coerce(cls, config: TrainConfig | Mapping[str, Any] | None, **defaults: Any) -> TrainConfig:
        """A TrainConfig from a TrainConfig, a mapping of its fields or None (``defaults`` fill what a mapping omits).

        Raises:
            InvalidParameterError: unknown fields or values out of range.
        """
        if isinstance(config, TrainConfig):
            return config
        try:
            return cls(**{**defaults, **dict(config or {})})
        except ValidationError as exc:
            raise InvalidParameterError(f"invalid training config: {exc}") from None
        except TypeError as exc:
            raise InvalidParameterError(f"invalid training config {config!r}: {exc}; expected a mapping of TrainConfig fields.") from None


@dataclass
class TrainContext:
    """State shared with defenses and observers while a Trainer trains.

    The framework-specific parts are ``Any``: a torch trainer puts its module, optimizer, device
    and ``torch.Generator`` here; a trainer without an optimizer leaves those None.

    Attributes:
        model, optimizer, device: the live framework objects.
        loss_fn: per-example loss, ``loss_fn(outputs, y) -> (batch,)`` (None where the family has none).
        n_samples, sample_rate: data size and expected batch fraction.
        step, epoch: counters (step counts optimizer steps, from 0).
        generator: the framework's random generator for defense randomness (seeded from the config).
        rng: numpy Generator for sampling.
        pm: the plugin manager whose ``on_train_step`` / ``on_epoch_end`` hooks observe training.
        metrics: per-step figures a defense adds (e.g. ``epsilon``), merged into the hook call.
        stop_reason: set to a message to stop after the current step.
        notes: messages for the report (e.g. an accounting assumption that does not hold).
        trainer: the contract Trainer running this training, when there is one.
        accuracy_fn: ``accuracy_fn(model, x, y) -> float`` on the framework's side (see ``accuracy``).
    """

    model: Any = None
    optimizer: Any = None
    config: TrainConfig = field(default_factory=TrainConfig)
    loss_fn: Any = None
    device: Any = None
    n_samples: int = 0
    sample_rate: float = 1.0
    generator: Any = None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    pm: Any = None
    step: int = 0
    epoch: int = 0
    sampling: str = "shuffle"
    metrics: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    #: the held-out data passed to the trainer (None when not given), e.g. for a defense to report accuracy
    x_val: Any = None
    y_val: Any = None
    #: crafted per-example gradients (k, n_params) of extra records whose gradient is given rather
    #: than computed (gradient canaries of a DP audit), in ``model.parameters()`` order. Each joins
    #: each step with probability ``sample_rate``; a gradient defense clips and noises them like data,
    #: plain training adds them unclipped. Set by a defense's ``on_train_begin``.
    gradient_canaries: Any = None
    #: steps at which ``gradient_canaries`` were sampled (0 after training: nothing used them)
    gradient_canary_steps: int = 0
    trainer: Any = None
    accuracy_fn: Callable[[Any, Any, Any], float] | None = None

    def accuracy(self, x: Any, y: Any) -> float:
        """Top-1 accuracy of the live model on (x, y), computed by the framework (a defense's report uses it).

        Raises:
            NotSupportedError: the trainer gave no way to evaluate its model.
        """
        if self.accuracy_fn is not None:
            return float(self.accuracy_fn(self.model, x, y))
        if self.trainer is not None:
            return float(self.trainer.accuracy(self.model, np.asarray(x), np.asarray(y)))
        raise NotSupportedError(
            "this TrainContext cannot evaluate its model: neither accuracy_fn nor trainer is set; "
            "a Trainer sets one of them when it builds the context."
        )


@dataclass
class TrainResult:
    """What ``Trainer.train`` returns: the trained model, per-epoch history and each defense's report.

    Attributes:
        model: the trained model (the one passed in, trained in place where the family allows).
        history: one mapping per epoch (``loss``, ``steps``, ``val_accuracy``, what defenses add).
        defenses: ``{defense name: what its on_train_end returned}`` (e.g. epsilon spent).
        steps: optimizer steps taken.
        stop_reason: why training stopped early (a defense's budget spent), else None.
        notes: messages for the report.
    """

    model: Any
    history: list[dict[str, Any]] = field(default_factory=list)
    defenses: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: int = 0
    stop_reason: str | None = None
    notes: list[str] = field(default_factory=list)


def observer_hooks(observers: Any) -> Any:
    """The plugin manager behind ``observers`` (a Registry, a plugin manager or None): its hooks observe training."""
    if observers is None:
        return None
    pm = getattr(observers, "pm", observers)  # a Registry holds its manager as .pm
    if not hasattr(pm, "hook"):
        raise InvalidParameterError(
            f"observers must be a Registry or a pluggy PluginManager (from audit_sdk.get_plugin_manager()); got {type(observers).__name__}."
        )
    return pm


def training_defenses(defenses: Sequence[Any]) -> list[Any]:
    """The defenses in ``defenses`` that need a training loop: they override a training callback beyond ``transform_data``."""
    loop = ("on_train_begin", "compute_gradients", "on_step_end", "on_train_end")
    return [d for d in defenses if any(getattr(type(d), m, None) is not getattr(Defense, m) for m in loop)]


class Trainer(ABC):
    """Builds, re-initialises, trains, evaluates and exports classifiers of one family (contract).

        trainer = make_trainer("mlp", {"input_shape": (64,), "n_classes": 10})
        result = trainer.train(trainer.build(0), x, y, defenses=[defense], observers=registry)
        trainer.accuracy(result.model, x_test, y_test)

    A subclass implements the abstract methods (what reference models need) and overrides the
    optional ones its framework can do better: ``train`` (a training loop that runs every
    defense's callbacks and fires ``on_train_step`` / ``on_epoch_end``), ``reinitialise``,
    ``export_onnx``, ``fit_many`` and ``predict_proba_many`` (vectorised).

    Attributes:
        family: the model family, e.g. ``torch``, ``sklearn``, ``lightgbm``, ``xgboost``.
        n_classes: columns of ``predict_proba`` (labels are 0..n_classes-1).
        file_suffix: suffix of the files ``save`` writes (``.pt``, ``.pkl``).
        config: the recipe ``fit`` uses (``train`` takes another per call).
    """

    family: str = "?"
    n_classes: int = 0
    file_suffix: str = ".bin"
    config: TrainConfig | None = None

    @abstractmethod
    def identity(self) -> str:
        """The architecture and training recipe as text, stable across processes: part of cache keys."""

    def describe(self) -> dict[str, Any]:
        """What a report says about the models this trainer makes (family, architecture, recipe)."""
        return {"family": self.family}

    @abstractmethod
    def build(self, seed: int) -> Any:
        """A freshly initialised, untrained model (the same seed gives the same model)."""

    def reinitialise(self, model: Any, seed: int) -> Any:
        """A fresh, untrained model of ``model``'s architecture (the same seed gives the same model).

        The default builds this trainer's own architecture, which is ``model``'s when the trainer was
        made from ``model`` (``make_trainer(model, ...)``); a family that can copy any model's
        architecture overrides it.
        """
        return self.build(seed)

    @abstractmethod
    def fit(self, model: Any, x: np.ndarray, y: np.ndarray, *, seed: int) -> Any:
        """Train ``model`` on (x, y) with this trainer's recipe and return the trained model (possibly the same object)."""

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
        """Train ``model`` on (x, y) with ``defenses``, observed by ``observers``; return a TrainResult.

        The default serves trainers that have no step loop of their own (``fit`` is one call):
        input-point defenses transform the data, ``fit`` trains on it, ``on_epoch_end`` fires once
        (epoch 0, the whole fit) and ``on_train_step`` never. Defenses that need the training loop
        (gradient, parameters, objective callbacks) are refused rather than silently skipped.

        Args:
            config: the recipe (default: this trainer's ``config``); the default ``train`` uses its ``seed``.
            defenses: Defense instances, applied in order.
            observers: a Registry or plugin manager whose ``on_train_step`` / ``on_epoch_end`` hooks
                observe training (None: no hooks, so a library call has no side effects).
            x_val: held-out inputs: ``history[i]["val_accuracy"]``, and defenses may report on them.
            y_val: the labels of ``x_val``.
            rng: seed or Generator of the data-level randomness (default: ``config.seed``).
            progress: show progress on stderr where the family can (None follows the mode around the call).

        Raises:
            NotSupportedError: a defense needs a training loop this family does not have.
            InvalidDataError: x and y that do not fit together.
        """
        cfg = TrainConfig.coerce(config if config is not None else self.config)
        loop = training_defenses(defenses)
        if loop:
            raise NotSupportedError(
                f"the {self.family} trainer {type(self).__name__} has no training loop for {', '.join(d.name for d in loop)} "
                "(training callbacks: on_train_begin, compute_gradients, on_step_end, on_train_end); override Trainer.train to run "
                "them, or train a torch model."
            )
        xa, ya = np.asarray(x), np.asarray(y)
        if xa.ndim < 2 or ya.ndim != 1 or len(xa) != len(ya) or len(xa) == 0:
            raise InvalidDataError(f"training data must be x (n, ...) and y (n,) with n > 0; got {xa.shape} and {ya.shape}.")
        seed = int(cfg.seed) if cfg.seed is not None else int(np.random.default_rng().integers(2**31))
        gen = as_generator(rng if rng is not None else seed)
        for d in defenses:
            xa, ya = d.transform_data(xa, ya, rng=gen)
        pm = observer_hooks(observers)
        ctx = TrainContext(
            model=model,
            config=cfg,
            n_samples=len(xa),
            sampling=cfg.sampling,
            rng=gen,
            pm=pm,
            x_val=x_val,
            y_val=y_val,
            trainer=self,
        )
        t0 = time.perf_counter()
        ctx.model = self.fit(model, xa, ya, seed=seed)
        rec: dict[str, Any] = {"epoch": 0, "loss": None, "steps": 0, "seconds": round(time.perf_counter() - t0, 3)}
        if x_val is not None and y_val is not None:
            rec["val_accuracy"] = self.accuracy(ctx.model, np.asarray(x_val), np.asarray(y_val))
        if pm is not None:
            pm.hook.on_epoch_end(epoch=0, metrics=dict(rec), context=ctx)
        reports = {d.name: d.on_train_end(ctx) for d in defenses}
        return TrainResult(model=ctx.model, history=[rec], defenses=reports, steps=0, stop_reason=ctx.stop_reason, notes=ctx.notes)

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

    def export_onnx(self, model: Any, path: str | Path, *, example: Any = None) -> Path:
        """Write ``model`` as an ONNX classifier at ``path`` (written atomically) and return the path.

        Args:
            example: one or more inputs with the batch axis (the family may need them to trace
                the model, and checks the file against the model on them).

        Raises:
            NotSupportedError: this family cannot export ONNX (the default).
        """
        raise NotSupportedError(
            f"the {self.family} trainer {type(self).__name__} cannot export ONNX; implement Trainer.export_onnx, "
            "or audit the model object itself (audit_sdk.load_target(model))."
        )

    @abstractmethod
    def save(self, model: Any, path: str) -> None:
        """Write ``model`` to ``path`` (the caller makes the write atomic)."""

    @abstractmethod
    def load(self, path: str, seed: int) -> Any:
        """Read a model written by ``save`` (``seed``: the one it was built with)."""
