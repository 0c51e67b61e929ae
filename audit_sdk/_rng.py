"""Old private name of :mod:`audit_sdk.rng`, kept so code written against it keeps working."""

from .rng import RNGLike, as_generator, derive_seed, secure_generator

__all__ = ["RNGLike", "as_generator", "derive_seed", "secure_generator"]
