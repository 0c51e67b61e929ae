"""Noise mechanisms: schedules, noise distributions (KS), events, seeding, vMF sampling."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from audit_sdk import InvalidParameterError
from audit_sdk.plugins.dp.mechanisms import AdaGaussian, Gaussian, Laplace, VonMisesFisher, decay_factors, sample_vmf

ALPHA = 1e-3  # KS significance: a correct sampler fails at most 0.1% of the time


def test_registered(registry):
    assert {"dp.gaussian", "dp.laplace", "dp.ada-gaussian", "dp.vmf"} <= set(registry.names("mechanism"))
    for name in ("dp.gaussian", "dp.laplace", "dp.ada-gaussian", "dp.vmf"):
        cls = registry.get("mechanism", name)
        cls()
        with pytest.raises(InvalidParameterError, match="unknown option"):
            cls(nope=1)


@pytest.mark.parametrize("policy", ["time", "step", "exp"])
def test_decay_schedules_match_mindarmour_updates(policy):
    # MindArmour's _MechanismsParamsUpdater, applied once per step after the noise is drawn
    # (ANCHORS 2.1): Time s <- s0 / (s0 / s + r); Step s <- (1 - r) s; Exp s <- s / e^r.
    s0, r = 1.5, 3e-3
    mech = AdaGaussian(noise_multiplier=s0, decay_policy=policy, noise_decay_rate=r)
    s, got, want = s0, [], []
    for t in range(2000):
        want.append(s)
        got.append(mech.noise_multiplier_at(t))
        s = {"time": s0 / (s0 / s + r), "step": (1 - r) * s, "exp": s / math.exp(r)}[policy]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    closed = {"time": s0 / (1 + r * 1999), "step": s0 * (1 - r) ** 1999, "exp": s0 * math.exp(-r * 1999)}[policy]
    assert mech.noise_multiplier_at(1999) == pytest.approx(closed, rel=1e-12)
    assert mech.event(1999).params["noise_multiplier"] == pytest.approx(closed, rel=1e-12)


def test_decay_rate_and_policy_are_validated():
    assert AdaGaussian(decay_policy="Time").params.decay_policy == "time"  # MindArmour spelling accepted
    with pytest.raises(InvalidParameterError, match="noise_decay_rate"):
        AdaGaussian(noise_decay_rate=1.5)
    with pytest.raises(InvalidParameterError, match="noise_decay_rate"):
        AdaGaussian(noise_decay_rate=-0.1)
    with pytest.raises(InvalidParameterError, match="rate < 1"):
        AdaGaussian(decay_policy="step", noise_decay_rate=1.0)
    with pytest.raises(InvalidParameterError, match="decay_policy"):
        AdaGaussian(decay_policy="linear")
    with pytest.raises(InvalidParameterError):
        decay_factors("cosine", 0.1, [1])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_gaussian_noise_has_its_scale(backend):
    mech = AdaGaussian(noise_multiplier=2.0, decay_policy="exp", noise_decay_rate=0.01, seed=3)
    step, sens = 50, 0.5
    zeros = np.zeros(20000) if backend == "numpy" else torch.zeros(20000, dtype=torch.float64)
    noise = np.asarray(mech.perturb(zeros, sensitivity=sens, step=step))
    scale = mech.event(step).params["noise_multiplier"] * sens  # the event says what ran
    assert stats.kstest(noise / scale, "norm").pvalue > ALPHA
    assert stats.kstest(noise / (2.0 * sens), "norm").pvalue < ALPHA  # sigma0 would be the wrong scale


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_laplace_noise_has_its_scale(backend):
    mech = Laplace(noise_multiplier=1.5, seed=1)
    zeros = np.zeros(20000) if backend == "numpy" else torch.zeros(20000, dtype=torch.float64)
    noise = np.asarray(mech.perturb(zeros, sensitivity=2.0, step=0))
    assert stats.kstest(noise, "laplace", args=(0, 3.0)).pvalue > ALPHA
    assert stats.kstest(noise, "laplace", args=(0, 2.0)).pvalue < ALPHA
    assert mech.event(0).kind == "laplace" and mech.event(0).params["scale"] == 1.5


def test_seeded_runs_repeat_and_secure_mode_does_not():
    x = np.zeros(5)
    a = Gaussian(noise_multiplier=1.0, seed=7).perturb(x, sensitivity=1.0, step=0)
    b = Gaussian(noise_multiplier=1.0, seed=7).perturb(x, sensitivity=1.0, step=0)
    np.testing.assert_array_equal(a, b)
    t1 = Gaussian(noise_multiplier=1.0, seed=7).perturb(torch.zeros(5), sensitivity=1.0, step=0)
    t2 = Gaussian(noise_multiplier=1.0, seed=7).perturb(torch.zeros(5), sensitivity=1.0, step=0)
    assert torch.equal(t1, t2)
    s1 = Gaussian(noise_multiplier=1.0, seed=7, secure_mode=True).perturb(x, sensitivity=1.0, step=0)
    s2 = Gaussian(noise_multiplier=1.0, seed=7, secure_mode=True).perturb(x, sensitivity=1.0, step=0)
    assert not np.array_equal(s1, s2)
    st1 = Gaussian(noise_multiplier=1.0, secure_mode=True).perturb(torch.zeros(5), sensitivity=1.0, step=0)
    st2 = Gaussian(noise_multiplier=1.0, secure_mode=True).perturb(torch.zeros(5), sensitivity=1.0, step=0)
    assert not torch.equal(st1, st2)


def test_invalid_sensitivity_and_step():
    with pytest.raises(InvalidParameterError, match="sensitivity"):
        Gaussian().perturb(np.zeros(2), sensitivity=-1.0, step=0)
    with pytest.raises(InvalidParameterError, match="step"):
        Gaussian().perturb(np.zeros(2), sensitivity=1.0, step=-1)


@pytest.mark.parametrize("d,kappa", [(3, 2.0), (10, 25.0), (50, 5.0)])
def test_vmf_sampler_matches_scipy(d, kappa):
    rng = np.random.default_rng(0)
    mu = np.zeros(d)
    mu[0] = 1.0
    ours = sample_vmf(np.tile(mu, (4000, 1)), kappa, rng)
    ref = stats.vonmises_fisher(mu, kappa).rvs(4000, random_state=1)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-9)
    assert stats.ks_2samp(ours[:, 0], ref[:, 0]).pvalue > ALPHA  # cosine to the mean direction
    assert stats.ks_2samp(ours[:, 1], ref[:, 1]).pvalue > ALPHA  # an orthogonal coordinate


def test_vmf_keeps_norms_perturbs_directions_and_reports_metric_privacy():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(64, 20)) * rng.uniform(0.1, 5.0, size=(64, 1))
    mech = VonMisesFisher(epsilon=30.0, seed=0)
    out = mech.perturb(g, sensitivity=1.0, step=0)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.linalg.norm(g, axis=1), rtol=1e-10)
    cos = np.sum(out * g, axis=1) / np.linalg.norm(g, axis=1) ** 2
    assert 0.3 < cos.mean() < 0.99  # moved, but towards the original direction at kappa 30 in 20 dims
    ev = mech.event(0)
    assert ev.kind == "vmf" and ev.params == {"epsilon": 30.0, "max_distance": 2.0}
    t = mech.perturb(torch.tensor(g, dtype=torch.float32), sensitivity=1.0, step=0)
    assert isinstance(t, torch.Tensor) and t.shape == (64, 20)
