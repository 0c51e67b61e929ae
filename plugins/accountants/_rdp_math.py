"""Rényi-DP math: sampled Gaussian, Laplace and pure-DP curves, and RDP -> (epsilon, delta).

Pure functions over numpy arrays of orders; the accountant classes keep the history and call these.

Sources:
    Mironov, Talwar, Zhang (2019), "Rényi Differential Privacy of the Sampled Gaussian Mechanism",
    arXiv:1908.10530 (integer orders: Sec. 3.3; fractional orders: the two-series form of Sec. 3.4).
    Mironov (2017), "Rényi Differential Privacy", Prop. 6 (Laplace).
    Canonne, Kamath, Steinke (2020), arXiv:2004.00010, Prop. 12 (the conversion used here), as in
    Balle et al. (2020), "Hypothesis testing interpretations and Rényi DP", Thm. 21.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = [
    "DEFAULT_ORDERS",
    "eps_from_rdp",
    "delta_from_rdp",
    "rdp_sampled_gaussian",
    "rdp_laplace",
    "rdp_subsampled_pure_dp",
]

#: Fractional orders 1.1..10.9, integers 11..63 and a few large ones (dp_accounting's and Opacus's
#: defaults, extended at the top so very small epsilons still find their optimum).
DEFAULT_ORDERS: np.ndarray = np.concatenate(
    [np.round(np.linspace(1.1, 10.9, 99), 10), np.arange(11, 64), [80.0, 128.0, 256.0, 512.0]]
).astype(float)

_LOG_HALF = math.log(0.5)
#: most grid points of the fractional-order quadrature (memory: 16 orders x points floats)
_MAX_QUADRATURE_POINTS = 2_000_000


def _log_erfc(x: np.ndarray) -> np.ndarray:
    # log(erfc(x)) = log(2) + log(Phi(-x * sqrt(2))), stable far into both tails.
    return math.log(2.0) + special.log_ndtr(-np.asarray(x, dtype=float) * math.sqrt(2.0))


def _log_a_int(q: float, sigma: float, alphas: np.ndarray) -> np.ndarray:
    """log A_alpha for integer alphas (MTZ 2019, Sec. 3.3), vectorised over alphas and k."""
    alphas = alphas.astype(np.int64)
    k = np.arange(int(alphas.max()) + 1)
    a = alphas[:, None]
    log_binom = special.gammaln(a + 1) - special.gammaln(k + 1) - special.gammaln(np.maximum(a - k, 0) + 1)
    terms = log_binom + k * math.log(q) + (a - k) * math.log1p(-q) + (k * k - k) / (2.0 * sigma**2)
    terms = np.where(k[None, :] <= a, terms, -np.inf)
    return special.logsumexp(terms, axis=1)


def _log_a_frac(q: float, sigma: float, alphas: np.ndarray, *, points_per_sigma: int = 8) -> np.ndarray:
    """log A_alpha for any real alpha > 1 by quadrature of its defining integral.

    A_alpha = E_{z ~ N(0, sigma^2)}[(1 - q + q exp((2z - 1) / (2 sigma^2)))^alpha] (MTZ 2019, Sec. 3.1).
    The log-integrand is smooth and its mass lies in z in [-12 sigma, alpha + 12 sigma]; the
    trapezoid rule on a grid of sigma / 8 is exponentially accurate for such integrands. This
    replaces MTZ's alternating two-series form, which fails to converge for small orders with
    large q / small sigma (dp_accounting then drops those orders with a warning).
    """
    alphas = np.asarray(alphas, dtype=float)
    out = np.empty(alphas.shape)
    h = sigma / points_per_sigma
    log_1mq, log_q = math.log1p(-q), math.log(q)
    # Group orders by grid length to vectorise without wasting work on small orders.
    for lo in range(0, len(alphas), 16):
        a = alphas[lo : lo + 16]
        z = np.arange(-12.0 * sigma, float(a.max()) + 12.0 * sigma + h, h)
        log_ratio = np.logaddexp(log_1mq, log_q + (2.0 * z - 1.0) / (2.0 * sigma**2))
        log_n0 = -(z**2) / (2.0 * sigma**2) - math.log(sigma * math.sqrt(2.0 * math.pi))
        terms = log_n0[None, :] + a[:, None] * log_ratio[None, :]
        # trapezoid in log space: the end points carry negligible mass by construction
        out[lo : lo + 16] = special.logsumexp(terms, axis=1) + math.log(h)
    return out


def rdp_sampled_gaussian(q: float, noise_multiplier: float, orders: np.ndarray = DEFAULT_ORDERS) -> np.ndarray:
    """RDP of one step of the Poisson-sampled Gaussian mechanism at each order.

    Args:
        q: sampling rate in [0, 1].
        noise_multiplier: noise standard deviation / L2 sensitivity (0 means no noise: infinite).
        orders: Rényi orders > 1 (integer and fractional).
    """
    orders = np.asarray(orders, dtype=float)
    if q == 0:
        return np.zeros_like(orders)
    if noise_multiplier == 0:
        return np.full_like(orders, np.inf)
    if q == 1.0:
        return orders / (2.0 * noise_multiplier**2)
    if np.isinf(noise_multiplier):
        return np.zeros_like(orders)
    out = np.empty_like(orders)
    is_int = orders == np.round(orders)
    if is_int.any():
        out[is_int] = _log_a_int(q, noise_multiplier, orders[is_int])
    frac = ~is_int
    points = (float(orders[frac].max()) + 24.0 * noise_multiplier) / (noise_multiplier / 8.0) if frac.any() else 0.0
    if frac.any() and points <= _MAX_QUADRATURE_POINTS:
        out[frac] = _log_a_frac(q, noise_multiplier, orders[frac])
    rdp = np.maximum(out, 0.0) / (orders - 1.0)
    if frac.any() and points > _MAX_QUADRATURE_POINTS:
        # Tiny noise: the quadrature grid would not fit in memory. Renyi divergence grows with the order,
        # so the next integer order's value bounds a fractional order's from above (still certified).
        up = np.ceil(orders[frac])
        rdp[frac] = np.maximum(_log_a_int(q, noise_multiplier, up), 0.0) / (up - 1.0)
    return rdp


def rdp_laplace(scale: float, orders: np.ndarray = DEFAULT_ORDERS) -> np.ndarray:
    """RDP of the Laplace mechanism with scale b / L1-sensitivity = ``scale`` (Mironov 2017, Prop. 6)."""
    orders = np.asarray(orders, dtype=float)
    if scale == 0:
        return np.full_like(orders, np.inf)
    a = orders
    t1 = np.log(a / (2 * a - 1)) + (a - 1) / scale
    t2 = np.log((a - 1) / (2 * a - 1)) - a / scale
    return np.logaddexp(t1, t2) / (a - 1)


def _rdp_two_point(p: np.ndarray, r: np.ndarray, orders: np.ndarray) -> np.ndarray:
    # D_alpha(P || R) for distributions on two points, in log space.
    a = orders[:, None]
    with np.errstate(divide="ignore"):
        terms = a * np.log(p)[None, :] + (1 - a) * np.log(r)[None, :]
    return special.logsumexp(terms, axis=1) / (orders - 1.0)


def rdp_subsampled_pure_dp(epsilon: float, q: float, orders: np.ndarray = DEFAULT_ORDERS) -> np.ndarray:
    """RDP of a Poisson-subsampled epsilon-DP mechanism, exact for its worst case.

    Every epsilon-DP mechanism is a post-processing of randomised response at epsilon (Kairouz,
    Oh, Viswanath 2015), so the pair (q*P + (1-q)*R, R) with P, R randomised response's two output
    laws dominates it; the RDP of both directions is computed exactly and the larger is returned.
    """
    orders = np.asarray(orders, dtype=float)
    if np.isinf(epsilon):
        return np.full_like(orders, np.inf) if q > 0 else np.zeros_like(orders)
    if epsilon == 0 or q == 0:
        return np.zeros_like(orders)
    p_hi = 1.0 / (1.0 + math.exp(-epsilon))
    P = np.array([p_hi, 1 - p_hi])
    R = np.array([1 - p_hi, p_hi])
    M = q * P + (1 - q) * R
    return np.maximum(_rdp_two_point(M, R, orders), _rdp_two_point(R, M, orders))


def eps_from_rdp(orders: np.ndarray, rdp: np.ndarray, delta: float) -> tuple[float, float]:
    """Smallest epsilon over orders at ``delta`` (CKS 2020 Prop. 12 / Balle et al. 2020 Thm. 21).

    Returns:
        (epsilon, optimal order).
    """
    orders = np.asarray(orders, dtype=float)
    rdp = np.asarray(rdp, dtype=float)
    if delta <= 0:
        return (0.0, float(orders[0])) if np.all(rdp == 0) else (math.inf, float(orders[0]))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        eps = rdp + np.log1p(-1.0 / orders) - np.log(delta * orders) / (orders - 1.0)
        # The conversion is unstable as the order approaches 1; skip those orders.
        eps = np.where(orders > 1.01, eps, np.inf)
        # Where delta^2 > 1 - exp(-rdp) the KL bound already gives epsilon 0.
        eps = np.where(delta**2 + np.expm1(-rdp) > 0, 0.0, eps)
    eps = np.where(np.isnan(eps), np.inf, eps)
    i = int(np.argmin(eps))
    return max(0.0, float(eps[i])), float(orders[i])


def delta_from_rdp(orders: np.ndarray, rdp: np.ndarray, epsilon: float) -> tuple[float, float]:
    """Smallest delta over orders at ``epsilon`` (same conversion, solved for delta; KL bound for small orders).

    Returns:
        (delta, optimal order).
    """
    orders = np.asarray(orders, dtype=float)
    rdp = np.asarray(rdp, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_kl = np.where(rdp == 0, -np.inf, 0.5 * np.log1p(-np.exp(-rdp)))
        bound = (orders - 1.0) * (rdp - epsilon + np.log1p(-1.0 / orders)) - np.log(orders)
        logd = np.where(orders > 1.01, np.minimum(log_kl, bound), log_kl)
    logd = np.where(np.isnan(logd), np.inf, logd)
    i = int(np.argmin(logd))
    return float(min(1.0, math.exp(min(0.0, float(logd[i]))))), float(orders[i])
