"""``acct.rdp``: Rényi-DP accountant for the sampled Gaussian, Laplace and pure-DP (vMF) steps."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from audit_sdk import hookimpl
from audit_sdk.interfaces import Accountant

from ._base import HistoryAccountant, pure_epsilon_of
from ._rdp_math import DEFAULT_ORDERS, delta_from_rdp, eps_from_rdp, rdp_laplace, rdp_sampled_gaussian, rdp_subsampled_pure_dp

__all__ = ["RDPAccountant"]


class RDPAccountant(HistoryAccountant):
    """Rényi-DP accountant (Mironov 2017; sampled Gaussian: Mironov, Talwar, Zhang 2019).

    Sums each step's RDP curve over fractional and integer orders and converts with the tight
    bound of Canonne, Kamath, Steinke 2020 (Prop. 12) / Balle et al. 2020 (Thm. 21)::

        acct = RDPAccountant()
        acct.step(PrivacyEvent("gaussian", {"noise_multiplier": 1.1}), sample_rate=256 / 60000, count=15000)
        acct.epsilon(1e-5), acct.optimal_order

    Laplace steps use Mironov's exact curve at sample rate 1; subsampled Laplace and vMF steps are
    charged as pure-DP steps through the exact curve of subsampled randomised response (a valid,
    slightly loose bound). Curves are cached per (event, sample rate).
    """

    name = "acct.rdp"
    summary = "Rényi-DP accountant: sampled Gaussian (MTZ 2019) over fractional + integer orders, tight conversion."
    supported_kinds = ("gaussian", "laplace", "vmf", "pure")

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        orders: list[float] | None = Field(None, description="Rényi orders > 1 (default: 1.1..10.9, 11..63, 80, 128, 256, 512)")
        sigma_resolution: float = Field(
            0.0,
            ge=0,
            le=0.1,
            description="round noise multipliers down to this relative grid (conservative; speeds up decaying schedules)",
        )

        @field_validator("orders")
        @classmethod
        def _orders_gt_1(cls, v: list[float] | None) -> list[float] | None:
            if v is not None and (not v or not all(math.isfinite(a) and a > 1 for a in v)):
                raise ValueError("orders must be a non-empty list of finite numbers > 1 (e.g. [1.5, 2, 4, 8, 16, 32, 64])")
            return v

    params: Params

    def __init__(self, params: Any = None, **options: Any) -> None:
        super().__init__(params, **options)
        self._cache: dict[Any, np.ndarray] = {}
        #: Rényi order that gave the last epsilon / delta
        self.optimal_order: float | None = None

    @property
    def orders(self) -> np.ndarray:
        return np.asarray(self.params.orders, dtype=float) if self.params.orders is not None else DEFAULT_ORDERS

    def _curve(self, key: Any) -> np.ndarray:
        orders = self.orders
        ck = (key, orders.tobytes())
        hit = self._cache.get(ck)
        if hit is not None:
            return hit
        kind, params, q = key
        p = dict(params)
        if kind == "gaussian":
            curve = rdp_sampled_gaussian(q, p["noise_multiplier"], orders)
        elif kind == "laplace" and q == 1.0:
            curve = rdp_laplace(p["scale"], orders)
        elif kind == "none":
            curve = np.full_like(orders, math.inf if q > 0 else 0.0)
        else:
            curve = rdp_subsampled_pure_dp(pure_epsilon_of(kind, p), q, orders)
        self._cache[ck] = curve
        return curve

    def rdp(self) -> np.ndarray:
        """The composed RDP curve of the history at ``self.orders``."""
        total = np.zeros_like(self.orders)
        for key, count in self._history.items():
            total = total + count * self._curve(key)
        return total

    def group_epsilon(self, delta: float, group_size: int) -> float:
        """The core's group-privacy bound, or Mironov 2017 Prop. 2 on the RDP curve when smaller.

        An (alpha, e)-RDP step is (alpha / 2^c, 3^c e)-RDP for groups of 2^c records.
        """
        best = super().group_epsilon(delta, group_size)
        k = int(group_size)
        if k <= 1:
            return best
        c = math.ceil(math.log2(k))
        new_orders = self.orders / 2**c
        keep = new_orders > 1
        if keep.any():
            best = min(best, eps_from_rdp(new_orders[keep], 3**c * self.rdp()[keep], delta)[0])
        return float(best)

    def _epsilon(self, delta: float) -> float:
        eps, order = eps_from_rdp(self.orders, self.rdp(), delta)
        self.optimal_order = order
        return eps

    def _delta(self, epsilon: float) -> float:
        d, order = delta_from_rdp(self.orders, self.rdp(), epsilon)
        self.optimal_order = order
        return d


@hookimpl
def register_accountants() -> list[type[Accountant]]:
    return [RDPAccountant]
