"""Metrics against known values and an independent implementation (scikit-learn)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from audit_sdk import AttackResult
from audit_sdk import metrics as M
from audit_sdk.errors import InvalidDataError


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=4, max_size=60))
def test_auc_equals_sklearn_with_ties(pairs):
    scores = np.array([p[0] for p in pairs], float)
    truth = np.array([p[1] for p in pairs])
    if truth.all() or (~truth).all():
        return
    fpr, tpr, _ = M.roc_curve(scores, truth)
    assert M.auc(fpr, tpr) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    # the same ROC points as scikit-learn (it drops collinear points; ours are a superset)
    sf, st_, _ = sk_roc_curve(truth, scores, drop_intermediate=False)
    ours = set(zip(np.round(fpr, 12), np.round(tpr, 12)))
    assert set(zip(np.round(sf, 12), np.round(st_, 12))) <= ours


def test_known_values():
    # perfectly separated: AUC 1, advantage 1, TPR 1 at any FPR
    m = M.membership_metrics([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
    assert m["auc"] == 1.0 and m["advantage"] == 1.0 and m["balanced_accuracy"] == 1.0
    assert m["tpr_at_fpr"] == {"0.001": 1.0, "0.01": 1.0}
    assert m["precision"] == 1.0 and m["recall"] == 1.0 and m["accuracy"] == 1.0
    # reversed: AUC 0, no advantage
    m = M.membership_metrics([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0])
    assert m["auc"] == 0.0 and m["advantage"] == 0.0 and m["tpr_at_fpr"]["0.01"] == 0.0


def test_tpr_at_fpr_does_not_interpolate():
    fpr = np.array([0.0, 0.005, 0.02, 1.0])
    tpr = np.array([0.0, 0.3, 0.6, 1.0])
    assert M.tpr_at_fpr(fpr, tpr, 0.01) == 0.3
    assert M.tpr_at_fpr(fpr, tpr, 0.001) == 0.0


def test_random_scores_are_near_chance():
    g = np.random.default_rng(0)
    truth = np.r_[np.ones(5000, bool), np.zeros(5000, bool)]
    m = M.membership_metrics(g.random(10000), truth)
    assert abs(m["auc"] - 0.5) < 0.02
    assert m["tpr_at_fpr"]["0.01"] < 0.03
    assert m["epsilon_lower_bound"] == 0.0  # nothing can be claimed from chance


def test_epsilon_lower_bound_is_sound_and_detects_separation():
    # A perfectly separating attack on n=1000 per side: bound grows with n, never exceeds log(n) by much.
    n = 1000
    fpr, tpr, _ = M.roc_curve(np.r_[np.ones(n), np.zeros(n)], np.r_[np.ones(n, bool), np.zeros(n, bool)])
    eps = M.epsilon_lower_bound(fpr, tpr, n, n)
    assert 3.0 < eps < math.log(n)
    # Known value: with 0 errors in n trials, the one-sided CP upper bound is 1 - (a)^(1/n)
    a = 0.05 / (2 * len(fpr))
    ub = 1 - a ** (1 / n)
    assert eps == pytest.approx(math.log((1 - ub) / ub), rel=1e-6)
    # A simulated (eps=1)-DP randomized response attack: the bound must not exceed 1 (soundness).
    g = np.random.default_rng(1)
    p = math.e / (1 + math.e)
    members = g.random(20000) < p
    nonmembers = g.random(20000) < 1 - p
    scores = np.r_[members, nonmembers].astype(float)
    truth = np.r_[np.ones(20000, bool), np.zeros(20000, bool)]
    fpr, tpr, _ = M.roc_curve(scores, truth)
    lb = M.epsilon_lower_bound(fpr, tpr, 20000, 20000)
    assert 0.85 < lb <= 1.0


def test_score_errors():
    with pytest.raises(InvalidDataError, match="both members and non-members"):
        M.membership_metrics([0.1, 0.2], [1, 1])
    with pytest.raises(InvalidDataError, match="NaN"):
        M.membership_metrics([np.nan, 0.2], [1, 0])
    with pytest.raises(InvalidDataError, match="differ in length"):
        M.roc_curve([0.1, 0.2, 0.3], [1, 0])


def test_precision_undefined_is_minus_one():
    assert M.precision_recall_accuracy([0.1, 0.2], [1, 0], threshold=1.0)["precision"] == -1.0


def test_image_metrics_known_values():
    g = np.random.default_rng(0)
    x = g.random((3, 1, 8, 6))
    assert np.allclose(M.ssim(x, x, data_range=1.0), 1.0)
    assert np.all(np.isinf(M.psnr(x, x, data_range=1.0)))
    # constant offset 0.1 on range 1: PSNR = 10 log10(1 / 0.01) = 20 dB
    np.testing.assert_allclose(M.psnr(x, x + 0.1, data_range=1.0), 20.0)
    np.testing.assert_allclose(M.relative_l2(x, 2 * x), 1.0)
    a_bit = np.clip(x + g.normal(0, 0.05, x.shape), 0, 1)
    a_lot = np.clip(x + g.normal(0, 0.5, x.shape), 0, 1)
    s_bit, s_lot = M.ssim(x, a_bit, data_range=1.0), M.ssim(x, a_lot, data_range=1.0)
    assert (s_bit > 0.9).all() and (s_lot < s_bit).all() and s_lot.mean() < 0.6
    # any H x W, 1 or 3 channels
    rgb = g.random((2, 3, 5, 9))
    assert M.ssim(rgb, rgb).shape == (2,)
    with pytest.raises(InvalidDataError, match="differ in shape"):
        M.ssim(rgb, rgb[:, :1])


def test_ssim_matches_the_definition_on_constant_images():
    # For constant images a and b the SSIM reduces to the luminance term (2ab + c1) / (a^2 + b^2 + c1).
    a, b, L = 0.2, 0.6, 1.0
    c1 = (0.01 * L) ** 2
    got = M.ssim(np.full((1, 1, 7, 5), a), np.full((1, 1, 7, 5), b), data_range=L)[0]
    assert got == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)


def test_attack_result_validates_and_serialises():
    r = AttackResult(attack="mia.x", scores=[0.9, 0.1], truth=[1, 0])
    d = r.to_dict()
    assert d["metrics"]["auc"] == 1.0 and d["name"] == "mia.x"
    with pytest.raises(InvalidDataError, match="needs scores and truth"):
        AttackResult(attack="mia.x")
    with pytest.raises(InvalidDataError, match="3 scores for 2 samples"):
        AttackResult(attack="mia.x", scores=[1, 2, 3], truth=[1, 0])
    rec = AttackResult(
        attack="inv.x", kind="reconstruction", reconstructions=np.zeros((2, 1, 4, 4)), originals=np.ones((2, 1, 4, 4)), data_range=1.0
    )
    assert rec.metrics["relative_l2"] == pytest.approx(1.0)


def test_tabular_reconstructions_are_scored_per_row():
    g = np.random.default_rng(0)
    orig = g.random((6, 10))
    rec = AttackResult(attack="inv.x", kind="reconstruction", reconstructions=orig.copy(), originals=orig, data_range=1.0)
    assert rec.metrics["n"] == 6 and rec.metrics["relative_l2"] == 0.0


def test_epsilon_bound_on_a_large_audit_uses_a_subset_and_stays_close():
    g = np.random.default_rng(3)
    n = 200_000
    truth = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    scores = np.r_[g.normal(1.0, 1, n), g.normal(0, 1, n)]
    fpr, tpr, _ = M.roc_curve(scores, truth)
    sub = M.epsilon_lower_bound(fpr, tpr, n, n)
    # the full-set bound, computed on every point (slow path), for comparison
    full_points = M._MAX_EPS_POINTS
    try:
        M._MAX_EPS_POINTS = 10**9
        full = M.epsilon_lower_bound(fpr, tpr, n, n)
    finally:
        M._MAX_EPS_POINTS = full_points
    # fewer thresholds tested -> a milder Bonferroni correction: slightly higher, never far off
    assert full <= sub <= 1.1 * full
