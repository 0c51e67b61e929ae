"""Fixtures of the inversion tests: the shared memorising digits CNN as a white-box target, the same
digits split without a model, and a random-init CNN (a federated round)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="package", autouse=True)
def _one_torch_thread():
    """Run this package's tests on one torch thread, then restore the setting.

    The attacks here run many tiny ops (8 x 8 images); on a shared 2-core machine under load, two
    intra-op threads made them ~10x slower than one (measured: digits training 48 s vs 4.7 s).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fresh_cnn_target():
    """A freshly initialised CNN: the model a federated client trains at an early round."""
    from audit_sdk.adapters.torch import TorchTarget, make_model

    return TorchTarget(make_model("cnn", input_shape=(1, 8, 8), n_classes=10, seed=0), device="cpu")


@pytest.fixture(scope="session")
def mem_target(digits_memorised):
    """The shared memorising digits CNN (tests/conftest.py) as a white-box target."""
    from audit_sdk.adapters.torch import TorchTarget

    return TorchTarget(digits_memorised.model, device="cpu")


@pytest.fixture(scope="session")
def inv_context():
    """One RunContext for the module's attacks, so the evaluation classifier is trained once."""
    from audit_sdk import RunContext, get_registry

    return RunContext(registry=get_registry())


@pytest.fixture(scope="session")
def digits_data():
    """The digits split of ``digits_memorised`` (same seed and label noise) without training a model."""
    from audit_sdk.adapters.torch.recipes import digits_setup

    return digits_setup(n_members=250, n_non_members=250, n_population=1000, train=False, label_noise=0.1, seed=0).data
