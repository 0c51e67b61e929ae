"""Models from the exporters people use, audited from the CLI with no extra option.

Each case exports a small model trained on members, audits it with
``audit-sdk audit model.onnx --data d.npz --attacks mia.loss-threshold mia.threshold mia.classifier``
and checks the loss-threshold AUC against one computed here independently: onnxruntime run
directly on the graph, the class-score output read by hand (ZipMap dicts included), the loss by
scipy and the AUC by scikit-learn.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from scipy.special import logsumexp
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.metrics import roc_auc_score

from audit_sdk.cli import main
from audit_sdk.data import AuditData, save_npz

ATTACKS = ["mia.loss-threshold", "mia.threshold", "mia.classifier"]
N = 120  # members and non-members each


@dataclass
class Case:
    path: Path
    npz: Path
    x: Any  # members then non-members: an array, or a dict of named arrays
    y: np.ndarray
    read: Callable[[list[Any]], np.ndarray]  # ort outputs -> per-example loss given y (set below)


def _split(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x[: 2 * N], y[: 2 * N]


def _tabular(kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == "binary":
        d = load_breast_cancer()
        x = (d.data / d.data.max(axis=0)).astype(np.float32)
        return _split(x, d.target.astype(np.int64))
    d = load_digits()
    return _split((d.data / 16).astype(np.float32), d.target.astype(np.int64))


def _npz(tmp: Path, x: Any, y: np.ndarray, name: str) -> Path:
    if isinstance(x, dict):
        members, non = {k: v[:N] for k, v in x.items()}, {k: v[N:] for k, v in x.items()}
    else:
        members, non = x[:N], x[N:]
    return save_npz(AuditData((members, y[:N]), (non, y[N:])), tmp / f"{name}.npz")


def _loss_from_probs(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(p[np.arange(len(y)), y].astype(np.float64), 1e-12, 1.0))


def _loss_from_logits(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    return logsumexp(z, axis=1) - z[np.arange(len(y)), y]


def _zipmap(rows: list[dict[Any, float]]) -> np.ndarray:
    classes = sorted(rows[0])
    return np.array([[r[c] for c in classes] for r in rows])


def _direct_auc(case: Case, read: Callable[[list[Any], np.ndarray], np.ndarray]) -> float:
    sess = ort.InferenceSession(str(case.path), providers=["CPUExecutionProvider"])
    inputs = sess.get_inputs()
    if isinstance(case.x, dict):
        feeds = {i.name: case.x[i.name] for i in inputs}
    else:
        feeds = {inputs[0].name: case.x}
    fixed = inputs[0].shape[0] if isinstance(inputs[0].shape[0], int) else None
    if fixed:  # one run per fixed-size batch, as the graph demands
        n = len(case.y)
        assert n % fixed == 0
        outs = [sess.run(None, {k: v[i : i + fixed] for k, v in feeds.items()}) for i in range(0, n, fixed)]
        outputs = [np.concatenate([o[j] for o in outs]) for j in range(len(outs[0]))]
    else:
        outputs = sess.run(None, feeds)
    loss = read(outputs, case.y)
    truth = np.r_[np.ones(N, bool), np.zeros(N, bool)]
    return float(roc_auc_score(truth, -loss))


def _audit(case: Case, tmp: Path, capsys: Any, *extra: str) -> dict[str, Any]:
    code = main(["audit", str(case.path), "--data", str(case.npz), "--attacks", *ATTACKS, "--out", str(tmp), "--no-html", "-q", *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    return json.loads((tmp / "report.json").read_text())


def _auc(report: dict[str, Any], name: str = "mia.loss-threshold") -> float:
    return next(a["metrics"]["auc"] for a in report["attacks"] if a["name"] == name)


def _quiet() -> Any:
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore")  # exporters' own deprecation and tracer warnings, not ours
    return ctx


# ----------------------------------------------------------------------------- scikit-learn, LightGBM, XGBoost
def _sk_case(tmp: Path, name: str) -> Case:
    from lightgbm import LGBMClassifier
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType
    from skl2onnx import to_onnx
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from xgboost import XGBClassifier

    kind = "binary" if name.endswith("binary") or name in ("skl-gradient-boosting", "skl-pipeline") else "multi"
    x, y = _tabular(kind)
    xm, ym = x[:N], y[:N]
    ctx = _quiet()
    try:
        if name.startswith("skl-"):
            est = {
                "skl-logistic-regression": lambda: LogisticRegression(max_iter=300),
                "skl-random-forest": lambda: RandomForestClassifier(n_estimators=10, random_state=0),
                "skl-gradient-boosting": lambda: GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0),
                "skl-pipeline": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=100.0, max_iter=500)),
            }[name]().fit(xm, ym)
            onx = to_onnx(est, xm[:1])
        elif name.startswith("lightgbm"):
            est = LGBMClassifier(n_estimators=15, num_leaves=8, min_child_samples=2, verbose=-1, random_state=0).fit(xm, ym)
            onx = convert_lightgbm(est, initial_types=[("input", FloatTensorType([None, x.shape[1]]))], target_opset=15)
        else:
            est = XGBClassifier(n_estimators=15, max_depth=3, random_state=0, n_jobs=1).fit(xm, ym)
            onx = convert_xgboost(est, initial_types=[("input", FloatTensorType([None, x.shape[1]]))], target_opset=15)
    finally:
        ctx.__exit__(None, None, None)
    path = tmp / f"{name}.onnx"
    path.write_bytes(onx.SerializeToString())
    return Case(path, _npz(tmp, x, y, name), x, y, read=lambda o, y: None)  # type: ignore[arg-type,return-value]


def _read_probabilities(outputs: list[Any], y: np.ndarray) -> np.ndarray:
    # these exporters put the int64 label first and the probabilities (a ZipMap or a tensor) second
    assert outputs[0].dtype == np.int64
    probs = outputs[1]
    p = _zipmap(probs) if isinstance(probs, list) else np.asarray(probs)
    return _loss_from_probs(p, y)


TABULAR = [
    "skl-logistic-regression",
    "skl-random-forest",
    "skl-gradient-boosting",
    "skl-pipeline",
    "lightgbm-binary",
    "lightgbm-multi",
    "xgboost-binary",
    "xgboost-multi",
]


@pytest.fixture(scope="module")
def tabular_cases(tmp_path_factory) -> dict[str, Case]:
    tmp = tmp_path_factory.mktemp("tabular")
    return {name: _sk_case(tmp, name) for name in TABULAR}


@pytest.mark.parametrize("name", TABULAR)
def test_tabular_exporters_audit_with_no_option(tabular_cases, name, tmp_path, capsys):
    case = tabular_cases[name]
    report = _audit(case, tmp_path, capsys)
    assert {a["name"] for a in report["attacks"]} == set(ATTACKS)
    target = report["target"]
    assert target["outputs"] == "probabilities" and "label" not in target["output"]
    assert target["n_classes"] == (2 if "binary" in name or name in ("skl-gradient-boosting", "skl-pipeline") else 10)
    family = "linear" if name in ("skl-logistic-regression", "skl-pipeline") else "tree-ensemble"
    assert target["model_family"] == family
    direct = _direct_auc(case, _read_probabilities)
    assert _auc(report) == pytest.approx(direct, abs=1e-3)
    assert _auc(report) > 0.5  # trained on the members: some leakage to find


# ----------------------------------------------------------------------------- torch.onnx
class _Cnn(torch.nn.Module):
    def __init__(self, n_out: int = 10, nhwc: bool = False) -> None:
        super().__init__()
        self.nhwc = nhwc
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc = torch.nn.Linear(4 * 8 * 8, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.nhwc:
            x = x.permute(0, 3, 1, 2)
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class _Cast(torch.nn.Module):
    """Takes (and returns) another dtype; computes in float32."""

    def __init__(self, inner: torch.nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.inner, self.dtype = inner, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.float()).to(self.dtype)


class _Sigmoid(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.inner(x))


def _train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, binary: bool = False, steps: int = 150) -> torch.nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    for _ in range(steps):
        opt.zero_grad()
        out = model(xt)
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], yt.float())
            if binary
            else torch.nn.functional.cross_entropy(out, yt)
        )
        loss.backward()
        opt.step()
    return model.eval()


def _export(model: torch.nn.Module, example: Any, path: Path, *, names: list[str], dynamic: bool = True, dynamo: bool = False) -> Path:
    ctx = _quiet()
    try:
        with torch.no_grad():
            if dynamo:
                dims = tuple({0: torch.export.Dim("batch", min=1)} for _ in names)
                torch.onnx.export(model, example, str(path), input_names=names, output_names=["logits"], dynamic_shapes=dims, dynamo=True)
            else:
                axes = {n: {0: "batch"} for n in [*names, "logits"]} if dynamic else None
                torch.onnx.export(
                    model, example, str(path), input_names=names, output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False
                )
    finally:
        ctx.__exit__(None, None, None)
    return path


def _digits_images() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return (d.images / 16).astype(np.float32)[: 2 * N, None], d.target[: 2 * N].astype(np.int64)


def _torch_case(tmp: Path, name: str) -> tuple[Case, Callable[[list[Any], np.ndarray], np.ndarray]]:
    torch.manual_seed(0)
    x, y = _digits_images()
    read: Callable[[list[Any], np.ndarray], np.ndarray] = lambda o, y: _loss_from_logits(o[0], y)
    dynamic, data_x = True, x
    if name == "torch-nchw-dynamic" or name == "torch-dynamo":
        model = _train(_Cnn(), x[:N], y[:N])
    elif name in ("torch-fixed-batch-1", "torch-fixed-batch-8"):
        model, dynamic = _train(_Cnn(), x[:N], y[:N]), False
    elif name == "torch-nhwc":
        data_x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        model = _train(_Cnn(nhwc=True), data_x[:N], y[:N])
    elif name in ("torch-float16", "torch-float64"):
        dt = torch.float16 if name == "torch-float16" else torch.float64
        model = _Cast(_train(_Cnn(), x[:N], y[:N]), dt).eval()
        data_x = x.astype(np.float16 if dt == torch.float16 else np.float64)
    elif name in ("torch-binary-logit", "torch-binary-sigmoid"):
        y = (y >= 5).astype(np.int64)
        model = _train(_Cnn(n_out=1), x[:N], y[:N], binary=True)
        if name == "torch-binary-sigmoid":
            model = _Sigmoid(model).eval()

            def read(o: list[Any], y: np.ndarray) -> np.ndarray:
                p = o[0][:, 0].astype(np.float64)
                return -np.log(np.clip(np.where(y == 1, p, 1 - p), 1e-12, 1.0))
        else:

            def read(o: list[Any], y: np.ndarray) -> np.ndarray:
                z = o[0][:, 0].astype(np.float64)
                return np.logaddexp(0, z) - y * z  # binary cross-entropy from the logit
    else:  # pragma: no cover
        raise AssertionError(name)
    batch = 1 if name == "torch-fixed-batch-1" else 8
    example = torch.as_tensor(data_x[:batch])
    path = _export(model, (example,), tmp / f"{name}.onnx", names=["input"], dynamic=dynamic, dynamo=name == "torch-dynamo")
    return Case(path, _npz(tmp, data_x, y, name), data_x, y, read=read), read  # type: ignore[arg-type]


TORCH = [
    "torch-nchw-dynamic",
    "torch-fixed-batch-1",
    "torch-fixed-batch-8",
    "torch-nhwc",
    "torch-float16",
    "torch-float64",
    "torch-binary-logit",
    "torch-binary-sigmoid",
]


@pytest.fixture(scope="module")
def torch_cases(tmp_path_factory) -> dict[str, tuple[Case, Any]]:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("torch")
    return {name: _torch_case(tmp, name) for name in TORCH}


@pytest.mark.parametrize("name", TORCH)
def test_torch_exports_audit_with_no_option(torch_cases, name, tmp_path, capsys):
    case, read = torch_cases[name]
    report = _audit(case, tmp_path, capsys)
    target = report["target"]
    assert target["output"] == "logits" and target["model_family"] == "neural-network"
    assert target["outputs"] == ("probabilities" if name == "torch-binary-sigmoid" else "logits")
    assert target["n_classes"] == (2 if "binary" in name else 10)
    assert target["fixed_batch"] == {"torch-fixed-batch-1": 1, "torch-fixed-batch-8": 8}.get(name)
    assert _auc(report) == pytest.approx(_direct_auc(case, read), abs=1e-3)
    assert _auc(report) > 0.5


@pytest.mark.slow  # the dynamo exporter takes ~10 s to start
def test_torch_dynamo_export_audits(tmp_path_factory, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    case, read = _torch_case(tmp_path_factory.mktemp("dynamo"), "torch-dynamo")
    report = _audit(case, tmp_path, capsys)
    assert report["target"]["outputs"] == "logits"
    assert _auc(report) == pytest.approx(_direct_auc(case, read), abs=1e-3)


# ----------------------------------------------------------------------------- a Hugging Face text classifier
VOCAB, LENGTH, PAD = 50, 12, 0


def _token_data() -> tuple[dict[str, np.ndarray], np.ndarray]:
    gen = np.random.default_rng(0)
    n = 2 * N
    ids = gen.integers(1, VOCAB, size=(n, LENGTH))
    lengths = gen.integers(4, LENGTH + 1, size=n)
    mask = (np.arange(LENGTH)[None] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, PAD).astype(np.int64)
    y = ((ids == 7).sum(axis=1) + gen.integers(0, 2, n)) % 2  # noisy labels: members must be memorised
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}, y.astype(np.int64)


class _HfLogits(torch.nn.Module):
    def __init__(self, hf: torch.nn.Module, n_inputs: int) -> None:
        super().__init__()
        self.hf, self.n_inputs = hf, n_inputs

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.hf(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def _bert_case(tmp: Path, n_inputs: int) -> Case:
    from transformers import BertConfig, BertForSequenceClassification

    names = ["input_ids", "attention_mask", "token_type_ids"][:n_inputs]
    cfg = BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        num_labels=2,
        pad_token_id=PAD,
    )
    torch.manual_seed(n_inputs)
    hf = BertForSequenceClassification(cfg)
    x, y = _token_data()
    model = _HfLogits(hf, n_inputs)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    feeds = [torch.as_tensor(x[k][:N]) for k in names]
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(*feeds), torch.as_tensor(y[:N])).backward()
        opt.step()
    model.eval()
    example = tuple(torch.as_tensor(x[k][:2]) for k in names)
    path = tmp / f"bert-{n_inputs}.onnx"
    ctx = _quiet()
    try:
        with torch.no_grad():
            axes = {k: {0: "batch", 1: "sequence"} for k in names} | {"logits": {0: "batch"}}
            torch.onnx.export(
                model, example, str(path), input_names=names, output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False
            )
    finally:
        ctx.__exit__(None, None, None)
    data = {k: x[k] for k in names}
    return Case(path, _npz(tmp, data, y, f"bert-{n_inputs}"), data, y, read=lambda o, y: None)  # type: ignore[arg-type,return-value]


@pytest.fixture(scope="module")
def bert_cases(tmp_path_factory) -> dict[int, Case]:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("bert")
    return {n: _bert_case(tmp, n) for n in (2, 3)}


@pytest.mark.parametrize("n_inputs", [2, 3])
def test_text_classifier_audits_from_its_onnx_file(bert_cases, n_inputs, tmp_path, capsys):
    case = bert_cases[n_inputs]
    with np.load(case.npz) as f:
        assert {"x_members__input_ids", "x_members__attention_mask", "y_members"} <= set(f.files)
    report = _audit(case, tmp_path, capsys)
    target = report["target"]
    assert target["input_names"] == ["input_ids", "attention_mask", "token_type_ids"][:n_inputs]
    assert target["outputs"] == "logits" and target["n_classes"] == 2
    assert report["data"]["inputs"]["input_ids"] == f"int64[{LENGTH}]"
    direct = _direct_auc(case, lambda o, y: _loss_from_logits(o[0], y))
    assert _auc(report) == pytest.approx(direct, abs=1e-3)
    assert _auc(report) > 0.55
