"""The example plugin meets the bar every audit-sdk component meets, through ``audit_sdk.testing``.

Run from this folder (``pytest tests/``): the plugin module beside ``pyproject.toml`` is importable
whether or not the distribution is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the plugin module, installed or not

import audit_sdk_example_plugin  # noqa: E402
from audit_sdk_example_plugin import ConfidenceAttack  # noqa: E402

from audit_sdk.testing import check_attack, check_plugin, small_audit_problem  # noqa: E402


def test_the_attack_passes_the_conformance_checks() -> None:
    rules = check_attack(ConfidenceAttack)
    assert {"name", "unknown-option", "scores", "seeded-repeat"} <= set(rules)


def test_every_class_the_plugin_registers_passes() -> None:
    assert list(check_plugin(audit_sdk_example_plugin)) == ["mia.example-confidence"]


@pytest.mark.parametrize("temperature", [0.5, 2.0])
def test_the_attack_passes_with_its_options(temperature: float) -> None:
    check_attack(ConfidenceAttack, params={"temperature": temperature})


def test_a_bad_temperature_is_refused() -> None:
    from audit_sdk import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="temperature"):
        ConfidenceAttack(temperature=0)


def test_confidence_leaks_membership_of_the_fixture() -> None:
    problem = small_audit_problem()
    result = ConfidenceAttack().run(problem.target, problem.data, rng=0)
    assert result.metrics["auc"] > 0.5  # the fixture's logistic regression fits its members better
