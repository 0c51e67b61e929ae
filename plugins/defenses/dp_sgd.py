"""``defense.dp-sgd``: differentially private SGD for the torch Trainer.

    from audit_sdk.adapters.torch import Trainer, TrainConfig, make_model
    dp = DPSGD(target_epsilon=3.0, delta=1e-5, max_grad_norm=1.0)
    result = Trainer(TrainConfig(epochs=20, batch_size=64, lr=1e-3), defenses=[dp]).fit(model, x, y)
    result.defenses["defense.dp-sgd"]["epsilon"]

Per step: a Poisson-sampled batch (the Trainer's ``poisson`` sampling, set by this defense), each
sample's gradient clipped to ``max_grad_norm`` (flat, per layer, or adaptively), the clipped sum
perturbed by the noise mechanism at this step, divided by the expected batch size. The
accountant charges ``mechanism.event(step)`` (combined with the clip-count noise under adaptive
clipping), so what is charged is what ran. torch is imported inside methods only.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from audit_sdk import hookimpl
from audit_sdk.accounting import calibrate, with_noise_multiplier
from audit_sdk.errors import AccountingAssumptionWarning, InvalidModelError, InvalidParameterError, PrivacyBudgetExceededError
from audit_sdk.interfaces import Defense, PrivacyEvent

__all__ = ["DPSGD", "combined_noise_multiplier"]


def combined_noise_multiplier(sigma: float, count_stddev: float | None) -> float:
    """Noise multiplier of the joint (gradient, centred clip count) release (Andrew et al. 2021, Thm. 1).

    The gradient sum (sensitivity C, noise sigma*C) and the centred count of unclipped samples
    (sensitivity 1/2, noise ``count_stddev``) together are one Gaussian mechanism with multiplier
    (sigma^-2 + (2 count_stddev)^-2)^(-1/2).
    """
    if count_stddev is None:
        return sigma
    if sigma == 0 or count_stddev == 0:
        return 0.0
    return (sigma**-2 + (2.0 * count_stddev) ** -2) ** -0.5


class DPSGD(Defense):
    """DP-SGD with flat, per-layer or adaptive (quantile) clipping, decaying noise and a privacy monitor.

    ``noise_multiplier`` or ``target_epsilon`` (or both: then the budget stops training early)
    must be given. Under a decaying ``mechanism`` the noise multiplier is its sigma0.
    """

    name = "defense.dp-sgd"
    summary = "DP-SGD: per-sample clipping (flat/per-layer/adaptive), noise mechanism, Poisson sampling, accountant."
    points = ("gradient",)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        max_grad_norm: float = Field(1.0, gt=0, description="clip bound C (initial bound under adaptive clipping)")
        noise_multiplier: float | None = Field(None, ge=0, description="noise std / C (sigma0 of a decay schedule)")
        target_epsilon: float | None = Field(None, gt=0, description="privacy budget; calibrates the noise if none is given")
        delta: float = Field(1e-5, gt=0, lt=1)
        mechanism: str = Field("dp.gaussian", description="a Gaussian-family mechanism: dp.gaussian or dp.ada-gaussian")
        mechanism_params: dict[str, Any] = Field(default_factory=dict, description="e.g. {'decay_policy': 'exp', 'noise_decay_rate': 1e-3}")
        accountant: str = Field("acct.rdp", description="acct.rdp, acct.pld, acct.gdp, acct.zcdp or a third-party one")
        accountant_params: dict[str, Any] = Field(default_factory=dict)
        clipping: Literal["flat", "per-layer"] = "flat"
        adaptive_clipping: bool = False
        clip_update: Literal["linear", "geometric"] = Field("geometric", description="MindArmour's Linear / Geometric rule")
        target_unclipped_quantile: float = Field(0.5, gt=0, lt=1)
        clip_learning_rate: float = Field(0.2, gt=0)
        clip_count_stddev: float | None = Field(None, gt=0, description="noise std on the unclipped count (default: expected batch / 20)")
        min_clip: float = Field(1e-3, gt=0)
        max_clip: float = Field(1e3, gt=0)
        sampling: Literal["poisson", "shuffle"] = Field("poisson", description="shuffle breaks the accountant's assumption (warned)")
        max_physical_batch_size: int | None = Field(None, ge=1, description="virtual batches: split a logical batch to bound memory")
        grad_sample_mode: Literal["auto", "ghost", "vmap"] = "auto"
        secure_mode: bool = False
        epsilon_every: Literal["step", "epoch"] = Field("epoch", description="how often the monitor computes epsilon")

        @model_validator(mode="after")
        def _check(self) -> DPSGD.Params:
            if self.min_clip > self.max_clip:
                raise ValueError(f"min_clip ({self.min_clip}) must not exceed max_clip ({self.max_clip})")
            if not (self.min_clip <= self.max_grad_norm <= self.max_clip):
                raise ValueError(
                    f"max_grad_norm ({self.max_grad_norm}) must lie in [min_clip, max_clip] = [{self.min_clip}, {self.max_clip}]"
                )
            return self

    params: Params

    # -- set-up ------------------------------------------------------------------------------------
    def _registry(self, ctx: Any) -> Any:
        from audit_sdk.registry import get_plugin_manager, get_registry

        pm = getattr(ctx, "pm", None)
        return get_registry(
            pm if pm is not None and hasattr(pm, "hook") and hasattr(pm.hook, "register_mechanisms") else get_plugin_manager()
        )

    @staticmethod
    def check_model(model: Any) -> None:
        """Refuse layers whose gradients mix samples (BatchNorm), which breaks per-sample clipping.

        Raises:
            InvalidModelError: naming each offending layer and the fix.
        """
        from torch import nn

        bad = [f"{n or '<root>'} ({type(m).__name__})" for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bad:
            raise InvalidModelError(
                f"DP-SGD needs per-sample gradients, but BatchNorm mixes the samples of a batch: {', '.join(bad)}. "
                "Replace each BatchNorm2d(C) with GroupNorm(min(32, C), C) (or LayerNorm for 1-D features); "
                "a pretrained model can be converted before training."
            )

    def planned_steps(self, ctx: Any) -> int:
        """Number of steps the Trainer will run (its Poisson / shuffle batching)."""
        c = ctx.config
        n = ctx.n_samples
        per_epoch = max(1, int(round(n / c.batch_size))) if self.params.sampling == "poisson" else math.ceil(n / c.batch_size)
        return int(c.epochs) * per_epoch

    def on_train_begin(self, ctx: Any) -> None:
        p = self.params
        self.check_model(ctx.model)
        reg = self._registry(ctx)
        ctx.sampling = p.sampling
        if p.sampling != "poisson":
            msg = (
                "defense.dp-sgd: sampling='shuffle' draws fixed-size batches from a permutation, but the accountant "
                "assumes Poisson sampling; the reported epsilon is not a proven bound for this run. Use sampling='poisson'."
            )
            warnings.warn(msg, AccountingAssumptionWarning, stacklevel=2)
            ctx.notes.append(msg)
        self.sample_rate_ = float(ctx.sample_rate)
        self.expected_batch_ = max(1e-12, self.sample_rate_ * ctx.n_samples)
        self.total_steps_ = self.planned_steps(ctx)
        mech_cls = reg.get("mechanism", p.mechanism)
        acct_cls = reg.get("accountant", p.accountant)
        acct_params = dict(p.accountant_params)
        if "sigma_resolution" in acct_cls.Params.model_fields and "sigma_resolution" not in acct_params:
            # a decaying schedule charges a new multiplier every step: group them on a 0.01% grid, rounding
            # down (conservative), so the monitor does not compute thousands of curves
            acct_params["sigma_resolution"] = 1e-4
        self.accountant_ = acct_cls(acct_params)
        fields = getattr(mech_cls.Params, "model_fields", {})
        gaussian_like = "noise_multiplier" in fields and "secure_mode" in fields and hasattr(mech_cls, "noise_multiplier_at")
        base = (
            mech_cls({**p.mechanism_params, "noise_multiplier": p.noise_multiplier or 1.0, "secure_mode": p.secure_mode})
            if gaussian_like
            else None
        )
        if base is None or base.event(0).kind != "gaussian":
            raise InvalidParameterError(
                f"defense.dp-sgd needs a Gaussian-family mechanism with a schedule (dp.gaussian, dp.ada-gaussian); got {p.mechanism}, "
                f"whose events are {mech_cls().event(0).kind!r}. Laplace noise needs L1 sensitivity and vMF noise does not hide a "
                "record's presence, so neither fits clipped-gradient sums."
            )
        self.count_stddev_ = (p.clip_count_stddev or self.expected_batch_ / 20.0) if p.adaptive_clipping else None
        self.calibrated_ = False
        if p.noise_multiplier is None:
            if p.target_epsilon is None:
                raise InvalidParameterError("defense.dp-sgd needs noise_multiplier or target_epsilon (or both); got neither.")
            sigma0 = self._calibrate(base)
            self.calibrated_ = True
        else:
            sigma0 = float(p.noise_multiplier)
        self.mechanism_: Any = with_noise_multiplier(base, sigma0)  # a Gaussian-family mechanism (checked above)
        self.max_steps_ = self.total_steps_
        if p.target_epsilon is not None and not self.calibrated_:
            self.max_steps_ = self._steps_within_budget()
            if self.max_steps_ == 0:
                raise PrivacyBudgetExceededError(
                    f"defense.dp-sgd: a single step at noise multiplier {sigma0:g} and sample rate {self.sample_rate_:.4g} already "
                    f"spends more than epsilon {p.target_epsilon:g} at delta {p.delta:g}. Raise noise_multiplier or the budget."
                )
        self.clip_ = float(p.max_grad_norm)
        self.epsilon_history_: list[dict[str, Any]] = []
        self.steps_per_epoch_ = max(1, self.total_steps_ // max(1, int(ctx.config.epochs)))

    def _charged(self, schedule: list[tuple[PrivacyEvent, int]]) -> list[tuple[PrivacyEvent, float, int]]:
        """A mechanism schedule as the accountant's steps (each event combined with the clip-count noise if adaptive)."""
        return [(self._combined(ev), self.sample_rate_, c) for ev, c in schedule]

    def _combined(self, ev: PrivacyEvent) -> PrivacyEvent:
        if self.count_stddev_ is None:
            return ev
        return PrivacyEvent("gaussian", {"noise_multiplier": combined_noise_multiplier(ev.params["noise_multiplier"], self.count_stddev_)})

    def _calibrate(self, base: Any) -> float:
        p = self.params
        assert p.target_epsilon is not None
        n = self.total_steps_

        def build(s0: float) -> list[tuple[PrivacyEvent, float, int]]:
            # a decaying schedule is rounded down onto a 1% grid: conservative, and few distinct values
            return self._charged(with_noise_multiplier(base, s0).schedule(n, resolution=1e-2))

        # an approximate accountant (acct.gdp) was chosen explicitly here; the report says accountant_is_upper_bound False
        approximate = not self.accountant_.is_upper_bound
        try:
            return calibrate(self.accountant_, build, target_epsilon=p.target_epsilon, delta=p.delta, allow_approximate=approximate)
        except InvalidParameterError as exc:
            if self.count_stddev_ is None:
                raise
            raise InvalidParameterError(
                f"{exc} With adaptive clipping the clip-count noise (stddev {self.count_stddev_:g}) caps the overall noise "
                f"multiplier at {2 * self.count_stddev_:g}; raise clip_count_stddev."
            ) from exc

    def _steps_within_budget(self) -> int:
        """The most steps of the mechanism's schedule whose epsilon stays within the budget (bisection on fresh copies)."""
        p = self.params
        assert p.target_epsilon is not None
        empty = self.accountant_.copy()
        empty.reset()

        def eps_after(k: int) -> float:
            return empty.epsilon_if(self._charged(self.mechanism_.schedule(k)), delta=p.delta)

        n = self.total_steps_
        if eps_after(n) <= p.target_epsilon:
            return n
        lo, hi = 0, n  # eps_after(lo) <= target < eps_after(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if eps_after(mid) <= p.target_epsilon:
                lo = mid
            else:
                hi = mid
        return lo

    # -- one step ----------------------------------------------------------------------------------
    def step_event(self, step: int) -> PrivacyEvent:
        """What step ``step`` releases: the mechanism's event, combined with the clip-count noise if adaptive."""
        return self._combined(self.mechanism_.event(step))

    def compute_gradients(self, ctx: Any, batch: Any) -> bool:
        import torch

        from ._grad_sample import clipped_grad_sum

        p = self.params
        xb, yb = batch
        model = ctx.model
        params = [q for q in model.parameters() if q.requires_grad]
        sums = [torch.zeros_like(q) for q in params]
        norms_parts, loss_sum, n = [], 0.0, int(xb.shape[0])
        chunk = p.max_physical_batch_size or max(1, n)
        for s in range(0, max(n, 1), chunk):
            xs, ys = xb[s : s + chunk], yb[s : s + chunk]
            res = clipped_grad_sum(
                model, ctx.loss_fn, xs, ys, clip=self.clip_, per_layer=p.clipping == "per-layer", mode=p.grad_sample_mode
            )
            for acc, g in zip(sums, res.grads):
                acc += g.detach()
            norms_parts.append(res.norms)
            loss_sum += res.loss * int(xs.shape[0])
        if getattr(ctx, "gradient_canaries", None) is not None:
            self._add_gradient_canaries(ctx, params, sums, norms_parts)
        norms = torch.cat(norms_parts) if norms_parts else torch.zeros(0)
        t = int(ctx.step)
        for q, acc in zip(params, sums):
            noisy = self.mechanism_.perturb(acc, sensitivity=self.clip_, step=t, rng=ctx.generator)
            q.grad = (noisy / self.expected_batch_).to(q.dtype)
        self.accountant_.step(self.step_event(t), sample_rate=self.sample_rate_)
        if n:  # an empty Poisson batch still takes a (pure-noise) step, but has no loss to log
            ctx.metrics["loss"] = loss_sum / n
        ctx.metrics["noise_multiplier"] = self.mechanism_.noise_multiplier_at(t)
        ctx.metrics["max_grad_norm"] = self.clip_
        if p.adaptive_clipping:
            self._update_clip(norms, ctx)
        last_of_epoch = (t + 1) % self.steps_per_epoch_ == 0 or t + 1 >= self.max_steps_
        if p.epsilon_every == "step" or last_of_epoch:
            eps = self.accountant_.epsilon(p.delta)
            ctx.metrics["epsilon"] = eps
            if last_of_epoch:
                self.epsilon_history_.append({"epoch": int(ctx.epoch), "step": t + 1, "epsilon": eps})
        if t + 1 >= self.max_steps_ and self.max_steps_ < self.total_steps_:
            ctx.stop_reason = (
                f"privacy budget: epsilon {self.accountant_.epsilon(p.delta):.4g} spent after {t + 1} steps; one more step would "
                f"exceed target_epsilon {p.target_epsilon:g} at delta {p.delta:g}"
            )
        return True

    def _add_gradient_canaries(self, ctx: Any, params: list[Any], sums: list[Any], norms_parts: list[Any]) -> None:
        """Gradient canaries (records whose per-example gradient is given): sampled and clipped like data."""

        from audit_sdk.adapters.torch.training import gradient_canary_sum

        if self.params.clipping != "flat":
            raise InvalidParameterError("gradient canaries are clipped as flat vectors; use clipping='flat' to audit with them.")
        clipped, norms = gradient_canary_sum(ctx, clip=self.clip_)
        if norms.numel() == 0:
            return
        offset = 0
        for acc, q in zip(sums, params):
            k = q.numel()
            acc += clipped[offset : offset + k].view_as(acc).to(acc.dtype)
            offset += k
        norms_parts.append(norms.to(norms_parts[0].device if norms_parts else norms.device))

    def _update_clip(self, norms: Any, ctx: Any) -> None:
        import torch

        p = self.params
        # centred count (sensitivity 1/2), as in Andrew et al. 2021; counts norm <= C as unclipped
        centred = float((norms <= self.clip_).sum()) - 0.5 * float(norms.numel())
        noisy = (
            float(self.mechanism_.numpy_generator(None).normal(0.0, self.count_stddev_))
            if p.secure_mode
            else float(torch.normal(0.0, float(self.count_stddev_ or 0.0), size=(1,), generator=ctx.generator))
        )
        frac = (centred + noisy) / self.expected_batch_ + 0.5
        err = frac - p.target_unclipped_quantile
        new = self.clip_ - p.clip_learning_rate * err if p.clip_update == "linear" else self.clip_ * math.exp(-p.clip_learning_rate * err)
        self.clip_ = float(min(p.max_clip, max(p.min_clip, new)))
        ctx.metrics["unclipped_fraction"] = frac

    def on_train_end(self, ctx: Any) -> dict[str, Any]:
        p = self.params
        acct = self.accountant_
        eps = acct.epsilon(p.delta)
        out: dict[str, Any] = {
            "epsilon": eps,
            "delta": p.delta,
            "accountant": acct.name,
            "accountant_is_upper_bound": bool(acct.is_upper_bound),
            "mechanism": self.mechanism_.name,
            "noise_multiplier": float(self.mechanism_.params.noise_multiplier),
            "noise_multiplier_calibrated": self.calibrated_,
            "final_noise_multiplier": self.mechanism_.noise_multiplier_at(max(0, acct.steps - 1)),
            "sample_rate": self.sample_rate_,
            "steps": acct.steps,
            "planned_steps": self.total_steps_,
            "max_grad_norm": float(p.max_grad_norm),
            "final_max_grad_norm": self.clip_,
            "clipping": "adaptive-" + p.clip_update if p.adaptive_clipping else p.clipping,
            "clip_count_stddev": self.count_stddev_,
            "sampling": p.sampling,
            "target_epsilon": p.target_epsilon,
            "epsilon_per_epoch": list(self.epsilon_history_),
            # what was charged, so any accountant can recompute epsilon (e.g. a DP audit comparing them)
            "events": [{"kind": ev.kind, "params": dict(ev.params), "sample_rate": q, "count": c} for ev, q, c in acct.history],
            "secure_mode": p.secure_mode,
        }
        if getattr(acct, "optimal_order", None) is not None:
            out["optimal_order"] = acct.optimal_order
        if p.sampling != "poisson":
            out["accounting_assumption_violated"] = "shuffled fixed-size batches, accountant assumes Poisson sampling"
        return out


@hookimpl
def register_defenses() -> list[type[Defense]]:
    return [DPSGD]
