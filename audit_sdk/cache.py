"""An on-disk cache of task results, keyed by task keys, stored without pickle.

    cache = ResultCache("runs/cache")
    cache.put("ref-0007", {"losses": losses, "epochs": 20})
    hit, value = cache.get("ref-0007")

Executors use one (``LocalExecutor(cache_dir=...)``) so that a crashed or cancelled run resumes and
nothing that finished is computed again. Each entry is one ``.npz`` file, written to a temporary
name and renamed into place (atomic on POSIX and Windows), so a crash never leaves a half-written
entry that looks valid.

A result is stored as a JSON skeleton plus the numpy arrays it holds. Supported values: ``None``,
``bool``, ``int``, ``float``, ``str``, numpy arrays and scalars, torch tensors (restored as tensors;
torch is imported only then), and lists, tuples and ``str``-keyed dicts of these (a torch
``state_dict`` is such a dict). Loading never unpickles (``np.load(allow_pickle=False)``), so a
cache directory someone else wrote cannot run code. Anything else needs a ``codec``: a pair of
functions that turn the value into a supported tree and back.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidParameterError
from .fileio import atomic_write

__all__ = ["ResultCache", "decode_tree", "encode_tree"]

_META = "__meta__"
_FORMAT = 1


def _is_tensor(v: Any) -> bool:
    return type(v).__module__.split(".")[0] == "torch" and hasattr(v, "detach") and hasattr(v, "dtype")


def encode_tree(value: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """Split ``value`` into a JSON-able skeleton and the arrays it references.

    Raises:
        InvalidParameterError: a value of an unsupported type (the message names its path).
    """
    arrays: dict[str, np.ndarray] = {}

    def enc(v: Any, where: str) -> Any:
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, np.generic):
            return v
        if isinstance(v, np.ndarray):
            if v.dtype.hasobject:
                raise InvalidParameterError(f"cannot cache an object array at {where}; store numeric or string arrays.")
            name = f"a{len(arrays)}"
            arrays[name] = np.ascontiguousarray(v)
            return {"__array__": name}
        if isinstance(v, np.generic):
            name = f"a{len(arrays)}"
            arrays[name] = np.asarray(v)
            return {"__scalar__": name}
        if _is_tensor(v):
            t = v.detach().cpu()
            dtype = str(t.dtype)
            if dtype == "torch.bfloat16":  # numpy has no bfloat16; float32 holds it exactly
                t = t.float()
            name = f"a{len(arrays)}"
            arrays[name] = t.numpy()
            return {"__tensor__": name, "dtype": dtype}
        if isinstance(v, tuple):
            return {"__tuple__": [enc(x, f"{where}[{i}]") for i, x in enumerate(v)]}
        if isinstance(v, list):
            return [enc(x, f"{where}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, dict):
            bad = [k for k in v if not isinstance(k, str)]
            if bad:
                raise InvalidParameterError(f"cannot cache a dict with non-string keys at {where} (e.g. {bad[0]!r}); use str keys.")
            return {"__dict__": {k: enc(x, f"{where}[{k!r}]") for k, x in v.items()}}
        raise InvalidParameterError(
            f"cannot cache a {type(v).__name__} at {where}: the result cache stores numbers, strings, None, numpy "
            "arrays, torch tensors and lists/tuples/dicts of them (no pickle). Return one of those from the task, "
            "or pass codec=(to_tree, from_tree) to the cache."
        )

    return enc(value, "result"), arrays


def decode_tree(skeleton: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Rebuild a value from ``encode_tree``'s output."""

    def dec(s: Any) -> Any:
        if isinstance(s, list):
            return [dec(x) for x in s]
        if not isinstance(s, dict):
            return s
        if "__array__" in s:
            return arrays[s["__array__"]]
        if "__scalar__" in s:
            return arrays[s["__scalar__"]][()]
        if "__tensor__" in s:
            import torch

            t = torch.from_numpy(np.array(arrays[s["__tensor__"]]))
            return t.to(getattr(torch, s["dtype"].split(".")[-1]))
        if "__tuple__" in s:
            return tuple(dec(x) for x in s["__tuple__"])
        return {k: dec(x) for k, x in s["__dict__"].items()}

    return dec(skeleton)


class ResultCache:
    """Task results on disk, one atomic ``.npz`` file per key.

    Args:
        directory: where entries live (created when missing).
        namespace: prefix mixed into every key, e.g. the task function's qualified name, so two
            kinds of task with the same keys never share entries.
        codec: ``(to_tree, from_tree)`` for results that are not already cache-safe trees.

    Example:
        cache = ResultCache(tmp / "cache")
        cache.put("k", np.arange(3)); cache.get("k")  # (True, array([0, 1, 2]))
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        namespace: str = "",
        codec: tuple[Callable[[Any], Any], Callable[[Any], Any]] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.codec = codec
        #: what the cache repaired (damaged entries deleted), for the run's notes
        self.notes: list[str] = []

    def with_namespace(self, namespace: str) -> ResultCache:
        """The same directory and codec under another namespace."""
        other = ResultCache(self.directory, namespace=namespace, codec=self.codec)
        other.notes = self.notes  # one list: repairs under any namespace reach the owner's notes
        return other

    def path_for(self, key: str) -> Path:
        """The file that holds ``key`` (readable prefix + hash, so any key is a safe file name)."""
        full = f"{self.namespace}\x00{key}"
        digest = hashlib.sha256(full.encode()).hexdigest()[:24]
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(key))[:48]
        return self.directory / f"{stem}-{digest}.npz"

    def __contains__(self, key: str) -> bool:
        return self.get(key)[0]

    def get(self, key: str) -> tuple[bool, Any]:
        """Return ``(True, value)`` for a stored key, else ``(False, None)``.

        An unreadable entry (empty, truncated or damaged file, one that fails to decode) is
        deleted and counts as a miss, so the task runs again and rewrites it; a note is added to
        ``notes``. A foreign entry (another key's content) is a miss and is left alone.
        """
        path = self.path_for(key)
        if not path.is_file():
            return False, None
        try:
            # our own handle: np.load leaks its file when a damaged archive makes it raise
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:
                meta = json.loads(str(f[_META][()]))
                if meta.get("format") != _FORMAT or meta.get("key") != key or meta.get("namespace") != self.namespace:
                    return False, None
                arrays = {k: f[k] for k in f.files if k != _META}
            value = decode_tree(meta["value"], arrays)
            if self.codec is not None:
                value = self.codec[1](value)
        except Exception as exc:  # noqa: BLE001 - any damage means "recompute", never a failed run
            self._heal(path, key, exc)
            return False, None
        return True, value

    def _heal(self, path: Path, key: str, exc: BaseException) -> None:
        path.unlink(missing_ok=True)
        self.notes.append(f"cache entry {key!r} ({path.name}) could not be loaded ({type(exc).__name__}: {exc}); deleted, recomputing it")

    def put(self, key: str, value: Any) -> Path:
        """Store ``value`` under ``key`` atomically; return the entry's path.

        Raises:
            InvalidParameterError: the value cannot be stored without pickle (see the module docstring).
        """
        tree = self.codec[0](value) if self.codec is not None else value
        skeleton, arrays = encode_tree(tree)
        meta = json.dumps({"format": _FORMAT, "key": key, "namespace": self.namespace, "value": skeleton})
        path = self.path_for(key)
        with atomic_write(path) as fh:
            np.savez(fh, **{_META: np.array(meta)}, **arrays)  # type: ignore[arg-type]
        return path

    def delete(self, key: str) -> None:
        """Forget ``key`` (no error when absent)."""
        self.path_for(key).unlink(missing_ok=True)

    def keys_present(self, keys: list[str]) -> list[str]:
        """Which of ``keys`` have a readable entry."""
        return [k for k in keys if self.get(k)[0]]
