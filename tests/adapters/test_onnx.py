"""OnnxTarget: loading, shape/dtype checks, batching, logits vs probabilities, quiet providers."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from audit_sdk import load_target
from audit_sdk.adapters.onnx import OnnxTarget, available_providers
from audit_sdk.adapters.torch import TorchTarget, export_onnx
from audit_sdk.errors import InvalidDataError, InvalidModelError, InvalidParameterError


@pytest.fixture(scope="module")
def softmax_onnx(tmp_path_factory):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.Softmax(dim=1))
    return export_onnx(model, np.zeros((2, 1, 8, 8), np.float32), tmp_path_factory.mktemp("m") / "softmax.onnx")


def test_reads_graph_and_matches_torch(digits_memorised, digits_memorised_onnx):
    t = OnnxTarget(digits_memorised_onnx, batch_size=7)
    assert t.input_shape == (1, 8, 8) and t.input_dtype == np.float32 and t.n_classes == 10
    assert "logits" in t.capabilities and t.outputs_logits
    x = digits_memorised.data.members.x[:50]
    ref = TorchTarget(digits_memorised.model, device="cpu")
    np.testing.assert_allclose(t.logits(x), ref.logits(x), atol=1e-4)
    np.testing.assert_allclose(t.predict_proba(x).sum(1), 1.0)
    y = digits_memorised.data.members.y[:50]
    np.testing.assert_allclose(t.loss(x, y), ref.loss(x, y), atol=1e-4)


def test_batch_size_does_not_change_answers(digits_memorised, digits_memorised_onnx):
    x = digits_memorised.data.population.x[:301]
    a = OnnxTarget(digits_memorised_onnx, batch_size=1).predict_proba(x)
    b = OnnxTarget(digits_memorised_onnx, batch_size=4096).predict_proba(x)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_probability_outputs_are_detected(softmax_onnx):
    t = OnnxTarget(softmax_onnx)
    assert not t.outputs_logits and "logits" not in t.capabilities
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    p = t.predict_proba(x)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    # loss from probabilities is -log p[y]
    np.testing.assert_allclose(t.loss(x, np.zeros(5, int)), -np.log(p[:, 0]), rtol=1e-6)
    forced = OnnxTarget(softmax_onnx, outputs="probabilities")
    np.testing.assert_allclose(forced.predict_proba(x), p)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(InvalidModelError, match="does not exist"):
        OnnxTarget(tmp_path / "nope.onnx")
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf")
    with pytest.raises(InvalidModelError, match="not a loadable ONNX model"):
        OnnxTarget(bad)


def test_truncated_file(tmp_path, digits_memorised_onnx):
    t = tmp_path / "truncated.onnx"
    t.write_bytes(digits_memorised_onnx.read_bytes()[:500])
    with pytest.raises(InvalidModelError, match="not a loadable ONNX model"):
        load_target(str(t))


def test_shape_and_value_errors(digits_memorised_onnx):
    t = OnnxTarget(digits_memorised_onnx)
    with pytest.raises(InvalidDataError, match=r"do not fit the model, which expects \(1, 8, 8\)"):
        t.predict_proba(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(InvalidDataError, match="NaN or inf"):
        t.predict_proba(np.full((3, 1, 8, 8), np.nan, np.float32))
    with pytest.raises(InvalidDataError, match="numeric"):
        t.predict_proba(np.array([["a"]]))
    with pytest.raises(InvalidDataError, match=r"labels span \[0, 12\] but the model predicts 10 classes"):
        t.loss(np.zeros((2, 1, 8, 8), np.float32), np.array([0, 12]))
    with pytest.raises(InvalidParameterError, match="batch_size"):
        OnnxTarget(digits_memorised_onnx, batch_size=0)


def test_float64_inputs_are_cast(digits_memorised_onnx):
    t = OnnxTarget(digits_memorised_onnx)
    x = np.random.default_rng(0).random((4, 1, 8, 8))
    np.testing.assert_allclose(t.predict_proba(x), t.predict_proba(x.astype(np.float32)))


def test_nan_outputs_are_refused(tmp_path):
    class Nan(torch.nn.Module):
        def forward(self, x):
            return torch.log(x.flatten(1)[:, :3] - 2.0)  # log of a negative number

    p = export_onnx(Nan(), np.ones((2, 1, 2, 2), np.float32), tmp_path / "nan.onnx", check=False)
    t = OnnxTarget(p, outputs="logits")
    with pytest.raises(InvalidModelError, match="NaN or inf"):
        t.predict_proba(np.ones((2, 1, 2, 2), np.float32))


def test_cpu_fallback_is_silent(digits_memorised_onnx):
    code = (
        "from audit_sdk.adapters.onnx import OnnxTarget, available_providers; import numpy as np; "
        f"t = OnnxTarget({str(digits_memorised_onnx)!r}); t.predict_proba(np.zeros((2,1,8,8), np.float32)); "
        "print(available_providers())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "", out.stderr  # no provider-failure spam
    import torch as _t

    if not _t.cuda.is_available():
        assert available_providers() == ("CPUExecutionProvider",)


@pytest.mark.gpu
def test_cuda_provider_is_used_when_present(digits_memorised_onnx):
    t = OnnxTarget(digits_memorised_onnx)
    assert t.providers[0] == "CUDAExecutionProvider"
