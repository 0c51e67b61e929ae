"""`audit-sdk dp-audit`: JSON and human output, report files, resumable runs, verdicts, one-line errors.

CI-sized: the embedded digits, an MLP, 2 epochs and 200 canaries (a few seconds a training run);
the honest DP-SGD run is shared by the module.
"""

from __future__ import annotations

import contextlib
import io
import json
import typing
from pathlib import Path
from types import SimpleNamespace

import pytest

from audit_sdk.cli import main

SMALL = ["--model", "mlp", "--epochs", "2", "--canaries", "200"]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _one_line_error(code: int, err: str, expected_code: int = 2, prefix: str = "audit-sdk: error:") -> str:
    assert code == expected_code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    return lines[0]


@pytest.fixture(scope="module")
def honest(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, str, Path]:
    """An honest DP-SGD run (epsilon 1) with --json, --out and --fail-on-violation."""
    out = tmp_path_factory.mktemp("dp-audit")
    code, stdout, stderr = _run(["dp-audit", *SMALL, "--target-epsilon", "1", "--json", "--out", str(out), "--fail-on-violation"])
    return code, stdout, stderr, out


def test_json_output(honest):
    code, stdout, stderr, _ = honest
    assert code == 0, stderr
    audit = json.loads(stdout)
    assert audit["verdict"] == "consistent"
    assert audit["defense"] == "defense.dp-sgd" and audit["canaries"] == 200 and audit["mode"] == "one-run"
    assert 0 <= audit["epsilon_lower_bound"] <= audit["claimed_epsilon"] <= 1.0 + 1e-6
    assert audit["accountants"]["acct.rdp"]["upper_bound"] is True and audit["accountants"]["acct.rdp"]["epsilon"] > 0
    assert 0 < audit["test_accuracy"] <= 1


def test_fail_on_violation_passes_an_honest_run(honest):
    code, _, stderr, _ = honest
    assert code == 0 and "policy failed" not in stderr


def test_out_writes_reports(honest):
    _, stdout, _, out = honest
    report = json.loads((out / "report.json").read_text())
    assert report["schema_version"] == 1
    (attack,) = report["attacks"]
    assert attack["name"] == "audit.dp" and attack["params"]["canaries"] == 200 and attack["params"]["epochs"] == 2
    assert attack["extra"]["dp_audit"]["verdict"] == json.loads(stdout)["verdict"]
    assert attack["metrics"]["epsilon_lower_bound"] == json.loads(stdout)["epsilon_lower_bound"]
    assert (out / "report.html").stat().st_size > 0
    assert (out / "audit.dp" / "canary_scores.npz").is_file()


def test_rerun_with_the_same_out_reuses_the_training_run(honest):
    _, first, _, out = honest
    code, stdout, stderr = _run(["dp-audit", *SMALL, "--target-epsilon", "1", "--out", str(out)])
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0].startswith("verdict: consistent")
    assert "epsilon lower bound" in stdout and "95% confidence" in stdout and "acct.rdp" in stdout and "test accuracy" in stdout
    assert f"report: {out / 'report.json'}" in stdout
    again = json.loads((out / "report.json").read_text())["attacks"][0]["extra"]["dp_audit"]
    assert again["runs_from_cache"] == 1
    assert again["epsilon_lower_bound"] == json.loads(first)["epsilon_lower_bound"]


def test_no_defense_claims_nothing():
    code, stdout, stderr = _run(["dp-audit", *SMALL, "--defense", "none", "--json"])
    assert code == 0, stderr
    audit = json.loads(stdout)
    assert audit["verdict"] == "no-claim" and audit["claimed_epsilon"] is None and audit["defense"] is None
    assert audit["accountants"] == {} and audit["epsilon_lower_bound"] >= 0


def test_fail_on_violation_exits_1_naming_the_bound_and_the_claim(monkeypatch):
    import audit_sdk.dp_audit_api as api

    seen: dict = {}

    def fake_audit_dp(model, data, **kwargs):
        seen.update(kwargs, model=model, data=data)
        audit = {
            "verdict": "violated",
            "text": "the canaries prove epsilon >= 5.2 at 95% confidence, but the run claims epsilon = 1",
            "mode": "one-run",
            "canary": "gradient",
            "threat_model": "white-box",
            "canaries": 200,
            "runs": 1,
            "confidence": 0.95,
            "delta": 1e-5,
            "claimed_epsilon": 1.0,
            "defense": "defense.dp-sgd",
            "defense_epsilon": 1.0,
            "accountants": {"acct.rdp": {"epsilon": 1.0, "upper_bound": True}, "acct.broken": {"epsilon": None, "error": "boom"}},
            "test_accuracy": 0.5,
            "training_seconds": 0.1,
        }
        return SimpleNamespace(results=[SimpleNamespace(metrics={"epsilon_lower_bound": 5.2}, extra={"dp_audit": audit})])

    monkeypatch.setattr(api, "audit_dp", fake_audit_dp)
    argv = ["dp-audit", "--noise-multiplier", "0.8", "--max-grad-norm", "2", "--delta", "1e-6", "--defense-param", "accountant=acct.pld"]
    code, stdout, stderr = _run([*argv, "--canary", "random-label", "--seed", "7", "--fail-on-violation"])
    line = _one_line_error(code, stderr, expected_code=1, prefix="audit-sdk: policy failed:")
    assert "epsilon >= 5.2" in line and "epsilon = 1" in line
    assert stdout.startswith("verdict: violated") and "acct.broken" in stdout and "error: boom" in stdout
    # the flags reach audit_dp: defense options, audit options and the seed
    assert seen["defense"] == "defense.dp-sgd" and seen["model"] == "mlp" and seen["data"] is None
    assert seen["defense_params"] == {"noise_multiplier": 0.8, "max_grad_norm": 2.0, "delta": 1e-6, "accountant": "acct.pld"}
    assert seen["canary"] == "random-label" and seen["seed"] == 7 and seen["rng"] == 7 and "epochs" not in seen
    # without the flag a violation is reported, not failed
    code, stdout, _ = _run(argv)
    assert code == 0 and stdout.startswith("verdict: violated")


EPS = ["--target-epsilon", "1"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        ([*EPS, "--canary", "gradients"], "--canary 'gradients'"),
        ([*EPS, "--threat-model", "grey-box"], "--threat-model"),
        ([*EPS, "--model", "resnet"], "--model 'resnet'"),
        ([*EPS, "--defense-param", "accountant"], "KEY=VALUE"),
        ([*EPS, "--defense-param", "=1"], "KEY=VALUE"),
        ([*EPS, "--defense-param", "no_such_option=1"], "no_such_option"),
        ([*EPS, "--defense-param", "max_grad_norm=-1"], "max_grad_norm"),
        ([*EPS, "--defense", "dp-sdg"], "defense.dp-sgd"),
        (["--defense", "none", *EPS], "--target-epsilon"),
        (["--defense-param", "accountant=acct.pld"], "--target-epsilon or --noise-multiplier"),
        ([*EPS, "--canaries", "1"], "canaries"),
        ([*EPS, "--data", "/no/such/file.npz"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, needle):
    code, _, stderr = _run(["dp-audit", *argv])
    assert needle in _one_line_error(code, stderr)


def test_choices_come_from_audit_dp_params(monkeypatch):
    # the command reads its choices from audit.dp's Params (no copy to keep equal): a new value shows up by itself
    from audit_sdk.plugins.auditing.dp import DPAudit, command

    fields = DPAudit.Params.model_fields
    assert set(command.CANARIES) == set(typing.get_args(fields["canary"].annotation))
    assert set(command.THREAT_MODELS) == set(typing.get_args(fields["threat_model"].annotation))
    assert set(command.MODES) == set(typing.get_args(fields["mode"].annotation))
    assert set(command.MODELS) == set(typing.get_args(fields["architecture"].annotation)) - {"from-target"}
    assert command.CANARIES[0] == fields["canary"].default  # listed first in --help, as the default
    monkeypatch.setattr(fields["canary"], "annotation", typing.Literal["gradient", "new-kind"])
    assert command.choices("canary") == ("gradient", "new-kind")
