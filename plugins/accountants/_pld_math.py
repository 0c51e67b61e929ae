"""Privacy loss distributions (PLD) with certified (pessimistic) discretisation and FFT composition.

Pure functions; ``acct.pld`` keeps the history and calls them.

A step under add/remove adjacency is described by two dominating pairs (A, B): ``remove`` (A = output
with the record, B = without) and ``add`` (the reverse). Its privacy loss is L = log(dA/dB), o ~ A, and
delta(epsilon) = E_A[(1 - exp(epsilon - L))_+] + A(L = +inf); the step's delta is the larger of the two
directions (Zhu, Dong, Wang 2022, arXiv:2106.08567).

Discretisation is *pessimistic* ("connect the dots", Doroshenko, Ghazi, Kamath, Kumar, Manurangsi 2022,
arXiv:2207.04380): the loss values are put on a grid ``k * interval``, and the A-mass of the losses
inside each cell (e_k, e_k+1] is split between its two ends so that the B-mass is kept:
upper share = (A(cell) - e^{e_k} B(cell)) / (1 - e^{-interval}). For one point of loss l that is the
chord of the convex function e^eps -> (1 - e^{eps - l})_+ between the cell's ends, so the discrete
pair's delta(epsilon) is >= the true one for every epsilon, and composition keeps the order. Mass below
the grid is moved up to its first point (pessimistic), mass above it goes to +inf (added to delta).
The bias is second order in the spacing (h^2 / 8 per step), not first order as in rounding up.

The spacing is chosen from the spread of each step's loss (about 1/20 of its standard deviation), so
tiny and huge noise, q = 1, long runs and tiny sample rates all land on a grid that resolves them; the
grid never holds more than ``MAX_POINTS`` points, coarsening the spacing (still an upper bound) when
needed. Compositions are products of FFTs over a window found with Chernoff bounds on the composed
discrete loss; the bound on the mass outside the window (which the FFT wraps around) is added to delta.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import fft as sfft
from scipy import signal, special

from audit_sdk.errors import InvalidParameterError

__all__ = [
    "MAX_POINTS",
    "ComposedPLD",
    "DiscretePLD",
    "StepLoss",
    "choose_interval",
    "compose",
    "delta_for_epsilon",
    "discretise",
    "epsilon_for_delta",
    "gaussian_losses",
    "laplace_losses",
    "pure_dp_losses",
]

#: Most grid points of one step's PLD or of a composed window (about 64 MiB of float64 + FFT buffers).
MAX_POINTS = 1 << 23
#: Most grid points times distinct steps composed in one query (bounds FFT work).
MAX_WORK = 1 << 28
#: Grid points per standard deviation of a step's privacy loss.
POINTS_PER_STD = 20


@dataclass(frozen=True)
class StepLoss:
    """One direction of one step, as the discretiser needs it.

    ``cell(e)`` gives, for sorted grid values ``e`` (length n), the A- and B-masses of the loss cells
    (e_i, e_i+1] (length n - 1), the A-mass of L <= e_0 and the A-mass of L > e_last. ``lo`` and ``hi``
    bound the loss values that carry all but a negligible mass (the grid's natural range), ``std`` is
    a rough standard deviation of the loss (to choose the spacing), or ``points`` gives the loss values
    and masses of a discrete pair exactly.
    """

    lo: float
    hi: float
    std: float
    cell: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, float, float]] | None = None
    points: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (loss, A-mass, B-mass); loss may be +inf


@dataclass(frozen=True)
class DiscretePLD:
    """Loss values ``(lo + k) * interval`` with A-masses ``pmf[k]``, plus ``inf_mass`` at +inf."""

    lo: int
    pmf: np.ndarray
    inf_mass: float
    interval: float


@dataclass(frozen=True)
class ComposedPLD:
    """A composed PLD: losses ``(lo + k) * interval`` with masses ``pmf[k]``; ``inf_mass`` at +inf (incl. error bounds)."""

    lo: int
    pmf: np.ndarray
    inf_mass: float
    interval: float


# -- building blocks ------------------------------------------------------------------------------


def _norm_mass(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Standard-normal mass of [lo, hi], accurate in both tails."""
    return np.where(lo > 0, special.ndtr(-lo) - special.ndtr(-hi), special.ndtr(hi) - special.ndtr(lo))


def _lap_cdf(x: np.ndarray) -> np.ndarray:
    return np.where(x < 0, 0.5 * np.exp(np.minimum(x, 0.0)), 1.0 - 0.5 * np.exp(-np.maximum(x, 0.0)))


def _lap_mass(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Standard-Laplace (scale 1) mass of [lo, hi], accurate in both tails."""
    sf = lambda x: 0.5 * np.exp(-np.maximum(x, 0.0))  # noqa: E731 - survival for x >= 0
    return np.where(lo >= 0, sf(lo) - sf(hi), _lap_cdf(hi) - _lap_cdf(lo))


def _log_ratio_inverse(e: np.ndarray, q: float) -> np.ndarray:
    """t with log(1 - q + q e^t) = e, i.e. t = log((e^e - (1 - q)) / q); -inf where e <= log(1 - q)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if q >= 1.0:
            return np.asarray(e, dtype=float)
        log1mq = math.log1p(-q)
        # e^e - (1 - q) = e^e (1 - e^{log(1-q) - e})
        inner = -np.expm1(log1mq - e)
        t = e + np.log(np.where(inner > 0, inner, np.nan)) - math.log(q)
        return np.where(e > log1mq, t, -np.inf)


def gaussian_losses(q: float, sigma: float, *, tail: float) -> tuple[StepLoss, StepLoss]:
    """(remove, add) losses of one Poisson-subsampled Gaussian step (sensitivity 1, noise ``sigma``)."""
    s2 = sigma * sigma
    z = float(-special.ndtri(tail))
    log1mq = math.log1p(-q) if q < 1 else -math.inf

    def loss(x: float) -> float:
        t = (2 * x - 1) / (2 * s2)
        return t if q >= 1 else float(np.logaddexp(log1mq, math.log(q) + t))

    def x_of(e: np.ndarray) -> np.ndarray:  # sup{x : L(x) <= e}; L is increasing in x
        return s2 * _log_ratio_inverse(e, q) + 0.5

    def mix_mass(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return (1 - q) * _norm_mass(lo / sigma, hi / sigma) + q * _norm_mass((lo - 1) / sigma, (hi - 1) / sigma)

    def n0_mass(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return _norm_mass(lo / sigma, hi / sigma)

    def remove_cell(e: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        x = x_of(e)
        a, b = mix_mass(x[:-1], x[1:]), n0_mass(x[:-1], x[1:])
        return a, b, float(mix_mass(np.array(-np.inf), x[:1])[0]), float(mix_mass(x[-1:], np.array(np.inf))[0])

    def add_cell(e: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        x = x_of(-e)  # L_add = -L(x) in (e_i, e_i+1]  <=>  x in [x(-e_i+1), x(-e_i))
        a, b = n0_mass(x[1:], x[:-1]), mix_mass(x[1:], x[:-1])
        return a, b, float(n0_mass(x[:1], np.array(np.inf))[0]), float(n0_mass(np.array(-np.inf), x[-1:])[0])

    r_lo, r_hi = loss(-z * sigma), loss(1 + z * sigma)
    a_lo, a_hi = -loss(z * sigma), (-log1mq if q < 1 else -loss(-z * sigma))
    return (
        StepLoss(r_lo, r_hi, _spread(remove_cell, r_lo, r_hi), cell=remove_cell),
        StepLoss(a_lo, a_hi, _spread(add_cell, a_lo, a_hi), cell=add_cell),
    )


def laplace_losses(q: float, scale: float) -> tuple[StepLoss, StepLoss]:
    """(remove, add) losses of one Poisson-subsampled Laplace step (L1 sensitivity 1, scale ``scale``).

    The loss log(1 - q + q e^{(|x| - |x - 1|) / b}) is increasing in x on [0, 1] and flat outside,
    so it has atoms at both ends; the discretisation is exact about them.
    """
    b = scale
    log1mq = math.log1p(-q) if q < 1 else -math.inf
    l_min = float(np.logaddexp(log1mq, math.log(q) - 1 / b)) if q < 1 else -1 / b
    l_max = float(np.logaddexp(log1mq, math.log(q) + 1 / b)) if q < 1 else 1 / b

    def x_sup(e: np.ndarray) -> np.ndarray:  # sup{x : L(x) <= e}
        x = np.clip(b / 2 * _log_ratio_inverse(e, q) + 0.5, 0.0, 1.0)
        return np.where(e < l_min, -np.inf, np.where(e >= l_max, np.inf, x))

    def x_inf(e: np.ndarray) -> np.ndarray:  # inf{x : L(x) >= e}
        x = np.clip(b / 2 * _log_ratio_inverse(e, q) + 0.5, 0.0, 1.0)
        return np.where(e <= l_min, -np.inf, np.where(e > l_max, np.inf, x))

    def mix_mass(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return (1 - q) * _lap_mass(lo / b, hi / b) + q * _lap_mass((lo - 1) / b, (hi - 1) / b)

    def l0_mass(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return _lap_mass(lo / b, hi / b)

    def remove_cell(e: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        x = x_sup(e)
        return (
            mix_mass(x[:-1], x[1:]),
            l0_mass(x[:-1], x[1:]),
            float(mix_mass(np.array(-np.inf), x[:1])[0]),
            float(mix_mass(x[-1:], np.array(np.inf))[0]),
        )

    def add_cell(e: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
        x = x_inf(-e)  # L_add in (e_i, e_i+1]  <=>  L in [-e_i+1, -e_i)  <=>  x in [x_inf(-e_i+1), x_inf(-e_i))
        return (
            l0_mass(x[1:], x[:-1]),
            mix_mass(x[1:], x[:-1]),
            float(l0_mass(x[:1], np.array(np.inf))[0]),
            float(l0_mass(np.array(-np.inf), x[-1:])[0]),
        )

    return (
        StepLoss(l_min, l_max, _spread(remove_cell, l_min, l_max), cell=remove_cell),
        StepLoss(-l_max, -l_min, _spread(add_cell, -l_max, -l_min), cell=add_cell),
    )


def _two_point_loss(a: np.ndarray, b: np.ndarray) -> StepLoss:
    with np.errstate(divide="ignore"):
        loss = np.where(b > 0, np.log(np.where(a > 0, a, 1.0)) - np.log(np.where(b > 0, b, 1.0)), np.inf)
    keep = a > 0
    loss, a, b = loss[keep], a[keep], b[keep]
    fin = np.isfinite(loss)
    lo, hi = (float(loss[fin].min()), float(loss[fin].max())) if fin.any() else (0.0, 0.0)
    if fin.any():
        m = float(a[fin] @ loss[fin]) / float(a[fin].sum())
        std = math.sqrt(max(float(a[fin] @ (loss[fin] - m) ** 2) / float(a[fin].sum()), 0.0))
    else:
        std = 0.0
    return StepLoss(lo, hi, std, points=(loss, a, b))


def pure_dp_losses(epsilon: float, q: float) -> tuple[StepLoss, StepLoss]:
    """(remove, add) losses of a Poisson-subsampled epsilon-DP step in its worst case (randomised response).

    Every epsilon-DP mechanism is a post-processing of randomised response at epsilon (Kairouz, Oh,
    Viswanath 2015), so this pair dominates it.
    """
    p_hi = 1.0 / (1.0 + math.exp(-epsilon))
    P = np.array([p_hi, 1 - p_hi])
    R = np.array([1 - p_hi, p_hi])
    M = q * P + (1 - q) * R
    return _two_point_loss(M, R), _two_point_loss(R, M)


def _spread(cell: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, float, float]], lo: float, hi: float) -> float:
    """Rough standard deviation of the loss (A-masses on a 4096-cell grid over [lo, hi]); only steers the spacing."""
    if not hi > lo:
        return 0.0
    e = np.linspace(lo, hi, 4097)
    a, _b, below, above = cell(e)
    mids = np.concatenate([[lo], (e[:-1] + e[1:]) / 2, [hi]])
    w = np.concatenate([[below], np.clip(a, 0, None), [above]])
    tot = float(w.sum())
    if not tot > 0:
        return 0.0
    m = float(w @ mids) / tot
    return math.sqrt(max(float(w @ (mids - m) ** 2) / tot, 0.0))


# -- grid -----------------------------------------------------------------------------------------


def choose_interval(steps: list[tuple[StepLoss, int]], *, tail: float, interval: float | None = None) -> float:
    """Grid spacing for composing ``steps`` (each (loss, count)).

    ``interval`` None: 1/``POINTS_PER_STD`` of the smallest step's loss spread, coarsened so that no
    single step's grid and no composed window exceeds ``MAX_POINTS``. A given ``interval`` is used
    as is and refused when it would exceed the bounds.

    Raises:
        InvalidParameterError: a given interval too fine for the memory bound.
    """
    widths = [s.hi - s.lo for s, _ in steps if math.isfinite(s.hi - s.lo)]
    # the composed window: mean +- sqrt(2 log(1/tail)) * std (with room to spare), plus one step's range
    var = sum(c * s.std**2 for s, c in steps)
    window = 3 * math.sqrt(2 * math.log(1 / tail)) * math.sqrt(var) + (max(widths) if widths else 0.0)
    need = max([window / (MAX_POINTS / 4)] + [w / (MAX_POINTS / 2) for w in widths] + [1e-12])
    if interval is not None:
        if interval < need:
            raise InvalidParameterError(
                f"acct.pld: interval {interval:g} needs more than {MAX_POINTS} grid points for this history "
                f"(the loss spans {window:.3g}); use interval >= {need:.3g} or leave it unset (chosen automatically)."
            )
        return float(interval)
    # atoms (randomised response) are split between grid points: a finer grid keeps that loss small
    per_step = [s.std / (POINTS_PER_STD * (10 if s.points is not None else 1)) for s, _ in steps if s.std > 0]
    h = min(per_step) if per_step else 1e-3
    return float(max(h, need))


# -- discretisation -------------------------------------------------------------------------------


def discretise(step: StepLoss, interval: float) -> DiscretePLD:
    """Pessimistic connect-the-dots PLD of one step direction on the grid ``k * interval``."""
    h = interval
    if step.points is not None:
        loss, a, b = step.points
        fin = np.isfinite(loss)
        inf_mass = float(a[~fin].sum())
        loss, a, b = loss[fin], a[fin], b[fin]
        if loss.size == 0:
            return DiscretePLD(lo=0, pmf=np.zeros(1), inf_mass=min(1.0, inf_mass), interval=h)
        k = np.floor(loss / h).astype(np.int64)
        lo = int(k.min())
        e_k = k * h
        with np.errstate(over="ignore"):
            up = np.clip((a - np.exp(e_k) * b) / -math.expm1(-h), 0.0, a)
        on_grid = np.isclose(loss, e_k, rtol=0, atol=1e-12 * max(1.0, h))
        up = np.where(on_grid, 0.0, up)
        pmf = np.zeros(int(k.max()) - lo + 2)
        np.add.at(pmf, k - lo, a - up)
        np.add.at(pmf, k - lo + 1, up)
        return DiscretePLD(lo=lo, pmf=_trim(pmf), inf_mass=min(1.0, inf_mass), interval=h)
    assert step.cell is not None
    k_lo = int(math.floor(step.lo / h))
    k_hi = max(k_lo + 1, int(math.ceil(step.hi / h)))
    if k_hi - k_lo + 1 > MAX_POINTS:
        raise InvalidParameterError(
            f"acct.pld: one step's loss spans [{step.lo:.3g}, {step.hi:.3g}], more than {MAX_POINTS} points at interval {h:g}."
        )
    e = np.arange(k_lo, k_hi + 1) * h
    a, b, below, above = step.cell(e)
    a = np.clip(a, 0.0, None)
    b = np.clip(b, 0.0, None)
    # upper share of each cell: (A - e^{e_i} B) / (1 - e^{-h}), in log space for large losses
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        eb = np.exp(np.log(np.where(b > 0, b, 1.0)) + e[:-1])
        eb = np.where(b > 0, eb, 0.0)
        up = np.clip((a - eb) / -math.expm1(-h), 0.0, a)
        # e^{e_i} B <= A always holds; where rounding breaks it (or overflows), send the cell up (pessimistic)
        broken = ~np.isfinite(eb) | ~np.isfinite(up) | (eb > a * (1 + 1e-9))
    up = np.where(broken, a, up)
    pmf = np.zeros(len(e))
    pmf[:-1] += a - up
    pmf[1:] += up
    pmf[0] += max(0.0, below)
    return DiscretePLD(lo=k_lo, pmf=pmf, inf_mass=float(min(1.0, max(0.0, above))), interval=h)


def _trim(pmf: np.ndarray) -> np.ndarray:
    return pmf if pmf.size and pmf[-1] > 0 else (pmf[:-1] if pmf.size > 1 else pmf)


# -- composition ----------------------------------------------------------------------------------


def _log_mgf(pld: DiscretePLD, lams: np.ndarray) -> np.ndarray:
    """log E[e^{lam L}] of the finite part of ``pld`` for each lam (vectorised, overflow-safe)."""
    nz = pld.pmf > 0
    if not nz.any():
        return np.full(lams.shape, -np.inf)
    vals = (pld.lo + np.flatnonzero(nz)) * pld.interval
    logp = np.log(pld.pmf[nz])
    expo = lams[:, None] * vals[None, :]
    top = np.max(expo + logp[None, :], axis=1)
    with np.errstate(under="ignore"):
        return top + np.log(np.exp(expo + logp[None, :] - top[:, None]).sum(axis=1))


def _tail_bounds(pos: np.ndarray, neg: np.ndarray, lams: np.ndarray, a: float, b: float) -> tuple[float, float]:
    """Chernoff bounds on P(S < a) and P(S > b) from the composed log-MGFs at +lams (``pos``) and -lams (``neg``)."""
    with np.errstate(over="ignore", invalid="ignore"):
        upper = float(np.nanmin(pos - lams * b))
        lower = float(np.nanmin(neg + lams * a))
    return min(1.0, math.exp(min(0.0, lower))), min(1.0, math.exp(min(0.0, upper)))


def compose(parts: list[tuple[DiscretePLD, int]], *, tail: float = 1e-15) -> ComposedPLD:
    """Compose ``count`` copies of each PLD by FFT over a window holding all but about ``2 * tail`` of the mass.

    The Chernoff bound on the mass outside the window (which the circular FFT folds back in) is
    added to ``inf_mass``, so the window never hides privacy loss.

    Raises:
        InvalidParameterError: the window would need more than ``MAX_POINTS`` points or the work
            exceeds ``MAX_WORK`` (too many distinct steps on too fine a grid).
    """
    h = parts[0][0].interval
    means, var = 0.0, 0.0
    for p, c in parts:
        w = float(p.pmf.sum())
        vals = (p.lo + np.arange(len(p.pmf))) * h
        m = float(p.pmf @ vals) / w if w > 0 else 0.0
        means += c * m
        var += c * (float(p.pmf @ (vals - m) ** 2) / w if w > 0 else 0.0)
    std = math.sqrt(var) + h
    # lambdas on the scale of the composed spread and of one step's range (heavy tails need small ones)
    width = max(len(p.pmf) for p, _ in parts) * h
    lams = np.unique(np.concatenate([np.geomspace(0.3, 300.0, 25) / std, np.geomspace(0.3, 100.0, 8) / width]))
    pos = np.sum([c * _log_mgf(p, lams) for p, c in parts], axis=0)
    neg = np.sum([c * _log_mgf(p, -lams) for p, c in parts], axis=0)
    base = sum(c * p.lo for p, c in parts)
    max_idx = sum(c * (p.lo + len(p.pmf) - 1) for p, c in parts)
    # widen each side of the window until its tail bound is below `tail`
    z = math.sqrt(2 * math.log(1 / tail)) * std
    up = down = z
    for _ in range(80):
        if _tail_bounds(pos, neg, lams, means - down, means + up)[1] <= tail:
            break
        up *= 1.25
    for _ in range(80):
        if _tail_bounds(pos, neg, lams, means - down, means + up)[0] <= tail:
            break
        down *= 1.25
    a_loss, b_loss = means - down, means + up
    a = max(base, int(math.floor(a_loss / h)) - 1)
    b = min(max_idx, int(math.ceil(b_loss / h)) + 1)
    if b - a + 1 > MAX_POINTS:
        raise InvalidParameterError(
            f"acct.pld: the composed loss needs {b - a + 1} grid points (> {MAX_POINTS}); use a coarser interval or acct.rdp."
        )
    lo_b, hi_b = _tail_bounds(pos, neg, lams, a * h - 1e-12 * h, b * h + 1e-12 * h)
    lo_b = 0.0 if a == base else lo_b
    hi_b = 0.0 if b == max_idx else hi_b
    n = sfft.next_fast_len(max(2, b - a + 1), real=True)
    if n * len(parts) > MAX_WORK:
        raise InvalidParameterError(
            f"acct.pld: {len(parts)} distinct steps on a {n}-point grid is too much work; group noise multipliers "
            "(sigma_resolution=1e-3) or use acct.rdp."
        )
    spec = np.ones(n // 2 + 1, dtype=complex)
    for p, c in parts:
        if len(p.pmf) > n:  # a single step wider than the window: fold it circularly onto the window
            folded = np.zeros(n)
            np.add.at(folded, np.arange(len(p.pmf)) % n, p.pmf)
            f = sfft.rfft(folded)
        else:
            f = sfft.rfft(p.pmf, n)
        spec *= f**c
    out = sfft.irfft(spec, n)
    out = np.roll(out, -((a - base) % n))[: b - a + 1]
    out = np.clip(out, 0.0, None)
    inf_mass = -math.expm1(sum(c * math.log1p(-min(p.inf_mass, 1.0 - 1e-300)) for p, c in parts))
    inf_mass = min(1.0, inf_mass + lo_b + hi_b)
    return ComposedPLD(lo=a, pmf=out, inf_mass=inf_mass, interval=h)


# -- queries --------------------------------------------------------------------------------------


def delta_for_epsilon(pld: ComposedPLD, epsilon: float) -> float:
    """delta(epsilon) = E[(1 - exp(epsilon - L))_+] + P(L = inf)."""
    losses = (pld.lo + np.arange(len(pld.pmf))) * pld.interval
    m = losses > epsilon
    return float(min(1.0, pld.inf_mass + np.sum(pld.pmf[m] * -np.expm1(epsilon - losses[m]))))


def epsilon_for_delta(pld: ComposedPLD, delta: float) -> float:
    """Smallest epsilon >= 0 with delta(epsilon) <= ``delta`` (exact on the piecewise form of delta)."""
    if pld.inf_mass >= delta:
        return math.inf
    if delta_for_epsilon(pld, 0.0) <= delta:
        return 0.0
    h = pld.interval
    losses = (pld.lo + np.arange(len(pld.pmf))) * h
    keep = losses > 0
    losses, pmf = losses[keep], pld.pmf[keep]
    # delta at eps = l_i: S1_{i+1} - G_i, with S1 suffix sums and G_i = sum_{j>i} p_j e^{-(j-i) h}
    s1 = np.concatenate([np.cumsum(pmf[::-1])[::-1], [0.0]])
    r = math.exp(-h)
    # H_i = sum_{j>=i} p_j r^{j-i}: a first-order recursive filter run backwards (stable, r < 1)
    hh = signal.lfilter([1.0], [1.0, -r], pmf[::-1])[::-1]
    g = np.concatenate([hh[1:], [0.0]]) * r
    d_at = pld.inf_mass + s1[1:] - g
    j = int(np.searchsorted(-d_at, -delta, side="left"))  # first grid loss with delta <= target
    j = min(j, len(losses) - 1)
    # on (l_{j-1}, l_j]: delta(eps) = inf + S1_j - e^{eps - l_j} H_j
    a1 = pld.inf_mass + s1[j] - delta
    lo_bound = float(losses[j - 1]) if j > 0 else 0.0
    if hh[j] <= 0 or a1 <= 0:
        return float(losses[j])
    eps = float(losses[j]) + math.log(a1 / hh[j])
    return float(max(lo_bound, min(eps, float(losses[j]))))
