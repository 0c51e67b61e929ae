"""Every attack is scored here, the same way.

Membership: ROC, AUC, attacker advantage (max TPR - FPR), balanced accuracy, precision / recall /
accuracy at a threshold, TPR at a fixed FPR (the highest TPR whose FPR does not exceed the target,
no interpolation, as in Carlini et al. 2022), and an empirical epsilon lower bound with
Clopper-Pearson confidence intervals (Jagielski et al. 2020; Nasr et al. 2021).

DP auditing with one training run (Steinke, Nasr and Jagielski 2023): canaries included with
probability 1/2 and guessed by the auditor give an epsilon lower bound from one run
(``one_run_p_value``, ``one_run_epsilon_lower_bound``, ``one_run_audit``).

Reconstruction: SSIM (Wang et al. 2004, Gaussian window), PSNR and relative L2.

Pure numpy (scipy imported lazily for the beta quantile and the Gaussian filter).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InvalidDataError

__all__ = [
    "DEFAULT_FPRS",
    "auc",
    "epsilon_lower_bound",
    "membership_metrics",
    "one_run_audit",
    "one_run_epsilon_lower_bound",
    "one_run_p_value",
    "precision_recall_accuracy",
    "psnr",
    "reconstruction_metrics",
    "relative_l2",
    "roc_curve",
    "ssim",
    "tpr_at_fpr",
]

#: FPR levels reported by default (0.1% and 1%).
DEFAULT_FPRS: tuple[float, ...] = (0.001, 0.01)


def _check_scores(scores: Any, truth: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(truth).ravel().astype(bool)
    if s.shape != t.shape:
        raise InvalidDataError(f"scores {s.shape} and truth {t.shape} differ in length; pass one score per sample.")
    if not np.isfinite(s).all():
        raise InvalidDataError("attack scores contain NaN or inf; the attack or the model outputs are broken.")
    if t.all() or (~t).all():
        raise InvalidDataError("truth must contain both members and non-members to score an attack.")
    return s, t


def roc_curve(scores: Any, truth: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points (higher score = member), from (0, 0) to (1, 1).

    Returns:
        fpr, tpr and the threshold at each point (predict member when score >= threshold).
    """
    s, t = _check_scores(scores, truth)
    order = np.argsort(-s, kind="mergesort")
    s, t = s[order], t[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(t)[last_of_run]
    fps = (last_of_run + 1) - tps
    tpr = np.r_[0.0, tps / t.sum()]
    fpr = np.r_[0.0, fps / (~t).sum()]
    thr = np.r_[np.inf, s[last_of_run]]
    return fpr, tpr, thr


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC curve (trapezoid; equals the Mann-Whitney statistic with ties counted 1/2)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def tpr_at_fpr(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Highest TPR among ROC points whose FPR is at most ``target``."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def _cp_upper(k: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson upper bound on a binomial rate with k successes in n trials."""
    from scipy.stats import beta

    k = np.asarray(k, dtype=np.float64)
    out = np.ones_like(k)
    lt = k < n
    out[lt] = beta.ppf(1.0 - alpha, k[lt] + 1.0, n - k[lt])
    return out


#: Above this many ROC points the epsilon bound is taken over a log-spaced subset of thresholds.
_MAX_EPS_POINTS = 2000


def epsilon_lower_bound(fpr: np.ndarray, tpr: np.ndarray, n_pos: int, n_neg: int, *, delta: float = 0.0, alpha: float = 0.05) -> float:
    """Empirical epsilon lower bound implied by the attack's ROC, with confidence ``1 - alpha``.

    For (epsilon, delta)-DP every test has FPR + e^eps FNR >= 1 - delta and FNR + e^eps FPR >= 1 - delta.
    FPR and FNR are replaced by their Clopper-Pearson upper bounds. The best of all ROC points is
    reported, so the confidence level is Bonferroni-corrected over the 2 x (number of points)
    bounds taken: the claim holds with probability at least 1 - alpha overall, not per threshold.
    Returns 0 when nothing can be claimed.
    """
    fpr = np.asarray(fpr, dtype=np.float64)
    fnr = 1.0 - np.asarray(tpr, dtype=np.float64)
    if len(fpr) > _MAX_EPS_POINTS:
        # Large audits: test a fixed set of thresholds, log-spaced in FPR and in FNR (where the
        # bound is decided). A subset of thresholds keeps the bound valid, and the Bonferroni
        # correction below then counts only the points actually tested.
        levels = np.r_[0.0, np.logspace(-7, 0, _MAX_EPS_POINTS // 2)]
        i_fp = np.searchsorted(fpr, levels, side="right") - 1  # fpr ascends along the ROC
        i_fn = np.searchsorted(-fnr, -levels, side="left")  # fnr descends
        keep = np.unique(np.clip(np.r_[i_fp, i_fn, 0, len(fpr) - 1], 0, len(fpr) - 1))
        fpr, fnr = fpr[keep], fnr[keep]
    a = alpha / (2 * max(1, len(fpr)))
    fp_ub = _cp_upper(np.round(fpr * n_neg), n_neg, a)
    fn_ub = _cp_upper(np.round(fnr * n_pos), n_pos, a)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.log(np.clip(1.0 - delta - fn_ub, 0, None) / fp_ub)
        e2 = np.log(np.clip(1.0 - delta - fp_ub, 0, None) / fn_ub)
    best = np.nanmax(np.r_[e1, e2, 0.0][np.isfinite(np.r_[e1, e2, 0.0])])
    return float(max(best, 0.0))


# --------------------------------------------------------------------------- one-run DP audit
def one_run_p_value(m: int, r: int, v: int, epsilon: float, delta: float = 0.0) -> float:
    """P-value of ``v`` correct guesses out of ``r`` under the hypothesis "the run is (epsilon, delta)-DP".

    Steinke, Nasr and Jagielski 2023 ("Privacy auditing with one (1) training run", Theorem 5.2
    and Algorithm 2): ``m`` canaries are each included with probability 1/2 independently; the
    auditor guesses in / out for ``r`` of them and abstains on the rest. Under (epsilon, 0)-DP the
    number of correct guesses is dominated by Binomial(r, e^eps / (1 + e^eps)); delta adds
    ``2 m delta`` times the largest average of the binomial's mass just below ``v``.

    Raises:
        InvalidParameterError: counts out of order (need 0 <= v <= r <= m) or a bad epsilon / delta.
    """
    from scipy.special import betainc, gammaln

    from .errors import InvalidParameterError

    if not (0 <= v <= r <= m) or int(v) != v or int(r) != r or int(m) != m:
        raise InvalidParameterError(f"need integers 0 <= v <= r <= m (correct <= guesses <= canaries); got m={m}, r={r}, v={v}.")
    if not (epsilon >= 0 and math.isfinite(epsilon)) or not (0 <= delta <= 1):
        raise InvalidParameterError(f"need epsilon >= 0 (finite) and delta in [0, 1]; got epsilon={epsilon!r}, delta={delta!r}.")
    q = 1.0 / (1.0 + math.exp(-epsilon))  # accuracy of epsilon-DP randomised response
    # P[Binomial(r, q) >= v] = I_q(v, r - v + 1) (scipy.special directly: the p-value is evaluated
    # hundreds of times per audit, and scipy.stats' distribution layer costs more than the maths)
    beta = float(betainc(v, r - v + 1, q)) if v > 0 else 1.0
    if delta == 0 or v == 0:
        return min(1.0, beta)
    k = v - np.arange(1, v + 1)  # v-1, v-2, ..., 0
    log_q = -math.log1p(math.exp(-epsilon))  # log q and log(1 - q), stable for large epsilon
    log_1mq = -(epsilon + math.log1p(math.exp(-epsilon)))
    log_pmf = gammaln(r + 1) - gammaln(k + 1) - gammaln(r - k + 1) + k * log_q + (r - k) * log_1mq
    # alpha = max_i P[v > Binomial(r, q) >= v - i] / i (the paper's loop, vectorised)
    alpha = float(np.max(np.cumsum(np.exp(log_pmf)) / np.arange(1, v + 1)))
    return min(1.0, beta + alpha * delta * 2 * m)


def one_run_epsilon_lower_bound(m: int, r: int, v: int, *, delta: float = 0.0, alpha: float = 0.05) -> float:
    """Largest epsilon rejected at level ``alpha`` by ``v`` correct of ``r`` guesses on ``m`` canaries.

    The run is not (epsilon, delta)-DP for any epsilon below the returned value, with confidence
    ``1 - alpha`` (Steinke et al. 2023, Algorithm 2; Brent's method to 1e-10 instead of 30 halvings).
    Perfect guessing without delta has the closed form ``log(a / (1 - a))`` with
    ``a = alpha ** (1 / r)``. Returns 0 when nothing can be rejected.
    """
    from .errors import InvalidParameterError

    if not (0 < alpha < 1):
        raise InvalidParameterError(f"alpha (1 - confidence) must lie in (0, 1); got {alpha!r}.")
    if one_run_p_value(m, r, v, 0.0, delta) >= alpha:
        return 0.0
    from scipy.optimize import brentq
    from scipy.stats import beta

    # Without delta the p-value is P[Binomial(r, q) >= v] = I_q(v, r - v + 1), so the bound is the
    # alpha-quantile of Beta(v, r - v + 1) in logit form. Delta only adds to the p-value, so that
    # value also brackets the root with delta.
    q0 = float(beta.ppf(alpha, v, r - v + 1)) if v > 0 else 0.0
    hi = math.log(q0 / (1.0 - q0)) if 0.5 < q0 < 1.0 else (0.0 if q0 <= 0.5 else 1e3)
    if hi <= 0.0:
        return 0.0
    if one_run_p_value(m, r, v, hi, delta) < alpha:  # delta = 0 (or numerically negligible): the closed form is the bound
        return hi
    # the p-value is continuous and non-increasing in epsilon: its crossing of alpha is the bound
    root = float(brentq(lambda e: one_run_p_value(m, r, v, e, delta) - alpha, 0.0, hi, xtol=1e-10, rtol=1e-10))
    eps = root
    while eps > 0.0 and one_run_p_value(m, r, v, eps, delta) >= alpha:  # report a value that is rejected, never above
        eps -= 1e-9 * max(1.0, eps)
    return max(eps, 0.0)


#: Fractions of the canaries guessed (half "in" from the top scores, half "out" from the bottom)
#: that ``one_run_audit`` tries; the confidence is Bonferroni-corrected over the ones tried.
ONE_RUN_GUESS_FRACTIONS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def one_run_audit(
    scores: Any,
    truth: Any,
    *,
    delta: float = 0.0,
    alpha: float = 0.05,
    guesses: int | None = None,
    guess_fractions: tuple[float, ...] = ONE_RUN_GUESS_FRACTIONS,
    alternatives: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Turn canary scores (higher = included) into a one-run epsilon lower bound.

    The auditor guesses "in" for the ``r / 2`` highest scores, "out" for the ``r / 2`` lowest and
    abstains on the rest. With ``guesses`` fixed in advance one bound is taken at confidence
    ``1 - alpha``. Otherwise every ``r`` in ``guess_fractions`` of the canaries is tried and the
    best bound is reported at confidence ``1 - alpha`` overall: each is tested at
    ``alpha / (number tried)`` (Bonferroni), because picking the best r after seeing the scores is
    itself a choice the bound must pay for. ``alternatives`` are further scores of the same
    canaries (other statistics, fixed before the run); they are tried too and the correction
    counts every (statistic, r) pair.

    Returns:
        ``epsilon_lower_bound``, ``confidence``, ``guesses`` (r), ``correct`` (v), ``canaries``
        (m), ``included``, ``statistic`` (``score`` or an alternative's name), ``tried`` (r values),
        ``per_guesses`` (bound at each r, per statistic).
    """
    s, t = _check_scores(scores, truth)
    stats = {"score": s, **{k: _check_scores(v, t)[0] for k, v in (alternatives or {}).items()}}
    m = len(s)
    if guesses is not None:
        if not (1 <= guesses <= m):
            from .errors import InvalidParameterError

            raise InvalidParameterError(f"guesses must lie in [1, {m}] (the number of canaries); got {guesses}.")
        rs = [int(guesses)]
    else:
        rs = sorted({max(1, min(m, int(round(f * m)))) for f in guess_fractions})
    a = alpha / (len(rs) * len(stats))
    per: dict[str, dict[str, float]] = {}
    best: tuple[float, int, int, str] | None = None
    for name, st in stats.items():
        t_sorted = t[np.argsort(-st, kind="mergesort")]
        # correct "in" guesses among the top k and correct "out" guesses among the bottom k
        top_in = np.r_[0, np.cumsum(t_sorted)]
        bottom_out = np.r_[0, np.cumsum(~t_sorted[::-1])]
        per[name] = {}
        for r in rs:
            k_in = (r + 1) // 2
            v = int(top_in[k_in] + bottom_out[r - k_in])
            eps = one_run_epsilon_lower_bound(m, r, v, delta=delta, alpha=a)
            per[name][str(r)] = eps
            if best is None or eps > best[0] or (best[0] == 0.0 and eps == 0.0 and name == "score" and r == rs[-1]):
                best = (eps, r, v, name)
    assert best is not None
    return {
        "epsilon_lower_bound": best[0],
        "confidence": 1.0 - alpha,
        "delta": delta,
        "guesses": best[1],
        "correct": best[2],
        "statistic": best[3],
        "canaries": m,
        "included": int(t.sum()),
        "tried": rs,
        "per_guesses": per if len(per) > 1 else per["score"],
    }


def precision_recall_accuracy(scores: Any, truth: Any, threshold: float) -> dict[str, float]:
    """Precision, recall and accuracy of "member iff score >= threshold".

    Precision is -1 when nothing is predicted a member (MindArmour's convention, so the value is
    never silently 0 or NaN).
    """
    s, t = _check_scores(scores, truth)
    pred = s >= threshold
    tp = int((pred & t).sum())
    npred = int(pred.sum())
    return {
        "precision": tp / npred if npred else -1.0,
        "recall": tp / int(t.sum()),
        "accuracy": float((pred == t).mean()),
    }


def membership_metrics(
    scores: Any,
    truth: Any,
    *,
    fprs: tuple[float, ...] = DEFAULT_FPRS,
    delta: float = 0.0,
    bound: str = "roc",
    alpha: float = 0.05,
    guesses: int | None = None,
    alternatives: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """All membership metrics of one attack, as reported in report.json.

    ``bound`` says how ``epsilon_lower_bound`` is obtained: ``roc`` (Clopper-Pearson over the ROC,
    for independent membership trials such as separate training runs) or ``one-run`` (canaries
    included with probability 1/2 in one run, Steinke et al. 2023; its details go under
    ``one_run``). Both hold with confidence ``1 - alpha``.
    """
    s, t = _check_scores(scores, truth)
    fpr, tpr, thr = roc_curve(s, t)
    gap = tpr - fpr
    best = int(np.argmax(gap))
    n_pos, n_neg = int(t.sum()), int((~t).sum())
    bal = 0.5 * (tpr + 1.0 - fpr)
    pra = (
        precision_recall_accuracy(s, t, thr[best])
        if np.isfinite(thr[best])
        else {"precision": -1.0, "recall": 0.0, "accuracy": float((~t).mean())}
    )
    out: dict[str, Any] = {
        "auc": auc(fpr, tpr),
        "advantage": float(gap[best]),
        "balanced_accuracy": float(bal.max()),
        "tpr_at_fpr": {f"{f:g}": tpr_at_fpr(fpr, tpr, f) for f in fprs},
        "epsilon_lower_bound": epsilon_lower_bound(fpr, tpr, n_pos, n_neg, delta=delta, alpha=alpha) if bound == "roc" else None,
        "threshold": float(thr[best]),
        **pra,
        "n_members": n_pos,
        "n_non_members": n_neg,
    }
    if bound == "one-run":
        one = one_run_audit(s, t, delta=delta, alpha=alpha, guesses=guesses, alternatives=alternatives)
        out["epsilon_lower_bound"] = one["epsilon_lower_bound"]
        out["one_run"] = one
    elif bound != "roc":
        from .errors import InvalidParameterError

        raise InvalidParameterError(f"bound must be 'roc' or 'one-run'; got {bound!r}.")
    return out


# --------------------------------------------------------------------------- images
def _as_nchw(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise InvalidDataError(f"{name} must be images (N, C, H, W), (N, H, W) or (H, W); got shape {a.shape}.")
    return a


def _pair(original: Any, reconstructed: Any) -> tuple[np.ndarray, np.ndarray]:
    o, r = _as_nchw(original, "original"), _as_nchw(reconstructed, "reconstruction")
    if o.shape != r.shape:
        raise InvalidDataError(f"originals {o.shape} and reconstructions {r.shape} differ in shape.")
    return o, r


def ssim(original: Any, reconstructed: Any, *, data_range: float | None = None, sigma: float = 1.5) -> np.ndarray:
    """Per-image SSIM (Wang et al. 2004) with a Gaussian window, averaged over channels and pixels.

    Works for any H x W and any number of channels. ``data_range`` defaults to the originals' range.
    """
    from scipy.ndimage import gaussian_filter

    o, r = _pair(original, reconstructed)
    L = float(data_range) if data_range is not None else float(o.max() - o.min()) or 1.0
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    sig = (0, 0, sigma, sigma)

    def f(a: np.ndarray) -> np.ndarray:
        return gaussian_filter(a, sigma=sig, mode="reflect", truncate=3.5)

    mu_o, mu_r = f(o), f(r)
    var_o = f(o * o) - mu_o**2
    var_r = f(r * r) - mu_r**2
    cov = f(o * r) - mu_o * mu_r
    s = ((2 * mu_o * mu_r + c1) * (2 * cov + c2)) / ((mu_o**2 + mu_r**2 + c1) * (var_o + var_r + c2))
    return np.asarray(s.reshape(len(s), -1).mean(axis=1))


def psnr(original: Any, reconstructed: Any, *, data_range: float | None = None) -> np.ndarray:
    """Per-image peak signal-to-noise ratio in dB (inf for a perfect reconstruction)."""
    o, r = _pair(original, reconstructed)
    L = float(data_range) if data_range is not None else float(o.max() - o.min()) or 1.0
    mse = ((o - r) ** 2).reshape(len(o), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        return np.asarray(10.0 * np.log10(L * L / mse))


def relative_l2(original: Any, reconstructed: Any) -> np.ndarray:
    """Per-image ||x - x_hat||_2 / ||x||_2 (MindArmour's inversion metric)."""
    o, r = _pair(original, reconstructed)
    num = np.linalg.norm((o - r).reshape(len(o), -1), axis=1)
    den = np.linalg.norm(o.reshape(len(o), -1), axis=1)
    return np.asarray(num / np.maximum(den, 1e-12))


def reconstruction_metrics(original: Any, reconstructed: Any, *, data_range: float | None = None) -> dict[str, float]:
    """Mean SSIM, PSNR (finite values) and relative L2 over a batch."""
    s = ssim(original, reconstructed, data_range=data_range)
    p = psnr(original, reconstructed, data_range=data_range)
    finite = p[np.isfinite(p)]
    return {
        "ssim": float(s.mean()),
        "psnr": float(finite.mean()) if finite.size else math.inf,
        "relative_l2": float(relative_l2(original, reconstructed).mean()),
        "n": int(len(s)),
    }
