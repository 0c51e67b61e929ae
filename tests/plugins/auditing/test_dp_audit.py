"""audit.dp: the DP audit catches broken DP, passes honest DP, and joins the report.

All runs: digits MLP, 1,097 members, 1,000 canaries (unless said), 20 epochs of DP-SGD (batch 128,
Adam 1e-2), seeded. Figures seen while writing these tests are in comments; bounds are at 95%.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import audit_sdk
from audit_sdk.errors import AccessError, InvalidDataError, InvalidParameterError
from audit_sdk.interfaces import Defense
from audit_sdk.run import RunContext


def dp_result(report):
    res = report.results[0]
    return res, res.extra["dp_audit"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_honest_dp_sgd_at_epsilon_8_stays_below_8(mlp, digits_dp, seed):
    report = audit_sdk.audit_dp(mlp, digits_dp, defense_params={"target_epsilon": 8.0}, seed=seed)
    res, info = dp_result(report)
    # seen: lower bounds 1.0-1.6 over these seeds (white-box Dirac canaries)
    assert info["verdict"] == "consistent"
    assert 0 < res.metrics["epsilon_lower_bound"] < 8.0
    assert res.metrics["epsilon_lower_bound"] <= info["claimed_epsilon"] <= 8.0
    assert info["defense_epsilon"] == pytest.approx(8.0, rel=0.01)


@pytest.mark.parametrize("seed", [0, 1])
def test_honest_dp_sgd_at_epsilon_1_stays_below_its_claim(mlp, digits_dp, seed):
    # a stricter check than epsilon 8 (which 1,000 canaries cannot exceed anyway: the bound tops out near 5.3)
    res, info = dp_result(audit_sdk.audit_dp(mlp, digits_dp, defense_params={"target_epsilon": 1.0}, seed=seed))
    assert info["verdict"] == "consistent"
    assert res.metrics["epsilon_lower_bound"] < info["claimed_epsilon"] <= 1.0


def test_non_private_training_is_caught(mlp, digits_dp):
    res, info = dp_result(audit_sdk.audit_dp(mlp, digits_dp, defense=None))
    # seen: 4.7 (every canary guessed right): clearly above any claim of epsilon <= 1
    assert res.metrics["epsilon_lower_bound"] > 3.0
    assert res.metrics["auc"] > 0.99
    assert info["verdict"] == "no-claim" and info["claimed_epsilon"] is None


@pytest.mark.parametrize("bug", ["skip-clipping", "reuse-noise"])
def test_broken_dp_sgd_is_flagged(mlp, digits_dp, broken_registry, bug):
    report = audit_sdk.audit_dp(
        mlp, digits_dp, defense="defense.dp-sgd-broken", defense_params={"target_epsilon": 1.0, "bug": bug}, registry=broken_registry
    )
    res, info = dp_result(report)
    # the accountant cannot see the bug: it claims epsilon ~0.91 (PLD) / 1.0 (RDP), as for an honest run
    assert info["claimed_epsilon"] < 1.0
    # seen: 3.3 (skip-clipping, summed statistic) and 3.9 (reuse-noise, step-change statistic)
    assert res.metrics["epsilon_lower_bound"] > 2.0
    assert info["verdict"] == "violated"
    assert "broken" in info["text"]
    from audit_sdk.report import verdict

    assert verdict(report)["level"] == "violated"
    if bug == "reuse-noise":
        one = report.results[0].metrics["one_run"]
        # the summed projection carries the reused noise T times and sees nothing; differences cancel it
        assert one["statistic"] == "step-change"
        assert max(one["per_guesses"]["score"].values()) == 0.0


def test_black_box_audit_with_ood_canaries(mlp, digits_dp):
    plain, _ = dp_result(audit_sdk.audit_dp(mlp, digits_dp, defense=None, canary="ood", threat_model="black-box", epochs=40))
    dp, info = dp_result(
        audit_sdk.audit_dp(mlp, digits_dp, defense_params={"target_epsilon": 1.0}, canary="ood", threat_model="black-box", epochs=40)
    )
    # final model only, scored by each canary's loss. seen: 3.0 without DP, 0.0 at epsilon 1
    assert plain.metrics["epsilon_lower_bound"] > 2.0
    assert dp.metrics["epsilon_lower_bound"] < info["claimed_epsilon"]


def test_random_label_canaries_come_from_the_population(mlp, digits_dp):
    res, info = dp_result(
        audit_sdk.audit_dp(mlp, digits_dp, defense=None, canary="random-label", threat_model="black-box", canaries=600, epochs=40)
    )
    assert info["canaries"] == 600 and res.metrics["epsilon_lower_bound"] > 1.0
    with pytest.raises(InvalidDataError, match="canary='ood'"):
        audit_sdk.audit_dp(mlp, digits_dp, defense=None, canary="random-label", threat_model="black-box", canaries=1000)
    with pytest.raises(InvalidParameterError, match="threat_model='black-box'"):
        audit_sdk.audit_dp(mlp, digits_dp, canary="ood", threat_model="white-box")


def test_every_registered_accountant_is_reported(mlp, digits_dp):
    res, info = dp_result(audit_sdk.audit_dp(mlp, digits_dp, defense_params={"target_epsilon": 3.0}, epochs=5, canaries=200))
    accts = info["accountants"]
    assert set(accts) == set(audit_sdk.get_registry().names("accountant"))
    assert accts["acct.rdp"]["epsilon"] == pytest.approx(info["defense_epsilon"], rel=1e-6)
    # PLD is tighter than RDP; GDP is an approximation and does not count as a claim
    assert accts["acct.pld"]["epsilon"] <= accts["acct.rdp"]["epsilon"]
    assert accts["acct.gdp"]["upper_bound"] is False
    assert info["claimed_epsilon"] == pytest.approx(min(v["epsilon"] for v in accts.values() if v["upper_bound"]))


def test_multi_run_audit(mlp, digits_dp):
    plain, _ = dp_result(audit_sdk.audit_dp(mlp, digits_dp, defense=None, mode="multi-run", runs=32, epochs=5))
    dp, info = dp_result(audit_sdk.audit_dp(mlp, digits_dp, defense_params={"target_epsilon": 1.0}, mode="multi-run", runs=8, epochs=2))
    # one canary, in 16 of 32 runs: the runs separate perfectly without DP; the Clopper-Pearson bound of
    # 32 trials is small by nature (each run is one trial): many runs buy what one run with m canaries gives
    assert plain.truth.sum() == 16 and len(plain.scores) == 32
    assert plain.metrics["auc"] == 1.0 and plain.metrics["epsilon_lower_bound"] > 0.3  # seen: 0.57
    assert "one_run" not in plain.metrics
    assert info["runs"] == 8 and dp.metrics["epsilon_lower_bound"] <= info["claimed_epsilon"]


def test_runs_are_cached_and_resumed(mlp, digits_dp, tmp_path):
    ctx = RunContext(registry=audit_sdk.get_registry(), cache_dir=tmp_path / "cache", out_dir=tmp_path / "out")
    opts = {"defense_params": {"target_epsilon": 2.0}, "epochs": 3, "canaries": 200}
    first, i1 = dp_result(audit_sdk.audit_dp(mlp, digits_dp, context=ctx, **opts))
    again, i2 = dp_result(audit_sdk.audit_dp(mlp, digits_dp, context=ctx, confidence=0.99, **opts))
    assert i1["runs_from_cache"] == 0 and i2["runs_from_cache"] == 1
    np.testing.assert_array_equal(first.scores, again.scores)
    assert again.metrics["epsilon_lower_bound"] <= first.metrics["epsilon_lower_bound"]  # higher confidence, weaker claim
    saved = np.load(tmp_path / "out" / "audit.dp" / "canary_scores.npz")
    np.testing.assert_array_equal(saved["scores"], again.scores)


def test_seeded_runs_repeat_and_seeds_differ(mlp, digits_dp):
    opts = {"defense_params": {"target_epsilon": 2.0}, "epochs": 2, "canaries": 100}
    a, _ = dp_result(audit_sdk.audit_dp(mlp, digits_dp, seed=5, **opts))
    b, _ = dp_result(audit_sdk.audit_dp(mlp, digits_dp, seed=5, **opts))
    c, _ = dp_result(audit_sdk.audit_dp(mlp, digits_dp, seed=6, **opts))
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.truth, b.truth)
    assert not np.array_equal(a.truth, c.truth)


def test_report_json_and_verdict(mlp, digits_dp, tmp_path):
    report = audit_sdk.audit_dp(mlp, digits_dp, defense_params={"target_epsilon": 2.0}, epochs=3, canaries=200)
    doc = json.loads(report.to_json(tmp_path / "r.json").read_text())
    entry = doc["attacks"][0]
    assert entry["name"] == "audit.dp"
    assert entry["metrics"]["one_run"]["canaries"] == 200
    assert entry["extra"]["dp_audit"]["verdict"] == "consistent"
    assert math.isfinite(entry["extra"]["claimed_epsilon"])


def test_training_access_is_required(digits_dp, digits_memorised_onnx):
    with pytest.raises(AccessError, match="needs training access.*audit-sdk dp-audit"):
        audit_sdk.run_audit(digits_memorised_onnx, digits_dp, attacks=["audit.dp"])


def test_a_defense_that_ignores_gradient_canaries_is_refused(mlp, digits_dp):
    class PlainSum(Defense):
        name = "defense.test-plain-sum"
        summary = "fills .grad itself and ignores gradient canaries"
        points = ("gradient",)

        def compute_gradients(self, ctx, batch):
            xb, yb = batch
            ctx.loss_fn(ctx.model(xb), yb).mean().backward()
            return True

    class Plugin:
        @audit_sdk.hookimpl
        def register_defenses(self):
            return [PlainSum]

    pm = audit_sdk.get_plugin_manager(third_party=False)
    pm.register(Plugin(), name="test-plain-sum")
    try:
        with pytest.raises(InvalidParameterError, match="never used the gradient canaries"):
            audit_sdk.audit_dp(mlp, digits_dp, defense=PlainSum.name, epochs=1, canaries=50, registry=audit_sdk.get_registry(pm))
    finally:
        pm.unregister(name="test-plain-sum")


def test_output_defenses_and_bad_options_are_refused(mlp, digits_dp):
    with pytest.raises(InvalidParameterError, match="Output defenses do not change training"):
        audit_sdk.audit_dp(mlp, digits_dp, defense="defense.top-k")
    with pytest.raises(InvalidParameterError, match="canaris"):
        audit_sdk.audit_dp(mlp, digits_dp, canaris=10)
    with pytest.raises(InvalidParameterError, match="distinct coordinates"):
        audit_sdk.audit_dp(mlp, digits_dp, canaries=20000, epochs=1)


def test_html_report_has_a_dp_audit_section(mlp, digits_dp, broken_registry, tmp_path):
    report = audit_sdk.audit_dp(
        mlp,
        digits_dp,
        defense="defense.dp-sgd-broken",
        defense_params={"target_epsilon": 1.0, "bug": "skip-clipping"},
        registry=broken_registry,
        epochs=5,
        canaries=300,
    )
    assert [s["title"] for s in report.sections] == ["DP audit (audit.dp)"]
    page = report.to_html(tmp_path / "r.html").read_text()
    assert "DP audit (audit.dp)" in page and "acct.pld" in page and "proven upper bound" in page
    assert "violated" in page and "the DP implementation or its accounting is broken" in page
    doc = json.loads(report.to_json(tmp_path / "r.json").read_text())
    assert doc["sections"][0]["data"]["verdict"] == "violated"


def test_multi_run_fans_out_through_worker_processes(mlp, digits_dp, tmp_path):
    from audit_sdk import LocalExecutor

    opts = {"defense_params": {"target_epsilon": 1.0}, "mode": "multi-run", "runs": 4, "epochs": 1}
    inline, _ = dp_result(audit_sdk.audit_dp(mlp, digits_dp, **opts))
    with LocalExecutor(workers=2) as ex:
        ctx = RunContext(registry=audit_sdk.get_registry(), executor=ex, cache_dir=tmp_path)
        pooled, info = dp_result(audit_sdk.audit_dp(mlp, digits_dp, context=ctx, **opts))
    assert ex.last_stats is not None and info["runs"] == 4
    np.testing.assert_allclose(pooled.scores, inline.scores, rtol=1e-6)  # same seeds, same runs, other processes
    again, info2 = dp_result(
        audit_sdk.audit_dp(mlp, digits_dp, context=RunContext(registry=audit_sdk.get_registry(), cache_dir=tmp_path), **opts)
    )
    assert info2["runs_from_cache"] == 4
    np.testing.assert_array_equal(again.scores, pooled.scores)


@pytest.mark.gpu
def test_audit_runs_on_cuda(mlp, digits_dp):
    res, info = dp_result(audit_sdk.audit_dp(mlp, digits_dp, defense_params={"target_epsilon": 8.0}, device="cuda", epochs=5))
    assert info["verdict"] == "consistent" and 0 <= res.metrics["epsilon_lower_bound"] < 8.0
    bb, _ = dp_result(audit_sdk.audit_dp(mlp, digits_dp, defense=None, canary="ood", threat_model="black-box", device="cuda", epochs=5))
    assert np.isfinite(bb.scores).all()


def test_member_canaries_audit_the_real_training_data(mlp, digits_dp):
    res, info = dp_result(
        audit_sdk.audit_dp(mlp, digits_dp, defense=None, canary="member", threat_model="black-box", canaries=500, epochs=60)
    )
    # 500 of the 1,097 members are canaries, each kept with probability 1/2: no extra rows are trained on
    assert info["training_rows"] == len(digits_dp.members) - 500 + int(res.truth.sum())
    # real, in-distribution examples are the hardest canaries: a well-generalising MLP barely shows them
    # (seen: 0.4 at 1,000 canaries), far below what crafted canaries prove
    assert res.metrics["epsilon_lower_bound"] < 2.0
    dp, dinfo = dp_result(
        audit_sdk.audit_dp(mlp, digits_dp, defense_params={"target_epsilon": 1.0}, canary="member", threat_model="black-box", canaries=500)
    )
    assert dinfo["verdict"] == "consistent"
    with pytest.raises(InvalidDataError, match="fewer canaries"):
        audit_sdk.audit_dp(mlp, digits_dp, canary="member", threat_model="black-box", canaries=5000)


def test_report_verdict_of_a_dp_audit_alone(mlp, digits_dp):
    from audit_sdk.report import verdict

    v = verdict(audit_sdk.audit_dp(mlp, digits_dp, defense_params={"target_epsilon": 2.0}, epochs=3, canaries=200))
    assert v["level"] == "none" and "consistent with the claimed epsilon" in v["text"]
    v = verdict(audit_sdk.audit_dp(mlp, digits_dp, defense=None, epochs=3, canaries=200))
    assert "the run claims no DP" in v["text"]


def test_gradient_canary_sum_dense_and_sparse_agree_and_clip():
    import types

    import torch

    from audit_sdk.adapters.torch.training import gradient_canary_sum

    g = torch.zeros(6, 10)
    g[torch.arange(6), torch.tensor([0, 2, 4, 5, 7, 9])] = torch.tensor([3.0, -0.5, 2.0, 1.0, -4.0, 0.2])
    g[1, 3] = 0.5  # one row with two entries: norms are per row, not per entry

    def ctx(canaries):
        gen = torch.Generator().manual_seed(0)
        return types.SimpleNamespace(gradient_canaries=canaries, generator=gen, sample_rate=0.7, gradient_canary_steps=0)

    c_dense, c_sparse = ctx(g), ctx(g.to_sparse_coo())
    for _ in range(5):  # same generator, same rows join
        fd, nd = gradient_canary_sum(c_dense, clip=1.0)
        fs, ns = gradient_canary_sum(c_sparse, clip=1.0)
        torch.testing.assert_close(fd, fs)
        torch.testing.assert_close(nd, ns)
    assert c_dense.gradient_canary_steps == 5
    # clipped to norm 1 each: row 0 (3.0) contributes at most 1; unclipped it contributes 3
    full, norms = gradient_canary_sum(
        types.SimpleNamespace(gradient_canaries=g, generator=torch.Generator(), sample_rate=1.0, gradient_canary_steps=0)
    )
    torch.testing.assert_close(full, g.sum(0))
    clipped, _ = gradient_canary_sum(
        types.SimpleNamespace(gradient_canaries=g, generator=torch.Generator(), sample_rate=1.0, gradient_canary_steps=0), clip=1.0
    )
    assert abs(float(clipped[0]) - 1.0) < 1e-5 and abs(float(clipped[7]) + 1.0) < 1e-5 and float(clipped[9]) == pytest.approx(0.2)
    torch.testing.assert_close(norms, g.norm(dim=1))


def test_an_interrupted_multi_run_audit_resumes(mlp, digits_dp, tmp_path, monkeypatch):
    from audit_sdk.plugins.auditing.dp import _training as dp_module

    real = dp_module._train_and_score
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the third run
        return real(*args, **kwargs)

    monkeypatch.setattr(dp_module, "_train_and_score", interrupted)
    opts = {"defense_params": {"target_epsilon": 1.0}, "mode": "multi-run", "runs": 4, "epochs": 1}
    ctx = RunContext(registry=audit_sdk.get_registry(), cache_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        audit_sdk.audit_dp(mlp, digits_dp, context=ctx, **opts)
    monkeypatch.setattr(dp_module, "_train_and_score", real)
    _, info = dp_result(audit_sdk.audit_dp(mlp, digits_dp, context=ctx, **opts))
    assert info["runs"] == 4 and info["runs_from_cache"] == 2  # the two finished runs were kept
