"""audit_sdk.slicing: TF Privacy-style slices scored by the core metrics, and the membership verdict."""

from __future__ import annotations

import numpy as np
import pytest

from audit_sdk.errors import InvalidParameterError
from audit_sdk.metrics import membership_metrics
from audit_sdk.slicing import SlicingSpec, membership_verdict, slice_membership


def _toy(n=400, seed=0):
    rng = np.random.default_rng(seed)
    truth = np.arange(n) < n // 2
    labels = rng.integers(0, 4, n)
    # leakage planted in class 3 only
    scores = rng.normal(size=n) + np.where((labels == 3) & truth, 3.0, 0.0)
    loss = rng.exponential(size=n)
    predicted = np.where(rng.random(n) < 0.8, labels, (labels + 1) % 4)
    return scores, truth, labels, predicted, loss


def test_slices_are_scored_like_the_whole_and_find_the_leaky_class():
    s, t, y, pred, loss = _toy()
    out = slice_membership(s, t, spec=SlicingSpec.all(), labels=y, predicted=pred, loss=loss)
    by = {sl.name: sl for sl in out}
    assert by["entire dataset"].metrics == membership_metrics(s, t)
    m3 = by["class=3"]
    mask = y == 3
    assert m3.metrics == membership_metrics(s[mask], t[mask])
    assert m3.n_members == int((mask & t).sum())
    assert m3.metrics["auc"] > 0.9 > max(by[f"class={c}"].metrics["auc"] for c in range(3))
    deciles = [sl for sl in out if sl.kind == "percentile"]
    assert len(deciles) == 10 and sum(d.n_members + d.n_non_members for d in deciles) == len(s)
    assert {d.n_members + d.n_non_members for d in deciles} == {40}
    correct = by["correctly classified"]
    assert correct.n_members + correct.n_non_members == int((pred == y).sum())


def test_single_sided_slice_is_kept_with_a_reason():
    s = np.array([0.9, 0.8, 0.1, 0.2])
    t = np.array([True, True, False, False])
    out = slice_membership(s, t, spec=SlicingSpec(entire_dataset=False, by_class=True), labels=np.array([0, 0, 1, 1]))
    assert all(sl.metrics is None and "both are needed" in sl.skipped for sl in out)
    assert "skipped" in out[0].to_dict()


@pytest.mark.parametrize(
    "spec, kw, match",
    [
        (SlicingSpec(by_class=True), {}, "labels"),
        (SlicingSpec(by_percentiles=True), {}, "loss"),
        (SlicingSpec(by_classification_correctness=True), {"labels": np.zeros(4, int)}, "predicted"),
    ],
)
def test_missing_inputs_are_named(spec, kw, match):
    with pytest.raises(InvalidParameterError, match=match):
        slice_membership(np.arange(4.0), np.array([1, 1, 0, 0], bool), spec=spec, **kw)


def test_verdict_states_mindarmour_rule_and_low_fpr_view():
    rng = np.random.default_rng(0)
    t = np.arange(1000) < 500
    # strong average-case and low-FPR leakage
    strong = membership_verdict(membership_metrics(rng.normal(size=1000) + 2.5 * t, t))
    assert strong["mindarmour"]["leakage_risk"] and strong["low_fpr"]["leakage_risk"] and strong["leakage_risk"]
    # chance: neither view calls it a leak, even when a few members happen to rank first
    chance = membership_verdict(membership_metrics(rng.normal(size=1000), t))
    assert not chance["low_fpr"]["leakage_risk"] and not chance["leakage_risk"]
    # a few members identified with certainty, nothing on average: only the low-FPR view sees it
    s = rng.normal(size=1000)
    s[:40] += 100.0
    few = membership_verdict(membership_metrics(s, t))
    assert few["low_fpr"]["leakage_risk"] and not few["mindarmour"]["leakage_risk"]
    assert "MindArmour rule" in few["text"] and "Low-FPR view" in few["text"]
