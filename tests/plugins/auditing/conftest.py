from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def digits_dp():
    """Digits for DP audits: 1,097 members (training set), 300 held out, 400 population inputs."""
    from audit_sdk.data import load_digits_data, make_audit_data

    data, _ = make_audit_data(load_digits_data(), n_members=1097, n_non_members=300, n_population=400, rng=0)
    return data


@pytest.fixture(scope="module")
def mlp(digits_dp):
    from audit_sdk.adapters.torch import make_model

    return make_model("mlp", input_shape=digits_dp.feature_shape, n_classes=10, seed=0)


@pytest.fixture
def broken_registry():
    """A registry that also knows ``defense.dp-sgd-broken`` (registered for this test only)."""
    import importlib.util
    import sys
    from pathlib import Path

    from audit_sdk import get_plugin_manager, get_registry

    spec = importlib.util.spec_from_file_location("audit_sdk_test_broken_dp", Path(__file__).with_name("broken_dp.py"))
    assert spec is not None and spec.loader is not None
    broken_dp = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = broken_dp  # pydantic resolves the Params annotations through the module
    spec.loader.exec_module(broken_dp)
    pm = get_plugin_manager(third_party=False)
    pm.register(broken_dp, name="test-broken-dp-sgd")
    yield get_registry(pm)
    pm.unregister(name="test-broken-dp-sgd")
