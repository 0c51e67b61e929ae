"""The pipeline finishes every membership result: a third-party attack's bare result gets slices, verdict, scores file."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

import audit_sdk
from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk.membership import enrich_membership


class BareConfidence(Attack):
    """Returns only scores, truth and labels: what a minimal third-party attack writes."""

    name = "mia.test-bare-confidence"
    summary = "Probability of the true label (test plugin)."
    access = "black-box"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

    def run(self, target: Any, data: Any, *, rng: Any = None, context: Any = None) -> AttackResult:
        x, y, truth = data.combined()
        p = target.predict_proba(x)[np.arange(len(y)), y]
        return AttackResult(attack=self.name, params={}, scores=p, truth=truth, labels=y)


class _Plugin:
    @hookimpl
    def register_attacks(self) -> list[type[Attack]]:
        return [BareConfidence]


def test_a_third_party_membership_result_is_enriched_by_the_pipeline(pm, tiny_onnx, tiny_digits, tmp_path) -> None:
    pm.register(_Plugin(), name="test-bare")
    reg = audit_sdk.get_registry(pm)
    x, y = tiny_digits
    data = audit_sdk.AuditData((x[:300], y[:300]), (x[300:600], y[300:600]))
    ctx = audit_sdk.RunContext(registry=reg, out_dir=tmp_path)
    report = audit_sdk.run_audit(tiny_onnx, data, attacks=["mia.test-bare-confidence"], registry=reg, context=ctx, rng=0)
    (res,) = report.results
    assert len(res.extra["slices"]) == 10, res.extra["slices"][:2]  # one per class
    assert res.extra["verdict"]["leakage_risk"] in (True, False) and "TPR" in res.extra["verdict"]["text"]
    saved = np.load(res.extra["scores_file"])
    np.testing.assert_array_equal(saved["scores"], res.scores)
    np.testing.assert_array_equal(saved["labels"], y[:600])
    entry = report.to_dict()["attacks"][0]
    assert entry["extra"]["verdict"] == res.extra["verdict"]


def test_enrichment_keeps_what_the_attack_added_and_skips_reconstructions() -> None:
    rng = np.random.default_rng(0)
    res = AttackResult(attack="a", params={}, scores=rng.random(40), truth=np.r_[np.ones(20), np.zeros(20)].astype(bool), labels=None)
    res.extra["slices"] = ["mine"]
    enrich_membership(res)
    assert res.extra["slices"] == ["mine"] and "verdict" in res.extra and "scores_file" not in res.extra
    rec = AttackResult(attack="r", params={}, kind="reconstruction", reconstructions=np.zeros((2, 4)), originals=np.ones((2, 4)))
    enrich_membership(rec)
    assert "verdict" not in rec.extra
