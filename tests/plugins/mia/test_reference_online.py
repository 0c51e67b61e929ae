"""Reference models without a population, under a time budget, chosen by agreement, of any family."""

from __future__ import annotations

import json

import numpy as np
import pytest

import audit_sdk
from audit_sdk.cli import main
from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidParameterError
from audit_sdk.plugins.mia._reference import online_masks
from audit_sdk.plugins.mia.classifier import ClassifierAttack
from audit_sdk.plugins.mia.lira import LiRA
from audit_sdk.plugins.mia.rmia import RMIA
from audit_sdk.run import RunContext


def _ctx(cache, **extras):
    return RunContext(registry=audit_sdk.get_registry(), cache_dir=cache, extras=extras)


@pytest.fixture
def no_population(digits_memorised):
    d = digits_memorised.data
    data = AuditData(d.members.take(slice(0, 60)), d.non_members.take(slice(0, 60)), None, n_classes=10)
    return audit_sdk.load_target(digits_memorised.model), data


def test_online_masks_put_every_point_in_exactly_half_of_any_even_prefix():
    m = online_masks(101, 16, seed=3)
    for n in (2, 8, 16):
        assert (m[:n].sum(0) == n // 2).all()
    np.testing.assert_array_equal(online_masks(101, 8, seed=3), m[:8])  # smaller sets are prefixes: shared models


def test_lira_and_rmia_run_online_without_population_and_say_so(no_population, tmp_path):
    target, data = no_population
    ctx = _ctx(tmp_path)
    opts = {"n_references": 4, "reference_epochs": 2, "architecture": "mlp"}
    lira = LiRA(**opts).run(target, data, context=ctx)
    rmia = RMIA(**opts).run(target, data, context=ctx)
    for r in (lira, rmia):
        assert r.extra["reference_kind"] == "online" and "no population" in r.extra["reference_setting"]
    assert lira.extra["references_trained"] == 4 and rmia.extra["references_trained"] == 0  # shared
    assert rmia.extra["n_population_z"] == 120 and "audited points" in rmia.extra["population_z"]


@pytest.mark.slow
def test_online_attacks_without_population_find_the_leak(digits_memorised, tmp_path):
    d = digits_memorised.data
    target, data = audit_sdk.load_target(digits_memorised.model), AuditData(d.members, d.non_members, None, n_classes=10)
    ctx = _ctx(tmp_path)
    # references like the target: its architecture, trained on half of the 500 audited points (it saw 250)
    opts = {"n_references": 8, "reference_epochs": 40, "architecture": "cnn"}
    lira = LiRA(**opts).run(target, data, context=ctx)
    rmia = RMIA(**opts).run(target, data, context=ctx)
    for r in (lira, rmia):  # the memorising model leaks; references trained on the audited points alone find it
        assert r.metrics["auc"] > 0.6, (r.attack, r.metrics["auc"])


def test_shadow_classifier_without_population_trains_online(no_population, tmp_path):
    target, data = no_population
    r = ClassifierAttack(setting="shadow", n_references=2, reference_epochs=5, architecture="mlp").run(target, data, context=_ctx(tmp_path))
    assert r.extra["reference_kind"] == "online" and len(r.scores) == 120


def test_budget_chooses_the_size_says_so_and_the_next_attack_reuses_it(no_population, tmp_path):
    target, data = no_population
    ctx = _ctx(tmp_path, budget_seconds=4)
    first = LiRA(reference_epochs=3).run(target, data, context=ctx)
    sel = first.extra["architecture_selection"]
    assert sel["chosen"] in {"cnn", "lenet", "mlp"} and len(sel["candidates"]) == 3
    assert all(0 <= c["top1_agreement"] <= 1 for c in sel["candidates"])
    b = first.extra["budget"]
    n = first.extra["n_references"]
    assert 8 <= n <= 128 and n % 2 == 0 and b["n_references"] == n and "4 s budget" in b["note"]
    # grown in rounds (8 first), each sized by the last round's speed
    assert b["rounds"][0]["models"] == 8 and sum(r["models"] for r in b["rounds"]) == n
    second = RMIA(reference_epochs=3).run(target, data, context=_ctx(tmp_path, budget_seconds=4))
    assert second.extra["n_references"] == n and second.extra["references_trained"] == 0


def test_named_architecture_is_used_without_selection(no_population, tmp_path):
    target, data = no_population
    r = LiRA(n_references=2, reference_epochs=1, reference_model={"family": "torch", "architecture": "mlp", "options": {"hidden": 16}}).run(
        target, data, context=_ctx(tmp_path)
    )
    assert r.extra["reference_model"]["architecture"] == "mlp(hidden=16)" and "architecture_selection" not in r.extra


@pytest.fixture(scope="module")
def forest_onnx(tmp_path_factory):
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6)).astype(np.float32)
    y = (x[:, 0] + 0.5 * rng.normal(size=240) > 0).astype(np.int64)
    rf = RandomForestClassifier(n_estimators=20, random_state=0).fit(x[:120], y[:120])
    path = tmp_path_factory.mktemp("rf") / "rf.onnx"
    onx = to_onnx(rf, x[:1], options={"zipmap": False})
    del onx.graph.output[0]  # keep the probabilities output only (choosing outputs is another issue's work)
    path.write_bytes(onx.SerializeToString())
    data = AuditData((x[:120], y[:120]), (x[120:180], y[120:180]), (x[180:], y[180:]), n_classes=2)
    return path, data


def test_random_forest_onnx_gets_random_forest_references(forest_onnx, tmp_path):
    path, data = forest_onnx
    spec = {"family": "sklearn", "estimator": "RandomForestClassifier", "params": {"n_estimators": 20}}
    target = audit_sdk.load_target(str(path))
    r = LiRA(n_references=4, reference_model=spec).run(target, data, context=_ctx(tmp_path))
    assert r.extra["reference_model"] == {"family": "sklearn", "estimator": "RandomForestClassifier", "params": {"n_estimators": 20}}
    assert len(list((tmp_path / "mia-reference").glob("*.pkl"))) == 4 and r.extra["references_trained"] == 4
    assert np.isfinite(r.scores).all()
    # the same forest references (cached) let RMIA see that a forest memorises its members
    rmia = RMIA(n_references=4, reference_model=spec).run(target, data, context=_ctx(tmp_path))
    assert rmia.extra["references_trained"] == 0 and rmia.metrics["auc"] > 0.6


def test_tree_onnx_without_a_family_is_refused_with_what_to_pass(forest_onnx, tmp_path):
    path, data = forest_onnx
    with pytest.raises(InvalidParameterError, match="TreeEnsembleClassifier.*reference_model") as exc:
        LiRA(n_references=2).run(audit_sdk.load_target(str(path)), data, context=_ctx(tmp_path))
    assert "\n" not in str(exc.value)


def test_cli_config_names_the_reference_family(forest_onnx, tmp_path, capsys):
    path, data = forest_onnx
    npz = audit_sdk.save_npz(data, tmp_path / "d.npz")
    cfg = tmp_path / "audit.json"
    spec = {"family": "sklearn", "estimator": "RandomForestClassifier", "params": {"n_estimators": 10}}
    cfg.write_text(json.dumps({"attacks": [{"name": "mia.lira", "params": {"n_references": 4, "reference_model": spec}}]}))
    assert main(["audit", str(path), "--data", str(npz), "--config", str(cfg), "--out", str(tmp_path / "o"), "--no-html"]) == 0
    assert "RandomForestClassifier" in capsys.readouterr().out


def test_cli_without_population_runs_the_online_attacks_and_reports_it(digits_memorised_onnx, no_population, tmp_path, capsys):
    _, data = no_population
    npz = audit_sdk.save_npz(data, tmp_path / "d.npz")
    common = ["--data", str(npz), "--no-html", "--param", "mia.lira.architecture=mlp", "--param", "mia.rmia.architecture=mlp"]
    argv = [
        "audit",
        str(digits_memorised_onnx),
        *common,
        "--attacks",
        "mia.lira",
        "mia.rmia",
        "--budget",
        "3s",
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "mia.lira: " in out and "no population" in out and "3 s budget" in out and "reference training length" in out
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [a["extra"]["reference_kind"] for a in report["attacks"]] == ["online", "online"]


@pytest.mark.parametrize("bad", ["0", "-3m", "soon", "5x"])
def test_cli_budget_must_be_a_positive_duration(digits_memorised_onnx, no_population, tmp_path, capsys, bad):
    _, data = no_population
    npz = audit_sdk.save_npz(data, tmp_path / "d.npz")
    assert main(["audit", str(digits_memorised_onnx), "--data", str(npz), "--budget", bad, "--out", str(tmp_path)]) == 2
    assert "--budget" in capsys.readouterr().err


def test_a_scikit_learn_target_gets_references_of_its_own_class_and_parameters(tmp_path):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    x = rng.normal(size=(160, 5))
    y = (x[:, 0] > 0).astype(np.int64)
    est = LogisticRegression(C=0.5).fit(x[:80], y[:80])
    data = AuditData((x[:80], y[:80]), (x[80:], y[80:]), None, n_classes=2)
    r = LiRA(n_references=2).run(audit_sdk.load_target(est), data, context=_ctx(tmp_path))
    ref = r.extra["reference_model"]
    assert ref["estimator"] == "LogisticRegression" and ref["params"]["C"] == 0.5 and "random_state" not in ref["params"]
