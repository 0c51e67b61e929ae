"""A separate distribution registers an Attack through the entry point; it works like a built-in."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import audit_sdk

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "audit-sdk-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-install the example distribution into a private folder (the test venv stays untouched)."""
    target = tmp_path_factory.mktemp("site")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-cache-dir",
            "-q",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert any(p.name.startswith("audit_sdk_example_plugin-") for p in target.iterdir())
    return target


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AUDIT_SDK_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = str(site)
    env.update(extra)
    return env


def test_listed_by_the_cli(installed):
    out = subprocess.run([sys.executable, "-m", "audit_sdk.cli", "plugins", "--json"], capture_output=True, text=True, env=_env(installed))
    assert out.returncode == 0, out.stderr
    comps = {c["name"]: c for c in json.loads(out.stdout)["components"]}
    assert comps["mia.example-confidence"]["package"] == "audit-sdk-example-plugin"
    assert comps["mia.example-confidence"]["version"] == "0.1.0"
    assert "mia.loss-threshold" in comps


def test_disabled_by_env_var(installed):
    for value in ("1", "audit-sdk-example-plugin", "example-confidence"):
        out = subprocess.run(
            [sys.executable, "-m", "audit_sdk.cli", "plugins", "--json"],
            capture_output=True,
            text=True,
            env=_env(installed, AUDIT_SDK_DISABLE_PLUGINS=value),
        )
        names = {c["name"] for c in json.loads(out.stdout)["components"]}
        assert "mia.example-confidence" not in names and "mia.loss-threshold" in names


def test_runs_from_the_cli(installed, digits_memorised, digits_memorised_onnx, tmp_path):
    npz = audit_sdk.save_npz(digits_memorised.data, tmp_path / "d.npz")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "audit_sdk.cli",
            "audit",
            str(digits_memorised_onnx),
            "--data",
            str(npz),
            "--attacks",
            "mia.example-confidence",
            "--param",
            "mia.example-confidence.temperature=2.0",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=_env(installed),
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["attacks"][0]["name"] == "mia.example-confidence"
    assert report["attacks"][0]["params"] == {"temperature": 2.0}
    assert report["attacks"][0]["metrics"]["auc"] > 0.6  # confidence leaks on the memorising model


def test_runs_from_the_python_api(installed, digits_memorised, digits_memorised_onnx, monkeypatch):
    monkeypatch.syspath_prepend(str(installed))
    importlib.invalidate_caches()
    pm = audit_sdk.get_plugin_manager(third_party=True)
    reg = audit_sdk.get_registry(pm)
    assert "mia.example-confidence" in reg.names("attack")
    report = audit_sdk.run_audit(str(digits_memorised_onnx), digits_memorised.data, attacks=["mia.example-confidence"], registry=reg)
    assert report.results[0].metrics["auc"] > 0.6
    sys.modules.pop("audit_sdk_example_plugin", None)
