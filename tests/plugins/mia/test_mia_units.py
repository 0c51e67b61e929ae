"""Unit checks of the membership attacks: formulas against direct computations, caching, options, access."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

import audit_sdk
from audit_sdk.data import AuditData
from audit_sdk.errors import AccessError, InvalidDataError, InvalidParameterError
from audit_sdk.executor import LocalExecutor
from audit_sdk.plugins.mia._common import logit_confidence, true_class_stats
from audit_sdk.plugins.mia.classifier import ClassifierAttack
from audit_sdk.plugins.mia.label_only import LabelOnly
from audit_sdk.plugins.mia.lira import LiRA, lira_scores
from audit_sdk.plugins.mia.rmia import RMIA, rmia_scores
from audit_sdk.plugins.mia.threshold import ThresholdAttack
from audit_sdk.run import RunContext, run_attack
from audit_sdk.target import Target

TINY = {"n_references": 2, "reference_epochs": 1, "architecture": "mlp"}


# ----------------------------------------------------------------------------- formulas
def test_statistics_match_their_definitions():
    p = np.array([[0.7, 0.2, 0.1], [0.05, 0.9, 0.05]])
    y = np.array([0, 2])
    s = true_class_stats(p, y)
    np.testing.assert_allclose(s["loss"], [-np.log(0.7), -np.log(0.05)])
    np.testing.assert_allclose(s["entropy"], -(p * np.log(p)).sum(1))
    # Song & Mittal 2021, eq. 4, written out for the first row (label 0) and the second (label 2)
    m0 = -(1 - 0.7) * np.log(0.7) - 0.2 * np.log(0.8) - 0.1 * np.log(0.9)
    m1 = -(1 - 0.05) * np.log(0.05) - 0.05 * np.log(0.95) - 0.9 * np.log(0.1)
    np.testing.assert_allclose(s["modified_entropy"], [m0, m1])
    np.testing.assert_allclose(s["logit"], [np.log(0.7 / 0.3), np.log(0.05 / 0.95)])


def test_logit_confidence_keeps_precision_where_one_minus_p_rounds_to_zero():
    # p_y = 1 - 3e-20: 1 - p_y is 0 in float64, but the other classes still carry 3e-20
    p = np.array([[1.0, 1e-20, 2e-20]])
    assert logit_confidence(p, np.array([0]))[0] == pytest.approx(-np.log(3e-20), rel=1e-9)


def test_lira_scores_are_gaussian_likelihood_ratios():
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(6, 3))
    in_mask = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]], bool)
    t = np.array([0.3, -1.0, 2.0])
    got = lira_scores(t, phi, in_mask, global_variance=False)
    for j in range(3):
        a, b = phi[in_mask[:, j], j], phi[~in_mask[:, j], j]
        want = norm.logpdf(t[j], a.mean(), a.std(ddof=1)) - norm.logpdf(t[j], b.mean(), b.std(ddof=1))
        assert got[j] == pytest.approx(want)
    off = lira_scores(t, phi, None, global_variance=False)
    np.testing.assert_allclose(off, norm.logcdf(t, phi.mean(0), phi.std(0, ddof=1)))


def test_rmia_scores_match_the_pairwise_definition():
    rng = np.random.default_rng(1)
    rx, rz = rng.lognormal(size=40), rng.lognormal(size=300)
    brute = ((rx[:, None] / rz[None, :]) > 2.0).mean(axis=1)
    got = rmia_scores(rx, rz, gamma=2.0)
    np.testing.assert_allclose(got, brute, atol=1e-6)  # the tie-break adds < 1e-7
    # ties broken in the order of the ratio itself
    assert np.all(np.diff(got[np.argsort(rx)]) > 0)


# ----------------------------------------------------------------------------- planted leakage (no torch)
class _TableTarget(Target):
    """Answers from a lookup table keyed by the first feature (an integer id)."""

    input_shape = (2,)
    n_classes = 2
    capabilities = frozenset({"labels", "probabilities"})
    outputs_logits = False

    def __init__(self, table):
        self.table = table

    def _predict_raw(self, x):
        return self.table[x[:, 0].astype(int)]


def _planted(n=200, seed=0):
    rng = np.random.default_rng(seed)
    ids = np.arange(2 * n)
    member = ids < n
    conf = np.where(member, rng.uniform(0.8, 1.0, 2 * n), rng.uniform(0.5, 0.9, 2 * n))
    table = np.column_stack([conf, 1 - conf])
    x = np.column_stack([ids, rng.normal(size=2 * n)]).astype(np.float32)
    y = np.zeros(2 * n, np.int64)
    data = AuditData((x[:n], y[:n]), (x[n:], y[n:]), n_classes=2)
    return _TableTarget(table), data


@pytest.mark.parametrize("statistic", ["loss", "confidence", "entropy", "modified-entropy"])
def test_threshold_catches_planted_leakage(statistic):
    target, data = _planted()
    r = ThresholdAttack(statistic=statistic).run(target, data)
    assert r.metrics["auc"] > 0.8


def test_classifier_accepts_mindarmour_config_and_reports_its_metrics():
    target, data = _planted()
    cfg = [{"method": "LR", "params": {"C": [0.1, 1.0]}}, {"method": "rf", "params": {"n_estimators": [10, 20]}}, {"method": "gb"}]
    r = ClassifierAttack(attack_config=cfg, metrics=["precision", "recall"], cross_fit=False).run(target, data, rng=0)
    assert [m["method"] for m in r.extra["models"]] == ["lr", "rf", "gb"]
    assert all(set(m) >= {"precision", "recall", "cv_auc", "best_params"} and "accuracy" not in m for m in r.extra["models"])
    assert r.extra["n_eval"] == len(r.scores) == 200  # MindArmour's way: evaluated on the held-out half only
    assert r.metrics["auc"] > 0.8


def test_classifier_cross_fitting_scores_every_sample_out_of_fold():
    target, data = _planted()
    r = ClassifierAttack(attack_config=[{"method": "lr"}], train_fraction=0.75).run(target, data, rng=0)
    assert r.extra["cross_fit_folds"] == 4
    assert r.extra["n_eval"] == len(r.scores) == 400  # every sample, each by a model fitted on the other folds
    assert sorted({m["fold"] for m in r.extra["models"]}) == [0, 1, 2, 3]
    assert r.metrics["auc"] > 0.8


@pytest.mark.parametrize(
    "cfg, match",
    [
        ([{"method": "svm"}], "unknown attack model"),
        ([{"method": "lr", "params": {"C": 1.0}}], "non-empty list"),
        ([{"method": "lr", "params": {"bogus": [1]}}], "no parameter"),
        ([{"method": "lr", "extra": 1}], "unknown option"),
    ],
)
def test_classifier_rejects_bad_attack_config(cfg, match):
    target, data = _planted()
    with pytest.raises(InvalidParameterError, match=match):
        ClassifierAttack(attack_config=cfg).run(target, data)


class _LabelsOnly(Target):
    """A target that answers labels and nothing else (like a label-only API)."""

    input_shape = (2,)
    n_classes = 2
    capabilities = frozenset({"labels"})

    def __init__(self, inner):
        self.inner = inner
        self.queries = 0

    def _predict_raw(self, x):
        self.queries += len(x)
        return self.inner._predict_raw(x)

    def predict_proba(self, x):  # a label-only attack must never ask
        raise AssertionError("label-only attack asked for probabilities")


def test_label_only_uses_labels_only_and_other_attacks_are_refused():
    inner, data = _planted()
    target = _LabelsOnly(inner)
    r = run_attack(LabelOnly(n_queries=4, noise_levels=[0.1, 0.2]), target, data, rng=0)
    assert target.queries == 400 * (1 + 4 * 2) == r.extra["queries"]
    with pytest.raises(AccessError, match="mia.label-only"):
        run_attack(ThresholdAttack(), target, data)


def test_label_only_noise_levels_are_validated():
    with pytest.raises(InvalidParameterError, match="noise_levels"):
        LabelOnly(noise_levels=[0.1, -1.0])


def test_offline_reference_attacks_need_population_and_say_online_does_not():
    target, data = _planted()
    with pytest.raises(InvalidDataError, match="population.*mode='online'|mode='online'.*population"):
        LiRA(**TINY, mode="offline").run(target, data)


def test_seeded_runs_repeat():
    target, data = _planted()
    a = LabelOnly(n_queries=4).run(target, data, rng=3)
    b = LabelOnly(n_queries=4).run(target, data, rng=3)
    np.testing.assert_array_equal(a.scores, b.scores)


# ----------------------------------------------------------------------------- reference models and cache
@pytest.fixture
def small(digits_memorised):
    """A smaller digits audit (fast reference training) on the memorising model."""
    d = digits_memorised.data
    data = AuditData(d.members.take(slice(0, 60)), d.non_members.take(slice(0, 60)), d.population.take(slice(0, 120)), n_classes=10)
    return audit_sdk.load_target(digits_memorised.model), data


def _ctx(cache, **kw):
    return RunContext(registry=audit_sdk.get_registry(), cache_dir=cache, **kw)


def test_reference_models_are_cached_shared_and_resumed(small, tmp_path):
    target, data = small
    r1 = LiRA(**TINY).run(target, data, context=_ctx(tmp_path))
    assert r1.extra["references_trained"] == 2
    files = sorted((tmp_path / "mia-reference").glob("*.pt"))
    assert len(files) == 2
    # another attack with the same reference options reuses them, as does a later audit
    r2 = RMIA(**TINY).run(target, data, context=_ctx(tmp_path))
    assert r2.extra["references_trained"] == 0 and r2.extra["references_from_cache"] == 2
    # an interrupted run resumes: only the missing model is trained
    files[0].unlink()
    r3 = LiRA(**TINY).run(target, data, context=_ctx(tmp_path))
    assert r3.extra["references_trained"] == 1
    np.testing.assert_allclose(r3.scores, r1.scores, rtol=1e-6)  # retrained bit-for-bit alike (seeded)
    # a different training config is a different model
    r4 = LiRA(**{**TINY, "reference_epochs": 2}).run(target, data, context=_ctx(tmp_path))
    assert r4.extra["references_trained"] == 2
    # more references extend the offline set: the first two are shared
    r5 = LiRA(**{**TINY, "n_references": 3}).run(target, data, context=_ctx(tmp_path))
    assert r5.extra["references_trained"] == 1


def test_cached_weights_load_without_pickle(small, tmp_path):
    import torch

    target, data = small
    LiRA(**TINY).run(target, data, context=_ctx(tmp_path))
    for f in (tmp_path / "mia-reference").glob("*.pt"):
        sd = torch.load(f, weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in sd.values())


def _tiny_factory(input_shape, n_classes, seed):
    import torch

    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(int(np.prod(input_shape)), n_classes))


def test_model_factory_from_context_is_used(small, tmp_path):
    target, data = small
    ctx = _ctx(tmp_path, extras={"model_factory": _tiny_factory})
    r = LiRA(n_references=2, reference_epochs=1).run(target, data, context=ctx)
    assert r.extra["references_trained"] == 2
    import torch

    sd = torch.load(next((tmp_path / "mia-reference").glob("*.pt")), weights_only=True)
    assert [tuple(v.shape) for v in sd.values()] == [(10, 64), (10,)]


def test_factory_architecture_without_factory_says_how_to_fix(small, tmp_path):
    target, data = small
    with pytest.raises(InvalidParameterError, match="model_factory"):
        LiRA(n_references=2, reference_epochs=1, architecture="factory").run(target, data, context=_ctx(tmp_path))


def test_from_target_falls_back_without_onnx2torch(small, digits_memorised_onnx, tmp_path):
    try:
        import onnx2torch  # noqa: F401  (optional extra; the fallback is what is tested here)
    except ImportError:
        pass
    else:
        pytest.skip("onnx2torch is installed; the fallback path is not reachable")
    _, data = small
    target = audit_sdk.load_target(str(digits_memorised_onnx))
    r = LiRA(n_references=2, reference_epochs=1, architecture="from-target").run(target, data, context=_ctx(tmp_path))
    assert "onnx2torch" in r.extra["reference_notes"][0]


def test_progress_bar_and_executor_path(small, tmp_path, capsys):
    calls = []

    class Recording(LocalExecutor):
        def map(self, fn, tasks, *, keys=None, progress=None, return_failures=False):
            calls.append((len(tasks), list(keys)))
            return super().map(fn, tasks, keys=keys, progress=progress, return_failures=return_failures)

    target, data = small
    ctx = _ctx(tmp_path, executor=Recording(1), progress=True)
    RMIA(**TINY).run(target, data, context=ctx)
    # one task per group of up to 16 models (trained as one vectorised ensemble), keyed by content
    assert calls and calls[0][0] == 1 and all(len(k) == 32 for k in calls[0][1])
    assert "reference models" in capsys.readouterr().out


def test_scores_and_slices_are_saved(small, tmp_path):
    target, data = small
    r = ThresholdAttack().run(target, data, context=_ctx(tmp_path / "c", out_dir=tmp_path / "out"))
    f = Path(r.extra["scores_file"])
    with np.load(f, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["scores"], r.scores)
        assert set(z.files) == {"scores", "truth", "labels", "predicted", "loss"}
    kinds = [s["kind"] for s in r.extra["slices"]]
    assert kinds.count("percentile") == 10 and kinds.count("correctness") == 2


def test_online_mode_needs_two_references(small, tmp_path):
    target, data = small
    with pytest.raises(InvalidParameterError, match="n_references >= 2"):
        LiRA(mode="online", n_references=1, reference_epochs=1).run(target, data, context=_ctx(tmp_path))


@pytest.mark.slow
def test_reference_models_train_in_worker_processes(small, tmp_path):
    target, data = small
    with LocalExecutor(workers=2) as ex:
        par = LiRA(**TINY).run(target, data, context=_ctx(tmp_path / "par", executor=ex))
    assert par.extra["references_trained"] == 2
    inline = LiRA(**TINY).run(target, data, context=_ctx(tmp_path / "inline"))
    # seeded training gives the same models in a worker process as inline
    np.testing.assert_allclose(par.scores, inline.scores, rtol=1e-4, atol=1e-5)


def test_label_only_chunks_give_the_same_scores(monkeypatch):
    import audit_sdk.plugins.mia.label_only as lo

    target, data = _planted()
    whole = LabelOnly(n_queries=4).run(target, data, rng=5)
    monkeypatch.setattr(lo, "_MAX_ROWS", 4 * 37)  # chunks of 37 examples
    chunked = LabelOnly(n_queries=4).run(target, data, rng=5)
    assert whole.metrics["auc"] == pytest.approx(chunked.metrics["auc"], abs=0.05)
    assert chunked.extra["queries"] == whole.extra["queries"]


def test_classifier_needs_an_attack_model():
    with pytest.raises(InvalidParameterError, match="attack_config"):
        ClassifierAttack(attack_config=[])


def test_classifier_per_class_fits_a_model_per_class():
    target, data = _planted()
    r = ClassifierAttack(per_class=True, attack_config=[{"method": "lr"}]).run(target, data, rng=0)
    assert r.extra["per_class"] == {"0": {"selected": "lr", "cv_auc": pytest.approx(r.extra["models"][0]["cv_auc"])}}
    assert set(r.extra["mindarmour"]) == {"precision", "recall", "accuracy"}
    assert r.metrics["auc"] > 0.8
