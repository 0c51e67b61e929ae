"""Randomness arrives as ``rng: np.random.Generator | int | None`` and is normalised here, once."""

from __future__ import annotations

import secrets

import numpy as np

from .errors import InvalidParameterError

RNGLike = np.random.Generator | int | None

__all__ = ["RNGLike", "as_generator", "derive_seed", "secure_generator"]


def as_generator(rng: RNGLike) -> np.random.Generator:
    """Normalise ``rng`` to a numpy Generator.

    Args:
        rng: a Generator (used as is), an int seed (reproducible), or None (fresh OS entropy).

    Raises:
        InvalidParameterError: for anything else, e.g. a float or a legacy RandomState.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise InvalidParameterError(f"rng seed must be >= 0; got {rng}. Pass a non-negative int seed.")
        return np.random.default_rng(int(rng))
    raise InvalidParameterError(
        f"rng must be a numpy Generator, an int seed or None; got {type(rng).__name__}. "
        "Use np.random.default_rng(seed) or pass the seed itself."
    )


def derive_seed(rng: RNGLike) -> int:
    """Draw a 63-bit seed from ``rng`` (for seeding another library, e.g. torch)."""
    return int(as_generator(rng).integers(0, 2**63 - 1))


def secure_generator() -> np.random.Generator:
    """A generator seeded with 256 bits from the OS's cryptographic source (``secrets``).

    Noise drawn from it cannot be replayed by someone who knows the code and the data: use it for
    DP noise in production (``secure_mode=True``). It is not reproducible by design.
    """
    return np.random.Generator(np.random.PCG64DXSM(secrets.randbits(256)))
