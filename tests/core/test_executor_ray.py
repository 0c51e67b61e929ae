"""RayExecutor against a local Ray (2 CPUs) started once for this module.

Same results as the local backend for the same seeds; a worker killed mid-run is retried and the run
completes; cancel + resume recomputes nothing (executions counted through marker files).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import _executor_tasks as T  # noqa: E402 - after the sys.path entry above

from audit_sdk.executor import LocalExecutor, RunCancelled, TaskFailure, make_executor  # noqa: E402
from audit_sdk.executors.ray_backend import RayExecutor  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (startup takes ~10 s); workers find the task module via PYTHONPATH."""
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), *([old] if old else [])])
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield ray
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    d = tmp_path / "markers"
    d.mkdir()
    return d


def test_ray_matches_local_for_the_same_seeds(local_ray, markers: Path) -> None:
    tasks = [(s, str(markers)) for s in range(4)]
    local = LocalExecutor(1).map(T.train_ref, tasks)
    ex = make_executor("ray")
    assert isinstance(ex, RayExecutor)
    with ex:
        remote = ex.map(T.train_ref, tasks)
    assert ex.workers == 2
    assert local_ray.is_initialized()  # joined, not started: closing leaves the session's Ray up
    for a, b in zip(local, remote):
        np.testing.assert_array_equal(a["w"], b["w"])
        np.testing.assert_array_equal(a["losses"], b["losses"])


def test_ray_failure_is_retried_once_then_reported(local_ray, markers: Path) -> None:
    ex = RayExecutor()
    out = ex.map(T.fails_for, [(s, 1, str(markers)) for s in range(3)], keys=["a", "b", "c"], return_failures=True)
    assert out[0] == 0 and out[2] == 2
    assert isinstance(out[1], TaskFailure) and out[1].key == "b" and out[1].error.startswith("ValueError: bad seed 1")
    assert T.count(markers, "try1") == 2


def test_ray_worker_killed_mid_run_is_retried(local_ray, markers: Path) -> None:
    killed: list[int] = []

    def kill_first() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            started = [p for p in markers.iterdir() if p.name.startswith("started0-")]
            if started:
                pid = int(started[0].name.split("-")[1])
                time.sleep(0.2)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first)
    killer.start()
    ex = RayExecutor()
    out = ex.map(T.slow_pid, [(s, str(markers), 1.0) for s in range(4)], return_failures=True)
    killer.join()
    assert killed, "the test did not manage to kill a worker"
    assert out == [0, 10, 20, 30]
    assert T.count(markers, "started0") == 2
    assert ex.last_stats.retried == 1 and ex.last_stats.failed == 0


def test_ray_cancel_and_resume_recomputes_nothing(local_ray, tmp_path: Path, markers: Path) -> None:
    ex = RayExecutor(cache_dir=tmp_path / "cache")
    tasks = [(s, str(markers), 0.3) for s in range(6)]
    keys = [f"ref-{s}" for s in range(6)]

    def stop_early(done: int, total: int) -> None:
        if done == 1:
            ex.cancel()

    with pytest.raises(RunCancelled) as info:
        ex.map(T.train_ref, tasks, keys=keys, progress=stop_early)
    n_done = sum(info.value.finished)
    assert 1 <= n_done < 6
    assert T.total(markers, "run") == n_done  # running tasks finished; nothing new was submitted
    ex.reset()
    out = ex.map(T.train_ref, tasks, keys=keys)
    assert T.total(markers, "run") == 6  # every task ran exactly once across both calls
    assert ex.last_stats.cached == n_done and ex.last_stats.computed == 6 - n_done
    assert [r["seed"] for r in out] == list(range(6))


def test_ray_ships_a_shared_array_once(local_ray, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = np.random.default_rng(0).normal(size=(100_000, 4))  # 3.2 MB: put once, shared by reference
    idx = [np.random.default_rng(s).choice(100_000, 500, replace=False) for s in range(4)]
    puts: list[int] = []
    real_put = local_ray.put

    def counting_put(value, **kw):
        puts.append(getattr(value, "nbytes", 0))
        return real_put(value, **kw)

    monkeypatch.setattr(local_ray, "put", counting_put)
    ex = RayExecutor()
    out = ex.map(T.masked_sum, [(pool, i) for i in idx])
    assert out == [float(pool[i].sum()) for i in idx]
    assert puts == [pool.nbytes]  # the 4 KB index arrays travel inline
