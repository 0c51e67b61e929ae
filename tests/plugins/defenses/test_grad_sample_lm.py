"""Ghost clipping on a transformer (Embedding, q/k/v/o Linear, LayerNorm): equal to materialised per-sample gradients."""

from __future__ import annotations

import pytest
import torch

from audit_sdk.adapters.torch.lm import TinyGPT, _inputs_targets, lm_loss
from audit_sdk.plugins.defenses._grad_sample import clipped_grad_sum, unsupported_modules


@pytest.mark.parametrize("per_layer", [False, True])
@pytest.mark.parametrize("padding_idx", [None, 3])
def test_ghost_equals_vmap_on_tiny_gpt(per_layer, padding_idx):
    torch.manual_seed(0)
    m = TinyGPT(vocab_size=30, d_model=16, n_layers=2, n_heads=2, max_len=16).double()
    m.tok.padding_idx = padding_idx
    assert unsupported_modules(m) == []
    ids = torch.randint(0, 30, (5, 12))
    ids[0, 8:] = -1  # a shorter sequence (ignored targets)
    ids[1, :6] = 3  # a repeated id: one embedding row gets several positions' gradients
    inp, tgt = _inputs_targets(ids)
    ghost = clipped_grad_sum(m, lm_loss, inp, tgt, clip=0.05, per_layer=per_layer, mode="ghost")
    ref = clipped_grad_sum(m, lm_loss, inp, tgt, clip=0.05, per_layer=per_layer, mode="vmap")  # torch.func per-sample grads
    torch.testing.assert_close(ghost.norms, ref.norms, rtol=1e-9, atol=1e-12)
    for a, b in zip(ghost.grads, ref.grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert (ghost.norms > 0.05).all()  # the bound was active: clipping was exercised


def test_dp_sgd_trains_a_tiny_gpt_through_the_lm_trainer():
    from audit_sdk.adapters.torch.lm import LMTrainer
    from audit_sdk.plugins.defenses.dp_sgd import DPSGD
    from audit_sdk.sequence import pad_sequences

    ids = pad_sequences([[i % 7, (i + 1) % 7, (i + 2) % 7, 5, 6][: 2 + i % 4] for i in range(40)])
    dp = DPSGD(target_epsilon=4.0, max_grad_norm=1.0, grad_sample_mode="ghost")
    res = LMTrainer({"epochs": 2, "batch_size": 8, "lr": 1e-2, "device": "cpu"}, defenses=[dp]).fit(
        TinyGPT(vocab_size=7, d_model=8, n_layers=1, n_heads=2, max_len=8), ids
    )
    rep = res.defenses["defense.dp-sgd"]
    assert rep["epsilon"] <= 4.0 + 1e-9 and rep["steps"] == res.steps > 0
