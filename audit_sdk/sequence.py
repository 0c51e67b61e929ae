"""Token sequences and the SequenceTarget contract: what a language-model attack may ask of a causal LM.

Token data lives in an ordinary :class:`~audit_sdk.data.AuditData`: ``x`` is an int64 array
``(n, T)`` of token ids, right-padded with :data:`PAD` (-1), and ``y`` is a per-sequence group
label (zeros when there is none; it only slices the report). In an ``.npz`` the ids may come with
their own padding and ``len_<set>`` (lengths) or ``mask_<set>`` (1 = token) arrays; ``load_npz``
turns them into this form::

    np.savez("text.npz", x_members=ids_in, len_members=len_in, x_non_members=ids_out, len_non_members=len_out)
    data = audit_sdk.load_npz("text.npz")        # x: (n, T) int64, PAD after each sequence's end

A :class:`SequenceTarget` answers per-token log-probabilities of given sequences (batched, in
buckets of similar length, padding trimmed per batch); adapters implement ``_next_token_logits``
for ONNX Runtime and torch. Attacks of access level ``sequence`` use it.
"""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import AccessError, InvalidDataError, InvalidModelError
from .target import Target
from .tokens import PAD, pad_sequences, sequence_lengths, to_token_array

__all__ = ["PAD", "SequenceTarget", "TokenStats", "pad_sequences", "sequence_lengths", "to_token_array"]


@dataclass
class TokenStats:
    """Per-token figures of sequences under a causal LM, ``(n, T - 1)``, NaN past each sequence's end.

    Position ``t`` scores token ``t + 1`` given tokens ``0..t``.

    Attributes:
        logp: log-probability of the actual next token.
        mu: mean of log p(z) over the next-token distribution (E_z[log p(z)]).
        sigma: its standard deviation (Min-K%++ normalises by these).
    """

    logp: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.logp)

    def mean_nll(self) -> np.ndarray:
        """Mean negative log-likelihood per sequence (the sequence loss)."""
        v = self.valid
        return -np.where(v, self.logp, 0.0).sum(1) / np.maximum(1, v.sum(1))


def _log_softmax_stats(logits: np.ndarray, nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=-1, keepdims=True))
    lp = z - lse  # (b, t, V) log-probabilities
    p = np.exp(lp)
    mu = (p * lp).sum(-1)
    var = np.maximum((p * lp * lp).sum(-1) - mu * mu, 0.0)
    logp = np.take_along_axis(lp, nxt[..., None], axis=-1)[..., 0]
    return logp, mu, np.sqrt(var)


class SequenceTarget(Target):
    """A causal language model as a Target: token ids in, per-token log-probabilities out.

    Subclasses implement ``_next_token_logits``; :meth:`token_stats` batches sequences of similar length together and
    trims padding per batch, so short texts cost little. Capability ``sequence``.

        stats = target.token_stats(data.members.x)
        loss = stats.mean_nll()
    """

    capabilities = frozenset({"sequence"})
    input_dtype = np.dtype(np.int64)
    input_shape: tuple[int | None, ...] = (None,)
    #: Vocabulary size (the logits' last axis).
    vocab_size: int = 0
    #: Longest sequence the model accepts (None: any).
    max_length: int | None = None
    #: Sequences per forward pass.
    batch_size: int = 64

    @abstractmethod
    def _next_token_logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Logits ``(b, t, V)`` for ids ``(b, t)`` (padding replaced by 0) and mask ``(b, t)`` (1 = token)."""

    def check_tokens(self, x: Any) -> np.ndarray:
        """Validate a PAD-padded token array against the model's vocabulary and length."""
        a = to_token_array(x, name="token ids")
        if self.vocab_size and a.size and a.max() >= self.vocab_size:
            raise InvalidDataError(
                f"token ids go up to {int(a.max())} but the model's vocabulary has {self.vocab_size} tokens; "
                "tokenize with the model's own tokenizer."
            )
        T = int(sequence_lengths(a).max()) if len(a) else 0
        if self.max_length is not None and T > self.max_length:
            raise InvalidDataError(f"sequences of up to {T} tokens, but the model takes at most {self.max_length}; truncate them.")
        return a

    def token_stats(self, x: Any) -> TokenStats:
        """Per-token log-probabilities (and Min-K%++'s mean / std) of each sequence in ``x``.

        The last answer is kept (keyed by a hash of the ids), so several attacks on the same data
        query the model once.
        """
        a = self.check_tokens(x)
        key = (a.shape, hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).digest(), self._model_version())
        cached = getattr(self, "_stats_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        stats = self._compute_stats(a)
        self._stats_cache = (key, stats)
        return stats

    def _model_version(self) -> Any:
        """Changes whenever the served model changes (the cache key's last part); a fixed model returns a constant."""
        return None

    def _compute_stats(self, a: np.ndarray) -> TokenStats:
        n, T = a.shape
        out = [np.full((n, max(T - 1, 0)), np.nan) for _ in range(3)]
        lens = sequence_lengths(a)
        order = np.argsort(lens, kind="stable")
        bs = max(1, int(self.batch_size))
        if self.vocab_size:  # bound one batch's float64 log-probabilities (b, t, V) to ~128 MiB
            bs = max(1, min(bs, (1 << 24) // max(1, T * self.vocab_size)))
        for s in range(0, n, bs):
            idx = order[s : s + bs]
            t = int(lens[idx].max())
            if t < 2:
                continue
            ids = a[idx, :t]
            mask = ids != PAD
            clean = np.where(mask, ids, 0)
            logits = np.asarray(self._next_token_logits(clean, mask.astype(np.int64)))
            if logits.ndim != 3 or logits.shape[:2] != (len(idx), t):
                raise InvalidModelError(
                    f"the model returned logits of shape {logits.shape} for ids {clean.shape}; expected (batch, time, vocab)."
                )
            if not np.isfinite(logits[mask]).all():
                raise InvalidModelError("the model's logits contain NaN or inf on these sequences.")
            lp, mu, sd = _log_softmax_stats(logits[:, :-1], clean[:, 1:])
            ok = mask[:, 1:]
            for arr, val in zip(out, (lp, mu, sd)):
                arr[idx, : t - 1] = np.where(ok, val, np.nan)
        return TokenStats(*out)

    def check_input(self, x: Any) -> np.ndarray:
        return self.check_tokens(x)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": type(self).__name__,
            "capabilities": sorted(self.capabilities),
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
        }

    def sequence_loss(self, x: Any) -> np.ndarray:
        """Mean next-token negative log-likelihood of each sequence ``(n,)``."""
        return self.token_stats(x).mean_nll()

    def _predict_raw(self, x: np.ndarray) -> np.ndarray:
        raise AccessError(
            f"{type(self).__name__} is a language model: it answers token log-probabilities (token_stats), not class scores. "
            "Use a sequence attack (mia.lm-loss, mia.min-k, ...)."
        )
