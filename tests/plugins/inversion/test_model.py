import numpy as np

from audit_sdk.plugins.inversion.model import ModelInversion


def test_class_representatives_carry_their_class(digits_memorised, mem_target, inv_context):
    r = ModelInversion(iterations=300).run(mem_target, digits_memorised.data, rng=0, context=inv_context)
    e = r.extra
    assert r.reconstructions.shape == r.originals.shape == (10, 1, 8, 8)
    assert e["mean_target_confidence"] > 0.9
    # an independent classifier (trained on the population only) names 10 representatives: chance is 0.1
    assert e["evaluation"]["accuracy"] >= 0.7
    assert r.reconstructions.min() >= 0.0 and r.reconstructions.max() <= 1.0
    assert {"ssim_to_member_class_mean", "ssim_to_non_member_class_mean"} <= set(e)


def test_model_that_learned_nothing_gives_representatives_without_class(digits_memorised, fresh_cnn_target, inv_context):
    r = ModelInversion(iterations=300).run(fresh_cnn_target, digits_memorised.data, rng=0, context=inv_context)
    assert r.extra["evaluation"]["accuracy"] <= 0.4


def test_subset_of_classes_and_population_mean_start(digits_memorised, mem_target):
    r = ModelInversion(classes=[3, 7], init="population-mean", cost="log", iterations=50, evaluate=False).run(
        mem_target, digits_memorised.data
    )
    assert r.labels.tolist() == [3, 7]
    np.testing.assert_allclose(r.originals[0], digits_memorised.data.members.x[digits_memorised.data.members.y == 3].mean(0), atol=1e-6)
