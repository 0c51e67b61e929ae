"""A broken third-party plugin is isolated: skipped with one warning line, listed as broken, fatal only in strict mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import audit_sdk
from audit_sdk.cli import main
from audit_sdk.errors import PluginError, PluginWarning

from ..conftest import BROKEN_HOOKS  # type: ignore[import-not-found]

EPSILON = ["epsilon", "--noise-multiplier", "1.1", "--sample-rate", "0.01", "--steps", "100", "--delta", "1e-5", "--json"]


def _warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def npz(tiny_digits, tmp_path_factory):
    x, y = tiny_digits
    data = audit_sdk.AuditData((x[:300], y[:300]), (x[300:600], y[300:600]), (x[600:1000], y[600:1000]))
    return audit_sdk.save_npz(data, tmp_path_factory.mktemp("iso") / "d.npz")


@pytest.mark.parametrize("hook", BROKEN_HOOKS)
def test_epsilon_and_plugins_survive_a_plugin_broken_in_any_hook(hook, broken_plugin, capsys):
    broken_plugin(hook)
    assert main(EPSILON) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["epsilon"] > 0
    assert "Traceback" not in out.err
    # at most one line, and it names the distribution, the error and the switch
    lines = _warning_lines(out.err)
    assert len(lines) <= 1, out.err
    if hook.startswith(("import", "register")):
        assert lines and "audit-sdk-broken" in lines[0] and "AUDIT_SDK_DISABLE_PLUGINS=broken" in lines[0], out.err
    assert main(["plugins", "--json"]) == 0
    out = capsys.readouterr()
    listing = json.loads(out.out)
    names = {c["name"] for c in listing["components"]}
    assert "mia.loss-threshold" in names
    broken = {b["name"]: b for b in listing["broken"]}
    if hook.startswith(("import", "register")):
        assert broken["broken"]["package"] == "audit-sdk-broken" and broken["broken"]["error"]
        if hook in ("import", "register_attacks", "register_accountants"):
            assert f"boom {'at' if hook == 'import' else 'in'} {hook}" in broken["broken"]["error"]
        assert "mia.test-raises" not in names  # a plugin broken while registering contributes nothing
        assert any(p["status"] == "broken" for p in listing["plugins"])
    else:
        assert "mia.test-raises" in names and not broken


@pytest.mark.parametrize("hook", ["make_target", "make_target_value", "on_attack_finished", "report_sections", "report_sections_value"])
def test_an_audit_survives_a_plugin_broken_in_a_hook_it_calls(hook, broken_plugin, tiny_onnx, npz, tmp_path, capsys):
    broken_plugin(hook)
    code = main(["audit", str(tiny_onnx), "--data", str(npz), "--attacks", "mia.loss-threshold", "--out", str(tmp_path), "-q", "--no-html"])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = _warning_lines(out.err)
    assert len(lines) == 1 and lines[0].startswith("audit-sdk: warning: plugin 'broken' (audit-sdk-broken 0.1) failed in"), out.err
    assert "AUDIT_SDK_DISABLE_PLUGINS=broken" in lines[0] and "--strict-plugins" in lines[0]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["attacks"][0]["metrics"]["auc"] > 0.5


def test_an_observer_on_train_steps_is_isolated(broken_plugin, tiny_digits):
    broken_plugin("on_train_step")
    x, y = tiny_digits
    with pytest.warns(PluginWarning, match="on_train_step.*boom in on_train_step"):
        result = audit_sdk.train("mlp", x[:64], y[:64], defense=None, epochs=2, batch_size=32, pm=audit_sdk.get_plugin_manager())
    assert len(result.history) == 2


@pytest.mark.parametrize("hook", ["import", "register_attacks", "register_class", "make_target", "on_attack_finished"])
def test_strict_mode_makes_it_fatal(hook, broken_plugin, tiny_onnx, npz, tmp_path, capsys):
    broken_plugin(hook)
    code = main(
        ["--strict-plugins", "audit", str(tiny_onnx), "--data", str(npz), "--attacks", "mia.loss-threshold", "--out", str(tmp_path), "-q"]
    )
    out = capsys.readouterr()
    assert code == 2, out.err
    lines = _warning_lines(out.err)
    assert len(lines) == 1 and lines[0].startswith("audit-sdk: error: plugin 'broken' (audit-sdk-broken 0.1)"), out.err
    assert "AUDIT_SDK_STRICT_PLUGINS" not in os.environ  # the flag does not leak past the command
    # the Python API's equivalent
    with pytest.raises(PluginError, match="audit-sdk-broken"):
        reg = audit_sdk.get_registry(strict=True)
        audit_sdk.run_audit(str(tiny_onnx), audit_sdk.load_npz(npz), attacks=["mia.loss-threshold"], registry=reg)


def test_disable_switch_silences_it(broken_plugin, capsys, monkeypatch):
    broken_plugin("import")
    monkeypatch.setenv("AUDIT_SDK_DISABLE_PLUGINS", "broken")
    assert main(EPSILON) == 0
    assert capsys.readouterr().err == ""


def test_an_attack_that_raises_is_recorded_and_the_others_kept(broken_plugin, tiny_onnx, npz, tmp_path, capsys):
    broken_plugin("none")
    out_dir = tmp_path / "out"
    (out_dir).mkdir()
    (out_dir / "report.json").write_text('{"previous": true}')
    code = main(
        ["audit", str(tiny_onnx), "--data", str(npz), "--attacks", "mia.loss-threshold,mia.test-raises,mia.loss-threshold",
         "--out", str(out_dir), "-q", "--no-html"]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 3
    lines = _warning_lines(out.err)
    assert len(lines) == 1 and "mia.test-raises" in lines[0] and "boom in run" in lines[0] and "Traceback" not in out.err
    report = json.loads((out_dir / "report.json").read_text())
    assert [a["status"] for a in report["attacks"]] == ["ok", "failed", "ok"]
    assert report["attacks"][1]["name"] == "mia.test-raises" and "RuntimeError: boom in run" in report["attacks"][1]["error"]
    assert report["failed_attacks"] == ["mia.test-raises"]
    assert report["attacks"][0]["metrics"]["auc"] == report["attacks"][2]["metrics"]["auc"] > 0.5


def test_python_api_records_or_raises(broken_plugin, tiny_onnx, npz):
    broken_plugin("none")
    data = audit_sdk.load_npz(npz)
    with pytest.raises(RuntimeError, match="boom in run"):
        audit_sdk.run_audit(str(tiny_onnx), data, attacks=["mia.test-raises"])
    report = audit_sdk.run_audit(str(tiny_onnx), data, attacks=["mia.test-raises", "mia.loss-threshold"], on_attack_error="record")
    assert [f["name"] for f in report.failures] == ["mia.test-raises"] and len(report.results) == 1


def test_broken_pipe_is_not_an_internal_error(broken_plugin_site):
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_SDK_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = str(broken_plugin_site)
    env["BROKEN_HOOK"] = "register_attacks"
    cmd = f"{sys.executable} -m audit_sdk.cli plugins --json | head -c 10; exit ${{PIPESTATUS[0]}}"
    out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "internal error" not in out.stderr and "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr
    assert len(_warning_lines(out.stderr)) == 1 and "audit-sdk-broken" in out.stderr


@pytest.mark.parametrize("hook", ["register_attacks", "register_class", "register_invalid", "register_duplicate"])
def test_a_plugin_broken_while_registering_is_skipped_whole(hook, broken_plugin):
    broken_plugin(hook)
    with pytest.warns(PluginWarning, match="audit-sdk-broken.*plugin skipped"):
        reg = audit_sdk.get_registry()
    assert reg.pm.get_plugin("broken") is None  # none of its other hooks will run
    assert reg.get("attack", "mia.loss-threshold").__module__.startswith("audit_sdk.plugins")  # the built-in kept its name
    assert "mia.test-raises" not in reg.names("attack")
