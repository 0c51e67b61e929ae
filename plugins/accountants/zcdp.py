"""``acct.zcdp``: zero-concentrated DP accountant (Bun & Steinke 2016)."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict

from audit_sdk import hookimpl
from audit_sdk.interfaces import Accountant

from ._base import HistoryAccountant, pure_epsilon_of
from ._rdp_math import delta_from_rdp, eps_from_rdp

__all__ = ["ZCDPAccountant", "rho_of_step"]

_ORDERS = np.concatenate([np.linspace(1.02, 10.0, 450), np.geomspace(10.0, 1e5, 400)[1:]])


def rho_of_step(kind: str, params: dict[str, float], q: float) -> float:
    """zCDP rho of one step.

    Gaussian: 1 / (2 sigma^2), with no credit for subsampling (zCDP has no amplification
    theorem; charging the full step is an upper bound, as MindArmour's ZCDPMonitor does). Pure
    epsilon-DP (Laplace, vMF): amplified by Poisson sampling to log(1 + q (e^eps - 1)), then
    eps^2 / 2 (Bun & Steinke 2016, Prop. 1.4).
    """
    if q == 0:
        return 0.0
    if kind == "gaussian":
        s = params["noise_multiplier"]
        return math.inf if s == 0 else 1.0 / (2.0 * s * s)
    if kind == "none":
        return math.inf
    eps = pure_epsilon_of(kind, params)
    eps = math.log1p(q * math.expm1(eps)) if q < 1 else eps
    return 0.5 * eps * eps


class ZCDPAccountant(HistoryAccountant):
    """zCDP accountant: rho adds up over steps; converted with the tight RDP conversion on rho * alpha.

        acct = ZCDPAccountant()
        acct.step(PrivacyEvent("gaussian", {"noise_multiplier": 2.0}), sample_rate=1.0, count=100)
        acct.epsilon(1e-5), acct.rho

    It gives no credit for subsampling Gaussian steps (an upper bound; use ``acct.rdp`` or
    ``acct.pld`` for DP-SGD). The conversion is tighter than the classic rho + 2 sqrt(rho log(1/delta)).
    """

    name = "acct.zcdp"
    summary = "zCDP accountant (Bun & Steinke 2016); no subsampling credit for Gaussian steps."
    supported_kinds = ("gaussian", "laplace", "vmf", "pure")

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    params: Params

    @property
    def rho(self) -> float:
        """Total rho of the history."""
        return float(sum(c * rho_of_step(k, dict(p), q) for (k, p, q), c in self._history.items()))

    def _epsilon(self, delta: float) -> float:
        return eps_from_rdp(_ORDERS, self.rho * _ORDERS, delta)[0]

    def _delta(self, epsilon: float) -> float:
        return delta_from_rdp(_ORDERS, self.rho * _ORDERS, epsilon)[0]


@hookimpl
def register_accountants() -> list[type[Accountant]]:
    return [ZCDPAccountant]
