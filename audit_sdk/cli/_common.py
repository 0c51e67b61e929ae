"""Helpers shared by sub-commands."""

from __future__ import annotations

import json
from typing import Any

from ..errors import InvalidParameterError


def split_names(values: list[str] | None) -> list[str]:
    """Accept names space- or comma-separated (``--attacks a,b c``)."""
    out: list[str] = []
    for v in values or []:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return out


def parse_params(pairs: list[str] | None) -> dict[str, dict[str, Any]]:
    """Parse ``--param NAME.KEY=VALUE`` (VALUE read as JSON when it parses, else as a string).

    NAME is the component name, e.g. ``mia.loss-threshold.calibration=per-class``.
    """
    out: dict[str, dict[str, Any]] = {}
    for raw in pairs or []:
        if "=" not in raw or "." not in raw.split("=", 1)[0]:
            raise InvalidParameterError(f"--param {raw!r}: expected NAME.KEY=VALUE, e.g. mia.loss-threshold.calibration=per-class.")
        lhs, value = raw.split("=", 1)
        comp, key = lhs.rsplit(".", 1)
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(comp, {})[key] = parsed
    return out


#: Commands that compute (train, attack, account) and so take ``--threads``.
THREADED_COMMANDS = ("audit", "demo", "train", "epsilon", "dp-audit", "calibrate", "compare")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_threads() -> int:
    """Torch / BLAS threads of the main process when ``--threads`` is not given.

    Half the usable CPUs, at most 4: the SDK's models are small, and on a busy machine threads
    spin-waiting for each other cost more than they give (2 threads ran LiRA 2.5x slower than 1 on
    a busy 2-core machine). Worker processes get ``cores / workers`` each (``LocalExecutor``).
    """
    return max(1, min(4, usable_cpus() // 2))


def add_threads_option(p: Any) -> None:
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch / BLAS threads of this process (default: half the usable CPUs, at most 4; workers get cores / workers each)",
    )


def apply_threads(threads: int | None) -> int:
    """Set the thread count of torch and the BLAS / OpenMP pools; return it.

    An explicit count wins over the environment; without one, OMP_NUM_THREADS (and friends) set
    by the user are kept, else ``default_threads()``. torch is not imported for this (it reads
    OMP_NUM_THREADS when it loads); if it is already loaded, it is told directly.
    """
    import os
    import sys

    if threads is not None and threads < 1:
        raise InvalidParameterError(f"--threads must be >= 1; got {threads}.")
    n = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or default_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if threads is not None or not os.environ.get(var, "").strip():  # an empty value counts as unset
            os.environ[var] = str(n)
    torch = sys.modules.get("torch")
    if torch is not None and (threads is not None or torch.get_num_threads() != n):
        torch.set_num_threads(n)
    return n
