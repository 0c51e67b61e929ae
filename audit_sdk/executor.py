"""Old home of the executors, kept so ``from audit_sdk.executor import ...`` keeps working.

The code lives in the ``audit_sdk.executors`` package: ``base`` (the contract and the driver loop),
``local`` (``LocalExecutor``) and ``ray_backend`` (``RayExecutor``).
"""

from .executors import (
    EXECUTOR_NAMES,
    Executor,
    LocalExecutor,
    MapStats,
    RunCancelled,
    TaskError,
    TaskFailure,
    drive,
    make_executor,
    resolve_executor,
)

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
