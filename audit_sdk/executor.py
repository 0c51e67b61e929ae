"""One interface for work that fans out (reference models, grid cells, slices).

    with make_executor("local", workers=2, cache_dir="runs/cache") as ex:
        losses = ex.map(train_reference, [(seed, idx) for seed, idx in jobs], keys=cache_keys)

``LocalExecutor`` runs tasks inline (``workers=1``) or in worker processes; ``RayExecutor``
(``audit_sdk.executors.ray_backend``, ``pip install "audit-sdk[ray]"``) runs them on a Ray
cluster. Both share one driver loop, so they behave the same:

- results come back in submission order;
- a failing task is retried once; then ``TaskError`` is raised, or with ``return_failures=True``
  its slot holds a ``TaskFailure`` and the rest complete. A worker that dies (killed, out of
  memory) counts as a failed attempt, so the run still completes;
- with a cache (``cache_dir=``) and explicit ``keys``, each finished result is stored on disk as it
  arrives and looked up before anything is submitted: a crashed or cancelled run resumes and
  nothing that finished runs again. Keys must identify the task's inputs (e.g. the reference
  model's cache key); entries are namespaced by the task function's qualified name;
- ``cancel()`` (from a progress callback, another thread or a signal handler) stops submitting;
  tasks already running finish (and are cached), then ``map`` raises ``RunCancelled`` carrying
  what finished (with ``return_failures=True`` it returns, unfinished slots holding a
  ``TaskFailure`` with ``cancelled=True``). Cancellation is sticky until ``reset()``;
- at most ``max_in_flight`` tasks are submitted at a time, so cancelling wastes little.

Tasks must be module-level callables with picklable arguments.
"""

from __future__ import annotations

import os
import threading
import warnings
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .cache import ResultCache
from .errors import AuditSDKError, AuditSDKWarning, InvalidParameterError

__all__ = [
    "EXECUTOR_NAMES",
    "Executor",
    "LocalExecutor",
    "MapStats",
    "RunCancelled",
    "TaskError",
    "TaskFailure",
    "make_executor",
    "resolve_executor",
]

#: Backends ``make_executor`` knows.
EXECUTOR_NAMES = ("local", "ray")


@dataclass
class TaskFailure:
    """A task that failed twice (it is retried once), or never ran because the map was cancelled."""

    key: str
    error: str
    cancelled: bool = False


class TaskError(AuditSDKError):
    """Raised by ``map(..., return_failures=False)`` when a task failed after its retry."""


class RunCancelled(AuditSDKError):
    """Raised by ``map`` after ``cancel()``; finished results (also cached) ride along.

    Attributes:
        results: one slot per task, the result where it finished, else None.
        finished: one bool per task.
    """

    def __init__(self, message: str, results: list[Any], finished: list[bool]) -> None:
        super().__init__(message)
        self.results = results
        self.finished = finished


@dataclass
class MapStats:
    """What the last ``map`` did: tasks served from the cache, run, retried, failed, cancelled."""

    total: int = 0
    cached: int = 0
    computed: int = 0
    retried: int = 0
    failed: int = 0
    cancelled: int = 0


class Executor(ABC):
    """Runs independent tasks and gathers their results in order."""

    workers: int = 1
    #: Result cache used when ``map`` gets explicit ``keys`` (None: no caching).
    cache: ResultCache | None = None
    #: What the last ``map`` did (set by the shared driver loop).
    last_stats: MapStats

    @abstractmethod
    def map(
        self,
        fn: Callable[..., Any],
        tasks: Sequence[tuple[Any, ...]],
        *,
        keys: Sequence[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
        return_failures: bool = False,
    ) -> list[Any]:
        """Call ``fn(*args)`` for each args tuple; return results in order.

        A failing task is retried once. Then, with ``return_failures`` its slot holds a
        ``TaskFailure`` and the rest complete; without, ``TaskError`` is raised.
        ``progress(done, total)`` is called as tasks finish.
        """

    # Cancellation is shared by every backend: a flag the driver loop checks before submitting.
    @property
    def _cancel_event(self) -> threading.Event:
        ev = self.__dict__.get("_cancel_ev")
        if ev is None:
            ev = self.__dict__.setdefault("_cancel_ev", threading.Event())
        return ev

    def cancel(self) -> None:
        """Stop submitting tasks; running ones finish. Safe from any thread or a signal handler."""
        self._cancel_event.set()

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` was called (and not ``reset()`` since)."""
        return self._cancel_event.is_set()

    def reset(self) -> None:
        """Clear a cancellation, so the next ``map`` runs (and resumes from the cache)."""
        self._cancel_event.clear()

    def close(self) -> None:  # noqa: B027 - an optional hook: a backend without resources keeps it
        """Release workers (a no-op for inline execution)."""

    def __enter__(self) -> Executor:  # noqa: PYI034 - typing.Self needs 3.11; subclasses keep their type via their own use
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- shared driver loop
class _Backend(Protocol):
    """How the driver loop talks to a backend: submit one call, wait for some to finish."""

    max_in_flight: int

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any: ...

    def wait_any(self, handles: list[Any]) -> list[tuple[Any, Any, BaseException | None]]: ...

    def is_crash(self, exc: BaseException) -> bool: ...

    def describe_error(self, exc: BaseException) -> str: ...


def _task_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def drive(
    executor: Executor,
    backend: _Backend,
    fn: Callable[..., Any],
    tasks: Sequence[tuple[Any, ...]],
    *,
    keys: Sequence[str] | None,
    progress: Callable[[int, int], None] | None,
    return_failures: bool,
) -> list[Any]:
    """The loop every backend shares: cache look-up, bounded submission, retry-once, cancellation.

    Backends implement ``submit``/``wait_any`` (see ``_Backend``); this function owns the
    semantics documented in the module docstring and records ``executor.last_stats``.
    """
    n = len(tasks)
    bad = next((i for i, t in enumerate(tasks) if not isinstance(t, (tuple, list))), None)
    if bad is not None:
        raise InvalidParameterError(
            f"task {bad} is a {type(tasks[bad]).__name__} ({str(tasks[bad])[:40]}), not a tuple of arguments: map calls "
            f"fn(*task) for each task; wrap a single argument as ({str(tasks[bad])[:20]},), e.g. tasks=[(x,) for x in xs]."
        )
    explicit = keys is not None
    key_list = [str(k) for k in keys] if keys is not None else [str(i) for i in range(n)]
    if len(key_list) != n:
        raise InvalidParameterError(f"got {n} tasks but {len(key_list)} keys; pass one key per task.")
    cache = executor.cache.with_namespace(_task_name(fn)) if (executor.cache is not None and explicit) else None
    if cache is not None and len(set(key_list)) != n:  # two tasks would share one cache entry
        dup = next(k for k in key_list if key_list.count(k) > 1)
        raise InvalidParameterError(f"task keys must be unique when results are cached; {dup!r} appears more than once.")
    stats = MapStats(total=n)
    executor.last_stats = stats
    results: list[Any] = [None] * n
    finished = [False] * n
    attempts = [0] * n
    todo: deque[int] = deque()
    for i in range(n):
        if cache is not None:
            hit, value = cache.get(key_list[i])
            if hit:
                results[i], finished[i] = value, True
                stats.cached += 1
                continue
        todo.append(i)
    done = stats.cached
    if progress and done:
        progress(done, n)
    # Tasks that were in flight when a worker pool broke: we cannot tell which one killed it, so
    # each is retried alone, and only a task that breaks the pool on its own counts as failing.
    suspects: set[int] = set()
    in_flight: dict[Any, int] = {}
    cancel = executor._cancel_event
    limit = max(1, int(backend.max_in_flight))
    shared_crashes = getattr(backend, "crash_is_shared", True)

    def finish(i: int) -> None:
        nonlocal done
        finished[i] = True
        done += 1
        if progress:
            progress(done, n)

    while todo or in_flight:
        while todo and not cancel.is_set():
            i = todo[0]
            if i in suspects and in_flight:
                break  # a crash suspect runs alone
            if len(in_flight) >= limit or any(j in suspects for j in in_flight.values()):
                break
            todo.popleft()
            in_flight[backend.submit(fn, tuple(tasks[i]))] = i
        if not in_flight:
            break  # cancelled with nothing running
        running = len(in_flight)
        for handle, value, exc in backend.wait_any(list(in_flight)):
            i = in_flight.pop(handle)
            if exc is None:
                results[i] = value
                stats.computed += 1
                if cache is not None:
                    try:
                        cache.put(key_list[i], value)
                    except InvalidParameterError as exc:
                        # the run still completes; it just cannot resume this function's results
                        warnings.warn(f"results of {_task_name(fn)} are not cached: {exc}", AuditSDKWarning, stacklevel=3)
                        cache = None
                suspects.discard(i)
                finish(i)
                continue
            crash = backend.is_crash(exc)
            if crash and shared_crashes and i not in suspects and running > 1:
                suspects.add(i)  # shared crash: retry alone, attempt not counted
                stats.retried += 1
                todo.appendleft(i)
                continue
            attempts[i] += 1
            if attempts[i] < 2:
                stats.retried += 1
                if crash and shared_crashes:
                    suspects.add(i)
                todo.appendleft(i)
                continue
            stats.failed += 1
            error = backend.describe_error(exc)
            if not return_failures:
                raise TaskError(f"task {key_list[i]} failed twice: {error}") from exc
            results[i] = TaskFailure(key_list[i], error)
            finish(i)
    unfinished = [i for i in range(n) if not finished[i]]
    if unfinished:
        stats.cancelled = len(unfinished)
        if not return_failures:
            raise RunCancelled(
                f"cancelled: {n - len(unfinished)} of {n} tasks finished"
                + (" (cached; run again to resume)." if cache is not None else "."),
                results,
                finished,
            )
        for i in unfinished:
            results[i] = TaskFailure(key_list[i], "cancelled before it finished", cancelled=True)
    return results


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


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


def make_executor(
    name: str = "local",
    *,
    workers: int | None = 1,
    address: str | None = None,
    cache_dir: str | Path | None = None,
    **options: Any,
) -> Executor:
    """Build an executor by name: ``local`` (processes on this machine) or ``ray``.

    Args:
        workers: local worker processes, or the CPUs of a local Ray started here (ignored when
            ``address`` joins an existing cluster).
        address: a Ray cluster to join (``"auto"``, ``"ray://host:10001"``); ray only.
        cache_dir: result cache directory (see ``ResultCache``).
        options: backend-specific options (``LocalExecutor`` / ``RayExecutor`` arguments).

    Raises:
        InvalidParameterError: an unknown name, or ``address`` with the local backend.
        BackendUnavailableError: ``ray`` without Ray installed (names the extra to install).
    """
    if name == "local":
        if address:
            raise InvalidParameterError(f"address={address!r} needs the ray executor; pass name='ray' (--executor ray).")
        return LocalExecutor(workers=workers, cache_dir=cache_dir, **options)
    if name == "ray":
        from .executors.ray_backend import RayExecutor

        return RayExecutor(workers=workers, address=address, cache_dir=cache_dir, **options)
    raise InvalidParameterError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTOR_NAMES)}.")


def resolve_executor(
    name: str | None = None,
    *,
    workers: int | None = None,
    address: str | None = None,
    base: Any = None,
) -> Executor:
    """Build an executor from command-line overrides on top of a config's ``executor`` section.

    ``audit-sdk audit --executor ray --workers 8 --ray-address auto`` calls this with the flags
    given (None: not given) and ``base`` the config's ``ExecutorSpec`` (``name``, ``workers``,
    ``options``) or None. An address alone implies Ray.

    Raises:
        InvalidParameterError: an unknown backend, or an address with ``local``.
        BackendUnavailableError: Ray asked for but not installed.
    """
    base_name = getattr(base, "name", None) or "local"
    chosen = name or ("ray" if address else base_name)
    w = workers if workers is not None else getattr(base, "workers", 1)
    options = dict(getattr(base, "options", None) or {}) if (name is None or name == base_name) else {}
    if address:
        options["address"] = address
    return make_executor(chosen, workers=w, **options)
