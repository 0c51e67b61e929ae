"""Helpers shared by sub-commands."""

from __future__ import annotations

import json
import math
from pathlib import Path
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


def add_target_options(p: Any) -> None:
    """``--output``, ``--scores`` and ``--pad-id``: how a model's outputs and inputs are read."""
    p.add_argument(
        "--output",
        metavar="NAME|INDEX",
        help="the model output holding the class scores (default: found from the graph; `audit-sdk inspect MODEL` shows it)",
    )
    p.add_argument("--scores", choices=["logits", "probabilities"], help="what that output holds (default: detected)")
    p.add_argument(
        "--pad-id", type=int, metavar="ID", help="text models: the padding token id; a missing attention_mask is built as input_ids != ID"
    )


def target_options(args: Any) -> dict[str, Any]:
    """The options ``add_target_options`` parsed, those given only."""
    opts = {"output": getattr(args, "output", None), "scores": getattr(args, "scores", None), "pad_token_id": getattr(args, "pad_id", None)}
    return {k: v for k, v in opts.items() if v is not None}


class Problems:
    """Collect what is wrong with the command line and its inputs, then report it all at once.

    problems = Problems()
    with problems.check():
        data = load_npz(args.data)
    problems.out_dir(args.out)
    problems.raise_if_any()  # one InvalidParameterError naming every problem
    """

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(" ".join(str(message).split()).rstrip("."))

    def check(self) -> Any:
        """A context manager that records an AuditSDKError (or a user's OSError) raised inside it."""
        import contextlib

        from ..errors import AuditSDKError

        problems = self

        class _Check(contextlib.AbstractContextManager[None]):
            def __exit__(self, et: Any, exc: Any, tb: Any) -> bool:
                if isinstance(exc, AuditSDKError):
                    problems.add(str(exc))
                    return True
                if isinstance(exc, OSError) and exc.filename is not None:
                    problems.add(f"{exc.strerror or exc}: {exc.filename}")
                    return True
                return False

        return _Check()

    def positive(self, flag: str, value: float | None, *, zero_ok: bool = False) -> None:
        """A number that must be > 0 (>= 0 with ``zero_ok``) and finite, when given."""
        if value is None:
            return
        ok = math.isfinite(value) and (value >= 0 if zero_ok else value > 0)
        if not ok:
            self.add(f"{flag} must be {'>= 0' if zero_ok else '> 0'} and finite; got {value!r}")

    def out_dir(self, path: str | Path | None, flag: str = "--out") -> None:
        """The output folder must be a folder we can create and write into (checked by writing a probe)."""
        if path is None:
            return
        p = Path(path)
        if p.exists() and not p.is_dir():
            self.add(f"{flag} {str(p)!r} is a file, not a folder; pass a folder for the outputs")
            return
        try:
            p.mkdir(parents=True, exist_ok=True)
            import tempfile

            with tempfile.TemporaryFile(dir=p):
                pass
        except OSError as exc:
            self.add(f"{flag} {str(p)!r} cannot be created or written ({exc.strerror or exc}); pass a writable folder")

    def raise_if_any(self) -> None:
        if not self.items:
            return
        if len(self.items) == 1:
            raise InvalidParameterError(self.items[0] + ".")
        raise InvalidParameterError(f"{len(self.items)} problems: " + "; ".join(f"({i}) {m}" for i, m in enumerate(self.items, 1)) + ".")


def report_failures(report: Any, path: Any) -> int:
    """Exit code and one stderr line for attacks that failed (the report keeps the others).

    3 when an attack failed on its own (a bug in it), 2 when every failure is an input error.
    """
    import sys

    fails = getattr(report, "failures", None) or []
    if not fails:
        return 0
    where = f"; the other attacks' results are in {path}" if path is not None else ""
    text = "; ".join(f"{f['name']} ({f['error']})" for f in fails)
    sys.stderr.write(f"audit-sdk: error: {len(fails)} attack(s) failed: {text}{where}\n")
    return 2 if all(f.get("input_error") for f in fails) else 3


#: Core commands that compute (train, attack) and so take ``--threads``; a plugin's command opts in
#: with ``audit_sdk.cli.helpers.add_compute_options``.
THREADED_COMMANDS = ("audit", "demo", "train", "compare")


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
