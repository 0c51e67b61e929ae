"""Fixtures of the membership-inference tests: one reference-model cache for the whole session."""

from __future__ import annotations

import pytest

#: Small reference models: enough to beat chance clearly on the memorising digits CNN, cheap to train.
OFFLINE = {"n_references": 4, "reference_epochs": 40, "architecture": "cnn"}
ONLINE = {"mode": "online", "n_references": 8, "reference_epochs": 40, "architecture": "cnn"}

#: Every attack, with options sized for the test budget; ids name the test cases.
ATTACKS = {
    "threshold-mentr": ("mia.threshold", {}),
    "threshold-loss-per-class": ("mia.threshold", {"statistic": "loss", "calibration": "per-class"}),
    "threshold-confidence": ("mia.threshold", {"statistic": "confidence"}),
    "threshold-entropy": ("mia.threshold", {"statistic": "entropy"}),
    "classifier-target-split": ("mia.classifier", {"attack_config": [{"method": "lr"}, {"method": "knn"}]}),
    "classifier-shadow": ("mia.classifier", {"setting": "shadow", **OFFLINE}),
    "lira-offline": ("mia.lira", {"mode": "offline", **OFFLINE}),
    "lira-online": ("mia.lira", ONLINE),
    "rmia": ("mia.rmia", {"mode": "offline", **OFFLINE}),
    "label-only": ("mia.label-only", {"n_queries": 8}),
}


@pytest.fixture(scope="session")
def mia_cache(tmp_path_factory):
    """Reference models cached once per session and shared by every test (as an audit shares them)."""
    return tmp_path_factory.mktemp("mia-cache")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # The reference models are tiny: a second intra-op thread only spins, and on a shared CI
    # machine that spinning costs several times the work itself.
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def mia_context(mia_cache):
    from audit_sdk import get_registry
    from audit_sdk.run import RunContext

    return RunContext(registry=get_registry(), cache_dir=mia_cache)
