"""Output defenses on an exported (ONNX) model: each wraps a Target and is audited like the raw one."""

import numpy as np
import pytest

import audit_sdk
from audit_sdk.errors import AccessError, InvalidParameterError
from audit_sdk.metrics import membership_metrics
from audit_sdk.plugins.defenses.output import LabelOnly, OutputNoise, Rounding, TopK
from audit_sdk.plugins.defenses.utility import privacy_utility_rows, sweep_output_defense
from audit_sdk.plugins.mia.loss_threshold import LossThreshold

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def onnx_target(digits_memorised_onnx):
    return audit_sdk.load_target(str(digits_memorised_onnx))


@pytest.fixture(scope="module")
def xs(digits_memorised):
    x, y, truth = digits_memorised.data.combined()
    return x, y, truth


def _auc(target, data):
    return LossThreshold().run(target, data).metrics["auc"]


def test_top_k_keeps_exactly_the_k_largest_probabilities(onnx_target, xs):
    x, _, _ = xs
    p = onnx_target.predict_proba(x)
    for k in (1, 3):
        served = TopK(k=k).wrap_target(onnx_target).predict_proba(x)
        assert ((served > 0).sum(axis=1) <= k).all()
        top = np.sort(p, axis=1)[:, ::-1][:, :k]
        np.testing.assert_allclose(np.sort(served, axis=1)[:, ::-1][:, :k], top, rtol=1e-12)
        assert (served.argmax(1) == p.argmax(1)).all()
    one_hot = TopK(k=1, renormalize=True).wrap_target(onnx_target).predict_proba(x)
    np.testing.assert_array_equal(one_hot, np.eye(10)[p.argmax(1)])
    renorm = TopK(k=3, renormalize=True).wrap_target(onnx_target).predict_proba(x)
    np.testing.assert_allclose(renorm.sum(1), 1.0)


def test_rounding_rounds_and_keeps_labels(onnx_target, xs):
    x, _, _ = xs
    p = onnx_target.predict_proba(x)
    wrapped = Rounding(decimals=1).wrap_target(onnx_target)
    served = wrapped.predict_proba(x)
    np.testing.assert_array_equal(served, np.round(p, 1))
    assert set(np.unique(served * 10).round(6)) <= set(np.arange(11.0))
    np.testing.assert_array_equal(wrapped.predict_labels(x), onnx_target.predict_labels(x))
    assert "logits" not in wrapped.capabilities and "white-box" not in wrapped.capabilities
    with pytest.raises(AccessError):
        wrapped.logits(x)


def test_rounding_and_top_k_change_the_attack_scores_as_expected(digits_memorised, onnx_target):
    data = digits_memorised.data
    raw = LossThreshold().run(onnx_target, data).scores
    rounded = LossThreshold().run(Rounding(decimals=1).wrap_target(onnx_target), data).scores
    # -loss of a probability rounded to one decimal: at most 11 distinct values (0 clipped at 1e-12)
    assert len(np.unique(raw)) > 100 and len(np.unique(rounded)) <= 11
    top1 = LossThreshold().run(TopK(k=1).wrap_target(onnx_target), data).scores
    correct = onnx_target.predict_labels(data.combined()[0]) == data.combined()[1]
    # top-1 keeps the true class's probability exactly when the model is right, else serves 0
    np.testing.assert_allclose(top1[correct], raw[correct], atol=1e-9)
    np.testing.assert_allclose(top1[~correct], np.log(1e-12))


def test_label_only_refuses_scores_and_keeps_labels(digits_memorised, onnx_target, xs):
    x, y, truth = xs
    lo = LabelOnly().wrap_target(onnx_target)
    assert lo.capabilities == frozenset({"labels"})
    np.testing.assert_array_equal(lo.predict_labels(x), onnx_target.predict_labels(x))
    for call in (lambda: lo.predict_proba(x), lambda: lo.loss(x, y), lambda: lo.logits(x)):
        with pytest.raises(AccessError):
            call()
    # the audit refuses a confidence attack up front and names one that fits
    with pytest.raises(AccessError, match="black-box"):
        audit_sdk.run_audit(lo, digits_memorised.data, attacks=["mia.loss-threshold"])


def test_label_only_leaves_confidence_attacks_at_chance_but_label_attacks_work(digits_memorised, onnx_target, xs):
    x, y, truth = xs
    data = digits_memorised.data
    # What a confidence attack sees when only the label is served: a one-hot vector.
    one_hot = TopK(k=1, renormalize=True).wrap_target(onnx_target)
    scores = LossThreshold().run(one_hot, data).scores
    correct = onnx_target.predict_labels(x) == y
    # Beyond label correctness the scores carry nothing: among correctly labelled samples every
    # score is the same, so members and non-members are indistinguishable (AUC exactly 0.5).
    assert np.ptp(scores[correct]) == 0.0
    assert membership_metrics(scores[correct], truth[correct])["auc"] == pytest.approx(0.5)
    assert _auc(onnx_target, data) > membership_metrics(scores[correct], truth[correct])["auc"] + 0.1
    # A label-only attack still works on the label-only target. mia.label-only is written in
    # parallel; the label-agreement (gap) attack is checked directly and always.
    lo = LabelOnly().wrap_target(onnx_target)
    gap = (lo.predict_labels(x) == y).astype(float)
    assert membership_metrics(gap, truth)["auc"] > 0.56
    reg = audit_sdk.get_registry()
    if "mia.label-only" in reg.names("attack"):
        report = audit_sdk.run_audit(lo, data, attacks=["mia.label-only"], rng=0)
        assert report.results[0].metrics["auc"] > 0.55


def test_output_noise_is_seeded_renormalised_and_secure_by_default(onnx_target, xs):
    x, _, _ = xs
    a = OutputNoise(scale=0.2, seed=3).wrap_target(onnx_target).predict_proba(x)
    b = OutputNoise(scale=0.2, seed=3).wrap_target(onnx_target).predict_proba(x)
    np.testing.assert_array_equal(a, b)
    assert (a >= 0).all()
    np.testing.assert_allclose(a.sum(1), 1.0)
    assert not np.allclose(a, onnx_target.predict_proba(x))
    s1 = OutputNoise(scale=0.2).wrap_target(onnx_target).predict_proba(x[:5])
    s2 = OutputNoise(scale=0.2).wrap_target(onnx_target).predict_proba(x[:5])
    assert not np.array_equal(s1, s2)  # cryptographically seeded: no two defenses replay each other
    zero = OutputNoise(scale=0.0).wrap_target(onnx_target).predict_proba(x)
    np.testing.assert_allclose(zero, onnx_target.predict_proba(x), atol=1e-12)
    g = OutputNoise(mechanism="gaussian", space="logits", scale=1.0, seed=0).wrap_target(onnx_target).predict_proba(x)
    np.testing.assert_allclose(g.sum(1), 1.0)
    with pytest.raises(InvalidParameterError, match="scale"):
        OutputNoise(scale=-1.0)


def test_output_noise_lowers_attack_auc_and_accuracy_along_a_curve(digits_memorised, onnx_target):
    s = digits_memorised
    x_test, y_test = s.data.population.x, s.data.population.y
    rows = sweep_output_defense(
        onnx_target,
        s.data,
        defense="defense.output-noise",
        param="scale",
        values=[0.05, 10.0],
        base_params={"seed": 0},
        attacks=["mia.loss-threshold"],
        x_test=x_test,
        y_test=y_test,
    )
    assert [r["strength"] for r in rows] == [None, 0.05, 10.0]
    assert rows[0]["defense"] == "none" and rows[1]["defense"] == "defense.output-noise"
    aucs = [r["auc"] for r in rows]
    accs = [r["accuracy"] for r in rows]
    assert aucs[2] < aucs[0] - 0.05, aucs
    assert aucs[2] < 0.6, aucs
    assert accs[2] < accs[0], accs
    for r in rows:
        assert {"accuracy", "auc", "tpr_at_0.001", "tpr_at_0.01", "advantage"} <= set(r)


def test_rows_record_refusals_for_label_only(digits_memorised, onnx_target):
    s = digits_memorised
    rows = privacy_utility_rows(
        onnx_target,
        s.data,
        defense=LabelOnly(),
        attacks=["mia.loss-threshold"],
        x_test=s.data.population.x,
        y_test=s.data.population.y,
    )
    assert rows[0]["status"] == "refused" and "black-box" in rows[0]["reason"]
    assert rows[0]["accuracy"] == pytest.approx(float((onnx_target.predict_labels(s.data.population.x) == s.data.population.y).mean()))


def test_sweep_rejects_a_training_time_defense(digits_memorised, onnx_target):
    s = digits_memorised
    with pytest.raises(InvalidParameterError, match="not at the output only"):
        sweep_output_defense(
            onnx_target,
            s.data,
            defense="defense.suppress",
            param="sparse_end",
            values=[0.5],
            attacks=["mia.loss-threshold"],
            x_test=s.data.population.x,
            y_test=s.data.population.y,
        )


def test_registry_creates_each_output_defense_by_name(onnx_target, xs):
    reg = audit_sdk.get_registry()
    for name, opts in [
        ("defense.top-k", {"k": 2}),
        ("defense.rounding", {"decimals": 2}),
        ("defense.label-only", {}),
        ("defense.output-noise", {"seed": 1}),
    ]:
        d = reg.create("defense", name, opts)
        assert d.points == ("output",)
        wrapped = d.wrap_target(onnx_target)
        assert wrapped.describe()["defense"] == name
        assert wrapped.predict_labels(xs[0][:4]).shape == (4,)


def test_sweep_rejects_morphing_which_needs_a_model_trained_with_its_key(digits_memorised, onnx_target):
    s = digits_memorised
    with pytest.raises(InvalidParameterError, match="train one model per strength"):
        sweep_output_defense(
            onnx_target,
            s.data,
            defense="defense.morphing",
            param="block_size",
            values=[16],
            attacks=["mia.loss-threshold"],
            x_test=s.data.population.x,
            y_test=s.data.population.y,
        )
