"""A deliberately broken DP-SGD: the DP audit must catch it (test fixture, never registered by default).

``bug="skip-clipping"``: per-example gradients are summed unclipped while the noise stays scaled to
the clip bound the accountant charges. ``bug="reuse-noise"``: the noise of the first step is drawn
once and added again at every step. Either way the accountant reports the epsilon of an honest run.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from audit_sdk import hookimpl
from audit_sdk.interfaces import Defense
from audit_sdk.plugins.defenses.dp_sgd import DPSGD


class BrokenDPSGD(DPSGD):
    name = "defense.dp-sgd-broken"
    summary = "DP-SGD with a planted bug (test fixture)."

    class Params(DPSGD.Params):
        bug: Literal["skip-clipping", "reuse-noise"] = Field("skip-clipping")

    def on_train_begin(self, ctx: Any) -> None:
        super().on_train_begin(ctx)
        mech = self.mechanism_
        honest = mech.perturb
        if self.params.bug == "skip-clipping":
            true_clip = self.clip_
            self.clip_ = 1e9  # the clipped sum no longer clips ...

            def perturb(values: Any, *, sensitivity: float, step: int, rng: Any = None) -> Any:
                return honest(values, sensitivity=true_clip, step=step, rng=rng)  # ... but the noise is sized for C

        else:
            n_tensors = sum(1 for q in ctx.model.parameters() if q.requires_grad)
            drawn: list[Any] = []
            calls = [0]

            def perturb(values: Any, *, sensitivity: float, step: int, rng: Any = None) -> Any:
                j = calls[0] % n_tensors  # DP-SGD perturbs each parameter tensor once per step, in order
                calls[0] += 1
                if len(drawn) < n_tensors:
                    drawn.append(honest(values * 0, sensitivity=sensitivity, step=step, rng=rng))
                return values + drawn[j]

        mech.perturb = perturb  # type: ignore[method-assign]


@hookimpl
def register_defenses() -> list[type[Defense]]:
    return [BrokenDPSGD]
