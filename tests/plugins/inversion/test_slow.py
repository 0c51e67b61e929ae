"""Longer inversion checks (run with ``pytest -m slow``)."""

import pytest

from audit_sdk.plugins.inversion.gradient import GradientInversion
from audit_sdk.plugins.inversion.representation import RepresentationInversion

pytestmark = pytest.mark.slow


def test_lenet_layers_leak_less_the_deeper_they_are():
    from audit_sdk.adapters.torch import TorchTarget
    from audit_sdk.adapters.torch.recipes import digits_setup

    s = digits_setup(n_members=250, n_non_members=250, n_population=1000, architecture="lenet", epochs=60, seed=0)
    target = TorchTarget(s.model, device="cpu")
    ssim = {
        layer: RepresentationInversion(layer=layer, n_samples=32, evaluate=False).run(target, s.data, rng=0).metrics["ssim"]
        for layer in ("1", "5", "8", None)  # conv1+ReLU, pool2, fc1+ReLU (after flatten), logits
    }
    base = RepresentationInversion(layer="1", n_samples=32, iterations=1, evaluate=False).run(target, s.data, rng=0).extra["baseline"]
    assert ssim["1"] > 0.95 > base["mean_image_ssim"] + 0.2
    assert ssim["1"] >= ssim["5"] > ssim[None]
    assert ssim[None] < ssim["1"] - 0.3


def test_gradient_leakage_falls_with_batch_size_and_noise(digits_data, fresh_cnn_target):
    r = GradientInversion(
        batch_size=1,
        n_batches=6,
        iterations=300,
        evaluate=False,
        max_grad_norm=1.0,
        sweep_batch_sizes=[1, 4, 16],
        sweep_noise_multipliers=[0.0, 0.01, 1.0],
    ).run(fresh_cnn_target, digits_data, rng=0)
    cell = {(s["batch_size"], s["noise_multiplier"]): s["ssim"] for s in r.extra["sweep"]}
    assert cell[(1, 0.0)] > cell[(4, 0.0)] > cell[(16, 0.0)]
    for b in (1, 4, 16):
        assert cell[(b, 0.0)] > cell[(b, 1.0)]
        assert cell[(b, 1.0)] < r.extra["baseline"]["mean_image_ssim"] - 0.3
    assert cell[(1, 0.0)] > cell[(1, 0.01)] > cell[(1, 1.0)]
