"""What a new user trips on first (issue 19): usage errors that name the cause, --json that writes
nothing unasked, progress in a pipe that --quiet silences."""

from __future__ import annotations

import json

import pytest

from audit_sdk.cli import main
from audit_sdk.data import save_npz


@pytest.fixture(scope="module")
def npz(digits_memorised, tmp_path_factory):
    return save_npz(digits_memorised.data, tmp_path_factory.mktemp("data") / "digits.npz")


def test_attacks_swallowing_the_model_path_names_the_real_cause(digits_memorised_onnx, npz, capsys):
    code = main(["audit", "--data", str(npz), "--attacks", "mia.loss-threshold", str(digits_memorised_onnx)])
    err = capsys.readouterr().err
    assert code == 2
    assert "looks like a file, not an attack name" in err and "Put the model first" in err and "unknown attack" not in err


def test_json_without_out_writes_no_file(digits_memorised_onnx, npz, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["audit", str(digits_memorised_onnx), "--data", str(npz), "--json", "--quiet", "--attacks", "mia.loss-threshold"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["attacks"][0]["name"] == "mia.loss-threshold"
    assert list(tmp_path.iterdir()) == []
    assert (
        main(
            ["audit", str(digits_memorised_onnx), "--data", str(npz), "--json", "--quiet", "--out", "o", "--attacks", "mia.loss-threshold"]
        )
        == 0
    )
    assert (tmp_path / "o" / "report.json").is_file()


def test_progress_lines_in_a_pipe_and_quiet_silences_them(digits_memorised_onnx, npz, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUDIT_SDK_PROGRESS_INTERVAL", "0")
    args = ["audit", str(digits_memorised_onnx), "--data", str(npz), "--no-html", "--out", str(tmp_path), "--attacks", "mia.loss-threshold"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "auditing: 0/1 (started)" in err and "auditing [mia.loss-threshold]: 1/1 (done in" in err
    assert main([*args, "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_train_prints_epochs_loss_and_epsilon_in_a_pipe(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AUDIT_SDK_PROGRESS_INTERVAL", "0")
    code = main(
        [
            "train",
            "--model",
            "mlp",
            "--epochs",
            "2",
            "--noise-multiplier",
            "1.0",
            "--batch-size",
            "512",
            "--out",
            str(tmp_path),
            "--threads",
            "1",
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    last = [ln for ln in err.splitlines() if ln.startswith("training (2 epochs): 2/2")]
    assert last and "epsilon" in last[-1] and "loss" in last[-1], err


def test_calibrate_shows_it_is_alive(monkeypatch, capsys):
    monkeypatch.setenv("AUDIT_SDK_PROGRESS_INTERVAL", "0")
    args = ["calibrate", "--target-epsilon", "3", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "calibrating the noise multiplier (acct.rdp, 100 steps): (done in" in err
    assert main([*args, "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_threads_is_applied_and_checked(monkeypatch, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert (
            main(["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "10", "--delta", "1e-5", "--threads", "1"]) == 0
        )
        assert torch.get_num_threads() == 1
        assert (
            main(["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "10", "--delta", "1e-5", "--threads", "0"]) == 2
        )
        assert "--threads must be >= 1" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)


def test_plugins_fits_the_terminal_and_shows_every_default(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "mia.loss-threshold" in out and "calibration='global'" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "'?'" not in out and "…" not in out  # nothing cut, no unknown defaults
