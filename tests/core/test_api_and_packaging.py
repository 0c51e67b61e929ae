"""The public API, import hygiene and packaging."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

import audit_sdk

ROOT = Path(__file__).resolve().parents[2]

EXPECTED_API = {
    "AccessError",
    "Accountant",
    "Attack",
    "AttackResult",
    "AuditData",
    "AuditReport",
    "AuditSDKError",
    "AuditSDKWarning",
    "BackendUnavailableError",
    "Defense",
    "Executor",
    "InvalidDataError",
    "InvalidModelError",
    "InvalidParameterError",
    "LocalExecutor",
    "Mechanism",
    "NotFittedError",
    "PluginError",
    "PrivacyEvent",
    "Registry",
    "RunContext",
    "Split",
    "Target",
    "UnknownComponentError",
    "__version__",
    "as_generator",
    "get_plugin_manager",
    "get_registry",
    "hookimpl",
    "hookspec",
    "load_cifar_binary",
    "load_digits_data",
    "load_image_folder",
    "load_mnist_idx",
    "load_npz",
    "load_target",
    "make_audit_data",
    "run_attack",
    "run_audit",
    "save_npz",
    "secure_generator",
}


def test_public_api_is_pinned():
    # Additions are fine (other areas export more); removals break users.
    missing = EXPECTED_API - set(audit_sdk.__all__)
    assert not missing, f"removed from the public API: {sorted(missing)}"
    for name in audit_sdk.__all__:
        assert hasattr(audit_sdk, name), name


def test_import_does_not_pull_frameworks():
    code = (
        "import sys, audit_sdk, audit_sdk.adapters, audit_sdk.plugins; "
        "bad = [m for m in ('torch', 'onnxruntime', 'ray', 'sklearn', 'matplotlib') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_building_the_registry_does_not_import_torch():
    # Every plugin module is imported when the registry is built: none may import torch at module level.
    code = "import sys, audit_sdk; audit_sdk.get_registry(); print('torch' in sys.modules); sys.exit('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_no_bare_plugins_or_adapters_module():
    out = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('plugins'), u.find_spec('adapters'))"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert out.stdout.strip() == "None None", out.stdout


def _source_packages() -> set[str]:
    mapping = {"audit_sdk": ROOT / "audit_sdk", "audit_sdk.plugins": ROOT / "plugins", "audit_sdk.adapters": ROOT / "adapters"}
    found = set()
    for base, folder in mapping.items():
        for init in folder.rglob("__init__.py"):
            rel = init.parent.relative_to(folder).parts
            found.add(".".join((base, *rel)))
    return found


def test_every_package_folder_is_listed_in_pyproject():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(cfg["tool"]["setuptools"]["packages"])
    missing = _source_packages() - listed
    assert not missing, f"add to [tool.setuptools] packages (the wheel would drop them): {sorted(missing)}"


def test_entry_points_name_importable_modules():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    import importlib

    for name, target in cfg["project"]["entry-points"]["audit_sdk"].items():
        assert target.startswith("audit_sdk."), f"{name} = {target}: built-ins live under audit_sdk"
        importlib.import_module(target)


def test_core_modules_do_not_import_frameworks_at_module_level():
    offenders = []
    for path in (ROOT / "audit_sdk").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n.split(".")[0] in ("torch", "onnxruntime", "ray") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


@pytest.mark.slow
def test_wheel_contains_every_package(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("audit_sdk-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    in_wheel = {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert _source_packages() <= in_wheel, sorted(_source_packages() - in_wheel)
    assert not any(n.startswith(("plugins/", "adapters/")) for n in names)
