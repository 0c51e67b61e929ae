"""``acct.pld``: tight numerical accountant on discretised privacy loss distributions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import hookimpl
from audit_sdk.accounting import calibrate
from audit_sdk.errors import InvalidParameterError
from audit_sdk.interfaces import Accountant

from ._base import HistoryAccountant, pure_epsilon_of
from ._pld_math import (
    ComposedPLD,
    StepLoss,
    choose_interval,
    compose,
    delta_for_epsilon,
    discretise,
    epsilon_for_delta,
    gaussian_losses,
    laplace_losses,
    pure_dp_losses,
)

__all__ = ["PLDAccountant"]


class PLDAccountant(HistoryAccountant):
    """Privacy-loss-distribution accountant: a certified, near-exact epsilon for DP-SGD.

    Each distinct step is discretised pessimistically (connect-the-dots, see ``_pld_math``) on a grid
    chosen from the spread of its privacy loss, histories are composed by FFT, and delta(epsilon) is
    the hockey-stick divergence of the composed distribution, the larger over the add and remove
    directions. Every answer is an upper bound (or an error when the grid would not fit in memory)::

        acct = PLDAccountant()
        acct.step(PrivacyEvent("gaussian", {"noise_multiplier": 1.1}), sample_rate=256 / 60000, count=15000)
        acct.epsilon(1e-5)

    Gaussian and Laplace steps use their exact subsampled loss; vMF and pure steps are charged as
    subsampled randomised response (the worst case of any pure-DP mechanism).
    """

    name = "acct.pld"
    summary = "Certified PLD accountant: pessimistic connect-the-dots discretisation, FFT composition, add/remove."
    supported_kinds = ("gaussian", "laplace", "vmf", "pure")

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        interval: float | None = Field(
            None, gt=0, le=10.0, description="grid spacing of the privacy loss (default: 1/20 of the smallest step's loss spread)"
        )
        tail: float = Field(1e-15, gt=0, le=1e-8, description="loss mass allowed outside each grid (added to delta)")
        sigma_resolution: float = Field(
            0.0,
            ge=0,
            le=0.1,
            description="round noise multipliers down to this relative grid (conservative; speeds up decaying schedules)",
        )

    params: Params

    def __init__(self, params: Any = None, **options: Any) -> None:
        super().__init__(params, **options)
        self._cache: dict[Any, Any] = {}

    def calibration_guess(self, build: Any, *, target_epsilon: float, delta: float) -> float | None:
        """RDP's calibration (cheap, looser: it brackets the PLD answer from above) seeds the core's search."""
        from .rdp import RDPAccountant

        try:
            return calibrate(
                RDPAccountant(sigma_resolution=self.params.sigma_resolution), build, target_epsilon=target_epsilon, delta=delta, rtol=1e-3
            )
        except InvalidParameterError:  # RDP cannot reach the target; the tighter PLD still may
            return None

    def _losses(self, key: Any) -> tuple[StepLoss, StepLoss] | None:
        """(remove, add) losses of one step, or None when the step leaks nothing."""
        ck = ("loss", key, self.params.tail)
        if ck in self._cache:
            return self._cache[ck]  # type: ignore[no-any-return]
        kind, params, q = key
        p = dict(params)
        out: tuple[StepLoss, StepLoss] | None
        if kind == "gaussian":
            s = p["noise_multiplier"]
            out = None if math.isinf(s) else gaussian_losses(q, s, tail=self.params.tail)
        elif kind == "laplace":
            b = p["scale"]
            out = None if math.isinf(b) else laplace_losses(q, b)
        else:
            eps = pure_epsilon_of(kind, p)
            out = None if eps == 0 else pure_dp_losses(eps, q)
        self._cache[ck] = out
        return out

    def _check_sigma(self) -> None:
        for (kind, params, q), c in self._history.items():
            s = dict(params).get("noise_multiplier", 1.0)
            if kind == "gaussian" and c > 0 and q > 0 and 0 < s < 1e-8:
                raise InvalidParameterError(
                    f"acct.pld: noise multiplier {s:g} is below 1e-8: such a step leaks essentially everything "
                    "(its privacy loss is about 1/(2 sigma^2)); use a noise multiplier >= 1e-8 or acct.rdp."
                )

    def composed(self) -> tuple[ComposedPLD, ComposedPLD]:
        """The composed (remove, add) PLDs of the history."""
        self._check_sigma()
        steps = []
        for key, c in self._history.items():
            if c > 0 and key[2] > 0:
                losses = self._losses(key)
                if losses is not None:
                    steps.append((key, losses, c))
        if not steps:
            zero = ComposedPLD(lo=0, pmf=np.ones(1), inf_mass=0.0, interval=1.0)
            return zero, zero
        flat = [(loss, c) for _k, pair, c in steps for loss in pair]
        h = choose_interval(flat, tail=self.params.tail, interval=self.params.interval)
        rem, add = [], []
        for key, pair, c in steps:
            ck = ("pld", key, self.params.tail, h)
            hit = self._cache.get(ck)
            if hit is None:
                hit = (discretise(pair[0], h), discretise(pair[1], h))
                self._cache[ck] = hit
            rem.append((hit[0], c))
            add.append((hit[1], c))
        return compose(rem, tail=self.params.tail), compose(add, tail=self.params.tail)

    def _epsilon(self, delta: float) -> float:
        return max(epsilon_for_delta(p, delta) for p in self.composed())

    def _delta(self, epsilon: float) -> float:
        return max(delta_for_epsilon(p, epsilon) for p in self.composed())


@hookimpl
def register_accountants() -> list[type[Accountant]]:
    return [PLDAccountant]
