"""acct.dp-accounting: every event kind through `audit-sdk epsilon --events`, compared with dp_accounting run directly."""

from __future__ import annotations

import json
import math

import pytest

dpa = pytest.importorskip("dp_accounting")
from dp_accounting import dp_event as dpe  # noqa: E402
from dp_accounting import pld as dpa_pld  # noqa: E402
from dp_accounting import rdp as dpa_rdp  # noqa: E402
from dp_accounting.pld import common  # noqa: E402
from dp_accounting.pld import privacy_loss_distribution as pl  # noqa: E402

from audit_sdk import InvalidParameterError, PrivacyEvent  # noqa: E402
from audit_sdk.cli import main  # noqa: E402
from audit_sdk.plugins.accountants.dp_accounting_backed import DPAccountingAccountant  # noqa: E402

NR = dpa.NeighboringRelation
DELTA = 1e-6


def cli_epsilon(tmp_path, capsys, events, options=None):
    f = tmp_path / "events.json"
    f.write_text(json.dumps({"options": options or {}, "events": events}))
    code = main(["epsilon", "--events", str(f), "--delta", str(DELTA), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["accountant"] == "acct.dp-accounting" and out["certified"] is True
    return out["epsilon"]


def ref_pld(event, count=1, rel=NR.ADD_OR_REMOVE_ONE):
    a = dpa_pld.PLDAccountant(neighboring_relation=rel)
    a.compose(event, count)
    return a.get_epsilon(DELTA)


def ref_rdp(event, count=1, rel=NR.ADD_OR_REMOVE_ONE):
    a = dpa_rdp.RdpAccountant(neighboring_relation=rel)
    a.compose(event, count)
    return a.get_epsilon(DELTA)


# (events in the file, accountant options, the epsilon of dp_accounting run directly)
CASES = {
    "randomized-response": (
        [{"kind": "randomized-response", "noise_parameter": 0.5, "num_buckets": 10, "count": 3}],
        {"neighboring": "replace-one"},
        lambda: ref_pld(dpe.RandomizedResponseDpEvent(0.5, 10), 3, NR.REPLACE_ONE),
    ),
    "discrete-laplace": (
        [{"kind": "discrete-laplace", "noise_parameter": 0.5, "sensitivity": 2, "count": 4}],
        {},
        lambda: ref_pld(dpe.DiscreteLaplaceDpEvent(0.5, 2), 4),
    ),
    "discrete-gaussian": (
        [{"kind": "discrete-gaussian", "sigma": 3.0, "count": 5}],
        {},
        lambda: pl.from_discrete_gaussian_mechanism(3.0).self_compose(5).get_epsilon_for_delta(DELTA),
    ),
    "zcdp": ([{"kind": "zcdp", "rho": 0.05, "count": 2}], {}, lambda: ref_rdp(dpe.ZCDpEvent(0.05), 2)),
    "exponential": (
        [{"kind": "exponential", "epsilon": 0.5, "count": 4}],
        {},
        lambda: pl.from_privacy_parameters(common.DifferentialPrivacyParameters(0.5, 0.0)).self_compose(4).get_epsilon_for_delta(DELTA),
    ),
    "permute-and-flip": (
        [{"kind": "permute-and-flip", "epsilon": 0.3, "count": 5}],
        {},
        lambda: pl.from_privacy_parameters(common.DifferentialPrivacyParameters(0.3, 0.0)).self_compose(5).get_epsilon_for_delta(DELTA),
    ),
    "tree-aggregation": (
        [{"kind": "tree-aggregation", "noise_multiplier": 5.0, "step_counts": [8, 8]}],
        {"neighboring": "replace-special"},
        lambda: ref_rdp(dpe.SingleEpochTreeAggregationDpEvent(5.0, [8, 8]), 1, NR.REPLACE_SPECIAL),
    ),
    "repeat-and-select": (
        [{"kind": "repeat-and-select", "event": {"kind": "gaussian", "noise_multiplier": 3.0}, "mean": 4.0, "shape": 1.0}],
        {},
        lambda: ref_rdp(dpe.RepeatAndSelectDpEvent(dpe.GaussianDpEvent(3.0), 4.0, 1.0)),
    ),
    "mixture-of-gaussians": (
        [
            {
                "kind": "mixture-of-gaussians",
                "standard_deviation": 2.0,
                "sensitivities": [0.0, 1.0],
                "sampling_probs": [0.9, 0.1],
                "count": 20,
            }
        ],
        {},
        lambda: ref_pld(dpe.MixtureOfGaussiansDpEvent(2.0, [0.0, 1.0], [0.9, 0.1]), 20),
    ),
    "truncated-subsampled-gaussian": (
        [
            {
                "kind": "truncated-subsampled-gaussian",
                "dataset_size": 1000,
                "sampling_probability": 0.01,
                "truncated_batch_size": 15,
                "noise_multiplier": 1.0,
                "count": 100,
            }
        ],
        {},
        lambda: ref_pld(dpe.TruncatedSubsampledGaussianDpEvent(1000, 0.01, 15, 1.0), 100),
    ),
    "sampled-without-replacement": (
        [
            {
                "kind": "sampled-without-replacement",
                "source_dataset_size": 1000,
                "sample_size": 10,
                "event": {"kind": "gaussian", "noise_multiplier": 1.0},
                "count": 100,
            }
        ],
        {"neighboring": "replace-one"},
        lambda: ref_rdp(dpe.SampledWithoutReplacementDpEvent(1000, 10, dpe.GaussianDpEvent(1.0)), 100, NR.REPLACE_ONE),
    ),
    "composed-poisson": (
        [
            {
                "kind": "poisson-sampled",
                "sampling_probability": 0.05,
                "event": {
                    "kind": "composed",
                    "events": [{"kind": "gaussian", "noise_multiplier": 2.0}, {"kind": "gaussian", "noise_multiplier": 3.0}],
                },
                "count": 30,
            }
        ],
        {"backend": "rdp"},
        lambda: ref_rdp(dpe.PoissonSampledDpEvent(0.05, dpe.ComposedDpEvent([dpe.GaussianDpEvent(2.0), dpe.GaussianDpEvent(3.0)])), 30),
    ),
    "gaussian-and-laplace": (
        [{"kind": "gaussian", "noise_multiplier": 1.1, "sample_rate": 0.01, "count": 1000}, {"kind": "laplace", "scale": 20.0, "count": 3}],
        {},
        lambda: ref_pld(
            dpe.ComposedDpEvent(
                [
                    dpe.SelfComposedDpEvent(dpe.PoissonSampledDpEvent(0.01, dpe.GaussianDpEvent(1.1)), 1000),
                    dpe.SelfComposedDpEvent(dpe.LaplaceDpEvent(20.0), 3),
                ]
            )
        ),
    ),
}


# dp_accounting builds a mixture-of-Gaussians PLD in ~6 s on a 2-core box: that case runs with the slow tests
@pytest.mark.parametrize("kind", [pytest.param(k, marks=pytest.mark.slow) if k == "mixture-of-gaussians" else k for k in sorted(CASES)])
def test_every_event_kind_matches_dp_accounting_run_directly(kind, tmp_path, capsys):
    events, options, reference = CASES[kind]
    got = cli_epsilon(tmp_path, capsys, events, options)
    want = reference()
    assert math.isfinite(want) and want > 0
    assert got == pytest.approx(want, rel=1e-9)


def test_unknown_kind_and_missing_params_are_named():
    acct = DPAccountingAccountant()
    with pytest.raises(InvalidParameterError, match="unknown event kind 'cauchy'"):
        acct.step(PrivacyEvent("cauchy", {}))
    with pytest.raises(InvalidParameterError, match="missing \\['num_buckets'\\]"):
        acct.step(PrivacyEvent("randomized-response", {"noise_parameter": 0.5}))


def test_unsupported_combination_is_a_typed_error():
    acct = DPAccountingAccountant(backend="pld")  # add-or-remove: dp_accounting's PLD refuses randomized response
    acct.step(PrivacyEvent("randomized-response", {"noise_parameter": 0.5, "num_buckets": 2}))
    with pytest.raises(InvalidParameterError, match="cannot account a randomized-response"):
        acct.epsilon(1e-6)


def test_events_file_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- !!python/object/apply:os.system ['echo hi']\n")
    assert main(["epsilon", "--events", str(bad), "--delta", "1e-6"]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    big = tmp_path / "big.json"
    big.write_text("[" + " " * (1 << 20) + "]")
    assert main(["epsilon", "--events", str(big), "--delta", "1e-6"]) == 2
    assert "larger than" in capsys.readouterr().err


def test_without_dp_accounting_the_sdk_imports_and_the_accountant_names_the_install(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['dp_accounting'] = None\n"
        "import audit_sdk\n"
        "from audit_sdk.cli import main\n"
        "assert main(['plugins']) == 0\n"
        "from audit_sdk.plugins.accountants.dp_accounting_backed import DPAccountingAccountant\n"
        "a = DPAccountingAccountant(); a.step(audit_sdk.PrivacyEvent('gaussian', {'noise_multiplier': 1.0}))\n"
        "try:\n    a.epsilon(1e-5)\nexcept audit_sdk.errors.BackendUnavailableError as e:\n    print('HINT', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "acct.dp-accounting" in out.stdout and "HINT" in out.stdout and "pip install" in out.stdout
