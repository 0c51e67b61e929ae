"""Finishing a membership result: slices, verdict and the per-sample score file, for every attack.

The pipeline (``run_attack``) calls ``enrich_membership`` on each membership result, built-in or
third-party, so a plugin that returns a bare ``AttackResult(scores=..., truth=..., labels=...)``
gets the same report as the built-ins. An attack that knows more (the target's predicted classes
and per-sample loss on the scored samples) calls it itself with them for richer slices; a second
call does nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .digest import spec_digest
from .fileio import atomic_write
from .results import AttackResult
from .slicing import SlicingSpec, membership_verdict, slice_membership

__all__ = ["enrich_membership", "params_tag"]


def params_tag(params: dict[str, Any]) -> str:
    """A short stable tag of an attack's options (file names of per-sample scores)."""
    return spec_digest(params, length=10)


def enrich_membership(
    result: AttackResult,
    *,
    out_dir: str | Path | None = None,
    predicted: np.ndarray | None = None,
    loss: np.ndarray | None = None,
) -> AttackResult:
    """Add ``slices``, ``verdict`` and (with ``out_dir``) ``scores_file`` to a membership result, in place.

    Args:
        result: a membership AttackResult (others are returned unchanged).
        out_dir: where the run writes artefacts; the scores go to ``<out_dir>/mia/<attack>-<tag>.npz``.
        predicted: the target's predicted class of each scored sample (slices by correctness); None where unknown.
        loss: the target's loss on each scored sample (slices by loss percentile); None where unknown.

    Returns:
        ``result``. What is already there (an attack that enriched its own result) is kept.
    """
    if result.kind != "membership" or result.scores is None or result.truth is None:
        return result
    labels = result.labels
    if "slices" not in result.extra and (labels is not None or predicted is not None or loss is not None):
        spec = SlicingSpec(
            entire_dataset=False,
            by_class=labels is not None,
            by_percentiles=loss is not None,
            by_classification_correctness=predicted is not None,
        )
        slices = slice_membership(result.scores, result.truth, spec=spec, labels=labels, predicted=predicted, loss=loss)
        result.extra["slices"] = [s.to_dict() for s in slices]
    if "verdict" not in result.extra:
        result.extra["verdict"] = membership_verdict(result.metrics)
    if out_dir is not None and "scores_file" not in result.extra:
        d = Path(out_dir) / "mia"
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{result.attack}-{params_tag(dict(result.params))}.npz"
        arrays: dict[str, np.ndarray] = {"scores": np.asarray(result.scores), "truth": np.asarray(result.truth)}
        if labels is not None:
            arrays["labels"] = np.asarray(labels)
        if predicted is not None:
            arrays["predicted"] = np.asarray(predicted)
        if loss is not None:
            arrays["loss"] = np.asarray(loss)
        with atomic_write(path) as fh:
            np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
        result.extra["scores_file"] = str(path)
    return result
