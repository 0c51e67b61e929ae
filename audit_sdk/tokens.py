"""Token arrays: the padding convention of token data and its conversions (a leaf of the core).

``audit_sdk.data`` (loading token ``.npz`` files) and ``audit_sdk.sequence`` (the SequenceTarget
contract) both use them; they live here so neither imports the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidDataError

__all__ = ["PAD", "pad_sequences", "sequence_lengths", "to_token_array"]

#: Padding id of token arrays inside AuditData (never a real token id).
PAD = -1


def pad_sequences(seqs: Any, *, max_len: int | None = None) -> np.ndarray:
    """Right-pad a list of id sequences with :data:`PAD` into an int64 ``(n, T)`` array (truncating at ``max_len``)."""
    rows = [np.asarray(s, dtype=np.int64).ravel() for s in seqs]
    if max_len is not None:
        rows = [r[:max_len] for r in rows]
    T = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(T, 1)), PAD, dtype=np.int64)
    for i, r in enumerate(rows):  # building the array once from ragged input; not a hot path
        out[i, : len(r)] = r
    return out


def to_token_array(ids: Any, *, lengths: Any = None, mask: Any = None, name: str = "x") -> np.ndarray:
    """Token ids ``(n, T)`` with their own padding -> int64 with :data:`PAD` after each sequence's end.

    Args:
        lengths: ``(n,)`` number of real tokens per row (the rest is padding).
        mask: ``(n, T)`` 1 for a real token, 0 for padding (must be right padding: ones then zeros).
        name: the array's name for error messages.

    Raises:
        InvalidDataError: non-integer ids, negative ids in the real tokens, a length out of range,
            or a mask that is not right padding.
    """
    a = np.asarray(ids)
    if a.ndim != 2 or a.dtype.kind not in "iu":
        raise InvalidDataError(f"{name}: token ids must be an integer array (n, T); got shape {a.shape} dtype {a.dtype}.")
    a = a.astype(np.int64)
    n, T = a.shape
    if lengths is not None and mask is not None:
        raise InvalidDataError(f"{name}: give lengths or mask, not both.")
    if lengths is not None:
        ln = np.asarray(lengths)
        if ln.shape != (n,) or ln.dtype.kind not in "iu" or (n and (ln.min() < 1 or ln.max() > T)):
            raise InvalidDataError(f"{name}: lengths must be (n,) integers in [1, {T}]; got shape {ln.shape} dtype {ln.dtype}.")
        keep = np.arange(T)[None, :] < ln[:, None]
    elif mask is not None:
        keep = np.asarray(mask)
        if keep.shape != a.shape:
            raise InvalidDataError(f"{name}: mask has shape {keep.shape}; expected {a.shape} like the ids.")
        keep = keep.astype(bool)
        if T > 1 and (keep[:, 1:] & ~keep[:, :-1]).any():
            raise InvalidDataError(f"{name}: mask is not right padding (a token follows padding); put each sequence's tokens first.")
    else:
        keep = a != PAD
        if T > 1 and (keep[:, 1:] & ~keep[:, :-1]).any():
            raise InvalidDataError(f"{name}: id {PAD} (padding) is followed by tokens; pad on the right, or pass lengths.")
    if (a[keep] < 0).any():
        raise InvalidDataError(f"{name}: negative token ids inside sequences; ids must be 0..vocab-1.")
    return np.where(keep, a, PAD)


def sequence_lengths(x: np.ndarray) -> np.ndarray:
    """Number of real tokens per row of a PAD-padded token array."""
    return (np.asarray(x) != PAD).sum(axis=1).astype(np.int64)
