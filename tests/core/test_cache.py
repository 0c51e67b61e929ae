"""ResultCache: safe round trips (no pickle), atomic entries, misses on damage, namespaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audit_sdk.cache import ResultCache, decode_tree, encode_tree
from audit_sdk.errors import InvalidParameterError


def test_round_trip_of_nested_values(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    value = {
        "w": np.arange(6, dtype=np.float32).reshape(2, 3),
        "names": np.array(["a", "bc"]),
        "n": 3,
        "eps": 1.5,
        "nan": float("nan"),
        "flag": True,
        "none": None,
        "s": "text",
        "np_scalar": np.float64(2.25),
        "pair": (1, np.int64(7)),
        "seq": [np.ones(2), {"inner": "x"}],
        "__array__": "a user key that looks like ours",
    }
    cache.put("k/../1 weird key", value)
    hit, back = cache.get("k/../1 weird key")
    assert hit
    np.testing.assert_array_equal(back["w"], value["w"])
    assert back["w"].dtype == np.float32
    assert back["names"].tolist() == ["a", "bc"]
    assert back["n"] == 3 and back["eps"] == 1.5 and np.isnan(back["nan"]) and back["flag"] is True and back["none"] is None
    assert isinstance(back["np_scalar"], np.float64) and back["np_scalar"] == 2.25
    assert back["pair"] == (1, 7) and isinstance(back["pair"], tuple)
    np.testing.assert_array_equal(back["seq"][0], np.ones(2))
    assert back["seq"][1] == {"inner": "x"}
    assert back["__array__"] == value["__array__"]
    assert all(p.parent == tmp_path for p in tmp_path.iterdir())  # the key cannot escape the directory
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_torch_state_dict_round_trip(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(3, 2)
    sd = {k: v.clone() for k, v in model.state_dict().items()} | {"half": torch.ones(2, dtype=torch.bfloat16)}
    cache = ResultCache(tmp_path)
    cache.put("model", sd)
    hit, back = cache.get("model")
    assert hit and set(back) == set(sd)
    for k in sd:
        assert isinstance(back[k], torch.Tensor) and back[k].dtype == sd[k].dtype
        assert torch.equal(back[k], sd[k])


def test_entries_are_loaded_without_pickle(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    path = cache.put("k", {"a": np.zeros(2)})
    with np.load(path, allow_pickle=False) as f:  # would raise if anything needed pickle
        assert "__meta__" in f.files


def test_unsupported_values_are_refused_with_a_hint(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    with pytest.raises(InvalidParameterError, match=r"cannot cache a set at result\['x'\].*codec="):
        cache.put("k", {"x": {1, 2}})
    with pytest.raises(InvalidParameterError, match="object array"):
        cache.put("k", np.array([object()], dtype=object))
    with pytest.raises(InvalidParameterError, match="non-string keys"):
        cache.put("k", {1: 2})
    assert cache.get("k") == (False, None)


def test_codec_stores_custom_objects(tmp_path: Path) -> None:
    class Box:
        def __init__(self, v: np.ndarray) -> None:
            self.v = v

    cache = ResultCache(tmp_path, codec=(lambda b: {"v": b.v}, lambda t: Box(t["v"])))
    cache.put("b", Box(np.arange(3)))
    hit, back = cache.get("b")
    assert hit and isinstance(back, Box) and back.v.tolist() == [0, 1, 2]


def test_damaged_or_foreign_entries_are_misses(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    path = cache.put("k", np.arange(3))
    path.write_bytes(path.read_bytes()[:40])  # truncated, as after a crash without atomic writes
    assert cache.get("k") == (False, None)
    other = cache.put("other", np.arange(3))
    other.replace(cache.path_for("k"))  # another key's content under k's file name
    assert cache.get("k") == (False, None)
    cache.put("k", np.arange(4))
    assert cache.get("k")[1].tolist() == [0, 1, 2, 3]


def test_namespaces_do_not_share_entries(tmp_path: Path) -> None:
    a = ResultCache(tmp_path, namespace="train")
    b = a.with_namespace("score")
    a.put("k", 1)
    assert b.get("k") == (False, None)
    assert a.keys_present(["k", "z"]) == ["k"]
    a.delete("k")
    assert "k" not in a


def test_encode_tree_separates_arrays() -> None:
    skel, arrays = encode_tree({"x": np.ones(3), "y": [1, 2]})
    assert skel == {"__dict__": {"x": {"__array__": "a0"}, "y": [1, 2]}}
    assert decode_tree(skel, arrays)["x"].tolist() == [1, 1, 1]


def test_a_damaged_entry_is_deleted_and_noted(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    for damage in (b"", b"PK\x03\x04 not really"):
        path = cache.put("k", np.arange(3))
        path.write_bytes(damage)
        assert cache.get("k") == (False, None)
        assert not path.exists()  # deleted, so the recomputed result replaces it
    assert len(cache.notes) == 2 and "could not be loaded" in cache.notes[0] and "recomputing" in cache.notes[0]


def test_executor_recomputes_a_damaged_entry(tmp_path: Path) -> None:
    from audit_sdk.executor import LocalExecutor

    from ._executor_tasks import square  # type: ignore[import-not-found]

    ex = LocalExecutor(1, cache_dir=tmp_path)
    assert ex.map(square, [(2,), (3,)], keys=["a", "b"]) == [4, 9]
    for entry in tmp_path.glob("a-*.npz"):
        entry.write_bytes(b"")
    assert ex.map(square, [(2,), (3,)], keys=["a", "b"]) == [4, 9]
    assert ex.last_stats.cached == 1 and ex.last_stats.computed == 1
    assert ex.cache is not None and any("'a'" in n for n in ex.cache.notes)
