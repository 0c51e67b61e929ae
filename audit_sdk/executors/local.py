"""``LocalExecutor``: tasks inline (one worker) or in worker processes that die with their parent."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from ..cache import ResultCache
from ..errors import InvalidParameterError
from .base import Executor, MapStats, _Backend, _describe, drive

__all__ = ["LocalExecutor"]


# --------------------------------------------------------------------------- local backend
class _Done:
    """A completed inline call (inline 'futures' are finished on submit)."""

    __slots__ = ("exc", "value")

    def __init__(self, value: Any, exc: BaseException | None) -> None:
        self.value, self.exc = value, exc


class _InlineBackend:
    max_in_flight = 1

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> _Done:
        try:
            return _Done(fn(*args), None)
        except Exception as exc:  # noqa: BLE001 - any task error is retried once, then reported by the driver
            return _Done(None, exc)

    def wait_any(self, handles: list[_Done]) -> list[tuple[Any, Any, BaseException | None]]:
        return [(h, h.value, h.exc) for h in handles]

    def is_crash(self, exc: BaseException) -> bool:
        return False

    describe_error = staticmethod(_describe)


def _exit_with_parent(parent: int, *, pdeathsig: bool) -> None:
    """Make this worker process die when its parent does, however the parent ends (even SIGKILL).

    Linux: the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``; only when the pool
    was started from the main thread, since the signal fires when the *thread* that spawned the
    worker ends). Everywhere: a daemon thread polls the parent id and exits when it changes
    (re-parented to init), so an orphan never keeps computing, writing to the cache or holding
    the parent's stdout/stderr open.
    """
    import sys
    import time

    if pdeathsig and sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no libc / prctl: the polling thread still covers it
            pass
    if os.getppid() != parent:  # the parent died before we got here
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.25)
            if os.getppid() != parent:
                os._exit(1)  # no cleanup: the parent that wanted our results is gone

    threading.Thread(target=watch, name="audit-sdk-parent-watch", daemon=True).start()


def _init_worker(
    threads: int | None, gpus: tuple[str, ...] = (), counter: Any = None, parent: int | None = None, pdeathsig: bool = False
) -> None:
    if parent is not None:
        _exit_with_parent(parent, pdeathsig=pdeathsig)
    if gpus and counter is not None:
        # pin this worker to one GPU, round robin, before anything initialises CUDA in it
        with counter.get_lock():
            k = counter.value
            counter.value += 1
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus[k % len(gpus)]
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(threads)
        import sys

        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)


class _PoolBackend:
    # a dead worker breaks the whole pool: every task in flight fails with it
    crash_is_shared = True

    def __init__(self, owner: LocalExecutor) -> None:
        self.owner = owner
        self.max_in_flight = owner.max_in_flight or owner.workers

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Future[Any]:
        return self.owner._get_pool().submit(fn, *args)

    def wait_any(self, handles: list[Future[Any]]) -> list[tuple[Any, Any, BaseException | None]]:
        finished, _ = wait(handles, return_when=FIRST_COMPLETED)
        out: list[tuple[Any, Any, BaseException | None]] = []
        broken = False
        for fut in finished:
            exc = fut.exception()
            broken = broken or isinstance(exc, BrokenProcessPool)
            out.append((fut, None if exc is not None else fut.result(), exc))
        if broken:
            self.owner._discard_pool()
        return out

    def is_crash(self, exc: BaseException) -> bool:
        return isinstance(exc, BrokenProcessPool)

    def describe_error(self, exc: BaseException) -> str:
        if isinstance(exc, BrokenProcessPool):
            return "WorkerCrashed: the worker process died (killed, out of memory or a native crash)"
        return _describe(exc)


class LocalExecutor(Executor):
    """Inline (``workers=1``) or process-pool execution on this machine.

    Args:
        workers: number of worker processes; 0 or None means ``os.cpu_count()``.
        cache_dir: keep each finished result (for ``map`` calls with ``keys``) here; see ``ResultCache``.
        threads_per_worker: BLAS/OpenMP/torch threads in each worker process (default: the CPUs
            divided among the workers, so two workers on two cores do not oversubscribe).
        gpus: GPU ids to spread the worker processes over, round robin (each worker sees one
            GPU as ``cuda:0`` through ``CUDA_VISIBLE_DEVICES``); e.g. ``workers=8, gpus=[0, 1, 2, 3]``
            trains two reference models per GPU. None: workers see whatever the parent sees.
        max_in_flight: tasks submitted at a time (default ``workers``).

    Example:
        with LocalExecutor(workers=2, cache_dir="cache") as ex:
            out = ex.map(train_one, [(s,) for s in range(8)], keys=[f"ref-{s}" for s in range(8)])
    """

    def __init__(
        self,
        workers: int | None = 1,
        *,
        cache_dir: str | Path | None = None,
        threads_per_worker: int | None = None,
        max_in_flight: int | None = None,
        gpus: Sequence[int | str] | None = None,
    ) -> None:
        if workers is not None and workers < 0:
            raise InvalidParameterError(f"workers must be >= 0; got {workers}. Use 0 for one per CPU.")
        if max_in_flight is not None and max_in_flight < 1:
            raise InvalidParameterError(f"max_in_flight must be >= 1; got {max_in_flight}.")
        self.workers = workers or os.cpu_count() or 1
        self.threads_per_worker = threads_per_worker or max(1, (os.cpu_count() or 1) // self.workers)
        self.max_in_flight = max_in_flight
        self.gpus = tuple(str(g) for g in gpus) if gpus else ()
        self.cache = ResultCache(cache_dir) if cache_dir is not None else None
        self.last_stats = MapStats()
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing as mp

            # spawn: safe with torch/onnxruntime threads already running in the parent
            ctx = mp.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(
                    self.threads_per_worker,
                    self.gpus,
                    ctx.Value("i", 0) if self.gpus else None,
                    os.getpid(),
                    threading.current_thread() is threading.main_thread(),
                ),
            )
        return self._pool

    def _discard_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def map(
        self,
        fn: Callable[..., Any],
        tasks: Sequence[tuple[Any, ...]],
        *,
        keys: Sequence[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
        return_failures: bool = False,
    ) -> list[Any]:
        backend: _Backend = _InlineBackend() if self.workers <= 1 or len(tasks) <= 1 else _PoolBackend(self)
        try:
            return drive(self, backend, fn, tasks, keys=keys, progress=progress, return_failures=return_failures)
        except BaseException:
            # an error or Ctrl-C: do not leave queued work running behind the caller's back
            if isinstance(backend, _PoolBackend):
                self._discard_pool()
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
