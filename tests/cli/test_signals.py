"""SIGTERM / SIGKILL of an audit with worker processes: no process of the audit survives, and a rerun resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import audit_sdk

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

LIRA = ["--attacks", "mia.lira", "--param", "mia.lira.n_references=4", "--param", "mia.lira.reference_epochs=3", "--seed", "0"]


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    out: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - out
        out |= frontier
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _cmd(model: Path, data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "audit_sdk.cli", "audit", str(model), "--data", str(data), *LIRA, "--workers", "2", "--out", str(out)]


@pytest.fixture(scope="module")
def npz(tiny_digits, tmp_path_factory):
    x, y = tiny_digits
    data = audit_sdk.AuditData((x[:300], y[:300]), (x[300:600], y[300:600]), (x[600:1000], y[600:1000]))
    return audit_sdk.save_npz(data, tmp_path_factory.mktemp("sig") / "d.npz")


@pytest.fixture(scope="module")
def clean_auc(tiny_onnx, npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    done = subprocess.run(_cmd(tiny_onnx, npz, out) + ["-q", "--no-html"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads((out / "report.json").read_text())["attacks"][0]["metrics"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_worker_outlives_the_audit_and_a_rerun_resumes(sig, tiny_onnx, npz, clean_auc, tmp_path):
    proc = subprocess.Popen(_cmd(tiny_onnx, npz, tmp_path) + ["-q", "--no-html"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: set[int] = set()
    deadline = time.monotonic() + 300
    workers = 0
    while time.monotonic() < deadline and proc.poll() is None:
        seen |= _children(proc.pid)
        workers = sum(1 for p in seen if _alive(p) and b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes())
        if workers >= 2:
            break
        time.sleep(0.2)
    assert workers >= 2, "the audit never started its two workers"
    time.sleep(2.0)  # let them get into training
    seen |= _children(proc.pid)
    proc.send_signal(sig)
    t0 = time.monotonic()
    # the pipes close when every holder of them (the CLI and its workers) is gone
    proc.communicate(timeout=30)
    while any(_alive(p) for p in seen) and time.monotonic() - t0 < 10:
        time.sleep(0.1)
    left = [p for p in seen if _alive(p)]
    gone_after = time.monotonic() - t0
    assert not left and gone_after < 5.0, (left, gone_after)
    # the rerun resumes from the cache and gives the uninterrupted run's numbers
    done = subprocess.run(_cmd(tiny_onnx, npz, tmp_path) + ["-q", "--no-html"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "report.json").read_text())["attacks"][0]["metrics"] == clean_auc
    assert os.path.isdir(tmp_path / "cache")
