"""Canaries of ``audit.dp``: input canaries (random-label, ood) and Dirac gradient canaries."""

from __future__ import annotations

from typing import Any

import numpy as np

from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidDataError, InvalidParameterError
from audit_sdk.rng import as_generator

__all__ = ["make_canaries"]


def make_canaries(kind: str, m: int, data: AuditData, *, n_classes: int, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Build ``m`` canaries (inputs, labels); gradient canaries have no inputs (their rows are empty).

    ``random-label``: population inputs (then non-member inputs) with a label drawn uniformly among
    the wrong classes; ``ood``: inputs uniform over the members' value range, random labels.

    Raises:
        InvalidDataError: fewer population + non-member inputs than canaries for ``random-label``.
    """
    gen = as_generator(rng)
    if n_classes < 2:
        raise InvalidDataError(f"canaries need at least 2 classes; the data has {n_classes}.")
    x = data.members.x
    if kind == "gradient":
        return np.zeros((m, 0), np.float32), np.zeros(m, np.int64)
    if kind == "ood":
        lo, hi = float(np.min(x)), float(np.max(x))
        cx = gen.uniform(lo, hi, size=(m, *x.shape[1:])).astype(x.dtype if x.dtype.kind == "f" else np.float32)
        return cx, gen.integers(0, n_classes, m).astype(np.int64)
    if kind != "random-label":
        raise InvalidParameterError(f"canary must be 'random-label', 'ood' or 'gradient'; got {kind!r}.")
    pools = [s for s in (data.population, data.non_members) if s is not None]
    px = np.concatenate([s.x for s in pools]) if pools else x[:0]
    py = np.concatenate([s.y for s in pools]) if pools else data.members.y[:0]
    if len(px) < m:
        raise InvalidDataError(
            f"random-label canaries are population (then non-member) inputs, but the data has {len(px)} of them for {m} canaries. "
            "Pass more population data, fewer canaries, or canary='ood' (generated inputs)."
        )
    # population inputs first: non-member inputs also measure test accuracy, so they are used only when needed
    n_pop = len(data.population) if data.population is not None else 0
    pick = np.r_[gen.permutation(n_pop), n_pop + gen.permutation(len(px) - n_pop)][:m]
    shift = gen.integers(1, n_classes, m)
    return np.ascontiguousarray(px[pick]), ((py[pick].astype(np.int64) + shift) % n_classes).astype(np.int64)


def _gradient_canaries(n_params: int, m: int, norm: float, seed: int) -> Any:
    """``m`` Dirac gradient canaries: distinct random coordinates of the flat parameter vector, as a sparse (m, n_params) tensor."""
    import torch

    if m > n_params:
        raise InvalidParameterError(
            f"{m} gradient canaries need {m} distinct coordinates, but the model has {n_params} parameters; use fewer canaries."
        )
    coords = np.random.default_rng(np.random.SeedSequence([seed, 0xD1AC])).choice(n_params, size=m, replace=False)
    index = torch.stack([torch.arange(m), torch.from_numpy(coords)])
    return torch.sparse_coo_tensor(index, torch.full((m,), float(norm)), (m, n_params), check_invariants=True).coalesce()
