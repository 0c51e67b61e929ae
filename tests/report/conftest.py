"""Fixtures of the audit-product tests: reports built from planted attack results (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from audit_sdk import AttackResult
from audit_sdk.run import AuditReport


def planted_membership(name: str = "mia.fake", *, separation: float = 3.0, n: int = 200, seed: int = 0) -> AttackResult:
    """Scores whose members sit ``separation`` standard deviations above the non-members."""
    rng = np.random.default_rng(seed)
    truth = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    scores = rng.normal(size=2 * n) + separation * truth
    return AttackResult(attack=name, params={"separation": separation}, scores=scores, truth=truth, labels=rng.integers(0, 10, 2 * n))


def planted_reconstruction(name: str = "inversion.fake", *, n: int = 6, seed: int = 0) -> AttackResult:
    rng = np.random.default_rng(seed)
    orig = rng.random((n, 1, 8, 8))
    rec = np.clip(orig + 0.1 * rng.normal(size=orig.shape), 0, 1)
    return AttackResult(attack=name, kind="reconstruction", reconstructions=rec, originals=orig, data_range=1.0)


def make_report(results, *, privacy=None, label=None, utility=None) -> AuditReport:
    rep = AuditReport(
        target={"kind": "FakeTarget"},
        data={"members": 200, "non_members": 200, "population": 0},
        results=list(results),
        privacy=privacy,
        label=label,
    )
    rep.utility = dict(utility or {})
    return rep


@pytest.fixture
def leaky_report() -> AuditReport:
    return make_report([planted_membership(separation=3.0), planted_reconstruction()])


@pytest.fixture
def quiet_report() -> AuditReport:
    return make_report([planted_membership(separation=0.0)])


@pytest.fixture
def planted():
    """Factories: planted.membership(...), planted.reconstruction(...), planted.report(...)."""
    import types

    return types.SimpleNamespace(membership=planted_membership, reconstruction=planted_reconstruction, report=make_report)
