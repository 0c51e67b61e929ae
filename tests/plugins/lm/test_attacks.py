"""LM membership attacks: their maths on synthetic log-probabilities (fast), then on a tiny GPT that memorised its text."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import log_softmax

from audit_sdk import AuditData, InvalidDataError, InvalidModelError, run_audit
from audit_sdk.errors import AccessError
from audit_sdk.plugins.lm.attacks import BLIND_WARN, min_k_mean
from audit_sdk.sequence import PAD, SequenceTarget, pad_sequences

LM_ATTACKS = ["mia.lm-loss", "mia.lm-zlib", "mia.min-k", "mia.min-k-plus-plus", "mia.lm-reference", "mia.lm-quantile"]


class BigramTarget(SequenceTarget):
    """A fixed bigram model: the logits at position t depend on token t only."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table
        self.vocab_size = table.shape[1]
        self.batch_size = 3  # several buckets even on small data

    def _next_token_logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.table[ids]


def _bigram(seed: int = 0, v: int = 12) -> BigramTarget:
    return BigramTarget(np.random.default_rng(seed).normal(0, 2, (v, v)))


def test_min_k_mean_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(20, 15))
    lens = rng.integers(1, 16, 20)
    v[np.arange(15)[None, :] >= lens[:, None]] = np.nan
    for k in (0.05, 0.2, 0.5, 1.0):
        naive = [np.sort(r[~np.isnan(r)])[: max(1, int(np.ceil(k * (~np.isnan(r)).sum())))].mean() for r in v]
        np.testing.assert_allclose(min_k_mean(v, k), naive, rtol=1e-12)


def test_token_stats_match_scipy_log_softmax_across_length_buckets():
    t = _bigram()
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 12, rng.integers(2, 9)) for _ in range(10)]
    x = pad_sequences(seqs)
    st = t.token_stats(x)
    for i, s in enumerate(seqs):
        lp = log_softmax(t.table[s[:-1]], axis=1)  # independent: scipy
        np.testing.assert_allclose(st.logp[i, : len(s) - 1], lp[np.arange(len(s) - 1), s[1:]], rtol=1e-10)
        p = np.exp(lp)
        mu = (p * lp).sum(1)
        np.testing.assert_allclose(st.mu[i, : len(s) - 1], mu, rtol=1e-10)
        np.testing.assert_allclose(st.sigma[i, : len(s) - 1], np.sqrt((p * (lp - mu[:, None]) ** 2).sum(1)), rtol=1e-8)
        assert np.isnan(st.logp[i, len(s) - 1 :]).all()


def _synthetic_data(t: BigramTarget, n: int = 120, length: int = 10, seed: int = 0) -> AuditData:
    """Members sampled from the bigram model itself (likely under it), non-members uniform at random (unlikely)."""
    rng = np.random.default_rng(seed)
    p = np.exp(log_softmax(t.table, axis=1))
    mem = np.zeros((n, length), np.int64)
    mem[:, 0] = rng.integers(0, 12, n)
    for j in range(1, length):
        u = rng.random(n)[:, None]
        mem[:, j] = (p[mem[:, j - 1]].cumsum(1) < u).sum(1).clip(max=11)
    non = rng.integers(0, 12, (n, length))
    pop = rng.integers(0, 12, (2 * n, length))
    return AuditData((mem, np.zeros(n, np.int64)), (non, np.zeros(n, np.int64)), (pop, np.zeros(2 * n, np.int64)), check_disjoint=False)


def test_scores_are_the_formulas_and_every_attack_separates_planted_likelihood():
    t = _bigram()
    data = _synthetic_data(t)
    rep = run_audit(t, data, attacks=["mia.lm-loss", "mia.lm-zlib", "mia.min-k", "mia.min-k-plus-plus", "mia.lm-quantile"], rng=0)
    x, _, truth = data.combined()
    st = t.token_stats(x)
    by = {r.attack: r for r in rep.results}
    np.testing.assert_allclose(by["mia.lm-loss"].scores, np.nanmean(st.logp, axis=1))
    z = (st.logp - st.mu) / st.sigma
    np.testing.assert_allclose(by["mia.min-k-plus-plus"].scores, min_k_mean(z, 0.2))
    for r in rep.results:
        assert r.metrics["auc"] > 0.7, (r.attack, r.metrics["auc"])
        assert "blind_baseline_auc" in r.extra


def test_a_classifier_attack_on_a_language_model_is_refused_naming_lm_attacks():
    t = _bigram()
    with pytest.raises(AccessError, match="mia.lm-loss"):
        run_audit(t, _synthetic_data(t, n=20), attacks=["mia.loss-threshold"])


def test_blind_baseline_warns_when_members_and_non_members_differ_in_distribution():
    t = _bigram()
    rng = np.random.default_rng(0)
    long_ = pad_sequences([rng.integers(0, 12, 30) for _ in range(80)])
    short = pad_sequences([rng.integers(0, 12, 8) for _ in range(80)])
    short = np.pad(short, ((0, 0), (0, 22)), constant_values=PAD)
    shifted = AuditData((long_, np.zeros(80, np.int64)), (short, np.zeros(80, np.int64)))
    rep = run_audit(t, shifted, attacks=["mia.lm-loss", "mia.lm-blind"], rng=0)
    blind = next(r for r in rep.results if r.attack == "mia.lm-blind").metrics["auc"]
    assert abs(blind - 0.5) > BLIND_WARN
    sec = next(s for s in rep.sections if s["title"].startswith("Language-model audit"))
    assert sec["data"]["distribution_shift"] and "Warning" in sec["html"]
    # a fair split (members and non-members from one distribution) does not warn
    fair = AuditData((rng.integers(0, 12, (80, 20)), np.zeros(80, np.int64)), (rng.integers(0, 12, (80, 20)), np.zeros(80, np.int64)))
    rep2 = run_audit(t, fair, attacks=["mia.lm-loss"], rng=0)
    assert not next(s for s in rep2.sections if s["title"].startswith("Language-model audit"))["data"]["distribution_shift"]


def test_quantile_attack_needs_population():
    t = _bigram()
    d = _synthetic_data(t, n=30)
    with pytest.raises(InvalidDataError, match="population"):
        run_audit(t, AuditData(d.members, d.non_members, check_disjoint=False), attacks=["mia.lm-quantile"])


def test_every_lm_attack_scores_members_of_a_tiny_gpt_above_non_members(lm_memorised):
    """Acceptance: on a small causal LM that memorised its text every LM attack beats chance, the best >= 0.7."""
    from audit_sdk.adapters.torch.lm import TorchLMTarget

    rep = run_audit(
        TorchLMTarget(lm_memorised.model, device="cpu"),
        lm_memorised.data,
        attacks=[a for a in LM_ATTACKS if a != "mia.lm-reference"],
        rng=0,
    )
    aucs = {r.attack: r.metrics["auc"] for r in rep.results}
    assert max(aucs.values()) >= 0.7, aucs
    assert min(aucs.values()) > 0.6, aucs


@pytest.mark.slow
def test_reference_attack_and_a_model_that_never_saw_the_text(lm_memorised):
    """Acceptance: the reference attack catches memorisation; on a model trained elsewhere every attack is at chance (0.5 +- 0.05)."""
    from audit_sdk.plugins.lm.text import text_audit_data

    from .conftest import _train

    rep = run_audit(lm_memorised.model, lm_memorised.data, attacks=[("mia.lm-reference", {"epochs": 10, "n_layers": 1})], rng=0)
    assert rep.results[0].metrics["auc"] >= 0.7
    ch = lm_memorised.chunks
    # 500 + 500 texts the model never saw (AUC standard error ~0.018), population for the quantile / reference models
    unseen = text_audit_data(members=ch[600:1100], non_members=ch[1100:1600], population=ch[300:600])
    from audit_sdk.plugins.lm.text import encode_texts

    other = _train(encode_texts(ch[1600:1900], max_length=48), epochs=15)
    rep = run_audit(
        other, unseen, attacks=[a if a != "mia.lm-reference" else (a, {"epochs": 10, "n_layers": 1}) for a in LM_ATTACKS], rng=0
    )
    for r in rep.results:
        assert abs(r.metrics["auc"] - 0.5) <= 0.05, (r.attack, r.metrics["auc"])


def test_reference_calibration_against_the_model_itself_is_exactly_uninformative(lm_memorised, tmp_path):
    """Known answer: with the target as its own reference, loss / ref_loss = 1 for every text, so AUC = 0.5."""
    from audit_sdk.adapters.torch.lm import export_lm_onnx

    ref = export_lm_onnx(lm_memorised.model, tmp_path / "ref.onnx")
    rep = run_audit(lm_memorised.model, lm_memorised.data, attacks=[("mia.lm-reference", {"reference": str(ref)})], rng=0)
    np.testing.assert_allclose(rep.results[0].scores, -1.0, atol=1e-4)
    with pytest.raises(InvalidModelError, match="does not exist"):
        run_audit(lm_memorised.model, lm_memorised.data, attacks=[("mia.lm-reference", {"reference": str(tmp_path / "missing.onnx")})])
