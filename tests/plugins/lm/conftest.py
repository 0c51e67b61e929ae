"""Language-model fixtures: a tiny GPT that memorises its training text (trained once per session)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest


@dataclass
class LMSetup:
    model: Any
    data: Any  # AuditData of token ids: members (trained on), non-members, population (other chunks)
    canary: str
    spec: Any
    chunks: list[str]
    train_ids: np.ndarray


def _train(ids: np.ndarray, *, epochs: int, defenses: tuple[Any, ...] = (), lr: float = 3e-3, batch_size: int = 16) -> Any:
    import torch

    from audit_sdk.adapters.torch.lm import LMTrainer, TinyGPT

    torch.manual_seed(0)  # the initialisation too, whatever ran before in the session
    model = TinyGPT(vocab_size=256, d_model=48, n_layers=1, n_heads=4, max_len=48)
    LMTrainer({"epochs": epochs, "batch_size": batch_size, "lr": lr, "device": "cpu", "seed": 0}, defenses=list(defenses)).fit(model, ids)
    return model


@pytest.fixture(scope="session")
def lm_memorised() -> LMSetup:
    """A 1-layer, 48-dim GPT trained 15 epochs on 150 chunks of 48 characters (plus one canary x10): it memorises them.

    Members: its training chunks; non-members: 150 unseen chunks; population: 300 more (~6 s on one core).
    """
    from audit_sdk.plugins.lm.canary import CanarySpec, insert_canaries
    from audit_sdk.plugins.lm.text import encode_texts, stdlib_corpus, text_audit_data

    chunks = stdlib_corpus(length=48, seed=0)
    data = text_audit_data(members=chunks[:150], non_members=chunks[150:300], population=chunks[300:600])
    spec = CanarySpec()
    canary = spec.sample(1, rng=3)[0]
    ids = encode_texts(insert_canaries(chunks[:150], [canary], repeats=10, rng=0), max_length=48)
    return LMSetup(_train(ids, epochs=15), data, canary, spec, chunks, ids)
