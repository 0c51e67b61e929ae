"""Features of token sequences computed from the text alone (no model): lengths, zlib sizes, token rarity.

They feed the blind baseline (is membership guessable without the model?), the zlib-normalised
loss and the quantile-regression attack's per-example difficulty model.
"""

from __future__ import annotations

import zlib

import numpy as np

from audit_sdk.sequence import PAD, sequence_lengths

__all__ = ["text_features", "token_bytes", "zlib_sizes"]


def token_bytes(row: np.ndarray) -> bytes:
    """The real tokens of one PAD-padded row as bytes: one byte per id when ids fit (a byte tokenizer: the text itself)."""
    ids = row[row != PAD]
    if ids.size == 0 or ids.max() < 256:
        return ids.astype(np.uint8).tobytes()
    return ids.astype("<u2" if ids.max() < 65536 else "<u4").tobytes()


def zlib_sizes(x: np.ndarray) -> np.ndarray:
    """zlib-compressed size in bytes of each sequence's tokens (level 9, as Carlini et al. 2021)."""
    # zlib runs in C per sequence; there is no batched form, and it is microseconds per text
    return np.array([len(zlib.compress(token_bytes(r), 9)) for r in np.asarray(x)], dtype=np.float64)


def text_features(x: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """(n, 5) features: log length, zlib size / length, distinct-token fraction, mean and 10th-percentile token log-frequency.

    Token frequencies come from ``reference`` (e.g. the population; default ``x`` itself) with
    add-one smoothing.
    """
    a = np.asarray(x)
    lens = sequence_lengths(a).astype(np.float64)
    ref = a if reference is None else np.asarray(reference)
    valid_ref = ref[ref != PAD]
    vocab = int(max(valid_ref.max(initial=0), a.max(initial=0))) + 1
    counts = np.bincount(valid_ref, minlength=vocab).astype(np.float64) + 1.0
    logf = np.log(counts / counts.sum())
    mask = a != PAD
    lf = np.where(mask, logf[np.where(mask, a, 0)], np.nan)
    mean_lf = np.nanmean(lf, axis=1)
    p10_lf = np.nanpercentile(lf, 10, axis=1)
    srt = np.sort(np.where(mask, a, -1), axis=1)
    distinct = ((np.diff(srt, axis=1) != 0) & (srt[:, 1:] >= 0)).sum(1) + (srt[:, :1] >= 0).sum(1)
    z = zlib_sizes(a)
    return np.column_stack([np.log(np.maximum(lens, 1)), z / np.maximum(lens, 1), distinct / np.maximum(lens, 1), mean_lf, p10_lf])
