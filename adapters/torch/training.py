"""A small, framework-honest training loop that runs Defense callbacks and observer hooks.

    result = Trainer(TrainConfig(epochs=20, batch_size=64, lr=1e-3), defenses=[dp_sgd]).fit(model, x, y)

Defenses act at their perturbation points: ``transform_data`` (input), ``compute_gradients``
(gradient: e.g. DP-SGD fills ``.grad`` itself), ``on_step_end`` (parameters: e.g. masking).
Observers see every step through the ``on_train_step`` hook and every epoch through
``on_epoch_end``. A defense or observer may set ``ctx.stop_reason`` to end training cleanly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk.errors import InvalidDataError, InvalidParameterError
from audit_sdk.interfaces import Defense
from audit_sdk.progress import track
from audit_sdk.rng import RNGLike, as_generator

from ._util import resolve_device

__all__ = ["TrainConfig", "TrainContext", "TrainResult", "Trainer", "add_flat_grad", "evaluate_accuracy", "gradient_canary_sum"]


class TrainConfig(BaseModel):
    """Options of a training run (validated; unknown keys rejected)."""

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


@dataclass
class TrainContext:
    """State shared with defenses and observers during ``Trainer.fit``.

    Attributes:
        model, optimizer, device: the live torch objects.
        loss_fn: per-example loss, ``loss_fn(logits, y) -> (batch,)``.
        n_samples, sample_rate: data size and expected batch fraction.
        step, epoch: counters (step counts optimizer steps, from 0).
        generator: torch Generator for defense randomness (seeded from the config).
        rng: numpy Generator for sampling.
        metrics: per-step figures a defense adds (e.g. ``epsilon``), merged into the hook call.
        stop_reason: set to a message to stop after the current step.
        notes: messages for the report (e.g. an accounting assumption that does not hold).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    loss_fn: Any
    device: torch.device
    n_samples: int
    sample_rate: float
    generator: torch.Generator
    rng: np.random.Generator
    pm: Any = None
    step: int = 0
    epoch: int = 0
    sampling: str = "shuffle"
    metrics: dict[str, Any] = field(default_factory=dict)
    stop_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    #: the held-out data passed to ``fit`` (None when not given), e.g. for a defense to report accuracy
    x_val: Any = None
    y_val: Any = None
    #: crafted per-example gradients (k, n_params) of extra records whose gradient is given rather
    #: than computed (gradient canaries of a DP audit), in ``model.parameters()`` order. Each joins
    #: each step with probability ``sample_rate``; a gradient defense clips and noises them like data,
    #: plain training adds them unclipped. Set by a defense's ``on_train_begin``.
    gradient_canaries: Any = None
    #: steps at which ``gradient_canaries`` were sampled (0 after training: nothing used them)
    gradient_canary_steps: int = 0


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns: the model, per-epoch history and each defense's report."""

    model: torch.nn.Module
    history: list[dict[str, Any]]
    defenses: dict[str, dict[str, Any]]
    steps: int
    stop_reason: str | None = None
    notes: list[str] = field(default_factory=list)


def gradient_canary_sum(ctx: TrainContext, clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the gradient canaries that join this step, each clipped to L2 norm ``clip`` (None: unclipped).

    Each row of ``ctx.gradient_canaries`` joins with probability ``sample_rate``. The canaries are a
    dense (k, n_params) tensor or a sparse COO one (Dirac canaries: one non-zero per row, so a
    thousand of them cost a thousand numbers, not a thousand parameter vectors).

    Returns:
        the flat sum (n_params,) and the norms of the rows that joined.
    """
    g = ctx.gradient_canaries
    ctx.gradient_canary_steps += 1
    keep = (torch.rand(g.shape[0], generator=ctx.generator) < ctx.sample_rate).to(g.device)
    if not g.is_sparse:
        rows = g[keep]
        norms = rows.norm(dim=1)
        scale = torch.ones_like(norms) if clip is None else (clip / (norms + 1e-6)).clamp(max=1.0)
        return (rows * scale[:, None]).sum(0), norms
    # sparse: work on the non-zero entries of the rows that joined (no sparse-tensor ops per step)
    g = g if g.is_coalesced() else g.coalesce()
    (r, c), v = g.indices(), g.values()
    e = keep[r]
    r, c, v = r[e], c[e], v[e]
    norms = torch.zeros(g.shape[0], dtype=v.dtype, device=v.device).index_add_(0, r, v * v).sqrt()
    scale = torch.ones_like(norms) if clip is None else (clip / (norms + 1e-6)).clamp(max=1.0)
    flat = torch.zeros(g.shape[1], dtype=v.dtype, device=v.device).index_add_(0, c, v * scale[r])
    return flat, norms[keep]


def add_flat_grad(model: torch.nn.Module, flat: torch.Tensor) -> None:
    """Add a flat vector (``model.parameters()`` order, trainable ones) to the parameters' ``.grad``."""
    offset = 0
    for q in model.parameters():
        if not q.requires_grad:
            continue
        k = q.numel()
        part = flat[offset : offset + k].view_as(q).to(q.dtype)
        q.grad = part.clone() if q.grad is None else q.grad + part
        offset += k


def _per_example_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits, y, reduction="none")


@torch.no_grad()
def evaluate_accuracy(model: torch.nn.Module, x: Any, y: Any, *, batch_size: int = 1024, device: Any = "auto") -> float:
    """Top-1 accuracy of ``model`` on (x, y)."""
    dev = resolve_device(device)
    model = model.to(dev).eval()
    xa = np.asarray(x, dtype=np.float32)
    ya = np.asarray(y)
    correct = 0
    for i in range(0, len(xa), batch_size):
        pred = model(torch.from_numpy(xa[i : i + batch_size]).to(dev)).argmax(1).cpu().numpy()
        correct += int((pred == ya[i : i + batch_size]).sum())
    return correct / max(1, len(xa))


class Trainer:
    """Train a torch classifier with defenses and hooks.

    Args:
        config: a TrainConfig or a mapping of its fields.
        defenses: Defense instances, applied in order.
        pm: a plugin manager whose ``on_train_step`` / ``on_epoch_end`` hooks observe training
            (default: none, so training in a library call has no side effects).
        progress: show epochs, steps, loss and epsilon spent on stderr (``audit_sdk.progress``;
            None follows the mode around the call, off in a plain library call).
    """

    def __init__(
        self,
        config: TrainConfig | dict[str, Any] | None = None,
        *,
        defenses: Sequence[Defense] = (),
        pm: Any = None,
        progress: bool | None = None,
    ) -> None:
        if config is None:
            config = TrainConfig()
        elif isinstance(config, dict):
            try:
                config = TrainConfig(**config)
            except Exception as exc:
                raise InvalidParameterError(f"invalid training config: {exc}") from exc
        self.config = config
        self.defenses = list(defenses)
        self.pm = pm
        self.progress = progress

    def _optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in model.parameters() if p.requires_grad]
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        mom = c.momentum if c.optimizer == "momentum" else 0.0
        return torch.optim.SGD(params, lr=c.lr, momentum=mom, weight_decay=c.weight_decay)

    def fit(self, model: torch.nn.Module, x: Any, y: Any, *, x_val: Any = None, y_val: Any = None, rng: RNGLike = None) -> TrainResult:
        """Train ``model`` in place on (x, y) and return a TrainResult.

        Raises:
            InvalidDataError: shapes/labels that do not fit, NaN/inf in x.
        """
        c = self.config
        xa, ya = np.asarray(x), np.asarray(y)
        if xa.ndim < 2 or ya.ndim != 1 or len(xa) != len(ya) or len(xa) == 0:
            raise InvalidDataError(f"training data must be x (n, ...) and y (n,) with n > 0; got {xa.shape} and {ya.shape}.")
        if xa.dtype.kind == "f" and not np.isfinite(xa).all():
            raise InvalidDataError("training features contain NaN or inf.")
        if ya.dtype.kind not in "iu":
            raise InvalidDataError(f"labels must be integers; got {ya.dtype}.")
        gen_np = as_generator(rng if rng is not None else c.seed)
        for d in self.defenses:
            xa, ya = d.transform_data(xa, ya, rng=gen_np)
        dev = resolve_device(c.device)
        if c.seed is not None:
            torch.manual_seed(c.seed)
        model = model.to(dev)
        opt = self._optimizer(model)
        tgen = torch.Generator(device="cpu")
        tgen.manual_seed(int(gen_np.integers(0, 2**62)))
        n = len(xa)
        ctx = TrainContext(
            model=model,
            optimizer=opt,
            config=c,
            loss_fn=_per_example_ce,
            device=dev,
            n_samples=n,
            sample_rate=min(1.0, c.batch_size / n),
            generator=tgen,
            rng=gen_np,
            pm=self.pm,
            sampling=c.sampling,
            x_val=x_val,
            y_val=y_val,
        )
        for d in self.defenses:
            d.on_train_begin(ctx)
        handlers = [d for d in self.defenses if type(d).compute_gradients is not Defense.compute_gradients]
        if len(handlers) > 1:
            raise InvalidParameterError(f"at most one gradient-point defense per run; got {[d.name for d in handlers]}.")
        x_t = torch.from_numpy(np.ascontiguousarray(xa, dtype=np.float32)).to(dev)
        y_t = torch.from_numpy(ya.astype(np.int64)).to(dev)
        history: list[dict[str, Any]] = []
        steps_per_epoch = max(1, int(round(n / c.batch_size)))
        with track(f"training ({c.epochs} epochs)", c.epochs, enabled=self.progress) as bar:
            self._epochs(model, opt, ctx, handlers, x_t, y_t, gen_np, n, steps_per_epoch, history, x_val, y_val, dev, bar)
        model.eval()
        reports = {d.name: d.on_train_end(ctx) for d in self.defenses}
        return TrainResult(model=model, history=history, defenses=reports, steps=ctx.step, stop_reason=ctx.stop_reason, notes=ctx.notes)

    def _epochs(
        self,
        model: torch.nn.Module,
        opt: torch.optim.Optimizer,
        ctx: TrainContext,
        handlers: list[Defense],
        x_t: torch.Tensor,
        y_t: torch.Tensor,
        gen_np: np.random.Generator,
        n: int,
        steps_per_epoch: int,
        history: list[dict[str, Any]],
        x_val: Any,
        y_val: Any,
        dev: Any,
        bar: Any,
    ) -> None:
        c = self.config
        for epoch in range(c.epochs):
            ctx.epoch = epoch
            model.train()
            losses: list[float] = []
            if ctx.sampling == "poisson":
                batches = (self._poisson_batch(gen_np, n, ctx.sample_rate) for _ in range(steps_per_epoch))
            else:
                perm = gen_np.permutation(n)
                batches = (perm[i : i + c.batch_size] for i in range(0, n, c.batch_size))
            for idx in batches:
                idx_t = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(dev)
                xb, yb = x_t[idx_t], y_t[idx_t]
                opt.zero_grad(set_to_none=True)
                ctx.metrics = {}
                handled = handlers[0].compute_gradients(ctx, (xb, yb)) if handlers else False
                if not handled:
                    if len(idx) == 0:
                        continue
                    loss = ctx.loss_fn(model(xb), yb).mean()
                    loss.backward()
                    ctx.metrics.setdefault("loss", float(loss.detach()))
                    if ctx.gradient_canaries is not None:
                        add_flat_grad(model, gradient_canary_sum(ctx)[0] / len(idx))
                opt.step()
                for d in self.defenses:
                    d.on_step_end(ctx)
                if "loss" in ctx.metrics:
                    losses.append(ctx.metrics["loss"])
                if self.pm is not None:
                    self.pm.hook.on_train_step(step=ctx.step, epoch=epoch, metrics=dict(ctx.metrics), context=ctx)
                ctx.step += 1
                if ctx.stop_reason:
                    break
            rec: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else None, "steps": ctx.step}
            rec.update({k: v for k, v in ctx.metrics.items() if k != "loss"})
            if x_val is not None and y_val is not None:
                rec["val_accuracy"] = evaluate_accuracy(model, x_val, y_val, device=dev)
            history.append(rec)
            if self.pm is not None:
                self.pm.hook.on_epoch_end(epoch=epoch, metrics=dict(rec), context=ctx)
            bar.advance(steps=ctx.step, loss=rec["loss"], epsilon=rec.get("epsilon"), val_accuracy=rec.get("val_accuracy"))
            if ctx.stop_reason:
                break

    @staticmethod
    def _poisson_batch(rng: np.random.Generator, n: int, q: float) -> np.ndarray:
        # A Poisson-sampled batch: size ~ Binomial(n, q), then a uniform subset of that size.
        k = int(rng.binomial(n, q))
        return np.sort(rng.choice(n, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)
