"""Suppress-privacy training: gradual magnitude masking on MindArmour's cubic schedule.

    sup = SuppressPrivacy(start_epoch=10, end_epoch=40, mask_times=200, sparse_end=0.9)
    result = Trainer(TrainConfig(epochs=50, optimizer="adam"), defenses=[sup]).fit(model, x, y, x_val=xv, y_val=yv)
    result.defenses["defense.suppress"]["sparsity"]     # fraction of exact zeros per masked layer

Behaviour follows MindArmour's ``SuppressCtrl`` / ``SuppressMasker`` (mindarmour/privacy/sup_privacy,
v2.1.0), in its units: epochs and steps are counted from 1. Defaults are MindArmour's
(start_epoch=3, end_epoch=10, sparse 0 -> 0.9) except ``mask_times=100`` (MindArmour: 1000, which
masks at every step of a small data set; it recommends 10-20 steps between rounds).

- Schedule: ``mask_all_steps = (end_epoch - start_epoch + 1) * batch_num`` and a masking round runs
  every ``mask_all_steps / mask_times`` steps from the first step of ``start_epoch`` (plus a forced
  round at step ``batch_num - 2`` of ``end_epoch``), and keeps running after ``end_epoch`` at
  ``sparse_end``. A round at global step t targets
  ``s(t) = sparse_end + (sparse_start - sparse_end) * (1 - (t - t0) / mask_all_steps) ** 3``, clamped
  to [sparse_start, sparse_end] and never below the previous round's.
- Per layer of N weights: ``k = int(N * min(1 - min(min_num, N) / N, s))`` weights are masked,
  those of smallest magnitude (threshold: the k-th smallest |w|). A masked weight stays exactly 0.
- Layers of at most ``approx_above`` weights (and always the first masked layer) get MindArmour's
  extra rules at each round: weights at the threshold that cannot be masked (ties, ``min_num``) are
  pulled to ``±min(lower_bound, threshold)``; with ``is_lower_clip`` weights in (thr, lower_bound]
  are pushed to ``±lower_bound``; weights above ``upper_bound`` are clipped to it; with
  ``is_add_noise`` weights above ``min(noise_threshold, max(10 * noise_volume, 0.75 max|w|))``
  (0.5 with the defaults) get ``U(-noise_volume, noise_volume)`` noise.
  Larger layers only get the mask; MindArmour approximates their threshold over 16 partitions,
  this implementation uses the exact one.
- A round is skipped when the first masked layer's max|w| is below ``skip_below_max``.

Unlike MindArmour (SGD only, the mask applied through the learning rate), the mask is applied to
the parameters, their gradients (a tensor hook) and every optimizer-state tensor of the
parameter's shape (momentum buffers, Adam's exp_avg / exp_avg_sq, ...), after every step, so it
works with any torch optimizer, and with a gradient-point defense that writes ``.grad`` itself.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from audit_sdk import hookimpl
from audit_sdk.errors import InvalidModelError, InvalidParameterError
from audit_sdk.interfaces import Defense
from audit_sdk.rng import as_generator

__all__ = ["MaskLayer", "SuppressPrivacy", "cubic_sparsity"]


def cubic_sparsity(step: float, *, start_step: float, all_steps: float, sparse_start: float, sparse_end: float, last: float = 0.0) -> float:
    """MindArmour's target sparsity for a masking round at global ``step`` (1-based).

    ``s = s_end + (s_start - s_end) * (1 - (step - start_step) / all_steps) ** 3``, clamped to
    ``[sparse_start, sparse_end]`` and never below ``last`` (the previous round's sparsity).
    """
    s = sparse_end + (sparse_start - sparse_end) * math.pow(1.0 - (step - start_step) / all_steps, 3)
    return max(sparse_start, max(last, min(s, sparse_end)))


class MaskLayer(BaseModel):
    """Which parameter to mask and its per-layer options (MindArmour's ``MaskLayerDes``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, description="substring of exactly one parameter name, e.g. '0.weight'")
    min_num: int = Field(0, ge=0, description="weights never masked in this layer")
    is_lower_clip: bool = Field(False, description="push small surviving weights to ±lower_bound")
    is_add_noise: bool = Field(False, description="add uniform noise to large weights at each round")
    upper_bound: float = Field(1.20, gt=0, description="clip |w| to this at each round")


class SuppressPrivacy(Defense):
    """Suppress-privacy training (MindArmour's SuppressPrivacy) for any torch model and optimizer.

        sup = SuppressPrivacy(layers=[{"name": "0.weight", "min_num": 10, "is_lower_clip": True}])
        Trainer(config, defenses=[sup]).fit(model, x, y)

    After training, ``rounds_`` lists every masking round (step, epoch, target sparsity and, per
    layer, the number masked and the threshold) and ``masks_`` the final keep-masks.
    """

    name = "defense.suppress"
    summary = "Suppress-privacy training: gradual magnitude masking on a cubic sparsity schedule."
    points = ("parameters",)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        layers: list[MaskLayer] | None = Field(
            None, description="parameters to mask; default: every weight with >= 2 dims (conv and linear kernels)"
        )
        start_epoch: int = Field(3, ge=1, description="first epoch with masking (1-based)")
        end_epoch: int = Field(10, ge=1, description="epoch by which sparse_end is reached (1-based)")
        mask_times: int = Field(100, ge=1, description="number of masking rounds")
        sparse_start: float = Field(0.0, ge=0.0, lt=1.0)
        sparse_end: float = Field(0.9, gt=0.0, lt=1.0)
        batch_num: int | None = Field(None, ge=1, description="steps per epoch; default: the trainer's")
        lower_bound: float = Field(0.005, ge=0.0)
        noise_volume: float = Field(0.1, ge=0.0)
        noise_threshold: float = Field(0.5, ge=0.0)
        approx_above: int = Field(10_000, ge=0, description="layers above this size get the mask only")
        skip_below_max: float = Field(0.02, ge=0.0)
        seed: int | None = Field(None, ge=0, description="noise seed; default: drawn from the trainer's generator")

        @model_validator(mode="after")
        def _order(self) -> SuppressPrivacy.Params:
            if self.start_epoch > self.end_epoch:
                raise ValueError(f"start_epoch ({self.start_epoch}) must not exceed end_epoch ({self.end_epoch})")
            if self.sparse_start >= self.sparse_end:
                raise ValueError(f"sparse_start ({self.sparse_start}) must be below sparse_end ({self.sparse_end})")
            if self.layers is not None:
                names = [lay.name for lay in self.layers]
                if len(set(names)) != len(names):
                    raise ValueError(f"layer names must be unique; got {names}")
            return self

    params: Params

    # ------------------------------------------------------------------ set-up
    def _resolve_layers(self, model: Any) -> list[tuple[str, Any, MaskLayer]]:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if self.params.layers is None:
            chosen = [(n, p, MaskLayer.model_validate({"name": n})) for n, p in named if p.dim() >= 2]
            if not chosen:
                raise InvalidModelError(
                    f"{self.name}: the model has no weight with >= 2 dims to mask; pass layers=[...] naming parameters."
                )
            return chosen
        out = []
        all_names = [n for n, _ in named]
        for spec in self.params.layers:
            hits = [(n, p) for n, p in named if spec.name in n]
            if len(hits) != 1:
                what = "matches no parameter" if not hits else f"matches {len(hits)} parameters {[n for n, _ in hits]}"
                raise InvalidParameterError(f"{self.name}: layer name {spec.name!r} {what}; use one of {all_names}.")
            out.append((hits[0][0], hits[0][1], spec))
        return out

    def on_train_begin(self, ctx: Any) -> None:
        import torch

        p = self.params
        cfg = ctx.config
        if cfg.epochs < p.end_epoch:
            raise InvalidParameterError(
                f"{self.name}: end_epoch={p.end_epoch} but training runs {cfg.epochs} epochs; "
                "lower end_epoch or train longer so the schedule reaches sparse_end."
            )
        if p.batch_num is not None:
            self.batch_num_ = int(p.batch_num)
        elif ctx.sampling == "poisson":
            self.batch_num_ = max(1, int(round(ctx.n_samples / cfg.batch_size)))
        else:
            self.batch_num_ = max(1, math.ceil(ctx.n_samples / cfg.batch_size))
        self.mask_all_steps_ = (p.end_epoch - p.start_epoch + 1) * self.batch_num_
        self.interval_ = self.mask_all_steps_ / p.mask_times
        self._layers = self._resolve_layers(ctx.model)
        self.masks_: dict[str, Any] = {}
        self._hooks = []
        for n, par, _ in self._layers:
            keep = torch.ones_like(par, dtype=par.dtype)
            self.masks_[n] = keep
            self._hooks.append(par.register_hook(lambda g, m=keep: g * m))
        seed = p.seed if p.seed is not None else int(ctx.rng.integers(0, 2**62))
        self._noise_rng = as_generator(seed)
        self._started = False
        self._start_step = 0
        self._prev_step = 0.0
        self.cur_sparse_ = 0.0
        self._epoch_seen = -1
        self._step_in_epoch = 0
        self.rounds_: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ per step
    def _due(self, cur_epoch: int, cur_step: int, step_in_epoch: int) -> bool:
        # MindArmour's SuppressCtrl.update_status, verbatim in logic
        p = self.params
        if (p.start_epoch <= cur_epoch <= p.end_epoch) or self._started:
            if not self._started:
                self._started = True
                self._start_step = cur_step
            if cur_step >= self._prev_step + self.interval_:
                self._prev_step = cur_step
                return True
            if cur_epoch == p.end_epoch and step_in_epoch == self.batch_num_ - 2:
                self._prev_step = cur_step
                return True
            return False
        self._started = False
        return False

    def on_step_end(self, ctx: Any) -> None:
        import torch

        if ctx.epoch != self._epoch_seen:
            self._epoch_seen, self._step_in_epoch = ctx.epoch, 0
        self._step_in_epoch += 1
        cur_step, cur_epoch = ctx.step + 1, ctx.epoch + 1
        with torch.no_grad():
            if self._due(cur_epoch, cur_step, self._step_in_epoch):
                self._mask_round(cur_step, cur_epoch)
            self._enforce(ctx.optimizer)

    def _enforce(self, optimizer: Any) -> None:
        """Zero masked entries of each parameter and of every optimizer-state tensor of its shape."""
        for n, par, _ in self._layers:
            keep = self.masks_[n]
            par.mul_(keep)
            state = optimizer.state.get(par, {})
            for v in state.values():
                if hasattr(v, "shape") and v.shape == par.shape and v.is_floating_point():
                    v.mul_(keep)

    def _mask_round(self, cur_step: int, cur_epoch: int) -> None:
        import torch

        p = self.params
        s = cubic_sparsity(
            cur_step,
            start_step=self._start_step,
            all_steps=self.mask_all_steps_,
            sparse_start=p.sparse_start,
            sparse_end=p.sparse_end,
            last=self.cur_sparse_,
        )
        self.cur_sparse_ = s
        record: dict[str, Any] = {"step": cur_step, "epoch": cur_epoch, "sparsity": s, "layers": {}}
        for idx, (n, par, spec) in enumerate(self._layers):
            size = par.numel()
            k = int(size * min(1.0 - min(spec.min_num, size) / size, s))
            keep = self.masks_[n]
            if k <= 0:
                record["layers"][n] = {"k": 0, "masked": int((keep == 0).sum()), "threshold": 0.0}
                continue
            w = par.detach().reshape(-1)
            a = w.abs()
            max_abs = float(a.max())
            if idx == 0 and max_abs < p.skip_below_max:
                record["skipped"] = f"max|w| of {n} is {max_abs:.3g} < {p.skip_below_max}"
                break
            thd = float(torch.kthvalue(a.cpu(), k).values)
            kf = keep.reshape(-1)
            was_masked = kf == 0
            budget = max(0, min(k, size - spec.min_num) - int(was_masked.sum()))
            cand = (~was_masked) & (a <= thd)
            new = torch.zeros_like(cand)
            if budget > 0 and bool(cand.any()):
                ci = torch.nonzero(cand).reshape(-1)
                order = torch.argsort(a[ci], stable=True)[:budget]
                new[ci[order]] = True
            kf[new] = 0
            w_new = w.clone()
            w_new[new | was_masked] = 0.0
            if size <= p.approx_above or idx == 0:
                pos = w > 0
                left = cand & ~new  # at the threshold but over the budget: not masked
                lb = min(p.lower_bound, thd)
                w_new[left] = torch.where(pos[left], w.new_tensor(lb), w.new_tensor(-lb))
                rest = ~(was_masked | cand)
                if spec.is_lower_clip and thd > p.lower_bound * 0.5:
                    low = rest & (a <= p.lower_bound)
                    w_new[low] = torch.where(pos[low], w.new_tensor(p.lower_bound), w.new_tensor(-p.lower_bound))
                    rest = rest & ~low
                up = rest & (a > spec.upper_bound)
                w_new[up] = torch.where(pos[up], w.new_tensor(spec.upper_bound), w.new_tensor(-spec.upper_bound))
                rest = rest & ~up
                noise_bound = min(p.noise_threshold, max(p.noise_volume * 10.0, max_abs * 0.75))
                if spec.is_add_noise and noise_bound > 0.0:
                    noisy = rest & (a > noise_bound)
                    m = int(noisy.sum())
                    if m:
                        u = self._noise_rng.uniform(-p.noise_volume, p.noise_volume, size=m)
                        # MindArmour adds U/lr to the gradient of an SGD step: w <- w - U
                        w_new[noisy] = w[noisy] - torch.as_tensor(u, dtype=w.dtype, device=w.device)
            par.copy_(w_new.reshape(par.shape))
            record["layers"][n] = {"k": k, "masked": int((kf == 0).sum()), "threshold": thd}
        self.rounds_.append(record)

    # ------------------------------------------------------------------ report
    def on_train_end(self, ctx: Any) -> dict[str, Any]:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        sparsity = {n: float((par.detach() == 0).float().mean()) for n, par, _ in self._layers}
        total = sum(par.numel() for _, par, _ in self._layers)
        report: dict[str, Any] = {
            "target_sparsity": self.cur_sparse_,
            "sparsity": sparsity,
            "overall_sparsity": float(sum(sparsity[n] * par.numel() for n, par, _ in self._layers) / max(1, total)),
            "masked_fraction": {n: float((m == 0).float().mean()) for n, m in self.masks_.items()},
            "rounds": sum(1 for r in self.rounds_ if "skipped" not in r),
            "skipped_rounds": sum(1 for r in self.rounds_ if "skipped" in r),
            "schedule": [(r["step"], r["sparsity"]) for r in self.rounds_],
        }
        if ctx.x_val is not None and ctx.y_val is not None:
            report["accuracy"] = ctx.accuracy(ctx.x_val, ctx.y_val)
        self.report_ = report
        return report


@hookimpl
def register_defenses() -> list[type[Defense]]:
    return [SuppressPrivacy]
