"""ONNX layouts the target must read right or refuse in one line naming the option: never a silent wrong answer."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score

from audit_sdk import load_target
from audit_sdk.adapters.onnx import OnnxTarget, OutputSelectionError
from audit_sdk.cli import main
from audit_sdk.data import AuditData, load_npz, pack_inputs, save_npz
from audit_sdk.errors import InvalidDataError, InvalidParameterError

N = 100


def _export(model: torch.nn.Module, example: np.ndarray, path: Path, outputs: list[str], *, dynamic: bool = True) -> Path:
    axes = {n: {0: "batch"} for n in ["input", *outputs]} if dynamic else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (torch.as_tensor(example),),
            str(path),
            input_names=["input"],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return path


class _Two(torch.nn.Module):
    """(embedding, logits): the shape of a model exported with its features as a second output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Linear(64, 32)
        self.head = torch.nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.body(x.flatten(1)))
        return h, self.head(h)


class _Fn(torch.nn.Module):
    def __init__(self, fn, n_out: int = 10) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(64, n_out)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.lin(x.flatten(1).float()))


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    return (d.data[: 2 * N] / 16).astype(np.float32), d.target[: 2 * N].astype(np.int64)


@pytest.fixture(scope="module")
def npz(digits, tmp_path_factory) -> Path:
    x, y = digits
    return save_npz(AuditData((x[:N], y[:N]), (x[N:], y[N:])), tmp_path_factory.mktemp("d") / "d.npz")


@pytest.fixture(scope="module")
def models(digits, tmp_path_factory) -> dict[str, Path]:
    x, _ = digits
    tmp = tmp_path_factory.mktemp("m")
    ex = x[:4]
    return {
        "generic-two": _export(_Two(), ex, tmp / "two.onnx", ["out0", "out1"]),
        "named-two": _export(_Two(), ex, tmp / "named.onnx", ["embedding", "logits"]),
        "embedding-only": _export(_Fn(torch.tanh, 32), ex, tmp / "emb.onnx", ["output"]),
        "clipped-binary": _export(_Fn(lambda z: torch.clamp(z, 0, 1), 1), ex, tmp / "clip.onnx", ["output"]),
        "multi-label": _export(_Fn(torch.sigmoid, 3), ex, tmp / "ml.onnx", ["output"]),
        "int-input": _export(_Fn(lambda z: z, 10), (x[:4] * 16).astype(np.int64), tmp / "int.onnx", ["logits"]),
    }


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--no-html"] if argv[0] == "audit" else list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("audit-sdk: error:") and "Traceback" not in err, err
    return lines[0]


def test_two_generic_float_outputs_are_refused_naming_them_and_the_option(models, npz, tmp_path, capsys):
    code, _, err = _cli(capsys, "audit", str(models["generic-two"]), "--data", str(npz), "--out", str(tmp_path), "-q")
    line = _one_line(err)
    assert code == 2 and "out0" in line and "out1" in line and "--output" in line
    # choosing the output makes it run, and the numbers are those of that output
    code, _, err = _cli(capsys, "audit", str(models["generic-two"]), "--data", str(npz), "--output", "1", "--out", str(tmp_path), "-q")
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    x, y, truth = load_npz(npz).combined()
    z = ort.InferenceSession(str(models["generic-two"])).run(["out1"], {"input": x})[0].astype(np.float64)
    loss = np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]
    assert report["attacks"][0]["metrics"]["auc"] == pytest.approx(roc_auc_score(truth, -loss), abs=1e-6)
    assert report["target"]["output"] == "out1" and report["target"]["selection"] == "chosen with --output"


def test_outputs_named_like_logits_are_preferred(models):
    t = OnnxTarget(models["named-two"], label_classes=10)
    assert t.selected_output == "logits" and t.n_classes == 10 and "named like logits" in t.selection_reason
    assert "notes" not in t.describe()
    # labels that miss some classes: the named output is still the class scores, and the report says so
    assert OnnxTarget(models["named-two"], label_classes=8).describe()["notes"] == [
        "output 'logits' has 10 classes; the audit labels span only 0..7"
    ]


def test_an_output_wider_than_the_labels_is_refused(models, npz, tmp_path, capsys):
    code, _, err = _cli(capsys, "audit", str(models["embedding-only"]), "--data", str(npz), "--out", str(tmp_path), "-q")
    line = _one_line(err)
    assert code == 2 and "32 columns" in line and "0..9" in line and "--output output" in line


def test_one_column_head_in_unit_range_needs_scores(models, digits):
    with pytest.raises(OutputSelectionError, match="--scores probabilities or --scores logits"):
        OnnxTarget(models["clipped-binary"])
    t = OnnxTarget(models["clipped-binary"], scores="probabilities")
    x, _ = digits
    p = t.predict_proba(x[:20])
    raw = ort.InferenceSession(str(models["clipped-binary"])).run(None, {"input": x[:20]})[0][:, 0]
    np.testing.assert_allclose(p[:, 1], raw, rtol=1e-6)
    np.testing.assert_allclose(p[:, 0], 1 - raw, rtol=1e-6)
    with pytest.raises(OutputSelectionError, match="not non-negative summing to 1"):
        OnnxTarget(models["embedding-only"], scores="probabilities", output=0)


def test_multi_label_sigmoid_is_refused(models):
    with pytest.raises(OutputSelectionError, match="multi-label"):
        OnnxTarget(models["multi-label"])


def test_integer_input_refuses_non_integral_floats(models, digits, tmp_path, capsys):
    x, y = digits
    t = OnnxTarget(models["int-input"])
    assert t.input_dtype == np.int64
    with pytest.raises(InvalidDataError, match="non-integral"):
        t.predict_proba(x[:5])  # pixels in [0, 1] would all truncate to 0
    np.testing.assert_allclose(t.predict_proba(x[:5] * 16), t.predict_proba((x[:5] * 16).astype(np.int64)))
    code, _, err = _cli(capsys, "audit", str(models["int-input"]), "--data", str(save_npz_plain(x, y, tmp_path)), "--out", str(tmp_path))
    assert code == 2 and "non-integral" in _one_line(err)
    # integral pixels: every attack runs, label-only rounds its perturbed copies back to integers
    ints = save_npz_plain(np.round(x * 16), y, tmp_path)
    code, _, err = _cli(
        capsys,
        "audit",
        str(models["int-input"]),
        "--data",
        str(ints),
        "--attacks",
        "mia.loss-threshold",
        "mia.label-only",
        "--out",
        str(tmp_path),
        "-q",
    )
    assert code == 0, err


def save_npz_plain(x: np.ndarray, y: np.ndarray, tmp: Path) -> Path:
    return save_npz(AuditData((x[:N], y[:N]), (x[N:], y[N:])), tmp / "plain.npz")


def test_wrong_layout_is_one_line(tmp_path, capsys):
    class Nhwc(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x.permute(0, 3, 1, 2)).mean((2, 3))

    path = _export(Nhwc(), np.zeros((2, 8, 8, 3), np.float32), tmp_path / "nhwc.onnx", ["logits"])
    nchw = np.random.default_rng(0).random((2 * N, 3, 8, 8), dtype=np.float32)
    data = save_npz(AuditData((nchw[:N], np.zeros(N, int)), (nchw[N:], np.ones(N, int))), tmp_path / "nchw.npz")
    code, _, err = _cli(capsys, "audit", str(path), "--data", str(data), "--out", str(tmp_path))
    line = _one_line(err)
    assert code == 2 and "(8, 8, 3)" in line and "(3, 8, 8)" in line


def test_fixed_batch_is_chunked_and_padded(digits, tmp_path):
    x, _ = digits
    path = _export(_Fn(lambda z: z), x[:3], tmp_path / "fixed3.onnx", ["logits"], dynamic=False)
    t = OnnxTarget(path, batch_size=1024)
    assert t.fixed_batch == 3 and t.batch_size == 3
    sess = ort.InferenceSession(str(path))
    direct = np.concatenate([sess.run(None, {"input": x[i : i + 3]})[0] for i in range(0, 9, 3)])
    np.testing.assert_allclose(t.logits(x[:8]), direct[:8], rtol=1e-6)  # 8 rows: the last run padded


def test_zipmap_with_string_classes_keeps_the_model_order(tmp_path, digits):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = digits
    names = np.array(["zero", "one", "two"])[y % 3]
    est = LogisticRegression(max_iter=300).fit(x, names)
    path = tmp_path / "strings.onnx"
    path.write_bytes(to_onnx(est, x[:1]).SerializeToString())
    t = OnnxTarget(path)
    assert t.class_labels == list(est.classes_)  # label k is the k-th class of the model, as in classes_
    np.testing.assert_allclose(t.predict_proba(x[:30]), est.predict_proba(x[:30]), atol=1e-5)
    # the Python API chooses an output the same way as --output, ZipMap included
    np.testing.assert_allclose(OnnxTarget(path, output_index=1).predict_proba(x[:5]), est.predict_proba(x[:5]), atol=1e-5)


def test_classes_that_are_not_column_indices_are_refused(tmp_path, digits):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = digits
    est = LogisticRegression(max_iter=300).fit(x, np.array([1, 2, 5])[y % 3])
    path = tmp_path / "gaps.onnx"
    path.write_bytes(to_onnx(est, x[:1]).SerializeToString())
    with pytest.raises(OutputSelectionError, match=r"classes are \[1, 2, 5\], not 0..2"):
        OnnxTarget(path)


def test_label_output_cannot_be_chosen(tmp_path, digits):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = digits
    path = tmp_path / "lr.onnx"
    path.write_bytes(to_onnx(LogisticRegression(max_iter=300).fit(x, y), x[:1]).SerializeToString())
    with pytest.raises(InvalidParameterError, match="predicted labels"):
        load_target(str(path), output="output_label")
    with pytest.raises(InvalidParameterError, match="not an output"):
        load_target(str(path), output="nope")


def test_config_file_chooses_output_and_scores(models, npz, tmp_path, capsys):
    cfg = tmp_path / "audit.json"
    cfg.write_text(json.dumps({"version": 1, "target": {"model": str(models["generic-two"]), "output": "out1", "scores": "logits"}}))
    code, _, err = _cli(capsys, "audit", "--config", str(cfg), "--data", str(npz), "--out", str(tmp_path), "-q")
    assert code == 0, err
    assert json.loads((tmp_path / "report.json").read_text())["target"]["output"] == "out1"


def test_inspect_prints_graph_and_choice(models, capsys):
    code, out, _ = _cli(capsys, "inspect", str(models["named-two"]))
    assert code == 0
    assert "input: tensor(float)" in out and "embedding: tensor(float)" in out
    assert "class scores: output 'logits' (named like logits)" in out and "reads: logits over 10 classes" in out
    code, out, err = _cli(capsys, "inspect", str(models["generic-two"]))
    assert code == 2 and "out0: tensor(float)" in out and "--output" in _one_line(err)


# ----------------------------------------------------------------------------- token data and several inputs
class _Bag(torch.nn.Module):
    """A two-input text classifier: mean of token embeddings under the attention mask."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(20, 8)
        self.out = torch.nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        m = attention_mask.unsqueeze(-1).float()
        return self.out((self.emb(input_ids) * m).sum(1) / m.sum(1).clamp(min=1))


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray, np.ndarray]:
    gen = np.random.default_rng(0)
    ids = gen.integers(1, 20, size=(2 * N, 10))
    mask = (np.arange(10)[None] < gen.integers(5, 11, size=2 * N)[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, 0)
    y = gen.integers(0, 2, 2 * N)
    path = tmp_path_factory.mktemp("bag") / "bag.onnx"
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Bag().eval(),
            (torch.as_tensor(ids[:2]), torch.as_tensor(mask[:2])),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}, "logits": {0: "b"}},
            opset_version=17,
            dynamo=False,
        )
    return path, ids, mask, y


def test_missing_attention_mask_needs_the_pad_id(bag, tmp_path, capsys):
    path, ids, mask, y = bag
    only_ids = save_npz(AuditData(({"input_ids": ids[:N]}, y[:N]), ({"input_ids": ids[N:]}, y[N:])), tmp_path / "ids.npz")
    code, _, err = _cli(capsys, "audit", str(path), "--data", str(only_ids), "--out", str(tmp_path / "a"), "-q")
    line = _one_line(err)
    assert code == 2 and "attention_mask" in line and "--pad-id" in line
    code, _, err = _cli(capsys, "audit", str(path), "--data", str(only_ids), "--pad-id", "0", "--out", str(tmp_path / "b"), "-q")
    assert code == 0, err
    full = save_npz(
        AuditData(({"input_ids": ids[:N], "attention_mask": mask[:N]}, y[:N]), ({"input_ids": ids[N:], "attention_mask": mask[N:]}, y[N:])),
        tmp_path / "full.npz",
    )
    assert _cli(capsys, "audit", str(path), "--data", str(full), "--out", str(tmp_path / "c"), "-q")[0] == 0
    auc = [json.loads((tmp_path / d / "report.json").read_text())["attacks"][0]["metrics"]["auc"] for d in ("b", "c")]
    assert auc[0] == auc[1]  # the built mask is the stored one
    # plain token ids (x_members as one array) are the ids input
    t = OnnxTarget(path, pad_token_id=0)
    np.testing.assert_allclose(t.predict_proba(ids[:10]), t.predict_proba({"input_ids": ids[:10], "attention_mask": mask[:10]}))


def test_named_inputs_are_checked(bag):
    path, ids, mask, _ = bag
    t = OnnxTarget(path)
    with pytest.raises(InvalidDataError, match=r"\['segment'\] are not inputs of the model"):
        t.predict_proba({"input_ids": ids[:3], "attention_mask": mask[:3], "segment": mask[:3]})
    with pytest.raises(InvalidDataError, match="non-integral"):
        t.predict_proba({"input_ids": ids[:3] + 0.5, "attention_mask": mask[:3]})


def test_label_only_refuses_token_inputs_before_any_attack_runs(bag, tmp_path, capsys):
    path, ids, mask, y = bag
    data = save_npz(
        AuditData(({"input_ids": ids[:N], "attention_mask": mask[:N]}, y[:N]), ({"input_ids": ids[N:], "attention_mask": mask[N:]}, y[N:])),
        tmp_path / "t.npz",
    )
    code, _, err = _cli(
        capsys, "audit", str(path), "--data", str(data), "--attacks", "mia.loss-threshold", "mia.label-only", "--out", str(tmp_path)
    )
    line = _one_line(err)
    assert code == 2 and "mia.label-only" in line and "cannot perturb" in line
    assert not (tmp_path / "report.json").exists()


def test_npz_named_inputs_round_trip_and_refuse_two_forms(tmp_path):
    ids = np.arange(24).reshape(4, 6)
    d = AuditData(
        ({"input_ids": ids[:2], "attention_mask": np.ones((2, 6), int)}, [0, 1]),
        ({"input_ids": ids[2:], "attention_mask": np.ones((2, 6), int)}, [1, 0]),
    )
    assert d.input_names == ("input_ids", "attention_mask") and d.feature_shape == ()
    back = load_npz(save_npz(d, tmp_path / "n.npz"))
    assert set(back.input_names or ()) == {"input_ids", "attention_mask"}
    np.testing.assert_array_equal(back.members.x["input_ids"], ids[:2])
    arrays = dict(np.load(tmp_path / "n.npz"))
    arrays["x_members"] = ids[:2]
    np.savez(tmp_path / "both.npz", **arrays)
    with pytest.raises(InvalidDataError, match="keep one form"):
        load_npz(tmp_path / "both.npz")
    with pytest.raises(InvalidDataError, match="one row per sample"):
        pack_inputs({"input_ids": ids, "attention_mask": ids[:2]})


def test_rank_one_binary_logit_and_float16_range(digits, tmp_path):
    x, _ = digits
    path = _export(_Fn(lambda z: z[:, 0] * 20, 1), x[:4], tmp_path / "rank1.onnx", ["score"])
    t = OnnxTarget(path)
    assert t.n_classes == 2 and t.outputs_logits
    z = ort.InferenceSession(str(path)).run(None, {"input": x[:10]})[0].astype(np.float64)
    np.testing.assert_allclose(t.predict_proba(x[:10])[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-6)
    half = _export(_Fn(lambda z: z.half()), x[:4].astype(np.float16), tmp_path / "half.onnx", ["logits"])
    with pytest.raises(InvalidDataError, match="overflow the model's float16 input"):
        OnnxTarget(half).predict_proba(x[:2] * 1e6)


def test_inspect_checks_data_and_prints_json(models, npz, capsys):
    code, out, _ = _cli(capsys, "inspect", str(models["named-two"]), "--data", str(npz), "--json")
    d = json.loads(out)
    assert code == 0 and d["output"] == "logits" and d["model_family"] == "neural-network"
    assert {o["name"] for o in d["graph"]["outputs"]} == {"embedding", "logits"}
    code, _, err = _cli(capsys, "inspect", str(models["embedding-only"]), "--data", str(npz))
    assert code == 2 and "32 columns" in _one_line(err)


def test_make_audit_data_splits_named_inputs(bag):
    from audit_sdk.data import Split, make_audit_data

    _, ids, mask, y = bag
    x = pack_inputs({"input_ids": np.r_[ids, ids[:5]], "attention_mask": np.r_[mask, mask[:5]]})  # 5 exact duplicates
    data, idx = make_audit_data(Split(x, np.r_[y, y[:5]]), n_members=90, n_non_members=90, n_population=20)
    assert data.input_names == ("input_ids", "attention_mask") and len(idx) == 200 and idx.max() < 2 * N  # duplicates dropped


def test_reference_attacks_on_token_inputs_say_what_they_need(bag, tmp_path, capsys):
    path, ids, mask, y = bag
    split = {"members": slice(0, 80), "non_members": slice(80, 160), "population": slice(160, 200)}
    parts = {k: ({"input_ids": ids[s], "attention_mask": mask[s]}, y[s]) for k, s in split.items()}
    data = save_npz(AuditData(parts["members"], parts["non_members"], parts["population"]), tmp_path / "pop.npz")
    code, _, err = _cli(capsys, "audit", str(path), "--data", str(data), "--attacks", "mia.lira", "--out", str(tmp_path))
    line = _one_line(err)
    assert code == 2 and "need a trainer for this model family" in line and "mia.loss-threshold" in line


def test_output_defense_wraps_a_text_classifier(bag):
    import audit_sdk

    path, ids, mask, y = bag
    data = AuditData(
        ({"input_ids": ids[:N], "attention_mask": mask[:N]}, y[:N]), ({"input_ids": ids[N:], "attention_mask": mask[N:]}, y[N:])
    )
    report = audit_sdk.run_audit(str(path), data, attacks=["mia.loss-threshold"], defenses=[("defense.rounding", {})], rng=0)
    assert report.target["defenses"] == ["defense.rounding"] and 0 <= report.results[0].metrics["auc"] <= 1


def test_a_regressor_is_refused(tmp_path, digits):
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestRegressor

    x, y = digits
    path = tmp_path / "reg.onnx"
    path.write_bytes(to_onnx(RandomForestRegressor(n_estimators=3, random_state=0).fit(x, y % 2), x[:1]).SerializeToString())
    with pytest.raises(OutputSelectionError, match="TreeEnsembleRegressor: a regressor, not a classifier"):
        OnnxTarget(path)
