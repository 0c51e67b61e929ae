"""One interface for work that fans out (reference models, grid cells, slices).

``LocalExecutor`` runs tasks inline (``workers=1``) or in worker processes. Other backends
(Ray) implement the same ``Executor.map``. Tasks must be module-level callables with picklable
arguments; results come back in submission order.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from .errors import AuditSDKError, InvalidParameterError

__all__ = ["Executor", "LocalExecutor", "TaskError", "TaskFailure", "make_executor"]


@dataclass
class TaskFailure:
    """A task that failed twice (it is retried once): its key and the error text."""

    key: str
    error: str


class TaskError(AuditSDKError):
    """Raised by ``map(..., return_failures=False)`` when a task failed after its retry."""


class Executor(ABC):
    """Runs independent tasks and gathers their results in order."""

    workers: int = 1

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

    def close(self) -> None:
        """Release workers (a no-op for inline execution)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalExecutor(Executor):
    """Inline (``workers=1``) or process-pool execution on this machine.

    Args:
        workers: number of worker processes; 0 or None means ``os.cpu_count()``.
    """

    def __init__(self, workers: int | None = 1) -> None:
        if workers is not None and workers < 0:
            raise InvalidParameterError(f"workers must be >= 0; got {workers}. Use 0 for one per CPU.")
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing as mp

            # spawn: safe with torch/onnxruntime threads already running in the parent
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"))
        return self._pool

    def map(self, fn, tasks, *, keys=None, progress=None, return_failures=False):  # type: ignore[no-untyped-def]
        keys = list(keys) if keys is not None else [str(i) for i in range(len(tasks))]
        results: list[Any] = [None] * len(tasks)
        done = 0
        if self.workers <= 1 or len(tasks) <= 1:
            for i, args in enumerate(tasks):
                results[i] = self._run_inline(fn, args, keys[i], return_failures)
                done += 1
                if progress:
                    progress(done, len(tasks))
            return results
        pool = self._get_pool()
        pending: dict[Future[Any], tuple[int, int]] = {pool.submit(fn, *args): (i, 0) for i, args in enumerate(tasks)}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                i, attempt = pending.pop(fut)
                exc = fut.exception()
                if exc is None:
                    results[i] = fut.result()
                elif attempt == 0:
                    pending[pool.submit(fn, *tasks[i])] = (i, 1)
                    continue
                elif return_failures:
                    results[i] = TaskFailure(keys[i], f"{type(exc).__name__}: {exc}")
                else:
                    raise TaskError(f"task {keys[i]} failed twice: {type(exc).__name__}: {exc}") from exc
                done += 1
                if progress:
                    progress(done, len(tasks))
        return results

    @staticmethod
    def _run_inline(fn: Callable[..., Any], args: tuple[Any, ...], key: str, return_failures: bool) -> Any:
        last: BaseException | None = None
        for _ in range(2):
            try:
                return fn(*args)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # retried once, then reported
                last = exc
        if return_failures:
            return TaskFailure(key, f"{type(last).__name__}: {last}")
        raise TaskError(f"task {key} failed twice: {type(last).__name__}: {last}") from last

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def make_executor(name: str = "local", *, workers: int | None = 1, **options: Any) -> Executor:
    """Build an executor by name (``local``; other backends register here as they land)."""
    if name == "local":
        return LocalExecutor(workers=workers)
    raise InvalidParameterError(f"unknown executor {name!r}; expected 'local'.")
