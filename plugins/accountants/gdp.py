"""``acct.gdp``: Gaussian-DP accountant (Dong, Roth, Su 2019; Bu, Dong, Long, Su 2020)."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict
from scipy import optimize, special

from audit_sdk import hookimpl
from audit_sdk.interfaces import Accountant

from ._base import HistoryAccountant

__all__ = ["GDPAccountant", "gdp_delta", "gdp_epsilon"]


def gdp_delta(mu: float, epsilon: float) -> float:
    """delta(epsilon) of mu-GDP: Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) (DRS 2019, Cor. 2.13)."""
    if mu == 0:
        return 0.0
    if math.isinf(mu):
        return 1.0
    a = special.ndtr(-epsilon / mu + mu / 2)
    # e^eps * Phi(x) in log space to avoid overflow
    b = math.exp(epsilon + special.log_ndtr(-epsilon / mu - mu / 2))
    return float(max(0.0, a - b))


def gdp_epsilon(mu: float, delta: float) -> float:
    """Smallest epsilon >= 0 with gdp_delta(mu, epsilon) <= delta."""
    if math.isinf(mu):
        return math.inf
    if mu == 0 or gdp_delta(mu, 0.0) <= delta:
        return 0.0
    hi = 1.0
    while gdp_delta(mu, hi) > delta:
        hi *= 2.0
    return float(optimize.brentq(lambda e: gdp_delta(mu, e) - delta, 0.0, hi, xtol=1e-12, rtol=1e-12))


class GDPAccountant(HistoryAccountant):
    """Gaussian-DP accountant: mu^2 adds up over steps.

        acct = GDPAccountant()
        acct.step(PrivacyEvent("gaussian", {"noise_multiplier": 1.1}), sample_rate=0.004, count=15000)
        acct.epsilon(1e-5), acct.mu

    A full-batch Gaussian step is exactly (1/sigma)-GDP. A Poisson-subsampled step uses the
    central limit theorem of Bu et al. 2020 (mu^2 += q^2 (e^{1/sigma^2} - 1)): an approximation
    that becomes exact as steps grow and q shrinks, **not** an upper bound (it can under-report
    epsilon for few steps or large q); ``is_upper_bound`` is False. Use ``acct.pld`` for a tight bound.
    """

    name = "acct.gdp"
    summary = "Gaussian-DP accountant (CLT for subsampling: an approximation, not a bound)."
    supported_kinds = ("gaussian",)
    is_upper_bound = False

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    params: Params

    @property
    def mu(self) -> float:
        """The composed GDP parameter of the history."""
        total = 0.0
        for (_kind, params, q), c in self._history.items():
            s = dict(params).get("noise_multiplier", 0.0)
            if q == 0:
                continue
            if s == 0 or 1.0 / s**2 > 700:
                return math.inf
            if q == 1.0:
                total += c / s**2
            else:
                total += c * q * q * math.expm1(1.0 / s**2) if s < 26 else c * q * q / s**2
        return math.sqrt(total)

    def _epsilon(self, delta: float) -> float:
        return gdp_epsilon(self.mu, delta)

    def _delta(self, epsilon: float) -> float:
        return gdp_delta(self.mu, epsilon)


@hookimpl
def register_accountants() -> list[type[Accountant]]:
    return [GDPAccountant]
