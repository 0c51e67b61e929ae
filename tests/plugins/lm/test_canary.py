"""Canary exposure: exact enumeration against a hand count, the skew-normal estimate, and memorisation vs DP-SGD."""

from __future__ import annotations

import math

import numpy as np
import pytest

from audit_sdk.errors import InvalidParameterError
from audit_sdk.plugins.lm.canary import CanarySpec, exposure, insert_canaries, log_perplexities
from audit_sdk.sequence import SequenceTarget


class DigitPreference(SequenceTarget):
    """Byte model whose next-token logits favour one byte value ``b`` by ``bonus`` everywhere."""

    vocab_size = 256

    def __init__(self, weights: np.ndarray) -> None:
        self.w = weights

    def _next_token_logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.w, (*ids.shape, 256)).copy()


def test_spec_texts_and_codes_round_trip():
    spec = CanarySpec(prefix="pin ", alphabet="0123456789", length=4, suffix=".")
    texts = spec.texts(np.array([0, 42, 9999]))
    assert texts == ["pin 0000.", "pin 0042.", "pin 9999."]
    assert [spec.code_of(t) for t in texts] == [0, 42, 9999]
    assert spec.space_size == 10**4
    with pytest.raises(InvalidParameterError, match="format"):
        spec.code_of("pin 12.")
    assert len(set(spec.sample(50, rng=0))) == 50


def test_enumerated_exposure_is_log2_R_minus_log2_rank_by_hand():
    # a context-free model: a secret's log-perplexity is the sum of its digits' costs, so the rank is countable by hand
    w = np.zeros(256)
    w[ord("7")] = 3.0  # sevens are likely
    w[ord("3")] = 1.0
    t = DigitPreference(w)
    spec = CanarySpec(prefix="s=", length=3)
    rows = exposure(t, ["s=777", "s=737", "s=000"], spec, method="enumerate")
    # "777": the unique best -> rank 1; "737": beaten only by 777 -> rank 2 (773, 377 tie and share rank 2)
    assert rows[0]["rank"] == 1 and math.isclose(rows[0]["exposure"], math.log2(1000))
    assert rows[1]["rank"] == 2 and math.isclose(rows[1]["exposure"], math.log2(1000) - 1)
    # "000" has the worst digit cost: count of secrets strictly more likely = all but those made of only 0,1,2,4,5,6,8,9 ...
    digits_cost = {ch: (0.0 if ch not in "73" else (3.0 if ch == "7" else 1.0)) for ch in "0123456789"}
    better = sum(1 for s in range(1000) if sum(digits_cost[c] for c in f"{s:03d}") > 0)
    assert rows[2]["rank"] == 1 + better
    ppl = log_perplexities(t, ["s=777", "s=000"])
    assert ppl[0] < ppl[1]


def test_skewnorm_exposure_agrees_with_enumeration_and_the_sampled_rank():
    rng = np.random.default_rng(0)
    w = np.zeros(256)
    w[ord("0") : ord("9") + 1] = rng.normal(0, 1.0, 10)
    t = DigitPreference(w)
    spec = CanarySpec(prefix="s=", length=4)
    c = spec.sample(3, rng=1)
    exact = [r["exposure"] for r in exposure(t, c, spec, method="enumerate")]
    fit = exposure(t, c, spec, method="skewnorm", n_samples=3000, rng=0)
    for e, f in zip(exact, fit):
        assert abs(e - f["exposure"]) < 1.0, (e, f)
        assert abs(e - f["sampled_exposure"]) < 1.0


def test_insert_canaries_repeats_each():
    out = insert_canaries(["a", "b"], ["X", "Y"], repeats=3, rng=0)
    assert sorted(out) == ["X"] * 3 + ["Y"] * 3 + ["a", "b"]


def test_memorised_canary_has_high_exposure(lm_memorised):
    """Acceptance: a canary repeated 10 times in a non-private model's text has exposure > 10 bits at |R| = 10^6."""
    from audit_sdk.adapters.torch.lm import TorchLMTarget

    t = TorchLMTarget(lm_memorised.model, device="cpu", batch_size=512)
    control = lm_memorised.spec.sample(1, rng=99)[0]  # never inserted
    rows = exposure(t, [lm_memorised.canary, control], lm_memorised.spec, n_samples=3000, rng=0)
    assert lm_memorised.spec.space_size == 10**6
    assert rows[0]["exposure"] > 10, rows
    assert rows[1]["exposure"] < rows[0]["exposure"] - 5, rows


@pytest.mark.slow
def test_dp_sgd_at_epsilon_8_lowers_exposure(lm_memorised):
    """Acceptance: under DP-SGD at epsilon 8 the same canary's exposure drops measurably.

    Not to chance: the canary is repeated 10 times, and epsilon 8 per record is a much weaker
    guarantee for 10 copies (group privacy); measured over initialisations 0-2 it keeps 10-14 bits
    against the non-private model's 19.9 (the maximum), while never-inserted controls sit at 0.4-4.
    """
    from audit_sdk.adapters.torch.lm import TorchLMTarget
    from audit_sdk.plugins.defenses.dp_sgd import DPSGD

    from .conftest import _train

    dp = DPSGD(target_epsilon=8.0, delta=1e-5, max_grad_norm=1.0)
    model = _train(lm_memorised.train_ids, epochs=15, defenses=(dp,), lr=1e-2, batch_size=32)
    spec = lm_memorised.spec
    controls = spec.sample(4, rng=77)
    plain = exposure(TorchLMTarget(lm_memorised.model, device="cpu", batch_size=512), [lm_memorised.canary], spec, n_samples=3000, rng=0)
    private = exposure(TorchLMTarget(model, device="cpu", batch_size=512), [lm_memorised.canary, *controls], spec, n_samples=3000, rng=0)
    assert plain[0]["exposure"] > 10
    assert private[0]["exposure"] < plain[0]["exposure"] - 3, (plain, private)
    assert private[0]["log_perplexity"] > plain[0]["log_perplexity"] + 20  # the secret is far less likely under DP
    assert np.mean([r["exposure"] for r in private[1:]]) < 5  # controls: chance level
