"""Black-box decoder inversion (Yang et al. 2019, "Neural network inversion in adversarial setting
via background knowledge alignment").

The attacker queries the target on auxiliary data (the population), trains an inversion network
(its own tool, in torch) that maps the target's output vector back to the input, and applies it
to the outputs of the samples under attack. Only ``predict_proba`` is used, so the target may be an
ONNX file with no torch model behind it.

The output vector is fed as log-probabilities by default (a confident classifier squeezes most of
its information into tiny probabilities that the log keeps); ``truncate=k`` keeps only the top-k
entries, as Yang et al. do for APIs that reveal fewer scores. The baseline an inversion must beat
is the class-mean image: the population's mean image of the predicted class, which is what the
label alone gives away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.context import RunContext
from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidDataError, NotFittedError
from audit_sdk.metrics import ssim
from audit_sdk.progress import track
from audit_sdk.rng import as_generator
from audit_sdk.target import Target

from . import _common as C

if TYPE_CHECKING:
    import torch


def output_features(probs: np.ndarray, *, features: str, truncate: int | None) -> np.ndarray:
    """The decoder's input: (log-)probabilities, optionally only the top-k entries kept (the rest 0).

    With truncation the kept entries stay at their class positions (the attacker knows which
    classes they are); the dropped ones are replaced by the floor value (probability 0 or log 1e-8).
    """
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-8, 1.0)
    f = np.log(p) if features == "log-probs" else p
    if truncate is not None and truncate < p.shape[1]:
        floor = np.log(1e-8) if features == "log-probs" else 0.0
        keep = np.argsort(-p, axis=1)[:, :truncate]
        out = np.full_like(f, floor)
        np.put_along_axis(out, keep, np.take_along_axis(f, keep, axis=1), axis=1)
        f = out
    return f.astype(np.float32)


class InversionDecoder:
    """An MLP from output features to inputs in the box [lo, hi] (sigmoid output, rescaled).

    dec = InversionDecoder(shape=(1, 8, 8), bounds=(0, 1)).fit(features, x_aux)
    x_hat = dec.predict(features_of_victims)
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        bounds: tuple[float, float],
        *,
        hidden: int = 256,
        epochs: int = 100,
        lr: float = 1e-3,
        batch_size: int = 64,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.shape, self.bounds = tuple(shape), bounds
        self.hidden, self.epochs, self.lr, self.batch_size, self.weight_decay, self.seed = (
            hidden,
            epochs,
            lr,
            batch_size,
            weight_decay,
            seed,
        )
        self.net_: torch.nn.Module | None = None
        self.mu_: np.ndarray | None = None
        self.sd_: np.ndarray | None = None

    def fit(self, feats: np.ndarray, x: np.ndarray) -> InversionDecoder:
        import torch
        from torch import nn

        lo, hi = self.bounds
        torch.manual_seed(self.seed)
        d_in, d_out = feats.shape[1], int(np.prod(self.shape))
        self.mu_, self.sd_ = feats.mean(0), feats.std(0) + 1e-6
        net = nn.Sequential(
            nn.Linear(d_in, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.hidden), nn.ReLU(), nn.Linear(self.hidden, d_out)
        )
        f = torch.from_numpy(((feats - self.mu_) / self.sd_).astype(np.float32))
        t = torch.from_numpy(((np.clip(x, lo, hi) - lo) / (hi - lo)).reshape(len(x), -1).astype(np.float32))
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        gen = torch.Generator().manual_seed(self.seed)
        n = len(f)
        with track(f"inversion.decoder: training the decoder on {n} queries", self.epochs) as bar:
            for _ in range(self.epochs):
                perm = torch.randperm(n, generator=gen)
                for i in range(0, n, self.batch_size):
                    idx = perm[i : i + self.batch_size]
                    loss = nn.functional.mse_loss(torch.sigmoid(net(f[idx])), t[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                bar.advance(loss=float(loss.detach()))
        self.net_ = net.eval()
        return self

    def predict(self, feats: np.ndarray) -> np.ndarray:
        import torch

        if self.net_ is None or self.mu_ is None or self.sd_ is None:
            raise NotFittedError("InversionDecoder.predict called before fit; call fit(features, x) first.")
        lo, hi = self.bounds
        with torch.no_grad():
            z = torch.sigmoid(self.net_(torch.from_numpy(((feats - self.mu_) / self.sd_).astype(np.float32)))).numpy()
        return np.clip(lo + (hi - lo) * z, lo, hi).reshape(len(feats), *self.shape).astype(np.float32)


class DecoderInversion(Attack):
    """Invert a black-box model's outputs with a decoder trained on population data (Yang et al. 2019).

        result = DecoderInversion().run(audit_sdk.load_target("model.onnx"), data, rng=0)
        result.metrics["ssim"], result.extra["baseline"]["class_mean_ssim"]

    Needs ``data.population`` (the attacker's background knowledge). The result holds members then
    non-members; ``extra["by_set"]`` compares the two.
    """

    name = "inversion.decoder"
    summary = "Train an inversion network on population queries and invert the target's outputs (black-box; Yang et al. 2019)."
    access = "black-box"
    result_kind = "reconstruction"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        features: Literal["log-probs", "probs"] = Field("log-probs", description="What of the output vector the decoder reads.")
        truncate: int | None = Field(None, ge=1, description="Keep only the top-k output entries (Yang et al.'s truncation).")
        hidden: int = Field(256, ge=8)
        epochs: int = Field(100, ge=1)
        lr: float = Field(1e-3, gt=0)
        batch_size: int = Field(64, ge=1)
        weight_decay: float = Field(0.0, ge=0)
        n_samples: int = Field(64, ge=1, description="Samples inverted from each chosen set.")
        sets: Literal["members", "non_members", "both"] = "both"
        input_bounds: tuple[float, float] | None = None
        evaluate: bool = True
        eval_epochs: int = Field(30, ge=1)

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: RunContext | None = None) -> AttackResult:
        p = cast("DecoderInversion.Params", self.params)
        gen = as_generator(rng)
        if data.population is None:
            raise InvalidDataError(
                f"{self.name} trains its decoder on the attacker's background data and needs data.population; "
                "pass population=(x, y) to AuditData (or x_population/y_population in the .npz)."
            )
        C.require_torch(self.name)
        lo, hi = C.input_bounds(p.input_bounds, data)
        pop = data.population
        shape = tuple(data.feature_shape)
        pop_probs = target.predict_proba(pop.x)
        dec = InversionDecoder(
            shape,
            (lo, hi),
            hidden=p.hidden,
            epochs=p.epochs,
            lr=p.lr,
            batch_size=p.batch_size,
            weight_decay=p.weight_decay,
            seed=C.torch_seed(gen),
        ).fit(output_features(pop_probs, features=p.features, truncate=p.truncate), pop.x)
        sel = C.select_samples(data, p.sets, p.n_samples, gen)
        originals = sel.x  # the true inputs: the bounds constrain reconstructions only
        probs = target.predict_proba(originals)
        recon = dec.predict(output_features(probs, features=p.features, truncate=p.truncate))
        data_range = hi - lo
        # what the label alone gives away: the population's mean image of the predicted class
        guess = C.class_means(pop, data.n_classes)[probs.argmax(1)]
        class_mean_ssim = ssim(C.as_images(originals), C.as_images(guess), data_range=data_range)
        by_set = C.set_metrics(originals, recon, sel.is_member, data_range)
        for name, mask in (("members", sel.is_member), ("non_members", ~sel.is_member)):
            if name in by_set:
                by_set[name]["class_mean_ssim"] = float(class_mean_ssim[mask].mean())
        eval_model = C.evaluation_classifier(data, epochs=p.eval_epochs, seed=0, context=context) if p.evaluate else None
        extra: dict[str, Any] = {
            "n_members": int(sel.is_member.sum()),
            "n_population_queries": len(pop),
            "features": p.features,
            "truncate": p.truncate,
            "input_bounds": [lo, hi],
            "by_set": by_set,
            "baseline": {
                "class_mean_ssim": float(class_mean_ssim.mean()),
                "mean_image_ssim": C.baseline_ssim(originals, pop.x.mean(0), data_range),
            },
            "evaluation": C.eval_by_set(eval_model, recon, sel.y, sel.is_member, originals),
        }
        return C.finish(
            self,
            reconstructions=recon,
            originals=originals,
            labels=sel.y,
            bounds=(lo, hi),
            data_range=data_range,
            extra=extra,
            context=context,
        )


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [DecoderInversion]
