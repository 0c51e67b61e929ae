"""Properties of the defenses' pure maths (no training)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from audit_sdk.plugins.defenses.output import OutputNoise, Rounding, TopK
from audit_sdk.plugins.defenses.suppress import cubic_sparsity


@given(
    s0=st.floats(0.0, 0.5),
    s1=st.floats(0.51, 0.99),
    all_steps=st.integers(1, 5000),
    a=st.integers(0, 10000),
    b=st.integers(0, 10000),
)
def test_cubic_schedule_is_monotone_bounded_and_ends_at_sparse_end(s0, s1, all_steps, a, b):
    lo, hi = sorted((a, b))
    f = lambda t: cubic_sparsity(t + 1, start_step=1, all_steps=all_steps, sparse_start=s0, sparse_end=s1)  # noqa: E731
    assert s0 <= f(lo) <= f(hi) <= s1
    assert abs(f(0) - s0) < 1e-12
    assert abs(f(all_steps) - s1) < 1e-12


probs = (
    st.integers(1, 30)
    .flatmap(lambda n: st.lists(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n).filter(lambda r: sum(r) > 0), min_size=1, max_size=8))
    .map(lambda rows: np.asarray(rows) / np.asarray(rows).sum(axis=1, keepdims=True))
)


@settings(max_examples=60)
@given(p=probs, k=st.integers(1, 40))
def test_top_k_keeps_the_argmax_and_k_entries(p, k):
    out = TopK(k=k).transform_scores(p)
    assert ((out > 0).sum(axis=1) <= k).all()
    assert (out.argmax(1) == p.argmax(1)).all()
    assert np.all((out == 0) | (out == p))
    ren = TopK(k=k, renormalize=True).transform_scores(p)
    np.testing.assert_allclose(ren.sum(1), 1.0)


@settings(max_examples=60)
@given(p=probs, d=st.integers(0, 6))
def test_rounding_error_is_at_most_half_a_unit(p, d):
    out = Rounding(decimals=d).transform_scores(p)
    assert np.all(np.abs(out - p) <= 0.5 * 10.0**-d + 1e-12)


@settings(max_examples=40)
@given(p=probs, scale=st.floats(0.0, 5.0), mech=st.sampled_from(["laplace", "gaussian"]))
def test_output_noise_serves_distributions(p, scale, mech):
    out = OutputNoise(scale=scale, mechanism=mech, seed=0).transform_scores(p)
    assert (out >= 0).all()
    np.testing.assert_allclose(out.sum(1), 1.0)
