"""One interface for work that fans out (reference models, grid cells, slices).

    with make_executor("local", workers=2, cache_dir="runs/cache") as ex:
        losses = ex.map(train_reference, [(seed, idx) for seed, idx in jobs], keys=cache_keys)

``LocalExecutor`` (``executors.local``) runs tasks inline (``workers=1``) or in worker processes; ``RayExecutor``
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

from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError
from .base import Executor, MapStats, RunCancelled, TaskError, TaskFailure, drive
from .local import LocalExecutor

__all__ = [
    "EXECUTOR_NAMES",
    "Executor",
    "LocalExecutor",
    "MapStats",
    "RunCancelled",
    "TaskError",
    "TaskFailure",
    "drive",
    "make_executor",
    "resolve_executor",
]

#: Backends ``make_executor`` knows.
EXECUTOR_NAMES = ("local", "ray")


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
        from .ray_backend import RayExecutor

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
