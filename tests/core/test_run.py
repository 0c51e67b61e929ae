"""The pipeline: access checks, hooks, seeding."""

from __future__ import annotations

import types

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict

import audit_sdk
from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.errors import AccessError, InvalidParameterError


class WhiteBoxProbe(Attack):
    name = "mia.test-white-box"
    summary = "Needs gradients of a torch model (test double)."
    access = "white-box"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def run(self, target, data, *, rng=None, context=None):
        x, y, truth = data.combined()
        g = target.gradients(x[:2], y[:2])
        return AttackResult(
            attack=self.name, scores=np.r_[np.full(len(data.members), g.shape[1]), np.zeros(len(data.non_members))], truth=truth
        )


class RandomScores(Attack):
    name = "mia.test-random"
    summary = "Random scores from the attack's rng (test double)."
    access = "black-box"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def run(self, target, data, *, rng=None, context=None):
        x, y, truth = data.combined()
        return AttackResult(attack=self.name, scores=audit_sdk.as_generator(rng).random(len(y)), truth=truth)


@pytest.fixture
def reg(pm):
    seen = []
    plugin = types.SimpleNamespace(
        register_attacks=hookimpl(lambda: [WhiteBoxProbe, RandomScores]),
    )

    class Observer:
        @hookimpl
        def on_attack_finished(self, attack, result):
            seen.append((attack.name, result.metrics["auc"]))

    pm.register(plugin, name="test-attacks")
    pm.register(Observer(), name="test-observer")
    r = audit_sdk.get_registry(pm)
    r.seen = seen  # type: ignore[attr-defined]
    return r


def test_access_mismatch_names_attacks_that_fit(reg, digits_memorised, digits_memorised_onnx):
    with pytest.raises(AccessError, match=r"mia.test-white-box needs white-box access.*Attacks that fit this target: .*mia.loss-threshold"):
        audit_sdk.run_audit(str(digits_memorised_onnx), digits_memorised.data, attacks=["mia.test-white-box"], registry=reg)


def test_white_box_attack_runs_on_torch(reg, digits_memorised):
    report = audit_sdk.run_audit(digits_memorised.model, digits_memorised.data, attacks=["mia.test-white-box"], registry=reg)
    assert report.results[0].metrics["auc"] == 1.0
    assert reg.seen == [("mia.test-white-box", 1.0)]  # the observer hook fired


def test_seeded_runs_repeat_and_seeds_differ(reg, digits_memorised):
    def run(seed):
        return audit_sdk.run_audit(
            digits_memorised.model, digits_memorised.data, attacks=["mia.test-random", "mia.test-random"], rng=seed, registry=reg
        )

    a, b, c = run(1), run(1), run(2)
    np.testing.assert_array_equal(a.results[0].scores, b.results[0].scores)
    assert not np.array_equal(a.results[0].scores, c.results[0].scores)
    # two attacks in one audit get independent streams
    assert not np.array_equal(a.results[0].scores, a.results[1].scores)


def test_report_summary_and_json(reg, digits_memorised, tmp_path):
    report = audit_sdk.run_audit(
        digits_memorised.model, digits_memorised.data, attacks=[("mia.loss-threshold", {"calibration": "per-class"})], registry=reg
    )
    table = report.summary()
    assert "mia.loss-threshold" in table and "auc" in table
    import json

    d = json.loads(report.to_json(tmp_path / "r.json").read_text())
    assert d["attacks"][0]["params"] == {"calibration": "per-class"}


def test_bad_attack_arguments(reg, digits_memorised):
    with pytest.raises(InvalidParameterError, match="at least one attack"):
        audit_sdk.run_audit(digits_memorised.model, digits_memorised.data, attacks=[], registry=reg)
    with pytest.raises(InvalidParameterError, match="attacks must be names"):
        audit_sdk.run_audit(digits_memorised.model, digits_memorised.data, attacks=[42], registry=reg)  # type: ignore[list-item]
