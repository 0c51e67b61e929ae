"""The framework-neutral Trainer contract: the torch (vectorised) and scikit-learn trainers behind make_trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audit_sdk.adapters.sklearn import SklearnTrainer
from audit_sdk.adapters.torch import TorchTrainer, make_model
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


def _custom_cnn(seed):
    """Grouped, strided, bias-free convolutions, nested Sequential, average and adaptive pooling."""
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(4, 6, 3, stride=2, padding=(1, 0), groups=2, bias=False), nn.Tanh(),
        nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(6, 5, 1)), nn.GELU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(5, 3, bias=False),
    )  # fmt: skip


def _assert_stacked_equals_each(fwd, models, x):
    """Outputs and parameter gradients of the stacked forward equal each model's own, model by model."""
    from torch.func import stack_module_state

    params, _ = stack_module_state(models)
    params = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
    out = fwd(params, x)
    out.square().sum().backward()
    for i, m in enumerate(models):
        alone = m(x[i])
        alone.square().sum().backward()
        torch.testing.assert_close(out[i], alone)
        for k, p in m.named_parameters():
            torch.testing.assert_close(params[k].grad[i], p.grad, msg=k)


@pytest.mark.parametrize(
    ("build", "shape"),
    [
        (lambda s: make_model("cnn", input_shape=(1, 8, 8), n_classes=10, seed=s), (1, 8, 8)),
        (lambda s: make_model("cnn", input_shape=(3, 12, 10), n_classes=4, seed=s), (3, 12, 10)),
        (lambda s: make_model("lenet", input_shape=(1, 8, 8), n_classes=10, seed=s), (1, 8, 8)),
        (lambda s: make_model("mlp", input_shape=(6,), n_classes=3, hidden=7, seed=s), (6,)),
        (_custom_cnn, (4, 9, 11)),
    ],
    ids=["cnn", "cnn-rgb", "lenet", "mlp", "custom"],
)
def test_stacked_forward_equals_each_model_outputs_and_gradients(build, shape):
    """The stacked ensemble (grouped convolutions, batched matmuls, pool-before-ReLU) computes each
    model's own outputs and parameter gradients (float64, so any layout or order mistake shows)."""

    from audit_sdk.adapters.torch.reference import StackedForward

    models = [build(s).double() for s in range(3)]
    fwd = StackedForward.of(models[0])
    assert fwd is not None
    _assert_stacked_equals_each(fwd, models, torch.randn(3, 5, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))


def test_stacked_forward_declines_what_it_cannot_express():
    from torch import nn

    from audit_sdk.adapters.torch.reference import StackedForward

    assert StackedForward.of(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 2))) is None
    assert StackedForward.of(nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), nn.Flatten(), nn.Linear(2, 2))) is None
    assert StackedForward.of(nn.Sequential(nn.Conv2d(1, 2, 3, padding_mode="reflect"), nn.Flatten())) is None
    assert StackedForward.of(nn.Sequential(nn.Linear(2, 2), nn.Softmax(dim=1))) is None
    assert StackedForward.of(nn.Linear(2, 2)) is None  # not a Sequential: vmap handles it


def test_vectorised_fit_is_the_same_through_stacked_forward_and_vmap():
    """The CPU-fast StackedForward path trains the models vmap would (same shuffles, same updates)."""
    from torch import nn

    x, y = _data(50)
    recipe = {"epochs": 2, "batch_size": 16, "lr": 1e-3, "optimizer": "adam", "device": "cpu"}
    stacked = make_trainer("cnn", {"input_shape": (1, 8, 8), "n_classes": 4, "train": recipe})
    vm = make_trainer("cnn", {"input_shape": (1, 8, 8), "n_classes": 4, "train": recipe})
    vm.stacked = False
    xs, ys = [x[:50], x[5:40]], [y[:50], y[5:40]]
    for a, b in zip(stacked.fit_many(xs, ys, [1, 2]), vm.fit_many(xs, ys, [1, 2])):
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
            torch.testing.assert_close(va, vb, rtol=1e-4, atol=1e-5, msg=k)
    # a model StackedForward cannot express goes through vmap, still vectorised
    odd = make_trainer(
        lambda shape, k, seed: nn.Sequential(nn.Flatten(), nn.Linear(64, k), nn.LogSoftmax(1)),
        {"input_shape": (1, 8, 8), "n_classes": 4, "train": recipe},
    )
    assert len(odd.fit_many(xs, ys, [1, 2])) == 2 and not odd.notes


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


@pytest.mark.gpu
def test_stacked_forward_on_cuda_equals_each_model():
    """On CUDA the images stay NCHW; outputs and gradients still equal each model's own."""

    from audit_sdk.adapters.torch.reference import StackedForward

    models = [make_model("cnn", input_shape=(1, 8, 8), n_classes=10, seed=s).double().cuda() for s in range(3)]
    fwd = StackedForward.of(models[0])
    _assert_stacked_equals_each(fwd, models, torch.randn(3, 5, 1, 8, 8, dtype=torch.float64, device="cuda"))
