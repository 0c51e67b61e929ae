"""Shared fixtures. Area-specific fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Third-party plugins off in tests unless a test turns them on itself.
os.environ.setdefault("AUDIT_SDK_DISABLE_PLUGINS", "1")


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        # One thread: these models are tiny (threading costs more than it gives), and several
        # test processes (executors, subprocess CLIs) share the 2 CI cores.
        torch.set_num_threads(1)
    except ImportError:
        pass


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip)


@pytest.fixture
def pm():
    """A fresh plugin manager with third-party plugins off."""
    from audit_sdk import get_plugin_manager

    return get_plugin_manager(third_party=False)


@pytest.fixture
def registry(pm):
    from audit_sdk import get_registry

    return get_registry(pm)


@pytest.fixture(scope="session")
def digits_memorised():
    """A CNN trained on 250 digits until it memorises them, with its AuditData.

    10% of all labels are flipped before the split (members and non-members alike), so the model
    must memorise its mislabelled members: train accuracy ~1.0, test accuracy ~0.75. Members are
    its training set, non-members unseen digits, population 1000 further digits.
    """
    from audit_sdk.adapters.torch.recipes import digits_setup

    return digits_setup(n_members=250, n_non_members=250, n_population=1000, epochs=80, label_noise=0.1, seed=0)


@pytest.fixture(scope="session")
def digits_memorised_onnx(digits_memorised, tmp_path_factory) -> Path:
    """The memorising digits CNN exported to ONNX."""
    from audit_sdk.adapters.torch import export_onnx

    return export_onnx(digits_memorised.model, digits_memorised.data.members.x[:2], tmp_path_factory.mktemp("onnx") / "memorised.onnx")


@pytest.fixture(scope="session")
def digits_unseen():
    """Same split, but a model trained on the population only: it has seen neither members nor non-members."""
    from audit_sdk.adapters.torch import TrainConfig, Trainer, make_model
    from audit_sdk.adapters.torch.recipes import digits_setup

    setup = digits_setup(n_members=250, n_non_members=250, n_population=1000, train=False, label_noise=0.1, seed=0)
    model = make_model("cnn", input_shape=setup.data.feature_shape, n_classes=10, seed=1)
    pop = setup.data.population
    Trainer(TrainConfig(epochs=30, batch_size=64, lr=2e-3, device="cpu", seed=1)).fit(model, pop.x, pop.y)
    setup.model = model
    return setup


@pytest.fixture(scope="session")
def digits_unseen_onnx(digits_unseen, tmp_path_factory) -> Path:
    from audit_sdk.adapters.torch import export_onnx

    return export_onnx(digits_unseen.model, digits_unseen.data.members.x[:2], tmp_path_factory.mktemp("onnx") / "unseen.onnx")
