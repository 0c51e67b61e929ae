"""The framework-neutral Trainer contract: the torch (vectorised) and scikit-learn trainers behind make_trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit_sdk.adapters.sklearn import SklearnTrainer
from audit_sdk.adapters.torch import TorchTrainer
from audit_sdk.adapters.torch.training import TrainConfig, Trainer
from audit_sdk.errors import InvalidParameterError
from audit_sdk.training import Trainer as CoreTrainer
from audit_sdk.training import make_trainer


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _data(n=60, shape=(1, 8, 8), k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype(np.float32), rng.integers(0, k, n)


def test_make_trainer_dispatches_by_family():
    opts = {"input_shape": (1, 8, 8), "n_classes": 4}
    assert isinstance(make_trainer("cnn", opts), TorchTrainer)
    assert isinstance(make_trainer({"family": "torch", "architecture": "mlp", "options": {"hidden": 16}}, opts), TorchTrainer)
    rf = make_trainer({"family": "sklearn", "estimator": "RandomForestClassifier", "params": {"n_estimators": 5}}, opts)
    assert isinstance(rf, SklearnTrainer) and isinstance(rf, CoreTrainer) and rf.describe()["estimator"] == "RandomForestClassifier"
    with pytest.raises(InvalidParameterError, match="families: torch, sklearn"):
        make_trainer({"family": "jax"}, opts)
    with pytest.raises(InvalidParameterError, match="did you mean RandomForestClassifier"):
        make_trainer({"family": "sklearn", "estimator": "RandomForest"}, opts)
    with pytest.raises(InvalidParameterError, match="no parameters"):
        make_trainer({"family": "sklearn", "estimator": "RandomForestClassifier", "params": {"trees": 5}}, opts)


def test_vectorised_step_equals_each_model_trained_alone():
    """One full-batch Adam step of the vmapped ensemble gives each model exactly its own update,
    whatever the other models' data sizes (padding weighs nothing)."""
    x, y = _data(60)
    xs, ys = [x[:60], x[:37], x[10:50]], [y[:60], y[:37], y[10:50]]
    seeds = [3, 4, 5]
    # SGD: the update is linear in the gradient (Adam's first step is ~lr * sign(g), so float noise in a
    # near-zero gradient flips it; Adam acts elementwise on the stacked tensors the same way)
    recipe = {"epochs": 1, "batch_size": 64, "lr": 0.1, "optimizer": "sgd", "device": "cpu"}
    vec = make_trainer("cnn", {"input_shape": (1, 8, 8), "n_classes": 4, "train": recipe})
    models = vec.fit_many(xs, ys, seeds)
    for m, xi, yi, s in zip(models, xs, ys, seeds):
        alone = Trainer(TrainConfig(**recipe, seed=s)).fit(vec.build(s), xi, yi).model
        for (k, a), b in zip(m.state_dict().items(), alone.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=k)
    assert not vec.notes  # it really ran vectorised


def test_vectorised_ensemble_learns_like_one_by_one():
    from audit_sdk.data import load_digits_data

    d = load_digits_data()
    tr, te = slice(0, 400), slice(400, 800)
    recipe = {"epochs": 8, "batch_size": 32, "lr": 2e-3, "device": "cpu"}
    opts = {"input_shape": (1, 8, 8), "n_classes": 10, "train": recipe}
    vec = make_trainer("cnn", opts)
    seq = make_trainer("cnn", {**opts, "vectorise": False})
    acc_v = [vec.accuracy(m, d.x[te], d.y[te]) for m in vec.fit_many([d.x[tr]] * 3, [d.y[tr]] * 3, [0, 1, 2])]
    acc_s = [seq.accuracy(m, d.x[te], d.y[te]) for m in seq.fit_many([d.x[tr]] * 3, [d.y[tr]] * 3, [0, 1, 2])]
    assert min(acc_v) > 0.7 and abs(np.mean(acc_v) - np.mean(acc_s)) < 0.05


def test_vectorised_predictions_equal_each_model_alone(tmp_path):
    x, y = _data(40)
    t = make_trainer("mlp", {"input_shape": (1, 8, 8), "n_classes": 4, "train": {"epochs": 1, "device": "cpu"}})
    models = [t.build(s) for s in range(3)]
    many = t.predict_proba_many(models, x)
    for i, m in enumerate(models):
        with torch.no_grad():
            direct = torch.softmax(m(torch.from_numpy(x)).double(), 1).numpy()
        np.testing.assert_allclose(many[i], direct, rtol=1e-5, atol=1e-7)
        t.save(m, str(tmp_path / f"{i}.pt"))
        np.testing.assert_allclose(t.predict_proba(t.load(str(tmp_path / f"{i}.pt"), i), x), direct, rtol=1e-5, atol=1e-7)


def test_sklearn_trainer_matches_the_estimator_and_fills_missing_classes(tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5))
    y = np.r_[np.zeros(40, int), np.full(40, 2)]  # class 1 never seen, 3 classes in the audit
    t = make_trainer({"family": "sklearn", "estimator": "RandomForestClassifier", "params": {"n_estimators": 7}}, {"n_classes": 3})
    m = t.fit(t.build(11), x, y, seed=11)
    direct = RandomForestClassifier(n_estimators=7, random_state=11).fit(x, y).predict_proba(x)
    got = t.predict_proba(m, x)
    np.testing.assert_allclose(got[:, [0, 2]], direct)
    assert (got[:, 1] == 0).all()
    t.save(m, str(tmp_path / "m.pkl"))
    np.testing.assert_allclose(t.predict_proba(t.load(str(tmp_path / "m.pkl"), 11), x), got)


@pytest.mark.parametrize("family", ["lightgbm", "xgboost"])
def test_gradient_boosting_families_train_through_their_sklearn_interface(family):
    pytest.importorskip(family)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 4))
    y = (x[:, 0] > 0).astype(int)
    t = make_trainer({"family": family, "params": {"n_estimators": 10}}, {"n_classes": 2})
    (m,) = t.fit_many([x], [y], [0])
    assert t.accuracy(m, x, y) > 0.9 and t.describe()["family"] == family
