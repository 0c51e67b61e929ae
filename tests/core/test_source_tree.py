"""From the repository root (the source tree first on sys.path) the mapped packages resolve to the same code.

``audit_sdk.plugins`` / ``audit_sdk.adapters`` live in the top-level ``plugins/`` and ``adapters/`` folders; a
checkout on ``sys.path`` used to shadow the installed mapping (``python -m pytest``, Ray workers started in the
root). ``audit_sdk._source_tree`` adds a narrow finder for those two names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from audit_sdk import _source_tree

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, cwd: Path = ROOT) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=cwd, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_repo_root_first_on_sys_path_gives_the_installed_modules() -> None:
    got = _python(
        """
        import json, sys
        sys.path.insert(0, ".")
        from importlib import metadata
        import audit_sdk, audit_sdk.plugins.mia.lira as lira, audit_sdk.adapters.onnx as onnx_adapter
        # the entry point the installed distribution declares loads the very same module object
        ep = [e for e in metadata.entry_points(group="audit_sdk") if e.name == "mia-lira"][0]
        print(json.dumps({
            "sdk": audit_sdk.__file__, "lira": lira.__file__, "onnx": onnx_adapter.__file__,
            "same_object": ep.load() is lira,
            "bare_names": sorted(m for m in sys.modules if m.split(".")[0] in ("plugins", "adapters")),
        }))
        """
    )
    assert Path(got["sdk"]).resolve() == ROOT / "audit_sdk" / "__init__.py"
    assert Path(got["lira"]).resolve() == ROOT / "plugins" / "mia" / "lira.py"
    assert Path(got["onnx"]).resolve() == ROOT / "adapters" / "onnx.py"
    assert got["same_object"] is True
    assert got["bare_names"] == []  # never imported a second time under a bare name


def test_source_tree_alone_resolves_the_mapped_packages() -> None:
    """Without any installed mapping (no editable finder), the checkout still imports its plugins and adapters."""
    got = _python(
        """
        import json, sys
        sys.meta_path[:] = [f for f in sys.meta_path if "Editable" not in repr(f)]
        sys.path.insert(0, ".")
        import audit_sdk.plugins.accountants.rdp as rdp, audit_sdk.adapters.sklearn as sk
        print(json.dumps({"rdp": rdp.__file__, "sk": sk.__file__,
                          "finders": [repr(f) for f in sys.meta_path if "SourceTree" in repr(f)]}))
        """
    )
    assert Path(got["rdp"]).resolve() == ROOT / "plugins" / "accountants" / "rdp.py"
    assert Path(got["sk"]).resolve() == ROOT / "adapters" / "sklearn.py"
    assert len(got["finders"]) == 1


def test_checkout_root_is_recognised_only_for_a_checkout(tmp_path: Path) -> None:
    assert _source_tree.checkout_root(ROOT / "audit_sdk") == ROOT
    # an installed package holds the mapped folders inside itself: no finder
    wheel = tmp_path / "site" / "audit_sdk"
    (wheel / "plugins").mkdir(parents=True)
    assert _source_tree.checkout_root(wheel) is None
    # sibling folders of another project (no pyproject naming audit-sdk) are not ours
    other = tmp_path / "other"
    for name in ("audit_sdk", "plugins", "adapters"):
        (other / name).mkdir(parents=True)
        (other / name / "__init__.py").write_text("")
    (other / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    assert _source_tree.checkout_root(other / "audit_sdk") is None


def test_finder_answers_only_the_two_mapped_names() -> None:
    finder = _source_tree.SourceTreeFinder(ROOT)
    spec = finder.find_spec("audit_sdk.plugins")
    assert spec is not None and Path(spec.origin or "").resolve() == ROOT / "plugins" / "__init__.py"
    assert list(spec.submodule_search_locations or []) == [str(ROOT / "plugins")]
    for other in ("audit_sdk.tests", "audit_sdk.audit_sdk", "plugins", "audit_sdk.plugins.mia", "other.plugins"):
        assert finder.find_spec(other) is None


def test_python_m_pytest_collects_from_the_repository_root() -> None:
    """`python -m pytest` puts the root on sys.path; collecting the plugin tests must import every plugin."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/plugins/accountants",
            "tests/plugins/mia",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "error" not in out.stdout.lower().splitlines()[-1]


@pytest.mark.slow
def test_ray_audit_from_the_repository_root_matches_local(digits_memorised_onnx, digits_memorised, tmp_path: Path) -> None:
    """The issue's command, run in the repository root: Ray workers import the mapped plugins, same AUC as local."""
    pytest.importorskip("ray")
    from audit_sdk import save_npz

    data_path = tmp_path / "d.npz"
    save_npz(digits_memorised.data, data_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    aucs = {}
    for executor in ("local", "ray"):
        out_dir = tmp_path / executor
        cmd = [sys.executable, "-m", "audit_sdk.cli", "audit", str(digits_memorised_onnx), "--data", str(data_path)]
        cmd += ["--attacks", "mia.rmia", "--executor", executor, "--workers", "2", "--out", str(out_dir), "--quiet"]
        cmd += ["--param", "mia.rmia.n_references=2", "--param", "mia.rmia.reference_epochs=3"]
        run = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
        assert run.returncode in (0, 1), run.stderr[-3000:]
        report = json.loads((out_dir / "report.json").read_text())
        aucs[executor] = [r["metrics"]["auc"] for r in report["attacks"] if r["name"] == "mia.rmia"][0]
    assert np.isfinite(aucs["ray"])
    assert aucs["ray"] == pytest.approx(aucs["local"], abs=1e-9)


class _FakeRay:
    """Just enough of ray for the worker-import probe: ``remote(...)(fn).remote()`` then ``get``."""

    def __init__(self, answer) -> None:
        self.answer = answer

    def remote(self, **_kw):
        return lambda fn: type("R", (), {"remote": staticmethod(lambda: fn)})

    def get(self, fn, timeout=None):
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer(fn())


def _executor(fake, address=None):
    from audit_sdk.executors.ray_backend import RayExecutor

    ex = RayExecutor.__new__(RayExecutor)
    ex._ray, ex.address, ex.probe_timeout_s = fake, address, 1.0
    return ex


def test_ray_workers_that_cannot_import_the_sdk_fail_fast_in_one_line() -> None:
    from audit_sdk.errors import BackendUnavailableError

    wrapped = RuntimeError("Traceback (most recent call last):\n  File x\nModuleNotFoundError: No module named 'audit_sdk.plugins'")
    with pytest.raises(BackendUnavailableError) as info:
        _executor(_FakeRay(wrapped))._check_workers_import_the_driver_sdk()
    msg = str(info.value)
    assert "\n" not in msg
    assert "No module named 'audit_sdk.plugins'" in msg and str(ROOT / "audit_sdk") in msg


def test_ray_workers_importing_another_copy_are_refused() -> None:
    from audit_sdk.errors import BackendUnavailableError

    def elsewhere(origin):
        return origin | {"audit_sdk.plugins.mia.lira": "/elsewhere/plugins/mia/lira.py"}

    with pytest.raises(BackendUnavailableError, match="different SDK than the driver"):
        _executor(_FakeRay(elsewhere))._check_workers_import_the_driver_sdk()
    _executor(_FakeRay(lambda origin: origin))._check_workers_import_the_driver_sdk()  # the same files: fine
    # a joined cluster (other machines, other paths) needs the same version only
    _executor(_FakeRay(elsewhere), address="auto")._check_workers_import_the_driver_sdk()
