"""Gradient inversion: reconstruct a training batch from the one gradient it produced.

The federated-learning threat: a client shares the gradient of its batch's mean loss; the server
(which knows the model) looks for dummy inputs whose gradient matches it.

- DLG (Zhu et al. 2019): squared L2 gradient distance, dummy labels optimised with the inputs.
- iDLG (Zhao et al. 2020): the label is read off the last layer's bias gradient (its only
  negative entry for one sample; for a batch, the negative entries first, then by size).
- Inverting gradients (Geiping et al. 2020): cosine distance over all parameters plus a
  total-variation prior, Adam with step decay, projection into the input box.

The shared gradient can be defended as DP-SGD would: each example's gradient clipped to
``max_grad_norm``, summed, Gaussian noise of standard deviation ``noise_multiplier * max_grad_norm``
added, divided by the batch size. The clip and noise here are local (the attack simulates what
the client sends), independent of any training-time defense plugin.

All ``n_batches`` attacks run at once: the per-batch gradients of the dummy data come from one
``torch.func.vmap`` over batches, and the losses are summed (each batch's dummy data only
affects its own term).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.context import RunContext
from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidDataError, InvalidParameterError
from audit_sdk.metrics import reconstruction_metrics, ssim
from audit_sdk.progress import track
from audit_sdk.rng import as_generator
from audit_sdk.target import Target

from . import _common as C

if TYPE_CHECKING:
    import torch


def _param_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in model.named_parameters()}


def shared_gradients(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    max_grad_norm: float | None = None,
    noise_multiplier: float = 0.0,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """What each of K clients shares: the mean-loss gradient of its batch, optionally DP-SGD'd.

    Args:
        x: (K, B, ...) inputs, one batch per client; y: (K, B) labels.
        max_grad_norm: clip each example's gradient (over all parameters) to this L2 norm.
        noise_multiplier: add N(0, (noise_multiplier * max_grad_norm)^2) to the clipped sum.

    Returns:
        parameter name -> (K, *param shape).
    """
    import torch
    from torch.func import functional_call, grad, vmap

    params = _param_dict(model)
    k, b = y.shape

    def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_ex = vmap(grad(loss_one), in_dims=(None, 0, 0))(params, x.reshape(k * b, *x.shape[2:]), y.reshape(-1))
    per_ex = {n: g.reshape(k, b, *g.shape[1:]) for n, g in per_ex.items()}
    if max_grad_norm is not None:
        sq = sum(g.reshape(k, b, -1).pow(2).sum(-1) for g in per_ex.values())
        factor = (max_grad_norm / (sq.sqrt() + 1e-12)).clamp(max=1.0)
        per_ex = {n: g * factor.reshape(k, b, *([1] * (g.ndim - 2))) for n, g in per_ex.items()}
    out = {}
    for n, g in per_ex.items():
        s = g.sum(1)
        if noise_multiplier > 0:
            if max_grad_norm is None:
                raise InvalidParameterError("noise_multiplier > 0 needs max_grad_norm (the noise is scaled to the clip norm).")
            s = s + noise_multiplier * max_grad_norm * torch.randn(s.shape, generator=generator, device="cpu").to(s.device)
        out[n] = (s / b).detach()
    return out


def infer_labels(model: torch.nn.Module, grads: dict[str, torch.Tensor], batch_size: int) -> torch.Tensor | None:
    """iDLG label inference from the last Linear layer's gradient; (K, B) labels or None if the
    model has no Linear output layer.

    For cross-entropy, d loss / d bias_c = mean_i (p_ic - [y_i = c]): negative only for classes in
    the batch (the first guesses); further slots go to the classes with the largest estimated
    count B * (1/K_classes - g_c) not yet used up.
    """
    import torch

    last = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not last:
        return None
    name, mod = last[-1]
    if mod.bias is not None and f"{name}.bias" in grads:
        g = grads[f"{name}.bias"]
    else:
        g = grads[f"{name}.weight"].sum(-1)
    kb, n_cls = g.shape
    est = batch_size * (1.0 / n_cls - g)
    labels = torch.empty(kb, batch_size, dtype=torch.long)
    for j in range(batch_size):
        # slot j: prefer a class with a negative gradient not yet taken, else the largest remaining estimate
        score = est + torch.where(g < 0, 1e6, 0.0)
        pick = score.argmax(1)
        labels[:, j] = pick
        taken = torch.nn.functional.one_hot(pick, n_cls).bool()
        g = torch.where(taken, torch.full_like(g, 1.0), g)
        est = est - taken.float()
    return labels


def invert_gradients(
    model: torch.nn.Module,
    target_grads: dict[str, torch.Tensor],
    shape: tuple[int, ...],
    batch_size: int,
    *,
    labels: torch.Tensor | None,
    n_classes: int,
    bounds: tuple[float, float],
    loss: str = "cosine",
    tv_weight: float = 1e-2,
    iterations: int = 300,
    step_size: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Find (K, B, *shape) inputs whose batch gradients match ``target_grads`` (name -> (K, ...)).

    Args:
        labels: (K, B) known or inferred labels; None optimises soft labels too (DLG).

    Returns:
        reconstructions (clipped to the bounds), the labels used (argmax of the soft labels for
        DLG), and the mean gradient-matching loss every 10 iterations.
    """
    import torch
    from torch.func import functional_call, grad, vmap

    lo, hi = bounds
    names = list(target_grads)
    k = next(iter(target_grads.values())).shape[0]
    params = {n: v for n, v in _param_dict(model).items() if n in target_grads}
    dev = next(iter(params.values())).device
    x = (lo + (hi - lo) * torch.rand((k, batch_size, *shape), generator=generator, device="cpu")).to(dev).requires_grad_(True)
    opt_vars = [x]
    if labels is None:
        label_logits = torch.randn((k, batch_size, n_classes), generator=generator, device="cpu").to(dev).requires_grad_(True)
        opt_vars.append(label_logits)
    tgt = {n: target_grads[n].to(dev).reshape(k, -1) for n in names}
    tgt_norm = torch.sqrt(torch.stack([t.pow(2).sum(1) for t in tgt.values()]).sum(0)) + 1e-12

    def batch_loss(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(functional_call(model, p, (xb,)), yb)

    dummy_grad = vmap(grad(batch_loss), in_dims=(None, 0, 0))
    opt = torch.optim.Adam(opt_vars, lr=step_size if step_size is not None else 0.5 * (hi - lo))
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[int(iterations * f) for f in (0.375, 0.625, 0.875)], gamma=0.1)
    trace: list[float] = []
    for it in range(iterations):
        yb = labels.to(dev) if labels is not None else torch.softmax(label_logits, -1)
        dg = dummy_grad(params, x, yb)
        flat = {n: dg[n].reshape(k, -1) for n in names}
        if loss == "cosine":
            dot = sum((flat[n] * tgt[n]).sum(1) for n in names)
            dnorm = torch.sqrt(torch.stack([flat[n].pow(2).sum(1) for n in names]).sum(0)) + 1e-12
            match = 1.0 - dot / (dnorm * tgt_norm)
        else:
            match = sum((flat[n] - tgt[n]).pow(2).sum(1) for n in names)
        tv = C.total_variation(x.reshape(k * batch_size, *shape)).reshape(k, batch_size).sum(1)
        total = (match + tv_weight * tv).sum()
        if it % 10 == 0 or it == iterations - 1:
            trace.append(float(match.detach().mean()))
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            x.clamp_(lo, hi)
    used = labels if labels is not None else label_logits.detach().argmax(-1).cpu()
    return x.detach(), used, trace


def match_within_batches(originals: np.ndarray, recon: np.ndarray, data_range: float) -> np.ndarray:
    """Reorder each batch's reconstructions to the originals they resemble most (max total SSIM).

    A gradient is permutation-invariant within its batch, so the reconstruction order is arbitrary;
    the Hungarian assignment on the B x B SSIM matrix (all batches scored in one call) fixes it.
    """
    from scipy.optimize import linear_sum_assignment

    k, b = originals.shape[:2]
    if b == 1:
        return recon
    o = np.repeat(originals[:, :, None], b, axis=2).reshape(k * b * b, *originals.shape[2:])
    r = np.repeat(recon[:, None], b, axis=1).reshape(k * b * b, *recon.shape[2:])
    s = ssim(C.as_images(o), C.as_images(r), data_range=data_range).reshape(k, b, b)
    out = np.empty_like(recon)
    for i in range(k):  # one assignment per batch (K is small); the SSIM above is vectorised
        rows, cols = linear_sum_assignment(-s[i])
        out[i, rows] = recon[i, cols]
    return out


def _label_accuracy(true: np.ndarray, guess: np.ndarray, n_classes: int) -> float:
    """Fraction of each batch's labels recovered, as multisets (order does not matter)."""
    t = np.stack([np.bincount(r, minlength=n_classes) for r in true])
    g = np.stack([np.bincount(r, minlength=n_classes) for r in guess])
    return float(np.minimum(t, g).sum() / t.sum())


class GradientInversion(Attack):
    """Reconstruct a client's training batch from its shared gradient (DLG / iDLG / inverting gradients).

        result = GradientInversion(batch_size=1, n_batches=4).run(target, data, rng=0)
        result.metrics["ssim"], result.extra["label_accuracy"]
        GradientInversion(max_grad_norm=1.0, noise_multiplier=1.0)   # against a DP-SGD'd gradient

    The batches come from the members (they are the client's training data). ``extra["sweep"]``
    (with ``sweep_batch_sizes`` / ``sweep_noise_multipliers``) shows how the reconstruction
    falls as the batch grows and as DP noise rises.
    """

    name = "inversion.gradient"
    summary = (
        "Reconstruct a training batch from one shared gradient (DLG, iDLG, inverting gradients), optionally DP-SGD clipped and noised."
    )
    access = "gradients"
    result_kind = "reconstruction"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        batch_size: int = Field(1, ge=1, le=256, description="Examples behind each shared gradient.")
        n_batches: int = Field(4, ge=1, description="Independent shared gradients attacked (all at once).")
        labels: Literal["idlg", "optimise", "known"] = Field("idlg", description="Infer (iDLG), optimise (DLG) or assume the labels.")
        loss: Literal["cosine", "l2"] = Field("cosine", description="Gradient distance: cosine (inverting gradients) or squared L2 (DLG).")
        tv_weight: float = Field(1e-2, ge=0)
        iterations: int = Field(300, ge=1, le=100_000)
        step_size: float | None = Field(
            None, gt=0, description="Adam learning rate (default 0.5 x input range; decayed 10x at 3/8, 5/8, 7/8)."
        )
        max_grad_norm: float | None = Field(None, gt=0, description="DP-SGD per-example clip norm on the shared gradient.")
        noise_multiplier: float = Field(0.0, ge=0, description="DP-SGD noise std / max_grad_norm on the shared gradient.")
        secure_noise: bool = Field(False, description="Seed the DP noise from the OS's cryptographic source (not reproducible).")
        input_bounds: tuple[float, float] | None = None
        evaluate: bool = True
        eval_epochs: int = Field(30, ge=1)
        sweep_batch_sizes: list[int] = Field(default_factory=list, description="Also attack at these batch sizes (extra['sweep']).")
        sweep_noise_multipliers: list[float] = Field(default_factory=list, description="Also attack at these noise multipliers.")

        @model_validator(mode="after")
        def _dp(self) -> GradientInversion.Params:
            if (self.noise_multiplier > 0 or any(s > 0 for s in self.sweep_noise_multipliers)) and self.max_grad_norm is None:
                raise ValueError("noise needs max_grad_norm: the DP-SGD noise std is noise_multiplier x max_grad_norm")
            if any(b < 1 for b in self.sweep_batch_sizes) or any(s < 0 for s in self.sweep_noise_multipliers):
                raise ValueError("sweep batch sizes must be >= 1 and noise multipliers >= 0")
            return self

    def _attack_once(
        self,
        model: Any,
        x: np.ndarray,
        y: np.ndarray,
        *,
        batch_size: int,
        noise: float,
        bounds: tuple[float, float],
        n_classes: int,
        gen: np.random.Generator,
    ) -> dict[str, Any]:
        import torch

        p = cast("GradientInversion.Params", self.params)
        dev = C.model_device(model)
        k = len(x) // batch_size
        xb = torch.from_numpy(x[: k * batch_size].reshape(k, batch_size, *x.shape[1:])).to(dev)
        yb = torch.from_numpy(y[: k * batch_size].reshape(k, batch_size)).to(dev)
        noise_gen = torch.Generator().manual_seed(secrets.randbits(63) if p.secure_noise else C.torch_seed(gen))
        shared = shared_gradients(model, xb, yb, max_grad_norm=p.max_grad_norm, noise_multiplier=noise, generator=noise_gen)
        labels: torch.Tensor | None
        if p.labels == "known":
            labels = yb.cpu()
        elif p.labels == "idlg":
            labels = infer_labels(model, shared, batch_size)
        else:
            labels = None
        rec, used, trace = invert_gradients(
            model,
            shared,
            tuple(x.shape[1:]),
            batch_size,
            labels=labels,
            n_classes=n_classes,
            bounds=bounds,
            loss=p.loss,
            tv_weight=p.tv_weight,
            iterations=p.iterations,
            step_size=p.step_size,
            generator=torch.Generator().manual_seed(C.torch_seed(gen)),
        )
        lo, hi = bounds
        rec_np = np.clip(rec.cpu().numpy().astype(np.float32), lo, hi)
        orig = xb.cpu().numpy()
        rec_np = match_within_batches(orig, rec_np, hi - lo)
        return {
            "originals": orig.reshape(k * batch_size, *x.shape[1:]),
            "reconstructions": rec_np.reshape(k * batch_size, *x.shape[1:]),
            "labels": yb.cpu().numpy().reshape(-1),
            "label_accuracy": _label_accuracy(yb.cpu().numpy(), np.asarray(used), n_classes) if p.labels != "known" else 1.0,
            "final_match_loss": trace[-1],
        }

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: RunContext | None = None) -> AttackResult:
        p = cast("GradientInversion.Params", self.params)
        gen = as_generator(rng)
        model = C.torch_module(target, self.name).eval()
        lo, hi = C.input_bounds(p.input_bounds, data)
        n_classes = int(getattr(target, "n_classes", 0) or data.n_classes)
        members = data.members
        sizes = sorted({p.batch_size, *p.sweep_batch_sizes})
        need = p.n_batches * max(sizes)
        if len(members) < max(sizes):
            raise InvalidDataError(f"{self.name}: batch size {max(sizes)} exceeds the {len(members)} members; use a smaller batch_size.")
        idx = gen.choice(len(members), size=min(need, len(members)), replace=False)
        x = members.x[idx].astype(np.float32)  # the true inputs: the bounds constrain reconstructions only
        y = members.y[idx].astype(np.int64)
        k = min(p.n_batches, len(x) // p.batch_size)
        main = self._attack_once(
            model,
            x[: k * p.batch_size],
            y[: k * p.batch_size],
            batch_size=p.batch_size,
            noise=p.noise_multiplier,
            bounds=(lo, hi),
            n_classes=n_classes,
            gen=gen,
        )
        data_range = hi - lo
        originals, recon = main["originals"], main["reconstructions"]
        ref = data.population.x if data.population is not None else None
        baseline: dict[str, Any] = {"blank_ssim": C.baseline_ssim(originals, np.full(originals.shape[1:], lo, np.float32), data_range)}
        if ref is not None:
            baseline["mean_image_ssim"] = C.baseline_ssim(originals, ref.mean(0), data_range)
        sweep: list[dict[str, Any]] = []
        cells = [
            (b, s) for b in sorted({p.batch_size, *p.sweep_batch_sizes}) for s in sorted({p.noise_multiplier, *p.sweep_noise_multipliers})
        ]
        with track(f"{self.name}: sweep of {len(cells)} (batch size, noise) cells", len(cells)) as bar:
            for b, s in cells if (p.sweep_batch_sizes or p.sweep_noise_multipliers) else []:
                kk = min(p.n_batches, len(x) // b)
                if (b, s) == (p.batch_size, p.noise_multiplier):
                    r = main  # the headline attack is one cell of the grid
                else:
                    r = self._attack_once(
                        model, x[: kk * b], y[: kk * b], batch_size=b, noise=s, bounds=(lo, hi), n_classes=n_classes, gen=gen
                    )
                m = reconstruction_metrics(C.as_images(r["originals"]), C.as_images(r["reconstructions"]), data_range=data_range)
                sweep.append(
                    {
                        "batch_size": b,
                        "noise_multiplier": s,
                        "ssim": m["ssim"],
                        "psnr": m["psnr"],
                        "relative_l2": m["relative_l2"],
                        "label_accuracy": r["label_accuracy"],
                    }
                )
                bar.advance()
        eval_model = C.evaluation_classifier(data, epochs=p.eval_epochs, seed=0, context=context) if p.evaluate else None
        extra: dict[str, Any] = {
            "batch_size": p.batch_size,
            "n_batches": len(originals) // p.batch_size,
            "dp": {"max_grad_norm": p.max_grad_norm, "noise_multiplier": p.noise_multiplier},
            "label_accuracy": main["label_accuracy"],
            "final_match_loss": main["final_match_loss"],
            "input_bounds": [lo, hi],
            "baseline": baseline,
            "evaluation": C.evaluation_accuracy(eval_model, recon, main["labels"]) if eval_model is not None else None,
            "sweep": sweep,
            "members_vs_non_members": "not applicable: the shared gradient comes from the client's (member) batch",
        }
        return C.finish(
            self,
            reconstructions=recon,
            originals=originals,
            labels=main["labels"],
            bounds=(lo, hi),
            data_range=data_range,
            extra=extra,
            context=context,
        )


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [GradientInversion]
