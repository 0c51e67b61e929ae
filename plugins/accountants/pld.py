"""``acct.pld``: tight numerical accountant on discretised privacy loss distributions."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import hookimpl
from audit_sdk.errors import InvalidParameterError
from audit_sdk.interfaces import Accountant

from ._base import HistoryAccountant, pure_epsilon_of
from ._pld_math import ComposedPLD, DiscretePLD, compose, delta_for_epsilon, epsilon_for_delta, gaussian_plds, pure_dp_plds

__all__ = ["PLDAccountant"]


class PLDAccountant(HistoryAccountant):
    """Privacy-loss-distribution accountant: near-exact epsilon for DP-SGD.

    Each distinct step is discretised once (mean-preserving, see ``_pld_math``), histories are
    composed by FFT, and delta(epsilon) is the hockey-stick divergence of the composed
    distribution, the larger over the add and remove directions::

        acct = PLDAccountant()
        acct.step(PrivacyEvent("gaussian", {"noise_multiplier": 1.1}), sample_rate=256 / 60000, count=15000)
        acct.epsilon(1e-5)

    Within 0.3% of dp_accounting's PLD at a 50x finer grid in the tests. Laplace and vMF steps are
    charged as pure-DP steps (subsampled randomised response: tight for pure DP, loose for Laplace).
    """

    name = "acct.pld"
    summary = "Tight PLD accountant: mean-preserving discretisation, FFT composition, add/remove."
    supported_kinds = ("gaussian", "laplace", "vmf", "pure")

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        interval: float = Field(1e-3, gt=0, le=0.1, description="grid spacing of the privacy loss")
        tail: float = Field(1e-15, gt=0, le=1e-8, description="mass allowed outside each window (added to delta)")
        sigma_resolution: float = Field(
            0.0,
            ge=0,
            le=0.1,
            description="round noise multipliers down to this relative grid (conservative; speeds up decaying schedules)",
        )

    params: Params

    def __init__(self, params: Any = None, **options: Any) -> None:
        super().__init__(params, **options)
        self._cache: dict[Any, tuple[DiscretePLD, DiscretePLD]] = {}

    def calibrate_history(self, build: Any, *, target_epsilon: float, delta: float, **kwargs: Any) -> float:
        """As the base class, warm-started from the (cheap, looser) RDP answer, which brackets the PLD one from above."""
        if kwargs.get("guess") is None:
            from .rdp import RDPAccountant

            try:
                kwargs["guess"] = RDPAccountant(sigma_resolution=self.params.sigma_resolution).calibrate_history(
                    build, target_epsilon=target_epsilon, delta=delta, rtol=1e-3
                )
            except InvalidParameterError:  # RDP cannot reach the target; the tighter PLD still may
                kwargs["guess"] = None
        return super().calibrate_history(build, target_epsilon=target_epsilon, delta=delta, **kwargs)

    def _plds(self, key: Any) -> tuple[DiscretePLD, DiscretePLD]:
        ck = (key, self.params.interval, self.params.tail)
        hit = self._cache.get(ck)
        if hit is None:
            kind, params, q = key
            p = dict(params)
            if kind == "gaussian":
                hit = gaussian_plds(q, p["noise_multiplier"], interval=self.params.interval, tail=self.params.tail)
            else:
                hit = pure_dp_plds(pure_epsilon_of(kind, p), q, interval=self.params.interval)
            self._cache[ck] = hit
        return hit

    def composed(self) -> tuple[ComposedPLD, ComposedPLD]:
        """The composed (remove, add) PLDs of the history."""
        keys = [(k, c) for k, c in self._history.items() if c > 0 and k[2] > 0]
        if not keys:
            keys = [(("pure", (("epsilon", 0.0),), 1.0), 1)]
        rem = [(self._plds(k)[0], c) for k, c in keys]
        add = [(self._plds(k)[1], c) for k, c in keys]
        return compose(rem, tail=self.params.tail), compose(add, tail=self.params.tail)

    def _epsilon(self, delta: float) -> float:
        return max(epsilon_for_delta(p, delta) for p in self.composed())

    def _delta(self, epsilon: float) -> float:
        return max(delta_for_epsilon(p, epsilon) for p in self.composed())


@hookimpl
def register_accountants() -> list[type[Accountant]]:
    return [PLDAccountant]
