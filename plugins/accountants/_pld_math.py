"""Privacy loss distributions (PLD): discretise, compose by FFT, read off delta(epsilon) / epsilon(delta).

Pure functions; ``acct.pld`` keeps the history and calls them.

A mechanism step under add/remove adjacency is described by two dominating pairs, ``remove``
(P = output with the record, Q = without) and ``add`` (the reverse). For each pair the privacy loss
L = log(P(o)/Q(o)), o ~ P, is discretised on a grid of spacing ``interval`` with the mass of each
bucket on its centre and the whole grid shifted so that the discrete mean equals the exact mean
(E[L] = KL(P || Q)). Keeping the mean makes the composition error second order in the spacing
instead of growing linearly with the number of steps (the idea behind the PRV accountant,
Gopi, Lee, Wutschitz 2021, arXiv:2106.02848). Compositions are products of FFTs over a window found
with Chernoff bounds on the composed loss (as dp_accounting's ``self_convolve``); the mass outside
the window (at most ``2 * tail``) is added to delta, so the window never hides privacy loss.

delta(epsilon) of a pair is E[(1 - exp(epsilon - L))_+] plus the mass at L = +inf; under add/remove the
step's delta is the larger of the two pairs (Zhu, Dong, Wang 2022, arXiv:2106.08567).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import integrate, special

__all__ = ["DiscretePLD", "compose", "delta_for_epsilon", "epsilon_for_delta", "gaussian_plds", "pure_dp_plds"]


@dataclass(frozen=True)
class DiscretePLD:
    """Loss values ``(lo + k) * interval + shift`` with masses ``pmf[k]``, plus mass at +inf."""

    lo: int
    pmf: np.ndarray
    shift: float
    inf_mass: float
    interval: float


def _bucket(cdf_edges: np.ndarray) -> np.ndarray:
    return np.clip(np.diff(cdf_edges), 0.0, None)


def _gaussian_pair(q: float, sigma: float, interval: float, tail: float, direction: str) -> DiscretePLD:
    """Discretise the Poisson-subsampled Gaussian's loss for one direction (sensitivity 1, noise sigma)."""
    s2 = sigma**2
    zt = -special.ndtri(tail)  # standard-normal quantile of the tail mass
    log_1mq = math.log1p(-q) if q < 1 else -math.inf

    def loss(x: np.ndarray) -> np.ndarray:  # L(x) = log(M(x) / N0(x))
        if q == 1.0:
            return (2 * x - 1) / (2 * s2)
        return np.logaddexp(log_1mq, math.log(q) + (2 * x - 1) / (2 * s2))

    def x_of(l_val: np.ndarray) -> np.ndarray:  # inverse of loss, for l > log(1 - q)
        if q == 1.0:
            return s2 * l_val + 0.5
        with np.errstate(divide="ignore", invalid="ignore"):
            inner = np.where(l_val > log_1mq, np.log(np.clip(np.expm1(l_val) + q, 1e-300, None)) - math.log(q), -np.inf)
        return s2 * inner + 0.5

    x_lo, x_hi = -zt * sigma, 1.0 + zt * sigma
    if direction == "remove":  # o ~ M, loss L(o)
        l_min, l_max = float(loss(np.array(x_lo))), float(loss(np.array(x_hi)))

        def cdf(l_val: np.ndarray) -> np.ndarray:
            x = x_of(l_val)
            return (1 - q) * special.ndtr(x / sigma) + q * special.ndtr((x - 1) / sigma)

        def dens_loss(x: np.ndarray) -> np.ndarray:
            m = (1 - q) * np.exp(-(x**2) / (2 * s2)) + q * np.exp(-((x - 1) ** 2) / (2 * s2))
            return m / (sigma * math.sqrt(2 * math.pi)) * loss(x)

    else:  # o ~ N0, loss -L(o); -L is decreasing in o
        l_min, l_max = float(-loss(np.array(x_hi))), float(-loss(np.array(x_lo)))

        def cdf(l_val: np.ndarray) -> np.ndarray:
            return special.ndtr(-x_of(-l_val) / sigma)

        def dens_loss(x: np.ndarray) -> np.ndarray:
            return np.exp(-(x**2) / (2 * s2)) / (sigma * math.sqrt(2 * math.pi)) * -loss(x)

    k_lo = int(math.floor(l_min / interval))
    k_hi = int(math.ceil(l_max / interval))
    centres = np.arange(k_lo, k_hi + 1) * interval
    edges = np.concatenate([[-np.inf], centres[:-1] + interval / 2, [centres[-1] + interval / 2]])
    cdf_edges = cdf(edges)
    cdf_edges[0] = 0.0
    pmf = _bucket(cdf_edges)
    inf_mass = float(max(0.0, 1.0 - cdf_edges[-1]))
    # Exact mean of the loss over the same (truncated) range, so the shift only fixes rounding.
    mean, _ = integrate.quad(dens_loss, x_lo, x_hi, points=[0.0, 0.5, 1.0], limit=200, epsabs=1e-14, epsrel=1e-10)
    total = float(pmf.sum())
    shift = (mean - float(pmf @ centres)) / total if total > 0 else 0.0
    return DiscretePLD(lo=k_lo, pmf=pmf, shift=float(np.clip(shift, -interval / 2, interval / 2)), inf_mass=inf_mass, interval=interval)


def gaussian_plds(q: float, noise_multiplier: float, *, interval: float, tail: float = 1e-15) -> tuple[DiscretePLD, DiscretePLD]:
    """(remove, add) PLDs of one step of the Poisson-subsampled Gaussian mechanism."""
    return (_gaussian_pair(q, noise_multiplier, interval, tail, "remove"), _gaussian_pair(q, noise_multiplier, interval, tail, "add"))


def _two_point(p: np.ndarray, r: np.ndarray, interval: float) -> DiscretePLD:
    with np.errstate(divide="ignore"):
        losses = np.log(p) - np.log(r)
    finite = np.isfinite(losses) & (p > 0)
    inf_mass = float(p[~finite & (p > 0)].sum())
    k = np.round(losses[finite] / interval).astype(np.int64)
    lo = int(k.min())
    pmf = np.zeros(int(k.max()) - lo + 1)
    np.add.at(pmf, k - lo, p[finite])
    shift = float((p[finite] @ losses[finite] - p[finite] @ (k * interval)) / p[finite].sum())
    return DiscretePLD(lo=lo, pmf=pmf, shift=shift, inf_mass=inf_mass, interval=interval)


def pure_dp_plds(epsilon: float, q: float, *, interval: float) -> tuple[DiscretePLD, DiscretePLD]:
    """(remove, add) PLDs of a Poisson-subsampled epsilon-DP mechanism in its worst case (randomised response)."""
    p_hi = 1.0 / (1.0 + math.exp(-epsilon))
    P = np.array([p_hi, 1 - p_hi])
    R = np.array([1 - p_hi, p_hi])
    M = q * P + (1 - q) * R
    return _two_point(M, R, interval), _two_point(R, M, interval)


@dataclass(frozen=True)
class ComposedPLD:
    """A composed PLD: losses ``(lo + k) * interval + shift`` with masses ``pmf[k]``; ``inf_mass`` at +inf."""

    lo: int
    pmf: np.ndarray
    shift: float
    inf_mass: float
    interval: float


def _log_mgf(pld: DiscretePLD, lams: np.ndarray) -> np.ndarray:
    nz = pld.pmf > 0
    vals = (pld.lo + np.flatnonzero(nz)) * pld.interval + pld.shift
    return special.logsumexp(np.log(pld.pmf[nz])[None, :] + lams[:, None] * vals[None, :], axis=1)


def compose(parts: list[tuple[DiscretePLD, int]], *, tail: float = 1e-15) -> ComposedPLD:
    """Compose ``count`` copies of each PLD by FFT over a window holding all but ``2 * tail`` of the mass."""
    interval = parts[0][0].interval
    lams = np.concatenate([np.logspace(-3, 2, 40)])
    log_mgf_pos = sum(c * _log_mgf(p, lams) for p, c in parts)
    log_mgf_neg = sum(c * _log_mgf(p, -lams) for p, c in parts)
    hi = float(np.min((log_mgf_pos - math.log(tail)) / lams))
    lo = float(np.max((log_mgf_neg - math.log(tail)) / -lams))
    shift = float(sum(c * p.shift for p, c in parts))
    base = sum(c * p.lo for p, c in parts)
    max_idx = sum(c * (p.lo + len(p.pmf) - 1) for p, c in parts)
    a = max(base, int(math.floor((lo - shift) / interval)) - 1)
    b = min(max_idx, int(math.ceil((hi - shift) / interval)) + 1)
    n = sfft.next_fast_len(max(1, b - a + 1), real=True)
    spec = np.ones(n // 2 + 1, dtype=complex)
    for p, c in parts:
        if len(p.pmf) > n:
            # a single step wider than the window: fold it (circularly) onto the window
            folded = np.zeros(n)
            np.add.at(folded, np.arange(len(p.pmf)) % n, p.pmf)
            f = sfft.rfft(folded)
        else:
            f = sfft.rfft(p.pmf, n)
        spec *= f**c
    out = sfft.irfft(spec, n)
    out = np.roll(out, -((a - base) % n))
    out = np.clip(out, 0.0, None)
    inf_mass = 1.0 - math.prod((1.0 - p.inf_mass) ** c for p, c in parts)
    # mass outside [a, b] aliased into the window (tail bounds): charge it to +inf, pessimistically
    inf_mass = min(1.0, inf_mass + 2 * tail)
    return ComposedPLD(lo=a, pmf=out, shift=shift, inf_mass=inf_mass, interval=interval)


def delta_for_epsilon(pld: ComposedPLD, epsilon: float) -> float:
    """delta(epsilon) = E[(1 - exp(epsilon - L))_+] + P(L = inf)."""
    losses = (pld.lo + np.arange(len(pld.pmf))) * pld.interval + pld.shift
    m = losses > epsilon
    return float(min(1.0, pld.inf_mass + np.sum(pld.pmf[m] * -np.expm1(epsilon - losses[m]))))


def epsilon_for_delta(pld: ComposedPLD, delta: float) -> float:
    """Smallest epsilon >= 0 with delta(epsilon) <= ``delta`` (exact on the piecewise form of delta)."""
    if pld.inf_mass >= delta:
        return math.inf
    losses = (pld.lo + np.arange(len(pld.pmf))) * pld.interval + pld.shift
    keep = losses > 0
    losses, pmf = losses[keep], pld.pmf[keep]
    if delta_for_epsilon(pld, 0.0) <= delta:
        return 0.0
    # Suffix sums: for epsilon in [l_j, l_{j+1}), delta = inf + S1_{j+1} - exp(epsilon) * S2_{j+1}.
    s1 = np.concatenate([np.cumsum(pmf[::-1])[::-1], [0.0]])
    s2 = np.concatenate([np.cumsum((pmf * np.exp(-losses))[::-1])[::-1], [0.0]])
    d_at = pld.inf_mass + s1[1:] - np.exp(losses) * s2[1:]  # delta at each grid loss
    j = int(np.searchsorted(-d_at, -delta, side="left"))  # first grid loss with delta <= target
    if j == 0:
        a1, a2 = pld.inf_mass + s1[0], s2[0]
        lo_bound = 0.0
    else:
        a1, a2 = pld.inf_mass + s1[j], s2[j]
        lo_bound = float(losses[j - 1])
    if a2 <= 0:
        return float(losses[min(j, len(losses) - 1)])
    eps = math.log(max(a1 - delta, 1e-300) / a2)
    return float(max(lo_bound, min(eps, float(losses[min(j, len(losses) - 1)]))))
