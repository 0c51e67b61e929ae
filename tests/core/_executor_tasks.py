"""Module-level tasks for the executor tests (worker processes and Ray workers import them by name).

Each task that should be counted writes a uniquely named marker file into ``marker_dir`` when it
runs, so a test counts executions across processes by listing the directory.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import numpy as np


def _mark(marker_dir: str, tag: str) -> None:
    Path(marker_dir, f"{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}").touch()


def count(marker_dir: str | Path, tag: str) -> int:
    """Runs recorded under exactly ``tag`` (e.g. ``run3``)."""
    return sum(1 for p in Path(marker_dir).iterdir() if p.name.split("-")[0] == tag)


def total(marker_dir: str | Path, prefix: str) -> int:
    """Runs recorded under any tag starting with ``prefix`` (e.g. every ``run<seed>``)."""
    return sum(1 for p in Path(marker_dir).iterdir() if p.name.startswith(prefix))


def square(x: int) -> int:
    return x * x


def train_ref(seed: int, marker_dir: str, sleep: float = 0.0) -> dict:
    """A reference-model-like task: logistic regression by gradient descent on seeded data."""
    _mark(marker_dir, f"run{seed}")
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 5))
    w_true = rng.normal(size=5)
    y = (x @ w_true + 0.5 * rng.normal(size=200) > 0).astype(np.float64)
    w = np.zeros(5)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= 0.5 * x.T @ (p - y) / len(y)
    if sleep:
        time.sleep(sleep)
    p = 1 / (1 + np.exp(-(x @ w)))
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return {"w": w, "losses": losses, "seed": seed}


def flaky(seed: int, marker_dir: str) -> int:
    """Fails on its first run (per seed), succeeds on the retry."""
    first = not any(p.name.startswith(f"flaky{seed}-") for p in Path(marker_dir).iterdir())
    _mark(marker_dir, f"flaky{seed}")
    if first:
        raise RuntimeError(f"transient failure {seed}")
    return seed + 100


def fails_for(seed: int, bad: int, marker_dir: str) -> int:
    _mark(marker_dir, f"try{seed}")
    if seed == bad:
        raise ValueError(f"bad seed {seed}")
    return seed


def slow_pid(seed: int, marker_dir: str, seconds: float) -> int:
    """Records its pid in ``started-<seed>-<pid>-...`` then sleeps: a test kills it mid-run."""
    _mark(marker_dir, f"started{seed}")
    time.sleep(seconds)
    return seed * 10


def die(seed: int, marker_dir: str) -> int:
    """Kills its own worker process on seed 0 (a native crash), returns otherwise."""
    _mark(marker_dir, f"die{seed}")
    if seed == 0:
        os._exit(13)
    time.sleep(0.2)
    return seed


def as_set(x: int) -> set:
    """A result the cache cannot store (no pickle)."""
    return {x}


def masked_sum(pool: np.ndarray, idx: np.ndarray) -> float:
    """Sum of the rows of a shared pool picked by ``idx`` (a reference model's subset)."""
    return float(pool[idx].sum())


def dict_rows(d: dict, seed: int) -> int:
    return len(d["pool"])


def visible_gpus(seconds: float) -> tuple[int, str | None]:
    time.sleep(seconds)  # keep this worker busy so the other one takes the next task
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")
