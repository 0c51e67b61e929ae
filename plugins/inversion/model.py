"""Model inversion (MIFace, Fredrikson et al. 2015): a class representative from the output alone.

For each class c, start from a blank (or the population's mean) image and descend the cost
``1 - p_c(x)`` (Fredrikson et al.'s; ``cost="log"`` uses ``-log p_c(x)``, which does not saturate)
plus a total-variation prior, inside the input box. No sample of the class is used: what comes out
is what the model learned the class looks like. All classes are optimised at once.

Scoring: the reconstruction of class c is compared with the mean member image of class c (the
``originals``) and, for the members-vs-non-members comparison, with the mean non-member image of
c; a model that memorised its members yields representatives closer to them. A classifier trained
on the population alone then says whether the representative carries its class (Fredrikson et
al.'s and MindArmour's measure of success).
"""

from __future__ import annotations

from typing import Any, Literal, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.context import RunContext
from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidParameterError
from audit_sdk.metrics import ssim
from audit_sdk.progress import track
from audit_sdk.rng import as_generator
from audit_sdk.target import Target

from . import _common as C


class ModelInversion(Attack):
    """Reconstruct a representative input of each class from a white-box model (MIFace).

    result = ModelInversion(iterations=300).run(target, data, rng=0)
    result.reconstructions[c]                    # what the model thinks class c looks like
    result.extra["evaluation"]["accuracy"]       # an independent classifier agrees?
    """

    name = "inversion.model"
    summary = "Reconstruct a representative input of each class from the model's output alone (MIFace, Fredrikson et al. 2015)."
    access = "white-box"
    result_kind = "reconstruction"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        classes: list[int] | None = Field(None, description="Classes to invert (default: all).")
        cost: Literal["fredrikson", "log"] = Field("fredrikson", description="1 - p_c (Fredrikson et al.) or -log p_c.")
        tv_weight: float = Field(0.05, ge=0, description="Weight of the total-variation prior.")
        init: Literal["blank", "population-mean"] = Field("blank", description="Start image.")
        iterations: int = Field(300, ge=1, le=100_000)
        step_size: float | None = Field(None, gt=0, description="Adam learning rate (default 0.05 x input range).")
        input_bounds: tuple[float, float] | None = None
        evaluate: bool = True
        eval_epochs: int = Field(30, ge=1)

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: RunContext | None = None) -> AttackResult:
        import torch

        p = cast("ModelInversion.Params", self.params)
        as_generator(rng)  # validated for a uniform interface; the attack itself is deterministic
        model = C.torch_module(target, self.name).eval()
        dev = C.model_device(model)
        lo, hi = C.input_bounds(p.input_bounds, data)
        n_classes = int(getattr(target, "n_classes", 0) or data.n_classes)
        classes = np.arange(n_classes) if p.classes is None else np.asarray(p.classes, dtype=np.int64)
        if len(classes) == 0 or classes.min() < 0 or classes.max() >= n_classes:
            raise InvalidParameterError(f"classes must be in [0, {n_classes - 1}]; got {p.classes}.")
        shape = tuple(data.feature_shape)
        if p.init == "population-mean":
            if data.population is None:
                raise InvalidParameterError("init='population-mean' needs population data; pass one or use init='blank'.")
            start = np.broadcast_to(data.population.x.mean(0), (len(classes), *shape))
        else:
            start = np.full((len(classes), *shape), lo, dtype=np.float32)
        x = torch.tensor(np.ascontiguousarray(start, dtype=np.float32), device=dev, requires_grad=True)
        yt = torch.from_numpy(classes).to(dev)
        flags = [q.requires_grad for q in model.parameters()]
        for q in model.parameters():
            q.requires_grad_(False)
        opt = torch.optim.Adam([x], lr=p.step_size if p.step_size is not None else 0.05 * (hi - lo))
        try:
            with track(f"{self.name}: optimising {len(classes)} class representatives", p.iterations) as bar:
                for _ in range(p.iterations):
                    logp = torch.log_softmax(model(x), dim=1).gather(1, yt[:, None])[:, 0]
                    cost = 1.0 - logp.exp() if p.cost == "fredrikson" else -logp
                    loss = (cost + p.tv_weight * C.total_variation(x)).sum()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        x.clamp_(lo, hi)
                    bar.advance()
            with torch.no_grad():
                conf = torch.softmax(model(x), dim=1).gather(1, yt[:, None])[:, 0].cpu().numpy()
        finally:
            for q, f in zip(model.parameters(), flags):
                q.requires_grad_(f)
        recon = np.clip(x.detach().cpu().numpy().astype(np.float32), lo, hi)
        data_range = hi - lo
        member_means = C.class_means(data.members, n_classes)[classes]
        non_member_means = C.class_means(data.non_members, n_classes)[classes]
        to_m = ssim(C.as_images(member_means), C.as_images(recon), data_range=data_range)
        to_nm = ssim(C.as_images(non_member_means), C.as_images(recon), data_range=data_range)
        baseline: dict[str, Any] = {"blank_ssim": C.baseline_ssim(member_means, np.full(shape, lo, np.float32), data_range)}
        if data.population is not None:
            baseline["mean_image_ssim"] = C.baseline_ssim(member_means, data.population.x.mean(0), data_range)
        eval_model = C.evaluation_classifier(data, epochs=p.eval_epochs, seed=0, context=context) if p.evaluate else None
        extra: dict[str, Any] = {
            "classes": classes.tolist(),
            "target_confidence": conf.astype(float).tolist(),
            "mean_target_confidence": float(conf.mean()),
            "ssim_to_member_class_mean": float(to_m.mean()),
            "ssim_to_non_member_class_mean": float(to_nm.mean()),
            "members_minus_non_members_ssim": float((to_m - to_nm).mean()),
            "input_bounds": [lo, hi],
            "baseline": baseline,
            "evaluation": C.evaluation_accuracy(eval_model, recon, classes) if eval_model is not None else None,
        }
        return C.finish(
            self,
            reconstructions=recon,
            originals=member_means,
            labels=classes,
            bounds=(lo, hi),
            data_range=data_range,
            extra=extra,
            context=context,
        )


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [ModelInversion]
