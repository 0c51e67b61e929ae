"""Certified accountants: the issue's under-reporting cases, peer known answers, properties against dp_accounting."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from audit_sdk import InvalidParameterError, PrivacyEvent
from audit_sdk.cli import main
from audit_sdk.plugins.accountants._rdp_math import eps_from_rdp, rdp_sampled_gaussian
from audit_sdk.plugins.accountants.gdp import GDPAccountant
from audit_sdk.plugins.accountants.pld import PLDAccountant
from audit_sdk.plugins.accountants.rdp import RDPAccountant

pl = pytest.importorskip("dp_accounting.pld.privacy_loss_distribution")

OPACUS_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))


def gauss(s: float) -> PrivacyEvent:
    return PrivacyEvent("gaussian", {"noise_multiplier": s})


def ours(cls, q, sigma, steps, delta=1e-5, **kw):
    a = cls(**kw)
    a.step(gauss(sigma), sample_rate=q, count=steps)
    return a.epsilon(delta)


def dpa(q, sigma, steps, delta=1e-5, *, interval, pessimistic=True):
    """dp_accounting's PLD: pessimistic (connect the dots) is an upper bound, optimistic a lower bound of the truth."""
    p = pl.from_gaussian_mechanism(
        sigma, sampling_prob=q, value_discretization_interval=interval, pessimistic_estimate=pessimistic, use_connect_dots=pessimistic
    )
    return p.self_compose(steps).get_epsilon_for_delta(delta)


# -- the cases of issue 14: never below dp_accounting's certified value at a fine grid ----------------


@pytest.mark.parametrize(
    "q,sigma,steps,interval",
    [(0.01, 91.3, 1000, 1e-6), (0.01, 200.0, 1000, 1e-6), (0.01, 40.0, 1000, 1e-5), (1e-3, 5.0, 10000, 1e-6), (1e-4, 5.0, 10000, 1e-7)],
)
def test_issue_cases_are_at_least_dp_accountings_certified_value(q, sigma, steps, interval):
    got = ours(PLDAccountant, q, sigma, steps)
    ref = dpa(q, sigma, steps, interval=interval)
    # dp_accounting's pessimistic value at a fine grid is within a hair of the truth; ours is an upper bound
    assert ref * (1 - 1e-4) <= got <= ref * 1.01
    assert got <= ours(RDPAccountant, q, sigma, steps)


@pytest.mark.slow
def test_issue_case_long_run_tiny_sample_rate():
    # q 1e-4, 100,000 steps, sigma 0.55858: the old accountant said 1.0, the truth is 1.0001-1.0025
    got = ours(PLDAccountant, 1e-4, 0.55858, 100_000)
    ref = dpa(1e-4, 0.55858, 100_000, interval=1e-5)
    assert ref * (1 - 1e-4) <= got <= ref * 1.01 and got > 1.0


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_full_batch_long_run_is_an_upper_bound_of_the_exact_gaussian(sigma):
    # q = 1: T Gaussian steps compose to one with mu = sqrt(T) / sigma (Dong, Roth, Su 2019, Cor. 3.3)
    mu = math.sqrt(10_000) / sigma
    eps = ours(PLDAccountant, 1.0, sigma, 10_000)
    from scipy import special

    def exact_delta(e: float) -> float:
        return float(special.ndtr(-e / mu + mu / 2) - math.exp(e + special.log_ndtr(-e / mu - mu / 2)))

    # an upper bound (exact delta at our epsilon <= target), and within 0.1% of the exact epsilon
    assert exact_delta(eps) <= 1e-5 < exact_delta(eps * (1 - 1e-3))


def test_laplace_is_exact_not_randomised_response():
    # dp_accounting's Laplace PLD, pessimistic at a fine grid
    a = PLDAccountant()
    a.step(PrivacyEvent("laplace", {"scale": 2.0}), sample_rate=0.1, count=500)
    ref = (
        pl.from_laplace_mechanism(2.0, sampling_prob=0.1, value_discretization_interval=1e-5).self_compose(500).get_epsilon_for_delta(1e-5)
    )
    assert ref * (1 - 1e-4) <= a.epsilon(1e-5) <= ref * 1.002


def test_calibrated_sigma_is_at_least_dp_accountings(capsys):
    # the issue's calibration: q 1e-4, 100,000 steps, epsilon 1: dp_accounting must agree the budget holds
    code = main(
        [
            "calibrate",
            "--accountant",
            "pld",
            "--target-epsilon",
            "1",
            "--sample-rate",
            "0.01",
            "--steps",
            "1000",
            "--delta",
            "1e-5",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["certified"] is True
    assert dpa(0.01, out["noise_multiplier"], 1000, interval=1e-5) <= 1.0


def test_tiny_epsilon_target_is_refused_or_safe(capsys):
    code = main(
        ["calibrate", "--accountant", "pld", "--target-epsilon", "1e-9", "--sample-rate", "0.01", "--steps", "1000", "--delta", "1e-5"]
    )
    captured = capsys.readouterr()
    if code == 0:  # then the noise must really reach the target
        sigma = float(captured.out.split("=")[1].split()[0])
        assert dpa(0.01, sigma, 1000, interval=1e-7) <= 1e-9
    else:
        assert code == 2 and "target" in captured.err


@pytest.mark.parametrize("sigma,expect", [("1e-6", "epsilon = "), ("inf", "epsilon = 0 ")])
def test_extreme_noise_answers_without_crashing(sigma, expect, capsys):
    code = main(
        ["epsilon", "--accountant", "pld", "--noise-multiplier", sigma, "--sample-rate", "0.01", "--steps", "1000", "--delta", "1e-5"]
    )
    assert code == 0 and expect in capsys.readouterr().out


def test_sigma_below_1e_8_is_a_typed_error():
    with pytest.raises(InvalidParameterError, match="below 1e-8"):
        ours(PLDAccountant, 0.01, 1e-12, 10)


def test_huge_step_counts_stay_bounded():
    # 1e10 steps: the grid is coarsened to fit in memory; still an upper bound, here 1.35x the RDP one
    got = ours(PLDAccountant, 0.01, 1.0, 10**10)
    assert math.isfinite(got) and ours(RDPAccountant, 0.01, 1.0, 10**10) <= got <= 2 * ours(RDPAccountant, 0.01, 1.0, 10**10)


def test_too_fine_interval_is_refused():
    with pytest.raises(InvalidParameterError, match="grid points"):
        ours(PLDAccountant, 1.0, 0.5, 10_000, interval=1e-6)


# -- RDP orders, GDP is not certified ------------------------------------------------------------------


@pytest.mark.parametrize("orders", [[2.0, math.inf], [1.0, 2.0], [math.nan], []])
def test_rdp_orders_must_be_finite_and_above_one(orders):
    with pytest.raises(InvalidParameterError, match="orders"):
        RDPAccountant(orders=orders)


def test_gdp_says_uncertified_and_calibration_refuses_it_unless_asked(capsys):
    assert GDPAccountant().describe()["certified"] is False and PLDAccountant().describe()["certified"] is True
    with pytest.raises(InvalidParameterError, match="certified: false"):
        GDPAccountant().calibrate(target_epsilon=1.0, delta=1e-5, sample_rate=0.01, steps=100)
    assert GDPAccountant().calibrate(target_epsilon=1.0, delta=1e-5, sample_rate=0.01, steps=100, allow_approximate=True) > 0
    argv = ["calibrate", "--accountant", "gdp", "--target-epsilon", "1", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5"]
    assert main(argv) == 2 and "--allow-approximate" in capsys.readouterr().err
    assert main([*argv, "--allow-approximate", "--json"]) == 0 and json.loads(capsys.readouterr().out)["certified"] is False


# -- known answers from peer test suites ----------------------------------------------------------------


def test_opacus_rdp_accountant_known_answer():
    # opacus/tests/accountants_test.py::test_rdp_accountant: sigma 1.5, q 0.04, int(90 / 0.04) steps -> 7.32911117143
    assert ours(RDPAccountant, 0.04, 1.5, int(90 / 0.04), orders=OPACUS_ORDERS) == pytest.approx(7.32911117143, abs=1e-7)


def test_opacus_prv_accountant_value_is_matched_by_a_certified_bound():
    # opacus/tests/accountants_test.py::test_prv_accountant: 6.777395712150674 (PRV's upper estimate, error 0.01);
    # ours lies between dp_accounting's pessimistic PLD at a fine grid (within 1e-4) and Opacus's estimate.
    got = ours(PLDAccountant, 0.04, 1.5, int(90 // 0.04))
    assert dpa(0.04, 1.5, int(90 // 0.04), interval=2e-5) * (1 - 1e-4) <= got <= 6.777395712150674


def test_opacus_get_noise_multiplier_known_answers():
    # opacus/tests/accountants_test.py::test_get_noise_multiplier_rdp_steps: 1.3562 (epsilon tolerance 0.01)
    s = RDPAccountant(orders=OPACUS_ORDERS).calibrate(target_epsilon=8, delta=1e-5, sample_rate=0.04, steps=2000)
    assert s == pytest.approx(1.3562, abs=1e-3) and s <= 1.3562 + 1e-4
    # ...::test_get_noise_multiplier_prv_steps: 1.2915 (PRV estimate); a certified sigma must satisfy dp_accounting
    s = PLDAccountant().calibrate(target_epsilon=8, delta=1e-5, sample_rate=0.04, steps=2000)
    assert s == pytest.approx(1.2915, rel=5e-3)
    assert dpa(0.04, s, 2000, 1e-5, interval=1e-4) <= 8.0


def test_dp_accounting_rdp_known_answers():
    # dp_accounting/rdp/rdp_privacy_accountant_test.py::test_compute_epsilon_delta_pure_dp: constant RDP 1.1 -> 1.32783806176
    orders = np.arange(2, 33, dtype=float)
    assert eps_from_rdp(orders, np.full(orders.shape, 1.1), 1e-5)[0] == pytest.approx(1.32783806176, abs=1e-9)
    # ...::test_compute_epsilon_delta_gaussian: q 1, sigma 4.530877117 is exactly (1, 1e-6)-DP
    orders = np.array([0.001 * i for i in range(1000, 100000)])[1:]
    assert eps_from_rdp(orders, rdp_sampled_gaussian(1.0, 4.530877117, orders), 1e-6)[0] == pytest.approx(1.0, abs=1e-6)


def test_dp_accounting_pld_known_answers():
    # dp_accounting/pld/pld_privacy_accountant_test.py::test_gaussian_basic: 3 steps of sigma sqrt(3): delta(1) = 0.126936
    a = PLDAccountant()
    a.step(gauss(math.sqrt(3)), sample_rate=1.0, count=3)
    assert 0.126936 - 1e-6 <= a.delta(1.0) <= 0.126936 + 1e-3
    # ...::test_poisson_subsampled_gaussian: q 0.2, sigma 0.5, 3 steps: delta(1) = 0.15594 (their tolerance 1e-3)
    a = PLDAccountant()
    a.step(gauss(0.5), sample_rate=0.2, count=3)
    assert a.delta(1.0) == pytest.approx(0.15594, abs=1e-3)
    # ...::test_laplace_basic: Laplace 1 x3 and 2 x2 is pure 4-DP. The loss atoms at +-1/b fall between grid
    # points and cost up to one spacing each, so at delta 1e-14 the certified value is a little above 4.
    a = PLDAccountant()
    a.step(PrivacyEvent("laplace", {"scale": 1.0}), sample_rate=1.0, count=3)
    a.step(PrivacyEvent("laplace", {"scale": 2.0}), sample_rate=1.0, count=2)
    assert 3.99 <= a.epsilon(1e-14) <= 4.15
    # ...::test_poisson_subsampled_laplace: q 0.2, scale 0.5, 3 steps: epsilon 2.46964 at delta ~ 0
    a = PLDAccountant()
    a.step(PrivacyEvent("laplace", {"scale": 0.5}), sample_rate=0.2, count=3)
    assert 2.46964 - 1e-3 <= a.epsilon(1e-14) <= 2.46964 + 0.1


def test_user_level_epsilon_grows_with_examples_per_user(capsys):
    a = RDPAccountant()
    a.step(gauss(1.1), sample_rate=0.01, count=1000)
    e1, e2, e4 = (a.group_epsilon(1e-5, k) for k in (1, 2, 4))
    assert e1 == a.epsilon(1e-5) < e2 < e4
    argv = ["epsilon", "--noise-multiplier", "1.1", "--sample-rate", "0.01", "--steps", "1000", "--delta", "1e-5", "--json"]
    assert main([*argv, "--max-examples-per-user", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["epsilon"] == pytest.approx(e4)


# -- properties against an independent implementation -----------------------------------------------------


def _check_between(q, sigma, steps, delta):
    got = ours(PLDAccountant, q, sigma, steps, delta)
    rdp = ours(RDPAccountant, q, sigma, steps, delta)
    if q == 1.0:  # full batch: exactly mu-GDP with mu = sqrt(T) / sigma (dp_accounting overflows at large T here)
        lower = GDPAccountant().extend([(gauss(sigma), 1.0, steps)]).epsilon(delta)
    else:  # dp_accounting's optimistic PLD is a lower bound of the truth; its grid is sized to the answer
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                lower = dpa(q, sigma, steps, delta, interval=max(1e-5, rdp / 4000), pessimistic=False)
        except (OverflowError, RuntimeWarning):
            # dp_accounting's get_epsilon_for_delta overflows on very large losses (an OverflowError, or a
            # numpy overflow in its scalar divide, e.g. q=0.3125, sigma=0.3047, 470 steps, delta=1e-3):
            # no independent lower bound for this case; the upper side is still checked
            lower = 0.0
    assert lower * (1 - 1e-6) - 1e-9 <= got <= rdp * (1 + 1e-9) + 1e-12


CASES = dict(
    q=st.floats(1e-4, 1.0),
    sigma=st.floats(0.3, 300.0),
    steps=st.integers(1, 3000),
    delta=st.sampled_from([1e-3, 1e-5, 1e-7]),
)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**CASES)
def test_pld_between_dp_accounting_lower_bound_and_rdp(q, sigma, steps, delta):
    _check_between(q, sigma, steps, delta)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(q=st.floats(1e-4, 1.0), sigma=st.floats(0.3, 300.0), steps=st.integers(1, 100_000), delta=st.sampled_from([1e-3, 1e-5, 1e-7]))
@example(q=0.3125, sigma=0.3046875, steps=470, delta=1e-3)  # dp_accounting overflows here (found in CI)
def test_pld_between_dp_accounting_lower_bound_and_rdp_long(q, sigma, steps, delta):
    _check_between(q, sigma, steps, delta)


@settings(max_examples=10, deadline=None)
@given(q=st.floats(1e-4, 1.0), sigma=st.floats(0.3, 300.0), steps=st.integers(1, 100_000))
def test_rdp_equals_dp_accounting_rdp(q, sigma, steps):
    from dp_accounting import dp_event as dpe
    from dp_accounting.rdp import RdpAccountant

    orders = [float(a) for a in range(2, 64)] + [128.0, 256.0]
    ref = RdpAccountant(orders)
    ref.compose(dpe.PoissonSampledDpEvent(q, dpe.GaussianDpEvent(sigma)), steps)
    assert ours(RDPAccountant, q, sigma, steps, orders=orders) == pytest.approx(ref.get_epsilon(1e-5), rel=1e-9, abs=1e-12)


def test_rdp_tiny_noise_uses_integer_order_bounds_not_petabytes():
    # sigma 1e-6: the fractional-order quadrature would need ~1e8 points per order; the next integer order bounds it
    assert ours(RDPAccountant, 0.01, 1e-6, 1000) >= ours(PLDAccountant, 0.01, 1e-6, 1000) > 1e12
    frac = rdp_sampled_gaussian(0.01, 1e-6, np.array([2.5]))[0]
    assert frac == rdp_sampled_gaussian(0.01, 1e-6, np.array([3.0]))[0]


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["time", "exp"])
def test_decay_rate_one_over_ten_million_steps_is_answered_or_refused(policy, capsys):
    argv = ["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "10000000", "--delta", "1e-5"]
    code = main([*argv, "--decay-policy", policy, "--decay-rate", "1", "--accountant", "pld"])
    captured = capsys.readouterr()
    assert (code == 0 and "epsilon = inf" in captured.out) or (code == 2 and "too much work" in captured.err)


def test_a_decay_schedule_too_long_to_expand_is_refused(capsys):
    argv = ["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "100000000", "--delta", "1e-5"]
    assert main([*argv, "--decay-policy", "time", "--decay-rate", "1"]) == 2
    assert "too long to expand" in capsys.readouterr().err


def test_decaying_schedule_between_dp_accounting_bounds():
    # the issue's "decaying schedules" regime: 4 noise levels x 50 steps (dp_accounting composes each PLD once)
    sigmas = 1.2 / (1 + 0.1 * np.arange(4))
    a = PLDAccountant()
    for s in sigmas:
        a.step(gauss(float(s)), sample_rate=0.05, count=50)
    got = a.epsilon(1e-5)

    def ref(pessimistic: bool) -> float:
        out = None
        for s in sigmas:
            p = pl.from_gaussian_mechanism(
                float(s),
                sampling_prob=0.05,
                value_discretization_interval=1e-4,
                pessimistic_estimate=pessimistic,
                use_connect_dots=pessimistic,
            ).self_compose(50)
            out = p if out is None else out.compose(p)
        assert out is not None
        return float(out.get_epsilon_for_delta(1e-5))

    assert ref(False) <= got <= ref(True) * 1.005
