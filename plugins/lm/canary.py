"""Canary exposure (the secret sharer, Carlini et al. 2019): how much a model memorised an inserted secret.

A canary is a text of a fixed format with a random secret, e.g. ``"my pin is 281945"`` drawn from
the space R of all 6-digit secrets. Insert it (possibly repeated) into the training text, train,
then rank the canary's log-perplexity among all candidates of R:

    exposure = log2 |R| - log2 rank

Exact by enumerating R when it is small; for a large R the candidates' log-perplexities are
sampled and a skew-normal fitted to them (``scipy.stats.skewnorm``), exposure = -log2 P(ppl <=
ppl_canary) under the fit (Carlini et al. 2019, sec. 4.3). A model that did not memorise the
canary has exposure near 1 (a random rank has E[log2 |R| - log2 rank] ~ 1.44); its maximum is
log2 |R|.

    spec = CanarySpec(prefix="my pin is ", alphabet="0123456789", length=6)
    canaries = spec.sample(3, rng=0)
    rows = exposure(target, canaries, spec)          # one dict per canary
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from audit_sdk.errors import InvalidParameterError
from audit_sdk.rng import as_generator
from audit_sdk.sequence import SequenceTarget

from .text import encode_texts, get_tokenizer

__all__ = ["CanarySpec", "exposure", "insert_canaries", "log_perplexities"]


@dataclass(frozen=True)
class CanarySpec:
    """The format of canaries: ``prefix + secret + suffix``, the secret ``length`` symbols of ``alphabet``."""

    prefix: str = "my secret code is "
    alphabet: str = "0123456789"
    length: int = 6
    suffix: str = ""

    def __post_init__(self) -> None:
        if self.length < 1 or len(set(self.alphabet)) != len(self.alphabet) or len(self.alphabet) < 2:
            raise InvalidParameterError(f"canary format needs length >= 1 and 2+ distinct symbols; got {self.length}, {self.alphabet!r}.")

    @property
    def space_size(self) -> int:
        """|R|: the number of possible secrets."""
        return len(self.alphabet) ** self.length

    def texts(self, codes: np.ndarray) -> list[str]:
        """Canary texts of secret indices ``codes`` (base-|alphabet| digits, most significant first)."""
        k = len(self.alphabet)
        digits = (np.asarray(codes, dtype=np.int64)[:, None] // k ** np.arange(self.length - 1, -1, -1)) % k
        table = np.array(list(self.alphabet))
        return [self.prefix + "".join(row) + self.suffix for row in table[digits]]

    def sample(self, n: int, *, rng: Any = None) -> list[str]:
        """``n`` distinct random canaries."""
        gen = as_generator(rng)
        return self.texts(gen.choice(self.space_size, size=n, replace=False) if self.space_size < 2**62 else gen.integers(0, 2**62, n))

    def code_of(self, text: str) -> int:
        secret = text[len(self.prefix) : len(text) - len(self.suffix) if self.suffix else None]
        if not (text.startswith(self.prefix) and text.endswith(self.suffix)) or len(secret) != self.length:
            raise InvalidParameterError(
                f"{text!r} does not have the canary format {self.prefix!r} + {self.length} symbols + {self.suffix!r}."
            )
        k = len(self.alphabet)
        return sum(self.alphabet.index(ch) * k ** (self.length - 1 - i) for i, ch in enumerate(secret))


def insert_canaries(texts: list[str], canaries: list[str], *, repeats: int = 1, rng: Any = None) -> list[str]:
    """The training texts with each canary added ``repeats`` times, at random positions."""
    out = list(texts) + [c for c in canaries for _ in range(repeats)]
    order = as_generator(rng).permutation(len(out))
    return [out[i] for i in order]


def log_perplexities(target: SequenceTarget, texts: list[str], tokenizer: Any = "byte") -> np.ndarray:
    """Total negative log-likelihood (bits) of each text under ``target`` (Carlini et al.'s log-perplexity)."""
    st = target.token_stats(encode_texts(texts, tokenizer))
    return -np.nansum(st.logp, axis=1) / math.log(2)


def exposure(
    target: SequenceTarget,
    canaries: list[str],
    spec: CanarySpec,
    *,
    tokenizer: Any = "byte",
    method: str = "auto",
    n_samples: int = 5000,
    max_enumerate: int = 20000,
    rng: Any = None,
) -> list[dict[str, Any]]:
    """Exposure of each canary (bits), with the method that estimated it.

    Args:
        method: ``enumerate`` (exact rank over all of R), ``skewnorm`` (a skew-normal fitted to
            ``n_samples`` sampled candidates), or ``auto`` (enumerate when |R| <= ``max_enumerate``).

    Returns:
        per canary: ``canary``, ``exposure``, ``method``, ``space_size``, ``log_perplexity`` and, when
        sampled, ``sampled_exposure`` (the empirical rank among the samples, capped at log2 of their number).
    """
    tok = get_tokenizer(tokenizer)
    if method not in ("auto", "enumerate", "skewnorm"):
        raise InvalidParameterError(f"method must be 'auto', 'enumerate' or 'skewnorm'; got {method!r}.")
    R = spec.space_size
    use_enum = method == "enumerate" or (method == "auto" and R <= max_enumerate)
    can_ppl = log_perplexities(target, canaries, tok)
    codes = [spec.code_of(c) for c in canaries]
    out: list[dict[str, Any]] = []
    if use_enum:
        if R > 10 * max_enumerate and method == "enumerate":
            raise InvalidParameterError(f"enumerating |R| = {R} candidates is too slow; use method='skewnorm'.")
        ppl = log_perplexities(target, spec.texts(np.arange(R)), tok)
        for c, code, cp in zip(canaries, codes, can_ppl):
            rank = 1 + int(np.sum(ppl < ppl[code]))  # ties resolved in the canary's favour
            out.append(
                {
                    "canary": c,
                    "exposure": math.log2(R) - math.log2(rank),
                    "rank": rank,
                    "method": "enumerate",
                    "space_size": R,
                    "log_perplexity": float(cp),
                }
            )
        return out
    from scipy.stats import skewnorm

    gen = as_generator(rng)
    sample_codes = gen.integers(0, R, size=n_samples) if R > 2**62 else gen.choice(R, size=min(n_samples, R), replace=False)
    ppl = log_perplexities(target, spec.texts(sample_codes), tok)
    a, loc, scale = skewnorm.fit(ppl)
    for c, code, cp in zip(canaries, codes, can_ppl):
        others = ppl[sample_codes != code]
        log_cdf = float(skewnorm.logcdf(cp, a, loc, scale))
        fitted = min(math.log2(R), -log_cdf / math.log(2))
        empirical = -math.log2((1 + np.sum(others < cp)) / (len(others) + 1))
        out.append(
            {
                "canary": c,
                "exposure": max(0.0, fitted),
                "method": "skewnorm",
                "space_size": R,
                "log_perplexity": float(cp),
                "sampled_exposure": float(empirical),
                "n_samples": int(len(others)),
            }
        )
    return out
