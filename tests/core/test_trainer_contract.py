"""The framework-neutral Trainer contract: a third-party numpy trainer, the torch trainer, and a core that names no adapter."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

import audit_sdk
from audit_sdk import Defense, hookimpl
from audit_sdk.errors import InvalidParameterError, NotSupportedError
from audit_sdk.executor import LocalExecutor
from audit_sdk.run import RunContext
from audit_sdk.training import TrainConfig, TrainContext, Trainer, TrainResult, make_trainer

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- a third-party trainer (numpy only)
class Centroids:
    """A nearest-centroid classifier's state: one mean per class (None before fit)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.means_: np.ndarray | None = None


class CentroidTrainer(Trainer):
    """Nearest-centroid classifiers: probabilities are a softmax of minus the squared distances."""

    family = "centroid"
    file_suffix = ".npz"

    def __init__(self, n_classes: int, temperature: float = 1.0) -> None:
        self.n_classes = n_classes
        self.temperature = temperature
        self.fits = 0

    def identity(self) -> str:
        return f"centroid:T={self.temperature}"

    def describe(self) -> dict:
        return {"family": "centroid", "temperature": self.temperature}

    def build(self, seed: int) -> Centroids:
        return Centroids(seed)

    def fit(self, model: Centroids, x: np.ndarray, y: np.ndarray, *, seed: int) -> Centroids:
        self.fits += 1
        xa = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        means = np.full((self.n_classes, xa.shape[1]), 1e3)  # a class never seen is far from everything
        for k in np.unique(y):
            means[k] = xa[y == k].mean(0)
        model.means_ = means
        return model

    def predict_proba(self, model: Centroids, x: np.ndarray) -> np.ndarray:
        assert model.means_ is not None, "fit before predicting"
        xa = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        d = ((xa[:, None, :] - model.means_[None]) ** 2).sum(-1) / self.temperature
        z = np.exp(-(d - d.min(1, keepdims=True)))
        return z / z.sum(1, keepdims=True)

    def save(self, model: Centroids, path: str) -> None:
        assert model.means_ is not None, "fit before saving"
        with open(path, "wb") as f:  # np.savez would append .npz to a temporary name
            np.savez(f, means=model.means_)

    def load(self, path: str, seed: int) -> Centroids:
        model = Centroids(seed)
        with np.load(path) as z:
            model.means_ = z["means"]
        return model


def _centroid_plugin(made: list[CentroidTrainer]) -> types.SimpleNamespace:
    def make_trainer(model, options):
        if isinstance(model, dict) and model.get("family") == "centroid":
            t = CentroidTrainer(int(options.get("n_classes") or 2), **model.get("params", {}))
            made.append(t)
            return t
        return None

    return types.SimpleNamespace(make_trainer=hookimpl(make_trainer))


@pytest.fixture
def centroid_registry(pm):
    made: list[CentroidTrainer] = []
    pm.register(_centroid_plugin(made), name="test-centroid-trainer")
    yield audit_sdk.get_registry(pm), made
    pm.unregister(name="test-centroid-trainer")


def _blobs(n=240, d=5, k=3, seed=0, noise=0.15):
    """Gaussian classes with a fraction of flipped labels (a 1-NN target must memorise those)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = (rng.normal(size=(n, d)) + 2.0 * np.eye(k, d)[y]).astype(np.float32)
    flip = rng.random(n) < noise
    y[flip] = (y[flip] + 1) % k
    return x, y.astype(np.int64)


class Scale(Defense):
    """Input point only: scales the features (a defense the default ``train`` can run)."""

    name = "defense.test-contract-scale"
    summary = "Input-point test double."
    points = ("input",)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        factor: float = 0.5

    def transform_data(self, x, y, *, rng=None):
        return x * self.params.factor, y


class CountSteps(Defense):
    """Parameters point: counts optimizer steps and reports the validation accuracy it sees."""

    name = "defense.test-contract-count"
    summary = "Training-callback test double."
    points = ("parameters",)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def on_train_begin(self, ctx):
        self.steps = 0

    def on_step_end(self, ctx):
        self.steps += 1

    def on_train_end(self, ctx):
        return {"steps": self.steps, "accuracy": ctx.accuracy(ctx.x_val, ctx.y_val)}


class Observer:
    def __init__(self) -> None:
        self.steps: list[int] = []
        self.epochs: list[dict] = []

    @hookimpl
    def on_train_step(self, step, epoch, metrics, context):
        assert isinstance(context, TrainContext) and "loss" in metrics
        self.steps.append(step)

    @hookimpl
    def on_epoch_end(self, epoch, metrics, context):
        self.epochs.append(dict(metrics))


# --------------------------------------------------------------------------- the third-party trainer in LiRA and audits
def test_a_third_party_trainer_makes_liras_reference_models(centroid_registry, tmp_path):
    from sklearn.neighbors import KNeighborsClassifier

    reg, made = centroid_registry
    x, y = _blobs()
    data = audit_sdk.AuditData((x[:80], y[:80]), (x[80:160], y[80:160]), (x[160:], y[160:]), n_classes=3)
    target = audit_sdk.load_target(KNeighborsClassifier(n_neighbors=1).fit(x[:80], y[:80]), registry=reg)
    ctx = RunContext(registry=reg, executor=LocalExecutor(workers=1), cache_dir=tmp_path)
    spec = {"family": "centroid", "params": {"temperature": 2.0}}
    report = audit_sdk.run_audit(
        target, data, attacks=[("mia.lira", {"n_references": 4, "reference_model": spec})], registry=reg, context=ctx
    )
    (res,) = report.results
    assert res.extra["reference_model"] == {"family": "centroid", "temperature": 2.0}
    assert sum(t.fits for t in made) == 4 and len(list((tmp_path / "mia-reference").glob("*.npz"))) == 4
    assert np.isfinite(res.scores).all() and 0.0 <= res.metrics["auc"] <= 1.0
    # cached: a second audit trains nothing and loads the third party's files
    again = audit_sdk.run_audit(
        target, data, attacks=[("mia.lira", {"n_references": 4, "reference_model": spec})], registry=reg, context=ctx
    )
    assert again.results[0].extra["references_trained"] == 0
    np.testing.assert_allclose(again.results[0].scores, res.scores)


def test_the_default_train_runs_input_defenses_and_observers_and_refuses_loop_defenses(centroid_registry, pm):
    reg, _ = centroid_registry
    x, y = _blobs(90)
    trainer = make_trainer({"family": "centroid"}, {"n_classes": 3}, registry=reg)
    obs = Observer()
    pm.register(obs, name="test-contract-observer")
    try:
        result = trainer.train(trainer.build(0), x, y, defenses=[Scale()], observers=reg, x_val=x[:30], y_val=y[:30])
    finally:
        pm.unregister(name="test-contract-observer")
    assert isinstance(result, TrainResult) and result.defenses == {"defense.test-contract-scale": {}}
    np.testing.assert_allclose(result.model.means_[y[0]], 0.5 * x[y == y[0]].mean(0), rtol=1e-6)  # trained on scaled data
    assert [e["epoch"] for e in obs.epochs] == [0] and obs.steps == []  # one fit, no steps
    assert 0.0 <= result.history[0]["val_accuracy"] <= 1.0
    assert trainer.reinitialise(result.model, 1).means_ is None
    with pytest.raises(NotSupportedError, match="no training loop for defense.test-contract-count"):
        trainer.train(trainer.build(0), x, y, defenses=[CountSteps()])
    with pytest.raises(NotSupportedError, match="cannot export ONNX"):
        trainer.export_onnx(result.model, "m.onnx")
    with pytest.raises(InvalidParameterError, match="observers must be"):
        trainer.train(trainer.build(0), x, y, observers=object())


def test_train_config_is_one_recipe_for_every_family():
    from audit_sdk.adapters.torch import TrainConfig as TorchConfig
    from audit_sdk.adapters.torch.training import TrainContext as TorchContext
    from audit_sdk.adapters.torch.training import TrainResult as TorchResult

    assert TorchConfig is TrainConfig and TorchContext is TrainContext and TorchResult is TrainResult
    assert TrainConfig.coerce({"epochs": 3}).epochs == 3 and TrainConfig.coerce(None) == TrainConfig()
    with pytest.raises(InvalidParameterError, match="invalid training config"):
        TrainConfig.coerce({"epocs": 3})
    with pytest.raises(NotSupportedError, match="cannot evaluate"):
        TrainContext().accuracy(np.zeros((1, 2)), np.zeros(1, int))


# --------------------------------------------------------------------------- the torch trainer passes the contract
def test_torch_trainer_builds_trains_with_defenses_and_observers_and_exports_onnx(pm, tmp_path):
    import torch

    from audit_sdk.data import load_digits_data

    torch.set_num_threads(1)
    reg = audit_sdk.get_registry(pm)
    d = load_digits_data()
    x, y = d.x[:300], d.y[:300]
    cfg = TrainConfig(epochs=3, batch_size=50, lr=5e-3, device="cpu", seed=0, threads=1)
    trainer = make_trainer("mlp", {"input_shape": x.shape[1:], "n_classes": 10, "train": cfg.model_dump()}, registry=reg)
    assert trainer.family == "torch" and isinstance(trainer, Trainer)
    model = trainer.build(0)
    obs = Observer()
    pm.register(obs, name="test-contract-observer")
    try:
        result = trainer.train(model, x, y, cfg, defenses=[CountSteps()], observers=reg, x_val=d.x[300:400], y_val=d.y[300:400])
    finally:
        pm.unregister(name="test-contract-observer")
    assert result.model is model and result.steps == 18  # 3 epochs x 6 batches, trained in place
    assert obs.steps == list(range(18)) and [e["epoch"] for e in obs.epochs] == [0, 1, 2]
    report = result.defenses["defense.test-contract-count"]
    assert report["steps"] == 18 and report["accuracy"] == pytest.approx(result.history[-1]["val_accuracy"])
    acc = trainer.accuracy(result.model, d.x[300:400], d.y[300:400])
    assert acc > 0.5 and acc == pytest.approx(report["accuracy"])
    # re-initialised: the same architecture, fresh weights, the same for the same seed
    fresh = [trainer.reinitialise(model, s).state_dict() for s in (1, 1, 2)]
    assert all(torch.equal(a, b) for a, b in zip(fresh[0].values(), fresh[1].values()))
    assert not torch.equal(next(iter(fresh[0].values())), next(iter(fresh[2].values())))
    # exported to ONNX, the file gives the same predictions as the trained model
    path = trainer.export_onnx(result.model, tmp_path / "m.onnx")
    served = audit_sdk.load_target(str(path), registry=reg)
    np.testing.assert_allclose(served.predict_proba(d.x[300:400]), trainer.predict_proba(result.model, d.x[300:400]), atol=1e-5)


def test_the_public_train_function_goes_through_make_trainer(pm):
    import torch

    torch.set_num_threads(1)
    made = []

    def spy(model, options):
        made.append(model)

    pm.register(types.SimpleNamespace(make_trainer=hookimpl(spy)), name="test-contract-spy")  # answers None: torch answers
    x, y = _blobs(64, d=8, k=2)
    result = audit_sdk.train("mlp", x, y, defense=None, epochs=1, batch_size=32, pm=pm)
    assert made == ["mlp"] and len(result.history) == 1
    with pytest.raises(InvalidParameterError, match="no installed adapter can train 'resnet'"):
        audit_sdk.train("resnet", x, y, defense=None, epochs=1, pm=pm)


def test_a_compare_cell_still_runs_from_the_old_positional_call(tmp_path):
    from audit_sdk.compare import CellTask, _report_from_tree, _run_cell

    x, y = _blobs(120, d=8, k=2)
    data = audit_sdk.AuditData((x[:60], y[:60]), (x[60:], y[60:]), None, n_classes=2)
    train = {"architecture": "mlp", "epochs": 1, "batch_size": 32, "lr": 1e-2, "optimizer": "adam", "sampling": "shuffle"}
    attacks = [("mia.loss-threshold", {})]
    args = ("plain", [], data, train, attacks, 0, str(tmp_path), "onnx", None, None)
    old = _report_from_tree(_run_cell(*args))
    new = _report_from_tree(_run_cell(CellTask(*args)))
    assert old.label == new.label == "plain" and Path(old.target["model_file"]).suffix == ".onnx"
    np.testing.assert_allclose(old.results[0].scores, new.results[0].scores)
    assert CellTask(*args).key("d") == CellTask(*args).key("d") != CellTask(*args[:5], 1, *args[6:]).key("d")


# --------------------------------------------------------------------------- the core names no adapter
@pytest.mark.parametrize(
    "path",
    [
        "audit_sdk/compare.py",
        "audit_sdk/training_api.py",
        "audit_sdk/dp_audit_api.py",
        "audit_sdk/cli/train_cmd.py",
        "audit_sdk/training.py",
    ],
)
def test_the_training_sites_of_the_core_import_no_adapter_or_plugin(path):
    tree = ast.parse((ROOT / path).read_text())
    bad = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = "." * node.level + (node.module or "")
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        bad += [n for n in names if any(p in n.lstrip(".").split(".") for p in ("adapters", "plugins")) or "torch" in n.split(".")]
    assert not bad, f"{path} imports {bad}"
