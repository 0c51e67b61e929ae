"""The executor contract and the one driver loop every backend shares (see ``audit_sdk.executors``)."""

from __future__ import annotations

import threading
import warnings
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..cache import ResultCache
from ..errors import AuditSDKError, AuditSDKWarning, InvalidParameterError

__all__ = ["Executor", "MapStats", "RunCancelled", "TaskError", "TaskFailure", "drive"]


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
