"""Content digests: the one way the SDK names arrays, data and specs in cache keys (a leaf module).

A digest covers each array's dtype and shape as well as its bytes, so two arrays with the same
bytes but another layout never share a key.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .data import AuditData

__all__ = ["array_digest", "data_digest", "spec_digest"]


def _update(h: Any, a: Any) -> None:
    arr = np.ascontiguousarray(a)
    h.update(str((arr.dtype.str, arr.shape)).encode())
    h.update(arr.tobytes())


def array_digest(*arrays: Any, spec: Any = None, length: int = 64) -> str:
    """sha256 (hex, first ``length`` characters) of ``arrays`` and an optional JSON-able ``spec``."""
    h = hashlib.sha256()
    for a in arrays:
        _update(h, a)
    if spec is not None:
        h.update(json.dumps(spec, sort_keys=True, default=str).encode())
    return h.hexdigest()[:length]


def data_digest(data: AuditData, *, length: int = 64) -> str:
    """Digest of every split (members, non-members, population) of an AuditData, features and labels."""
    arrays = [a for s in (data.members, data.non_members, data.population) if s is not None for a in (s.x, s.y)]
    return array_digest(*arrays, length=length)


def spec_digest(spec: Any, *, length: int = 32) -> str:
    """sha256 (hex) of a JSON-able spec (keys sorted; anything else by ``str``), e.g. a cache key's parts."""
    text = spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]
