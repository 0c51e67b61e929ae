"""`audit-sdk audit lm.onnx --data text.npz --attacks ...` from the ONNX file alone, and `audit-sdk demo --lm`."""

from __future__ import annotations

import json

import pytest

from audit_sdk.cli import main


@pytest.fixture(scope="module")
def lm_files(lm_memorised, tmp_path_factory):
    from audit_sdk import save_npz
    from audit_sdk.adapters.torch.lm import export_lm_onnx

    d = tmp_path_factory.mktemp("lmcli")
    return export_lm_onnx(lm_memorised.model, d / "lm.onnx"), save_npz(lm_memorised.data, d / "text.npz")


def test_audit_an_onnx_lm_from_the_file_alone(lm_files, tmp_path, capsys):
    model, data = lm_files
    code = main(
        [
            "audit",
            str(model),
            "--data",
            str(data),
            "--attacks",
            "mia.lm-loss",
            "mia.min-k",
            "mia.min-k-plus-plus",
            "mia.lm-zlib",
            "--out",
            str(tmp_path),
            "-q",
        ]
    )
    assert code == 0, capsys.readouterr().err
    rep = json.loads((tmp_path / "report.json").read_text())
    aucs = {a["name"]: a["metrics"]["auc"] for a in rep["attacks"]}
    assert set(aucs) == {"mia.lm-loss", "mia.min-k", "mia.min-k-plus-plus", "mia.lm-zlib"}
    assert max(aucs.values()) >= 0.7
    assert rep["target"]["kind"] == "OnnxLMTarget"
    assert any(s["title"].startswith("Language-model audit") for s in rep["sections"])
    assert (tmp_path / "report.html").is_file()


def test_a_classifier_attack_on_an_lm_exits_2_naming_lm_attacks(lm_files, tmp_path, capsys):
    model, data = lm_files
    assert main(["audit", str(model), "--data", str(data), "--attacks", "mia.loss-threshold", "--out", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "mia.lm-loss" in err and len(err.strip().splitlines()) == 1


def test_run_demo_hook_ignores_other_kinds(pm):
    assert pm.hook.run_demo(kind="something-else", options={}) is None


@pytest.mark.slow
def test_demo_lm_writes_the_report_and_dp_lowers_exposure(tmp_path):
    from audit_sdk.plugins.lm.demo import run_lm_demo

    res = run_lm_demo(tmp_path, epochs=12, quiet=True, n_members=150, d_model=48, n_layers=1)
    assert (tmp_path / "report.html").is_file() and (tmp_path / "text.npz").is_file()
    assert {p.name for p in (tmp_path / "models").iterdir()} == {"non-private.onnx", "dp-sgd.onnx"}
    exp = res["exposure"]
    plain = [r["exposure"] for r in exp["non-private"] if r["repeats"]]
    private = [r["exposure"] for r in exp["dp-sgd eps=8"] if r["repeats"]]
    assert min(plain) > 10 and sum(private) / len(private) < sum(plain) / len(plain) - 5
    html = (tmp_path / "report.html").read_text()
    assert "Canary exposure" in html and "mia.min-k" in html
