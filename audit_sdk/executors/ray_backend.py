"""Run fan-out tasks on Ray: a local Ray started here, or a cluster joined by address.

    from audit_sdk.executors.ray_backend import RayExecutor

    with RayExecutor(address="auto", cache_dir="/shared/cache") as ex:     # join a running cluster
        results = ex.map(train_reference, tasks, keys=cache_keys)

Same semantics as ``LocalExecutor`` (one driver loop, ``audit_sdk.executors.base.drive``): ordered
results, retry once then ``TaskFailure``, a result cache for resuming, ``cancel()``. Ray's own
retries are off (``max_retries=0``) so a killed worker is retried exactly like a failing task.
An argument several tasks share (the same object: a data pool, an AuditData) is put into Ray's
object store once per ``map`` call instead of being serialised for every task; pass the whole
data pool plus per-task indices, rather than a slice per task, to ship the data once.
``import ray`` happens when the executor is built, never when ``audit_sdk`` is imported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..cache import ResultCache
from ..errors import BackendUnavailableError, InvalidParameterError
from ..version import __version__
from .base import Executor, MapStats, drive

__all__ = ["RayExecutor"]


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise BackendUnavailableError('the ray executor needs Ray: pip install "audit-sdk[ray]" (or use --executor local).') from exc
    return ray


def _sdk_origin() -> dict[str, str]:
    """Where this process imports the SDK and every registered plugin module from (driver and worker probe).

    Plugin modules are located with ``find_spec`` (their packages are imported, the modules are not run),
    from the ``audit_sdk`` entry points, so built-ins and third-party plugins are checked alike.
    """
    import importlib.util
    from importlib import metadata

    # this module's parent package is the SDK this process imported (a worker has imported it to run the probe)
    sdk = importlib.util.find_spec("audit_sdk")
    out = {"version": str(__version__), "audit_sdk": str(Path((sdk.origin if sdk else None) or "").resolve())}
    for ep in metadata.entry_points(group="audit_sdk"):
        module = ep.value.split(":")[0].strip()
        spec = importlib.util.find_spec(module)
        if spec is None:
            raise ModuleNotFoundError(f"No module named {module!r} (plugin {ep.name!r})")
        out[module] = str(Path(spec.origin or "").resolve())
    return out


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    text = str(exc).strip()
    # Ray wraps a worker's traceback; its last line names the real error
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return last if ":" in last else f"{type(exc).__name__}: {last}"


class _RayBackend:
    crash_is_shared = False

    def __init__(self, ray: Any, remote_fn: Any, max_in_flight: int) -> None:
        self.ray = ray
        self.remote_fn = remote_fn
        self.max_in_flight = max_in_flight
        self.live: set[Any] = set()
        #: arrays at least this large are put into the object store once and shared by reference
        self.share_min_bytes = 1 << 20
        self._puts: dict[int, tuple[Any, Any]] = {}
        self._seen: dict[int, Any] = {}
        ex = ray.exceptions
        self._crash_types = tuple(
            getattr(ex, n)
            for n in ("WorkerCrashedError", "NodeDiedError", "ObjectLostError", "OutOfMemoryError", "LocalRayletDiedError")
            if hasattr(ex, n)
        )

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        ref = self.remote_fn.remote(*(self._shared(a) for a in args))
        self.live.add(ref)
        return ref

    def _shared(self, arg: Any) -> Any:
        """Put an argument that several tasks share into the object store once per map.

        Ray passes a top-level ObjectRef argument to the task as its value (zero-copy, read-only
        for numpy), so a data set shared by every task crosses to the cluster once, not per task.
        A numpy array of ``share_min_bytes`` or more is shared at once; any other non-scalar
        object (an AuditData, a model builder) from the second task that passes the very same
        object on.
        """
        if arg is None or isinstance(arg, (bool, int, float, complex, str, bytes)):
            return arg
        key = id(arg)
        hit = self._puts.get(key)
        if hit is not None and hit[0] is arg:
            return hit[1]
        big = isinstance(arg, np.ndarray) and arg.nbytes >= self.share_min_bytes
        if big or self._seen.get(key) is arg:
            ref = self.ray.put(arg)
            self._puts[key] = (arg, ref)
            return ref
        self._seen[key] = arg  # held, so the id cannot be reused by another object during this map
        return arg

    def wait_any(self, handles: list[Any]) -> list[tuple[Any, Any, BaseException | None]]:
        ready, _ = self.ray.wait(handles, num_returns=1)
        out: list[tuple[Any, Any, BaseException | None]] = []
        for ref in ready:
            self.live.discard(ref)
            try:
                out.append((ref, self.ray.get(ref), None))
            except self.ray.exceptions.RayError as exc:
                out.append((ref, None, exc))
        return out

    def is_crash(self, exc: BaseException) -> bool:
        return isinstance(exc, self._crash_types)

    def describe_error(self, exc: BaseException) -> str:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            return f"{type(cause).__name__}: {cause}"
        if self.is_crash(exc):
            return f"WorkerCrashed: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
        return f"{type(exc).__name__}: {str(exc).strip()[:300]}"


class RayExecutor(Executor):
    """Fan tasks out over a Ray cluster.

    Args:
        workers: CPUs of the local Ray started when no cluster is running and no ``address`` is
            given (None: all CPUs). Ignored when joining a cluster.
        address: a cluster to join (``"auto"``, ``"ray://head:10001"``, ``"10.0.0.1:6379"``).
        cache_dir: result cache (see ``ResultCache``); only the driver reads and writes it, so it
            need not be on storage the workers share.
        num_cpus_per_task, num_gpus_per_task: Ray resources per task (a GPU per reference model:
            ``num_gpus_per_task=1``; fractions share a GPU).
        max_in_flight: tasks submitted at a time (default: as many as the cluster can run).
        init_kwargs: further ``ray.init`` arguments (e.g. ``runtime_env``).

    Raises:
        BackendUnavailableError: Ray is not installed.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        address: str | None = None,
        cache_dir: str | Path | None = None,
        num_cpus_per_task: float = 1,
        num_gpus_per_task: float = 0,
        max_in_flight: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self._ray = _ray()
        if workers is not None and workers < 0:
            raise InvalidParameterError(f"workers must be >= 0; got {workers}. Use 0 or None for one per CPU.")
        if num_cpus_per_task <= 0 and num_gpus_per_task <= 0:
            raise InvalidParameterError("a task needs some resource: num_cpus_per_task or num_gpus_per_task must be > 0.")
        if max_in_flight is not None and max_in_flight < 1:
            raise InvalidParameterError(f"max_in_flight must be >= 1; got {max_in_flight}.")
        self.address = address
        self.requested_workers = workers or None
        self.num_cpus_per_task = num_cpus_per_task
        self.num_gpus_per_task = num_gpus_per_task
        self.max_in_flight = max_in_flight
        self.init_kwargs = dict(init_kwargs or {})
        self.cache = ResultCache(cache_dir) if cache_dir is not None else None
        self.last_stats = MapStats()
        self.workers = workers or os.cpu_count() or 1
        self._started_ray = False
        self._remote: dict[Any, Any] = {}
        #: seconds the worker-import probe may take (a cold worker imports numpy, pydantic and pluggy)
        self.probe_timeout_s = 120.0

    def connect(self) -> None:
        """Join ``address`` or start a local Ray, unless this process is already connected."""
        ray = self._ray
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False} | self.init_kwargs
            try:
                if self.address:
                    ray.init(address=self.address, **kwargs)
                else:
                    ray.init(num_cpus=self.requested_workers or os.cpu_count() or 1, **kwargs)
            except ConnectionError as exc:
                raise BackendUnavailableError(
                    f"cannot reach a Ray cluster at {self.address!r} ({exc}). Start one (`ray start --head`) "
                    "or leave the address out to start a local Ray."
                ) from exc
            self._started_ray = True
            self._check_workers_import_the_driver_sdk()
        resources = ray.cluster_resources()
        slots = []
        if self.num_cpus_per_task > 0:
            slots.append(int(float(resources.get("CPU", 0.0)) // self.num_cpus_per_task))
        if self.num_gpus_per_task > 0:
            gpus = float(resources.get("GPU", 0.0))
            if gpus < self.num_gpus_per_task:
                # Ray would queue the tasks forever waiting for a GPU that never comes
                raise BackendUnavailableError(
                    f"tasks ask for {self.num_gpus_per_task} GPU each but the Ray cluster has {gpus:g}; "
                    "add GPU nodes or use num_gpus_per_task=0 (CPU training)."
                )
            slots.append(int(gpus // self.num_gpus_per_task))
        self.workers = max(1, min(slots))

    def _check_workers_import_the_driver_sdk(self) -> None:
        """Run one probe task: a worker must import the very SDK the driver imported, else fail now in one line.

        Without it, a worker that resolves ``audit_sdk`` differently (another checkout first on its path, an
        older install on a cluster node) fails every task with a Ray traceback, or silently runs other code.
        On a local Ray the files must be the same; on a joined cluster (other machines, other paths) the
        versions must be.
        """
        ray = self._ray
        driver = _sdk_origin()
        probe = ray.remote(num_cpus=0, max_retries=0)(_sdk_origin)
        try:
            worker = ray.get(probe.remote(), timeout=self.probe_timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure to import on the worker ends here in one line
            raise BackendUnavailableError(
                f"Ray workers cannot import the SDK ({_first_line(exc)}); the driver imported it from "
                f"{driver['audit_sdk']}. Install audit-sdk in the workers' environment, or pass "
                "init_kwargs={'runtime_env': ...} that makes `import audit_sdk.plugins` work there."
            ) from None
        keys = sorted(driver) if not self.address else ["version"]
        differ = [k for k in keys if worker.get(k) != driver[k]]
        if differ:
            k = differ[0]
            raise BackendUnavailableError(
                f"Ray workers import a different SDK than the driver ({k}: worker {worker.get(k)}, driver {driver[k]}); "
                "start Ray from the environment and directory the driver uses, or install the same audit-sdk on every node."
            )

    def _remote_fn(self, fn: Callable[..., Any]) -> Any:
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._ray.remote(num_cpus=self.num_cpus_per_task, num_gpus=self.num_gpus_per_task, max_retries=0)(fn)
            self._remote[fn] = remote
        return remote

    def map(
        self,
        fn: Callable[..., Any],
        tasks: Sequence[tuple[Any, ...]],
        *,
        keys: Sequence[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
        return_failures: bool = False,
    ) -> list[Any]:
        self.connect()
        backend = _RayBackend(self._ray, self._remote_fn(fn), self.max_in_flight or self.workers)
        try:
            return drive(self, backend, fn, tasks, keys=keys, progress=progress, return_failures=return_failures)
        except BaseException:
            # a task failed for good or Ctrl-C: stop what is still running on the cluster
            for ref in backend.live:
                self._ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        """Shut Ray down if this executor started it (a joined cluster is left running)."""
        if self._started_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._started_ray = False
        self._remote.clear()
