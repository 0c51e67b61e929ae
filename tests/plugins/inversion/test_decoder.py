import numpy as np
import pytest

import audit_sdk
from audit_sdk import InvalidDataError, NotFittedError
from audit_sdk.adapters.onnx import OnnxTarget
from audit_sdk.plugins.inversion.decoder import DecoderInversion, InversionDecoder


@pytest.fixture(scope="module")
def onnx_target(digits_memorised_onnx):
    return audit_sdk.load_target(str(digits_memorised_onnx))


def test_decoder_on_onnx_beats_class_mean_baseline(digits_memorised, onnx_target):
    assert isinstance(onnx_target, OnnxTarget) and not hasattr(onnx_target, "model")  # no torch model of the target
    r = DecoderInversion(epochs=50).run(onnx_target, digits_memorised.data, rng=0)
    base = r.extra["baseline"]
    assert r.metrics["ssim"] > base["class_mean_ssim"] + 0.05
    assert base["class_mean_ssim"] > base["mean_image_ssim"]  # the label alone already leaks something
    for s in ("members", "non_members"):
        assert r.extra["by_set"][s]["ssim"] > r.extra["by_set"][s]["class_mean_ssim"]
    assert r.reconstructions.min() >= 0.0 and r.reconstructions.max() <= 1.0
    assert r.extra["evaluation"]["all"]["accuracy"] > 0.6


def test_truncated_outputs_leak_less(digits_memorised, onnx_target):
    full = DecoderInversion(epochs=50, evaluate=False, n_samples=32).run(onnx_target, digits_memorised.data, rng=0)
    top1 = DecoderInversion(epochs=50, evaluate=False, n_samples=32, truncate=1).run(onnx_target, digits_memorised.data, rng=0)
    assert top1.metrics["ssim"] < full.metrics["ssim"] - 0.03


def test_needs_population(digits_memorised, onnx_target):
    d = digits_memorised.data
    no_pop = audit_sdk.AuditData((d.members.x, d.members.y), (d.non_members.x, d.non_members.y))
    with pytest.raises(InvalidDataError, match="population"):
        DecoderInversion().run(onnx_target, no_pop)


def test_decoder_predict_before_fit():
    with pytest.raises(NotFittedError, match="fit"):
        InversionDecoder((1, 2, 2), (0.0, 1.0)).predict(np.zeros((1, 3), np.float32))
