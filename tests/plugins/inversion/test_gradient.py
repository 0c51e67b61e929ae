import numpy as np
import pytest

from audit_sdk import InvalidParameterError
from audit_sdk.plugins.inversion.gradient import GradientInversion, infer_labels, shared_gradients


def test_single_digit_recovered_from_its_gradient(digits_data, fresh_cnn_target):
    r = GradientInversion(batch_size=1, n_batches=3, iterations=300, evaluate=False).run(fresh_cnn_target, digits_data, rng=0)
    base = r.extra["baseline"]
    assert r.extra["label_accuracy"] == 1.0  # iDLG reads the label off the last bias gradient
    assert r.metrics["ssim"] > 0.85
    assert r.metrics["ssim"] > base["mean_image_ssim"] + 0.15
    assert r.reconstructions.min() >= 0.0 and r.reconstructions.max() <= 1.0
    assert r.reconstructions.shape == r.originals.shape == (3, 1, 8, 8)


def test_dp_sgd_clipping_and_noise_defeat_the_attack(digits_data, fresh_cnn_target):
    r = GradientInversion(batch_size=1, n_batches=3, iterations=300, max_grad_norm=1.0, noise_multiplier=1.0, evaluate=False).run(
        fresh_cnn_target, digits_data, rng=0
    )
    base = r.extra["baseline"]
    # near the blank baseline (~0), far below the population's mean image
    assert r.metrics["ssim"] < 0.2
    assert r.metrics["ssim"] < base["mean_image_ssim"] - 0.3
    assert abs(r.metrics["ssim"] - base["blank_ssim"]) < 0.2
    assert r.extra["dp"] == {"max_grad_norm": 1.0, "noise_multiplier": 1.0}


def test_success_falls_with_batch_size_and_noise(digits_data, fresh_cnn_target):
    r = GradientInversion(
        batch_size=1,
        n_batches=2,
        iterations=200,
        evaluate=False,
        max_grad_norm=10.0,
        sweep_batch_sizes=[1, 8],
        sweep_noise_multipliers=[0.0, 0.05],
    ).run(fresh_cnn_target, digits_data, rng=0)
    cell = {(s["batch_size"], s["noise_multiplier"]): s["ssim"] for s in r.extra["sweep"]}
    assert set(cell) == {(1, 0.0), (1, 0.05), (8, 0.0), (8, 0.05)}
    assert cell[(1, 0.0)] > cell[(8, 0.0)] + 0.1
    assert cell[(1, 0.0)] > cell[(1, 0.05)] + 0.3


def test_shared_gradient_matches_per_example_gradients_of_the_target(digits_data, fresh_cnn_target):
    """Independent check: the target adapter's per-example gradients, averaged / clipped in numpy."""
    import torch

    model = fresh_cnn_target.model
    x, y = digits_data.members.x[:6], digits_data.members.y[:6]
    per_ex = fresh_cnn_target.gradients(x, y).astype(np.float64)  # (6, P)
    xt = torch.from_numpy(x).reshape(2, 3, 1, 8, 8)
    yt = torch.from_numpy(y).reshape(2, 3)

    def flat(g):
        return torch.cat([v.reshape(2, -1) for v in g.values()], 1).numpy()

    plain = flat(shared_gradients(model, xt, yt))
    np.testing.assert_allclose(plain, per_ex.reshape(2, 3, -1).mean(1), atol=1e-5)
    c = 0.5 * float(np.median(np.linalg.norm(per_ex, axis=1)))
    clipped = per_ex * np.minimum(1.0, c / np.linalg.norm(per_ex, axis=1))[:, None]
    np.testing.assert_allclose(flat(shared_gradients(model, xt, yt, max_grad_norm=c)), clipped.reshape(2, 3, -1).mean(1), atol=1e-5)
    noisy = flat(shared_gradients(model, xt, yt, max_grad_norm=c, noise_multiplier=2.0, generator=torch.Generator().manual_seed(0)))
    resid = (noisy - clipped.reshape(2, 3, -1).mean(1)) * 3  # noise on the sum, before dividing by B
    assert abs(resid.std() / (2.0 * c) - 1) < 0.05


def test_idlg_label_inference(digits_data, fresh_cnn_target):
    import torch

    model = fresh_cnn_target.model
    x, y = digits_data.members.x[:40], digits_data.members.y[:40]
    g1 = shared_gradients(model, torch.from_numpy(x).reshape(40, 1, 1, 8, 8), torch.from_numpy(y).reshape(40, 1))
    assert (infer_labels(model, g1, 1).numpy()[:, 0] == y).all()
    g4 = shared_gradients(model, torch.from_numpy(x).reshape(10, 4, 1, 8, 8), torch.from_numpy(y).reshape(10, 4))
    guess = np.sort(infer_labels(model, g4, 4).numpy(), axis=1)
    assert (guess == np.sort(y.reshape(10, 4), axis=1)).mean() > 0.8


def test_dlg_with_optimised_labels_and_l2_loss_runs(digits_data, fresh_cnn_target):
    r = GradientInversion(labels="optimise", loss="l2", n_batches=2, iterations=150, evaluate=False).run(
        fresh_cnn_target, digits_data, rng=1
    )
    assert r.metrics["ssim"] > r.extra["baseline"]["mean_image_ssim"]


def test_noise_without_clip_norm_is_refused():
    with pytest.raises(InvalidParameterError, match="max_grad_norm"):
        GradientInversion(noise_multiplier=1.0)
    with pytest.raises(InvalidParameterError, match="max_grad_norm"):
        GradientInversion(sweep_noise_multipliers=[0.5])


def test_seeded_noise_repeats_and_secure_noise_does_not(digits_data, fresh_cnn_target):
    kw = dict(max_grad_norm=1.0, noise_multiplier=1.0, n_batches=1, iterations=3, evaluate=False)
    a = GradientInversion(**kw).run(fresh_cnn_target, digits_data, rng=3)
    b = GradientInversion(**kw).run(fresh_cnn_target, digits_data, rng=3)
    np.testing.assert_array_equal(a.reconstructions, b.reconstructions)
    c = GradientInversion(secure_noise=True, **kw).run(fresh_cnn_target, digits_data, rng=3)
    d = GradientInversion(secure_noise=True, **kw).run(fresh_cnn_target, digits_data, rng=3)
    assert not np.array_equal(c.reconstructions, d.reconstructions)
