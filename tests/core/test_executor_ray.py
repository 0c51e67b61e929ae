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


def test_ray_gpu_tasks_without_gpus_fail_fast(local_ray) -> None:
    from audit_sdk.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="ask for 1 GPU each but the Ray cluster has 0"):
        RayExecutor(num_gpus_per_task=1).map(T.square, [(1,)])


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
    puts.clear()
    shared = {"pool": pool[:10]}  # a small non-array object passed to every task: put once, from its second use
    assert ex.map(T.dict_rows, [(shared, s) for s in range(4)]) == [10] * 4
    assert len(puts) == 1


# --------------------------------------------------------------------------- audit level (slow)
# A real reference-model attack (offline LiRA on the memorising digits CNN) with its training
# fanned out on Ray: same scores as inline, survives a killed worker, resumes after a cancel.
LIRA = {"mode": "offline", "n_references": 4, "reference_epochs": 20, "architecture": "cnn"}  # named: no surrogate selection


def _lira(target, data, executor, cache_dir):
    from audit_sdk import get_registry
    from audit_sdk.run import RunContext, run_attack

    reg = get_registry()
    ctx = RunContext(registry=reg, executor=executor, cache_dir=cache_dir)
    return run_attack(reg.create("attack", "mia.lira", LIRA), target, data, rng=0, context=ctx)


@pytest.fixture
def one_torch_thread():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # inline training then matches the one-thread Ray workers bit for bit
    yield
    torch.set_num_threads(before)


def _reference_files(cache_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in cache_dir.rglob("*.pt")}


@pytest.mark.slow
def test_lira_on_ray_matches_inline_and_survives_a_killed_worker(
    local_ray, digits_memorised_onnx, digits_memorised, tmp_path, one_torch_thread
):
    import audit_sdk

    target = audit_sdk.load_target(str(digits_memorised_onnx))
    data = digits_memorised.data
    # two local worker processes split the reference set into the same groups as two Ray workers:
    # models trained in other groups agree only to float rounding (vectorised kernels), which LiRA's
    # logit-scaled scores of memorised points amplify; with the same groups the runs match bit for bit
    inline = _lira(target, data, LocalExecutor(2), tmp_path / "inline")
    killed: list[int] = []

    def kill_one_trainer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for proc in Path("/proc").iterdir():
                try:
                    cmd = (proc / "cmdline").read_bytes()
                except OSError:
                    continue
                if proc.name.isdigit() and b"ray::_train_reference" in cmd:
                    time.sleep(0.3)
                    os.kill(int(proc.name), signal.SIGKILL)
                    killed.append(int(proc.name))
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_trainer)
    killer.start()
    ex = RayExecutor()
    on_ray = _lira(target, data, ex, tmp_path / "ray")
    killer.join()
    assert killed, "no reference-training worker was seen to kill"
    assert ex.last_stats.retried >= 1 and ex.last_stats.failed == 0
    assert len(_reference_files(tmp_path / "ray")) == 4
    np.testing.assert_allclose(on_ray.scores, inline.scores, rtol=1e-6, atol=1e-9)
    assert on_ray.metrics["auc"] == pytest.approx(inline.metrics["auc"], abs=1e-9)
    assert inline.metrics["auc"] > 0.6  # the planted leakage is found either way


@pytest.mark.slow
def test_lira_cancelled_on_ray_resumes_without_retraining(
    local_ray, digits_memorised_onnx, digits_memorised, tmp_path, one_torch_thread, monkeypatch
):
    import audit_sdk
    from audit_sdk.plugins.mia import _reference

    monkeypatch.setattr(_reference, "_GROUP", 1)  # one model per task: a cancel lands between tasks

    target = audit_sdk.load_target(str(digits_memorised_onnx))
    cache = tmp_path / "cache"
    ex = RayExecutor(max_in_flight=1, cache_dir=tmp_path / "results")

    def cancel_after_first_model() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if _reference_files(cache):
                ex.cancel()
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=cancel_after_first_model)
    watcher.start()
    with pytest.raises(RunCancelled):
        _lira(target, digits_memorised.data, ex, cache)
    watcher.join()
    before = _reference_files(cache)
    assert 1 <= len(before) < 4
    ex.reset()
    result = _lira(target, digits_memorised.data, ex, cache)
    after = _reference_files(cache)
    assert len(after) == 4
    assert all(after[name] == mtime for name, mtime in before.items())  # nothing finished was trained again
    assert ex.last_stats.computed == 4 - len(before)
    assert result.metrics["auc"] > 0.6
