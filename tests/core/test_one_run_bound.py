"""The one-run epsilon lower bound (Steinke, Nasr and Jagielski 2023) on its own."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_sdk.errors import InvalidParameterError
from audit_sdk.metrics import ONE_RUN_GUESS_FRACTIONS, one_run_audit, one_run_epsilon_lower_bound, one_run_p_value


def paper_p_value(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The paper's Algorithm 2 as printed (a literal loop), the independent reference for our vectorised one."""
    from scipy import stats

    q = 1 / (1 + math.exp(-eps))
    beta = stats.binom.sf(v - 1, r, q)
    alpha = 0.0
    total = 0.0
    for i in range(1, v + 1):
        total = total + stats.binom.pmf(v - i, r, q)
        if total > i * alpha:
            alpha = total / i
    return min(beta + alpha * delta * 2 * m, 1.0)


@pytest.mark.parametrize("r", [10, 100, 1000])
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_perfect_guessing_matches_the_closed_form(r, alpha):
    # v = r and delta = 0: P[Binomial(r, q) >= r] = q^r = alpha  =>  q = alpha^(1/r), eps = log(q / (1 - q))
    a = alpha ** (1 / r)
    assert one_run_epsilon_lower_bound(1000, r, r, alpha=alpha) == pytest.approx(math.log(a / (1 - a)), rel=1e-7)


def test_known_values():
    # r = 100 perfect guesses at 95%: log(0.05^0.01 / (1 - 0.05^0.01)) = 3.49296543...
    assert one_run_epsilon_lower_bound(1000, 100, 100) == pytest.approx(3.4929654, abs=1e-6)
    # chance-level guessing proves nothing
    assert one_run_epsilon_lower_bound(1000, 1000, 500) == 0.0
    # delta can only weaken the conclusion
    assert one_run_epsilon_lower_bound(1000, 1000, 1000, delta=1e-5) < one_run_epsilon_lower_bound(1000, 1000, 1000)


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 400),
    frac_r=st.floats(0, 1),
    frac_v=st.floats(0, 1),
    eps=st.floats(0, 8),
    delta=st.sampled_from([0.0, 1e-6, 1e-5, 1e-3]),
)
def test_p_value_equals_the_papers_loop(m, frac_r, frac_v, eps, delta):
    r = int(frac_r * m)
    v = int(frac_v * r)
    assert one_run_p_value(m, r, v, eps, delta) == pytest.approx(paper_p_value(m, r, v, eps, delta), rel=1e-9, abs=1e-12)


def test_bound_is_the_boundary_of_rejection():
    m, r, v, delta, alpha = 1000, 400, 330, 1e-5, 0.05
    eps = one_run_epsilon_lower_bound(m, r, v, delta=delta, alpha=alpha)
    assert eps > 0
    assert one_run_p_value(m, r, v, eps * 0.999, delta) < alpha <= one_run_p_value(m, r, v, eps * 1.001, delta)


@settings(max_examples=30, deadline=None)
@given(r=st.integers(1, 300), v=st.integers(0, 300))
def test_bound_grows_with_correct_guesses(r, v):
    v = min(v, r)
    lo = one_run_epsilon_lower_bound(300, r, v)
    hi = one_run_epsilon_lower_bound(300, r, min(r, v + 1))
    assert hi >= lo - 1e-9


@pytest.mark.parametrize("eps", [0.5, 2.0])
def test_bound_is_valid_against_the_worst_eps_dp_mechanism(eps):
    # Randomised response is the epsilon-DP mechanism that makes guessing easiest: each of r guesses is
    # right with probability e^eps / (1 + e^eps), independently. The 95% bound may exceed the true
    # epsilon in at most ~5% of runs (Monte Carlo, 4000 runs; 3 standard errors of slack).
    r, alpha, runs = 200, 0.05, 4000
    q = 1 / (1 + math.exp(-eps))
    v = np.random.default_rng(7).binomial(r, q, size=runs)
    bound = {int(k): one_run_epsilon_lower_bound(r, r, int(k), alpha=alpha) for k in np.unique(v)}
    exceed = np.mean([bound[int(k)] > eps for k in v])
    assert exceed <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    # and it is not vacuous: the median run proves a good part of eps
    assert np.median([bound[int(k)] for k in v]) > 0.3 * eps


def test_audit_of_perfect_scores_pays_for_choosing_the_guess_count():
    truth = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    scores = truth.astype(float)
    out = one_run_audit(scores, truth)
    rs = sorted({max(1, round(f * 1000)) for f in ONE_RUN_GUESS_FRACTIONS})
    assert out["tried"] == rs
    # the best r is all 1000 guesses, all correct, tested at alpha / (number of r tried)
    assert out["guesses"] == 1000 and out["correct"] == 1000
    assert out["epsilon_lower_bound"] == pytest.approx(one_run_epsilon_lower_bound(1000, 1000, 1000, alpha=0.05 / len(rs)))
    fixed = one_run_audit(scores, truth, guesses=1000)
    assert fixed["epsilon_lower_bound"] == pytest.approx(one_run_epsilon_lower_bound(1000, 1000, 1000, alpha=0.05))
    assert fixed["epsilon_lower_bound"] > out["epsilon_lower_bound"]
    # an alternative statistic doubles the tests: the bound pays again
    two = one_run_audit(scores, truth, alternatives={"other": -scores})
    assert two["statistic"] == "score"
    assert two["epsilon_lower_bound"] == pytest.approx(one_run_epsilon_lower_bound(1000, 1000, 1000, alpha=0.05 / (2 * len(rs))))


def test_audit_of_random_scores_proves_nothing():
    g = np.random.default_rng(0)
    hits = [one_run_audit(g.random(1000), g.random(1000) < 0.5)["epsilon_lower_bound"] > 0 for _ in range(20)]
    assert sum(hits) <= 2


def test_guesses_split_between_in_and_out():
    # 10 canaries; top-5 scores are all included, bottom-5 all excluded except one
    truth = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 1], bool)
    scores = np.arange(10, 0, -1, dtype=float)
    out = one_run_audit(scores, truth, guesses=10)
    assert out["correct"] == 9
    out = one_run_audit(scores, truth, guesses=4)  # 2 "in" from the top, 2 "out" from the bottom
    assert out["correct"] == 3


def test_bad_input_is_refused():
    with pytest.raises(InvalidParameterError, match="v <= r <= m"):
        one_run_p_value(10, 5, 6, 1.0)
    with pytest.raises(InvalidParameterError, match="epsilon"):
        one_run_p_value(10, 5, 3, -1.0)
    with pytest.raises(InvalidParameterError, match="alpha"):
        one_run_epsilon_lower_bound(10, 5, 5, alpha=1.5)
    with pytest.raises(InvalidParameterError, match="guesses"):
        one_run_audit([1.0, 0.0], [True, False], guesses=3)


def test_p_value_is_finite_for_huge_epsilon():
    # q rounds to 1.0 beyond epsilon ~37: the log-space pmf must not fail or produce NaN there
    for eps in (40.0, 200.0, 999.0):
        p = one_run_p_value(1000, 1000, 999, eps, 1e-5)
        assert 0.0 <= p <= 1.0 and math.isfinite(p)
