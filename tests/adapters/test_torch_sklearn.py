"""TorchTarget (white-box), export_onnx, Trainer basics, SklearnTarget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import audit_sdk
from audit_sdk.adapters.sklearn import SklearnTarget
from audit_sdk.adapters.torch import TorchTarget, TrainConfig, Trainer, export_onnx, make_model
from audit_sdk.errors import InvalidDataError, InvalidModelError, InvalidParameterError


def test_per_example_gradients_match_a_loop(digits_memorised):
    model = digits_memorised.model
    t = TorchTarget(model, device="cpu")
    x, y = digits_memorised.data.members.x[:5], digits_memorised.data.members.y[:5]
    g = t.gradients(x, y)
    assert g.shape == (5, sum(p.numel() for p in model.parameters()))
    for i in range(5):
        model.zero_grad()
        out = model(torch.from_numpy(x[i : i + 1]))
        torch.nn.functional.cross_entropy(out, torch.from_numpy(y[i : i + 1])).backward()
        ref = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
        np.testing.assert_allclose(g[i], ref, rtol=1e-4, atol=1e-6)


def test_representations(digits_memorised):
    t = TorchTarget(digits_memorised.model, device="cpu")
    names = t.layer_names()
    r = t.representations(digits_memorised.data.members.x[:3], layer=names[0])
    assert r.shape[0] == 3
    with pytest.raises(InvalidParameterError, match="unknown layer 'nope'"):
        t.representations(digits_memorised.data.members.x[:3], layer="nope")


def test_input_shape_inference_and_n_classes():
    mlp = make_model("mlp", input_shape=(1, 8, 8), n_classes=10)
    t = TorchTarget(mlp)
    assert t.n_classes == 10 and t.input_shape == ()
    lin = torch.nn.Sequential(torch.nn.Linear(64, 3))
    assert TorchTarget(lin).input_shape == (64,)


def test_export_checks_against_torch(tmp_path):
    model = make_model("lenet", input_shape=(1, 8, 8), n_classes=10, seed=0)
    p = export_onnx(model, np.zeros((3, 1, 8, 8), np.float32), tmp_path / "lenet.onnx")
    t = audit_sdk.load_target(str(p))
    x = np.random.default_rng(0).random((9, 1, 8, 8), dtype=np.float32)  # a batch size never seen by export
    with torch.no_grad():
        np.testing.assert_allclose(t.logits(x), model(torch.from_numpy(x)).numpy(), atol=1e-5)
    with pytest.raises(InvalidModelError, match="batch axis"):
        export_onnx(model, np.zeros(8, np.float32), tmp_path / "x.onnx")


def test_trainer_learns_and_is_reproducible():
    d = audit_sdk.load_digits_data()
    x, y = d.x[:400], d.y[:400]

    def run():
        m = make_model("mlp", input_shape=(1, 8, 8), n_classes=10, seed=3)
        r = Trainer(TrainConfig(epochs=5, batch_size=32, lr=3e-3, seed=3, device="cpu")).fit(m, x, y)
        return r

    a, b = run(), run()
    assert a.history[-1]["loss"] < a.history[0]["loss"]
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    with pytest.raises(InvalidDataError, match="NaN or inf"):
        Trainer(TrainConfig(epochs=1)).fit(
            make_model("mlp", input_shape=(1, 8, 8), n_classes=10), np.full((4, 1, 8, 8), np.nan), np.zeros(4, int)
        )
    with pytest.raises(InvalidParameterError, match="invalid training config"):
        Trainer({"epochs": 1, "learning_rate": 0.1})


def test_poisson_sampling_batches_have_the_expected_size():
    rng = np.random.default_rng(0)
    sizes = [len(Trainer._poisson_batch(rng, 1000, 0.05)) for _ in range(400)]
    assert abs(np.mean(sizes) - 50) < 2 and np.std(sizes) > 3  # Binomial(1000, 0.05): mean 50, sd ~6.9


def test_sklearn_target_and_load_target():
    d = audit_sdk.load_digits_data()
    x = d.x.reshape(len(d.x), -1)
    est = LogisticRegression(max_iter=200).fit(x[:300], d.y[:300])
    t = audit_sdk.load_target(est)
    assert isinstance(t, SklearnTarget) and t.n_classes == 10
    np.testing.assert_allclose(t.predict_proba(d.x[:5]), est.predict_proba(x[:5]), rtol=1e-5)  # images flattened for it
    data = audit_sdk.AuditData((d.x[:300], d.y[:300]), (d.x[300:600], d.y[300:600]), check_disjoint=False)
    report = audit_sdk.run_audit(est, data, attacks=["mia.loss-threshold"])
    assert 0.0 <= report.results[0].metrics["auc"] <= 1.0
    with pytest.raises(InvalidModelError, match="not fitted"):
        SklearnTarget(LogisticRegression())


def test_load_target_refuses_unknown_models():
    with pytest.raises(InvalidModelError, match="no adapter can load a dict"):
        audit_sdk.load_target({"weights": 1})
