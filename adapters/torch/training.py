"""A small, framework-honest training loop that runs Defense callbacks and observer hooks.

    result = Trainer(TrainConfig(epochs=20, batch_size=64, lr=1e-3), defenses=[dp_sgd]).fit(model, x, y)

Defenses act at their perturbation points: ``transform_data`` (input), ``compute_gradients``
(gradient: e.g. DP-SGD fills ``.grad`` itself), ``on_step_end`` (parameters: e.g. masking).
Observers see every step through the ``on_train_step`` hook and every epoch through
``on_epoch_end``. A defense or observer may set ``ctx.stop_reason`` to end training cleanly.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from audit_sdk.errors import InvalidDataError, InvalidParameterError
from audit_sdk.interfaces import Defense
from audit_sdk.progress import track
from audit_sdk.rng import RNGLike, as_generator
from audit_sdk.training import TrainConfig, TrainContext, TrainResult

from ._util import resolve_device

__all__ = [
    "TrainConfig",
    "TrainContext",
    "TrainResult",
    "Trainer",
    "add_flat_grad",
    "evaluate_accuracy",
    "gradient_canary_sum",
    "run_training",
    "start_training",
]

# TrainConfig, TrainContext and TrainResult are the core's (audit_sdk.training): one recipe and one
# context for every framework; the torch objects sit in the context's framework-specific fields.


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
        self.config = TrainConfig.coerce(config)
        self.defenses = list(defenses)
        self.pm = pm
        self.progress = progress

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
        with _threads(c.threads):
            ctx = start_training(model, c, loss_fn=_per_example_ce, n_samples=len(xa), rng=gen_np, pm=self.pm, x_val=x_val, y_val=y_val)
            dev = ctx.device
            x_t = torch.from_numpy(np.ascontiguousarray(xa, dtype=np.float32)).to(dev)
            y_t = torch.from_numpy(ya.astype(np.int64)).to(dev)

            def batch(idx_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                return x_t[idx_t], y_t[idx_t]

            def validate() -> dict[str, Any]:
                if x_val is None or y_val is None:
                    return {}
                return {"val_accuracy": evaluate_accuracy(ctx.model, x_val, y_val, device=dev)}

            with track(f"training ({c.epochs} epochs)", c.epochs, enabled=self.progress) as bar:
                return run_training(ctx, self.defenses, batch, end_of_epoch=validate, bar=bar)

    @staticmethod
    def _poisson_batch(rng: np.random.Generator, n: int, q: float) -> np.ndarray:
        return _poisson_batch(rng, n, q)


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` while training (``TrainConfig.threads``), restored afterwards."""
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _optimizer(model: torch.nn.Module, c: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if c.optimizer == "adam":
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
    mom = c.momentum if c.optimizer == "momentum" else 0.0
    return torch.optim.SGD(params, lr=c.lr, momentum=mom, weight_decay=c.weight_decay)


def _poisson_batch(rng: np.random.Generator, n: int, q: float) -> np.ndarray:
    # A Poisson-sampled batch: size ~ Binomial(n, q), then a uniform subset of that size.
    k = int(rng.binomial(n, q))
    return np.sort(rng.choice(n, size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)


def start_training(
    model: torch.nn.Module,
    config: TrainConfig,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    n_samples: int,
    rng: np.random.Generator,
    pm: Any = None,
    x_val: Any = None,
    y_val: Any = None,
) -> TrainContext:
    """Seed torch, move ``model`` to the config's device, build its optimizer and the TrainContext of a run.

    The first half of every torch training loop (the classifier ``Trainer`` and the causal-LM
    ``LMTrainer``); ``run_training`` is the second.
    """
    dev = resolve_device(config.device)
    if config.seed is not None:
        torch.manual_seed(config.seed)
    model = model.to(dev)
    tgen = torch.Generator(device="cpu")
    tgen.manual_seed(int(rng.integers(0, 2**62)))
    return TrainContext(
        model=model,
        optimizer=_optimizer(model, config),
        config=config,
        loss_fn=loss_fn,
        device=dev,
        n_samples=n_samples,
        sample_rate=min(1.0, config.batch_size / n_samples),
        generator=tgen,
        rng=rng,
        pm=pm,
        sampling=config.sampling,
        x_val=x_val,
        y_val=y_val,
        accuracy_fn=functools.partial(evaluate_accuracy, device=dev),
    )


def run_training(
    ctx: TrainContext,
    defenses: Sequence[Defense],
    batch: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    *,
    end_of_epoch: Callable[[], dict[str, Any]] | None = None,
    bar: Any = None,
) -> TrainResult:
    """The torch training loop shared by every torch trainer: defenses' callbacks, observer hooks, history.

    Each epoch samples batches of indices (shuffled, or Poisson with ``ctx.sample_rate``), turns
    them into ``(inputs, targets)`` with ``batch(indices)``, lets the gradient-point defense fill
    the gradients (or runs a plain backward pass of ``ctx.loss_fn``), steps the optimizer, calls
    ``on_step_end`` and fires ``on_train_step``; after each epoch ``end_of_epoch()`` adds figures
    (e.g. validation accuracy) and ``on_epoch_end`` fires. ``ctx.stop_reason`` ends training.

    Raises:
        InvalidParameterError: more than one gradient-point defense.
    """
    c = ctx.config
    model, opt, dev = ctx.model, ctx.optimizer, ctx.device
    for d in defenses:
        d.on_train_begin(ctx)
    handlers = [d for d in defenses if type(d).compute_gradients is not Defense.compute_gradients]
    if len(handlers) > 1:
        raise InvalidParameterError(f"at most one gradient-point defense per run; got {[d.name for d in handlers]}.")
    n, gen_np = ctx.n_samples, ctx.rng
    steps_per_epoch = max(1, int(round(n / c.batch_size)))
    history: list[dict[str, Any]] = []
    for epoch in range(c.epochs):
        ctx.epoch = epoch
        model.train()
        losses: list[float] = []
        batches: Any
        if ctx.sampling == "poisson":
            batches = (_poisson_batch(gen_np, n, ctx.sample_rate) for _ in range(steps_per_epoch))
        else:
            perm = gen_np.permutation(n)
            batches = (perm[i : i + c.batch_size] for i in range(0, n, c.batch_size))
        for idx in batches:
            idx_t = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(dev)
            xb, yb = batch(idx_t)
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
            for d in defenses:
                d.on_step_end(ctx)
            if "loss" in ctx.metrics:
                losses.append(ctx.metrics["loss"])
            if ctx.pm is not None:
                ctx.pm.hook.on_train_step(step=ctx.step, epoch=epoch, metrics=dict(ctx.metrics), context=ctx)
            ctx.step += 1
            if ctx.stop_reason:
                break
        rec: dict[str, Any] = {"epoch": epoch, "loss": float(np.mean(losses)) if losses else None, "steps": ctx.step}
        rec.update({k: v for k, v in ctx.metrics.items() if k != "loss"})
        if end_of_epoch is not None:
            rec.update(end_of_epoch())
        history.append(rec)
        if ctx.pm is not None:
            ctx.pm.hook.on_epoch_end(epoch=epoch, metrics=dict(rec), context=ctx)
        if bar is not None:
            bar.advance(steps=ctx.step, loss=rec["loss"], epsilon=rec.get("epsilon"), val_accuracy=rec.get("val_accuracy"))
        if ctx.stop_reason:
            break
    model.eval()
    reports = {d.name: d.on_train_end(ctx) for d in defenses}
    return TrainResult(model=model, history=history, defenses=reports, steps=ctx.step, stop_reason=ctx.stop_reason, notes=ctx.notes)
