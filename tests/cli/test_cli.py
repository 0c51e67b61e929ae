"""The command line: listing, auditing, exit codes and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from audit_sdk.cli import main
from audit_sdk.data import save_npz


@pytest.fixture(scope="module")
def npz(digits_memorised, tmp_path_factory):
    return save_npz(digits_memorised.data, tmp_path_factory.mktemp("data") / "digits.npz")


def _one_line_error(capsys, code, expected_code=2):
    out = capsys.readouterr()
    assert code == expected_code, out
    assert "Traceback" not in out.err
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("audit-sdk: error:"), out.err
    return lines[0]


def test_plugins_json_lists_builtins(capsys):
    assert main(["plugins", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    comps = {c["name"]: c for c in info["components"]}
    lt = comps["mia.loss-threshold"]
    assert lt["kind"] == "attack" and lt["package"] == "audit-sdk" and lt["summary"]
    assert "calibration" in lt["options"]["properties"]
    assert {"name", "package", "version", "hooks"} <= set(info["plugins"][0])


def test_plugins_table(capsys):
    assert main(["plugins"]) == 0
    assert "mia.loss-threshold" in capsys.readouterr().out


def test_audit_writes_versioned_report(digits_memorised_onnx, npz, tmp_path, capsys):
    code = main(
        ["audit", str(digits_memorised_onnx), "--data", str(npz), "--attacks", "mia.loss-threshold", "--seed", "3", "--out", str(tmp_path)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "mia.loss-threshold" in out and "auc" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema_version"] == 1
    assert report["data"]["members"] == 250 and report["data"]["non_members"] == 250 and report["data"]["population"] == 1000
    a = report["attacks"][0]
    assert a["name"] == "mia.loss-threshold" and a["params"] == {"calibration": "global"}
    assert set(a["metrics"]) >= {"auc", "advantage", "balanced_accuracy", "tpr_at_fpr", "epsilon_lower_bound"}
    assert set(a["metrics"]["tpr_at_fpr"]) == {"0.001", "0.01"}
    assert a["metrics"]["auc"] > 0.6 and a["seconds"] >= 0
    assert report["target"]["kind"] == "OnnxTarget"
    # per-example scores are written beside the report
    saved = list((tmp_path / "mia").glob("mia.loss-threshold*.npz"))
    assert len(saved) == 1 and len(np.load(saved[0])["scores"]) == 500


def test_attacks_comma_separated_and_options_after_names(digits_memorised_onnx, npz, tmp_path, capsys):
    code = main(
        [
            "audit",
            str(digits_memorised_onnx),
            "--data",
            str(npz),
            "--attacks",
            "mia.loss-threshold,loss-threshold",
            "--param",
            "loss-threshold.calibration=per-class",
            "--out",
            str(tmp_path),
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert [a["params"]["calibration"] for a in report["attacks"]] == ["global", "per-class"]


def test_unknown_attack_suggests_the_nearest(digits_memorised_onnx, npz, tmp_path, capsys):
    code = main(["audit", str(digits_memorised_onnx), "--data", str(npz), "--attacks", "mia.loss-treshold", "--out", str(tmp_path)])
    line = _one_line_error(capsys, code)
    assert "unknown attack 'mia.loss-treshold'" in line and "Did you mean 'mia.loss-threshold'" in line


def test_unknown_option(digits_memorised_onnx, npz, tmp_path, capsys):
    code = main(
        ["audit", str(digits_memorised_onnx), "--data", str(npz), "--param", "mia.loss-threshold.calibraton=global", "--out", str(tmp_path)]
    )
    line = _one_line_error(capsys, code)
    assert "unknown option 'calibraton'" in line


def test_bad_option_value(digits_memorised_onnx, npz, tmp_path, capsys):
    code = main(
        [
            "audit",
            str(digits_memorised_onnx),
            "--data",
            str(npz),
            "--param",
            "mia.loss-threshold.calibration=sideways",
            "--out",
            str(tmp_path),
        ]
    )
    line = _one_line_error(capsys, code)
    assert "calibration" in line and "sideways" in line


def test_missing_and_corrupt_model(npz, tmp_path, capsys):
    code = main(["audit", str(tmp_path / "missing.onnx"), "--data", str(npz), "--out", str(tmp_path)])
    assert "does not exist" in _one_line_error(capsys, code)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    code = main(["audit", str(bad), "--data", str(npz), "--out", str(tmp_path)])
    assert "not a loadable ONNX model" in _one_line_error(capsys, code)


def _write(tmp_path, name, members, non_members):
    p = tmp_path / name
    np.savez(p, x_members=members[0], y_members=members[1], x_non_members=non_members[0], y_non_members=non_members[1])
    return p


def test_data_that_does_not_fit_the_model(digits_memorised_onnx, tmp_path, capsys):
    g = np.random.default_rng(0)
    wrong_shape = _write(
        tmp_path,
        "shape.npz",
        (g.random((4, 64), dtype=np.float32), np.zeros(4, int)),
        (g.random((4, 64), dtype=np.float32), np.zeros(4, int)),
    )
    code = main(["audit", str(digits_memorised_onnx), "--data", str(wrong_shape), "--out", str(tmp_path)])
    assert "do not fit the model" in _one_line_error(capsys, code)
    labels = _write(
        tmp_path,
        "labels.npz",
        (g.random((4, 1, 8, 8), dtype=np.float32), np.array([0, 1, 2, 11])),
        (g.random((4, 1, 8, 8), dtype=np.float32), np.zeros(4, int)),
    )
    code = main(["audit", str(digits_memorised_onnx), "--data", str(labels), "--out", str(tmp_path)])
    assert "model predicts 10 classes" in _one_line_error(capsys, code)


def test_nan_and_empty_data(digits_memorised_onnx, tmp_path, capsys):
    g = np.random.default_rng(0)
    x = g.random((4, 1, 8, 8), dtype=np.float32)
    x[1, 0, 0, 0] = np.nan
    nan = _write(tmp_path, "nan.npz", (x, np.zeros(4, int)), (g.random((4, 1, 8, 8), dtype=np.float32), np.zeros(4, int)))
    code = main(["audit", str(digits_memorised_onnx), "--data", str(nan), "--out", str(tmp_path)])
    assert "NaN or inf" in _one_line_error(capsys, code)
    empty = _write(tmp_path, "empty.npz", (np.zeros((0, 1, 8, 8), np.float32), np.zeros(0, int)), (x[2:], np.zeros(2, int)))
    code = main(["audit", str(digits_memorised_onnx), "--data", str(empty), "--out", str(tmp_path)])
    assert "members: is empty" in _one_line_error(capsys, code)


def test_usage_errors_exit_2(capsys):
    assert main(["audit"]) == 2
    assert main(["no-such-command"]) == 2
    capsys.readouterr()


def test_console_script_runs(tmp_path):
    # from tmp_path: the console entry works outside the checkout (tests/core/test_source_tree.py covers the root)
    out = subprocess.run([sys.executable, "-m", "audit_sdk.cli", "plugins", "--json"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "mia.loss-threshold" in out.stdout
