import numpy as np
import pytest

import audit_sdk
from audit_sdk.plugins.mia.loss_threshold import LossThreshold


def test_memorising_model_is_caught_on_onnx(digits_memorised, digits_memorised_onnx):
    s = digits_memorised
    # the model must really memorise for the check to mean anything
    assert s.train_accuracy >= 0.99
    assert s.test_accuracy < s.train_accuracy - 0.15
    report = audit_sdk.run_audit(str(digits_memorised_onnx), s.data, attacks=["mia.loss-threshold"], rng=0)
    m = report.results[0].metrics
    assert m["auc"] > 0.62, m


def test_model_that_saw_nothing_scores_near_chance(digits_unseen, digits_unseen_onnx):
    report = audit_sdk.run_audit(str(digits_unseen_onnx), digits_unseen.data, attacks=["mia.loss-threshold"], rng=0)
    assert abs(report.results[0].metrics["auc"] - 0.5) <= 0.05


@pytest.mark.parametrize("calibration", ["global", "per-class"])
def test_torch_and_onnx_give_the_same_scores(digits_memorised, digits_memorised_onnx, calibration):
    a = LossThreshold(calibration=calibration).run(audit_sdk.load_target(digits_memorised.model), digits_memorised.data)
    b = LossThreshold(calibration=calibration).run(audit_sdk.load_target(str(digits_memorised_onnx)), digits_memorised.data)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
