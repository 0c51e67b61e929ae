"""LocalExecutor and the shared driver loop: order, retry-once, failures, cancellation, resume, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # worker processes import the tasks module by name

import _executor_tasks as T

from audit_sdk.errors import BackendUnavailableError, InvalidParameterError
from audit_sdk.executor import LocalExecutor, RunCancelled, TaskError, TaskFailure, make_executor


@pytest.fixture
def markers(tmp_path: Path) -> Path:
    d = tmp_path / "markers"
    d.mkdir()
    return d


def test_inline_results_in_order_and_progress() -> None:
    seen: list[tuple[int, int]] = []
    with LocalExecutor(1) as ex:
        out = ex.map(T.square, [(i,) for i in range(5)], progress=lambda d, n: seen.append((d, n)))
    assert out == [0, 1, 4, 9, 16]
    assert seen == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]


def test_failing_task_is_retried_once_then_reported_and_rest_complete(markers: Path) -> None:
    ex = LocalExecutor(1)
    out = ex.map(T.fails_for, [(s, 2, str(markers)) for s in range(4)], keys=[f"k{s}" for s in range(4)], return_failures=True)
    assert out[:2] == [0, 1] and out[3] == 3
    assert isinstance(out[2], TaskFailure) and out[2].key == "k2" and "ValueError: bad seed 2" in out[2].error
    assert T.count(markers, "try2") == 2  # first run + one retry
    assert T.count(markers, "try0") == 1
    assert ex.last_stats.failed == 1 and ex.last_stats.retried == 1 and ex.last_stats.computed == 3
    with pytest.raises(TaskError, match="task k2 failed twice: ValueError: bad seed 2"):
        ex.map(T.fails_for, [(s, 2, str(markers)) for s in range(4)], keys=[f"k{s}" for s in range(4)])


def test_transient_failure_recovers_on_retry(markers: Path) -> None:
    out = LocalExecutor(1).map(T.flaky, [(s, str(markers)) for s in range(3)])
    assert out == [100, 101, 102]
    assert all(T.count(markers, f"flaky{s}") == 2 for s in range(3))


def test_keys_must_match_tasks_and_be_unique_when_cached(tmp_path: Path) -> None:
    ex = LocalExecutor(1)
    with pytest.raises(InvalidParameterError, match="3 tasks but 2 keys"):
        ex.map(T.square, [(1,), (2,), (3,)], keys=["a", "b"])
    assert ex.map(T.square, [(1,), (2,)], keys=["a", "a"]) == [1, 4]  # labels only: duplicates are harmless
    cached = LocalExecutor(1, cache_dir=tmp_path)
    with pytest.raises(InvalidParameterError, match="unique when results are cached; 'a'"):
        cached.map(T.square, [(1,), (2,)], keys=["a", "a"])


def test_cancel_then_resume_recomputes_nothing_inline(tmp_path: Path, markers: Path) -> None:
    ex = LocalExecutor(1, cache_dir=tmp_path / "cache")
    tasks = [(s, str(markers)) for s in range(6)]
    keys = [f"ref-{s}" for s in range(6)]

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            ex.cancel()

    with pytest.raises(RunCancelled, match="2 of 6 tasks finished") as info:
        ex.map(T.train_ref, tasks, keys=keys, progress=stop_after_two)
    assert info.value.finished == [True, True, False, False, False, False]
    assert T.total(markers, "run") == 2
    # sticky until reset: a new map does not start anything
    out = ex.map(T.train_ref, tasks, keys=keys, return_failures=True)
    assert [isinstance(r, TaskFailure) and r.cancelled for r in out] == [False, False, True, True, True, True]
    assert T.total(markers, "run") == 2
    ex.reset()
    full = ex.map(T.train_ref, tasks, keys=keys)
    assert T.total(markers, "run") == 6  # every task ran exactly once over the three calls
    assert ex.last_stats.cached == 2 and ex.last_stats.computed == 4
    fresh = [T.train_ref(s, str(tmp_path)) for s in range(6)]
    for a, b in zip(full, fresh):
        np.testing.assert_array_equal(a["w"], b["w"])
        assert a["seed"] == b["seed"]
    np.testing.assert_array_equal(info.value.results[0]["losses"], fresh[0]["losses"])


def test_cache_is_not_used_without_keys_and_is_namespaced_by_function(tmp_path: Path, markers: Path) -> None:
    ex = LocalExecutor(1, cache_dir=tmp_path / "cache")
    ex.map(T.train_ref, [(0, str(markers))])
    ex.map(T.train_ref, [(0, str(markers))])
    assert T.count(markers, "run0") == 2  # no keys: no caching
    assert ex.map(T.square, [(3,)], keys=["same"]) == [9]
    assert ex.map(T.flaky, [(7, str(markers))], keys=["same"]) == [107]  # other function, same key: no hit


def test_failures_are_not_cached(tmp_path: Path, markers: Path) -> None:
    ex = LocalExecutor(1, cache_dir=tmp_path / "cache")
    ex.map(T.fails_for, [(1, 1, str(markers))], keys=["x"], return_failures=True)
    ex.map(T.fails_for, [(1, 1, str(markers))], keys=["x"], return_failures=True)
    assert T.count(markers, "try1") == 4


def test_process_pool_matches_inline_and_resumes(tmp_path: Path, markers: Path) -> None:
    tasks = [(s, str(markers)) for s in range(4)]
    inline = LocalExecutor(1).map(T.train_ref, tasks)
    with LocalExecutor(2, cache_dir=tmp_path / "cache") as ex:
        first = ex.map(T.train_ref, tasks[:2], keys=["a", "b"])
        pooled = ex.map(T.train_ref, tasks, keys=["a", "b", "c", "d"])
    for a, b in zip(inline, pooled):
        np.testing.assert_array_equal(a["w"], b["w"])
    np.testing.assert_array_equal(first[1]["losses"], inline[1]["losses"])
    assert ex.last_stats.cached == 2 and ex.last_stats.computed == 2
    assert T.count(markers, "run0") == 2 and T.count(markers, "run3") == 2  # once inline, once pooled


def _kill_first_started(marker_dir: Path, prefix: str, killed: list[int], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = [p for p in marker_dir.iterdir() if p.name.startswith(prefix)]
        if started:
            pid = int(started[0].name.split("-")[1])
            time.sleep(0.2)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.05)


def test_workers_are_spread_over_gpus_round_robin() -> None:
    # The GPU ids are only environment variables here: the logic runs without a GPU.
    with LocalExecutor(2, gpus=[3, 5]) as ex:
        seen = dict(ex.map(T.visible_gpus, [(0.4,)] * 4))  # pid -> its CUDA_VISIBLE_DEVICES
    assert set(seen.values()) <= {"3", "5"}
    assert len(set(seen.values())) == len(seen)  # each worker process has a GPU of its own


def test_killed_worker_process_is_retried_and_run_completes(markers: Path) -> None:
    killed: list[int] = []
    killer = threading.Thread(target=_kill_first_started, args=(markers, "started0-", killed))
    killer.start()
    with LocalExecutor(2) as ex:
        out = ex.map(T.slow_pid, [(s, str(markers), 0.6) for s in range(4)], return_failures=True)
    killer.join()
    assert killed, "the test did not manage to kill a worker"
    assert out == [0, 10, 20, 30]
    assert T.count(markers, "started0") == 2
    assert ex.last_stats.retried >= 1 and ex.last_stats.failed == 0


def test_task_that_crashes_its_worker_is_reported_and_others_complete(markers: Path) -> None:
    with LocalExecutor(2) as ex:
        out = ex.map(T.die, [(s, str(markers)) for s in range(3)], keys=["d0", "d1", "d2"], return_failures=True)
    assert out[1:] == [1, 2]
    assert isinstance(out[0], TaskFailure) and "worker process died" in out[0].error
    assert 2 <= T.count(markers, "die0") <= 3  # alone twice (plus once alongside another task)


def test_make_executor_names_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ex = make_executor("local", workers=2, cache_dir=tmp_path)
    assert isinstance(ex, LocalExecutor) and ex.workers == 2 and ex.cache is not None
    with pytest.raises(InvalidParameterError, match="unknown executor 'dask'"):
        make_executor("dask")
    with pytest.raises(InvalidParameterError, match="needs the ray executor"):
        make_executor("local", address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(BackendUnavailableError, match=r'pip install "audit-sdk\[ray\]"'):
        make_executor("ray", workers=2)


def test_import_audit_sdk_does_not_import_ray_or_frameworks() -> None:
    code = (
        "import sys, audit_sdk, audit_sdk.executor, audit_sdk.cache, audit_sdk.streaming; "
        "print(sorted(m for m in ('ray', 'torch', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_uncacheable_results_warn_once_and_the_run_completes(tmp_path: Path) -> None:
    from audit_sdk.errors import AuditSDKWarning

    ex = LocalExecutor(1, cache_dir=tmp_path / "cache")
    with pytest.warns(AuditSDKWarning, match="not cached: cannot cache a set") as rec:
        out = ex.map(T.as_set, [(1,), (2,)], keys=["a", "b"])
    assert out == [{1}, {2}] and len(rec) == 1


def test_resolve_executor_layers_flags_over_the_config(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from audit_sdk.executor import resolve_executor

    base = SimpleNamespace(name="local", workers=3, options={"cache_dir": str(tmp_path)})
    ex = resolve_executor(None, base=base)
    assert isinstance(ex, LocalExecutor) and ex.workers == 3 and ex.cache is not None
    assert resolve_executor(None, workers=2, base=base).workers == 2
    ray_base = SimpleNamespace(name="ray", workers=0, options={"address": "ray://head:10001"})
    local = resolve_executor("local", base=ray_base)  # the config's Ray address does not leak into local
    assert isinstance(local, LocalExecutor) and local.cache is None
    with pytest.raises(InvalidParameterError, match="needs the ray executor"):
        resolve_executor("local", address="auto")
