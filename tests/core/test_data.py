"""AuditData validation and the loaders, on small files the tests write."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

import audit_sdk
from audit_sdk.data import AuditData, Split, load_cifar_binary, load_image_folder, load_mnist_idx, load_npz, make_audit_data, save_npz
from audit_sdk.errors import InvalidDataError


def _xy(n, shape=(1, 4, 4), k=3, seed=0):
    g = np.random.default_rng(seed)
    return g.random((n, *shape)).astype(np.float32), g.integers(0, k, n)


def test_valid_data_and_summary():
    d = AuditData(_xy(5), _xy(6, seed=1), _xy(7, seed=2))
    assert d.summary() == {"members": 5, "non_members": 6, "population": 7, "feature_shape": [1, 4, 4], "n_classes": d.n_classes}
    x, y, truth = d.combined()
    assert x.shape == (11, 1, 4, 4) and truth.sum() == 5


def test_every_problem_is_reported_at_once():
    x, y = _xy(4)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidDataError) as info:
        AuditData((x, y[:3]), (np.zeros((0, 1, 4, 4)), np.zeros(0, int)))
    msg = str(info.value)
    assert "members: 4 feature rows but 3 labels" in msg
    assert "members: 1 rows contain NaN or inf" in msg
    assert "non_members: is empty" in msg


@pytest.mark.parametrize(
    "members, match",
    [
        ((np.array(["a", "b"]).reshape(2, 1), np.array([0, 1])), "features have dtype"),
        ((np.zeros((2, 3)), np.array([0.5, 1.0])), "non-integer floats"),
        ((np.zeros((2, 3)), np.array(["x", "y"])), "encode string labels"),
        ((np.zeros((2, 3)), np.array([-1, 0])), "negative"),
        ((np.zeros(3), np.array([0, 1, 2])), "at least 2 dimensions"),
        ((np.full((2, 3), np.inf), np.array([0, 1])), "NaN or inf"),
    ],
)
def test_bad_inputs_are_named(members, match):
    with pytest.raises(InvalidDataError, match=match):
        AuditData(members, (np.ones((2, 3)), np.array([0, 1])))


def test_shapes_must_agree_and_labels_fit_n_classes():
    with pytest.raises(InvalidDataError, match="feature shapes differ"):
        AuditData(_xy(3), _xy(3, shape=(1, 5, 5)))
    with pytest.raises(InvalidDataError, match="labels go up to 2 but n_classes=2"):
        AuditData(_xy(30), _xy(30, seed=1), n_classes=2)


def test_overlap_between_members_and_non_members_is_refused():
    x, y = _xy(5)
    with pytest.raises(InvalidDataError, match="2 feature rows appear in both"):
        AuditData((x, y), (x[:2], y[:2]))
    assert len(AuditData((x, y), (x[:2], y[:2]), check_disjoint=False).non_members) == 2


def test_npz_round_trip_and_errors(tmp_path):
    d = AuditData(_xy(5), _xy(6, seed=1), _xy(7, seed=2))
    p = save_npz(d, tmp_path / "d.npz")
    back = load_npz(p)
    np.testing.assert_array_equal(back.population.x, d.population.x)
    with pytest.raises(InvalidDataError, match="does not exist"):
        load_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "partial.npz", x_members=np.zeros((2, 2)))
    with pytest.raises(InvalidDataError, match=r"missing keys \['y_members'"):
        load_npz(tmp_path / "partial.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    with pytest.raises(InvalidDataError, match="not a readable .npz"):
        load_npz(tmp_path / "garbage.npz")
    obj = np.empty(2, dtype=object)
    np.savez(tmp_path / "pickled.npz", x_members=obj, y_members=obj, x_non_members=obj, y_non_members=obj)
    with pytest.raises(InvalidDataError, match="no pickle"):
        load_npz(tmp_path / "pickled.npz")


def _write_idx(path, arr, gz=False):
    code = {np.dtype(np.uint8): 0x08}[arr.dtype]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    raw = header + arr.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx(tmp_path, gz):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([0, 1, 2, 3, 9], dtype=np.uint8)
    _write_idx(tmp_path / "i", imgs, gz)
    _write_idx(tmp_path / "l", labels, gz)
    s = load_mnist_idx(tmp_path / "i", tmp_path / "l")
    assert s.x.shape == (5, 1, 28, 28) and s.x.dtype == np.float32
    np.testing.assert_allclose(s.x[:, 0] * 255, imgs, atol=1e-4)
    np.testing.assert_array_equal(s.y, labels)


def test_mnist_idx_errors(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(InvalidDataError, match="bad magic"):
        load_mnist_idx(tmp_path / "bad", tmp_path / "bad")
    imgs = np.zeros((2, 3, 3), np.uint8)
    _write_idx(tmp_path / "i", imgs)
    (tmp_path / "t").write_bytes((tmp_path / "i").read_bytes()[:-3])
    with pytest.raises(InvalidDataError, match="truncated"):
        load_mnist_idx(tmp_path / "t", tmp_path / "i")


@pytest.mark.parametrize("cifar100", [False, True])
def test_cifar_binary(tmp_path, cifar100):
    g = np.random.default_rng(0)
    n, nlab = 4, (2 if cifar100 else 1)
    labels = g.integers(0, 10, (n, nlab), dtype=np.uint8)
    pix = g.integers(0, 256, (n, 3072), dtype=np.uint8)
    (tmp_path / "b.bin").write_bytes(np.concatenate([labels, pix], axis=1).tobytes())
    s = load_cifar_binary(tmp_path / "b.bin", cifar100=cifar100)
    assert s.x.shape == (n, 3, 32, 32)
    np.testing.assert_array_equal(s.y, labels[:, -1])
    np.testing.assert_allclose(s.x.reshape(n, -1) * 255, pix, atol=1e-3)
    with pytest.raises(InvalidDataError, match="not a multiple"):
        load_cifar_binary(tmp_path / "b.bin", cifar100=not cifar100) if not cifar100 else load_cifar_binary(tmp_path / "b.bin")


def test_image_folder_png_and_npy(tmp_path):
    from PIL import Image

    g = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(2):
            Image.fromarray(g.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(tmp_path / cls / f"{i}.png")
    s, classes = load_image_folder(tmp_path)
    assert classes == ["cat", "dog"] and s.x.shape == (4, 3, 6, 5) and list(s.y) == [0, 0, 1, 1]
    assert 0 <= s.x.min() and s.x.max() <= 1
    gray = tmp_path / "gray"
    (gray / "a").mkdir(parents=True)
    np.save(gray / "a" / "x.npy", g.random((7, 9)).astype(np.float32))
    s2, _ = load_image_folder(gray)
    assert s2.x.shape == (1, 1, 7, 9)
    with pytest.raises(InvalidDataError, match="no class sub-directories"):
        load_image_folder(tmp_path / "cat")


def test_digits_and_make_audit_data():
    d = audit_sdk.load_digits_data()
    assert d.x.shape == (1797, 1, 8, 8) and d.x.max() <= 1.0
    data, idx = make_audit_data(d, n_members=100, n_non_members=100, n_population=50, rng=3)
    assert len(set(idx.tolist())) == 250
    assert data.summary()["population"] == 50
    again, idx2 = make_audit_data(d, n_members=100, n_non_members=100, n_population=50, rng=3)
    np.testing.assert_array_equal(idx, idx2)
    with pytest.raises(InvalidDataError, match="distinct samples"):
        make_audit_data(Split(d.x[:10], d.y[:10]), n_members=8, n_non_members=8)


def test_shared_rows_are_found_by_value_not_by_storage():
    # issue 15: the same sample stored as uint8 and float32, or with -0.0, is still shared
    from audit_sdk.errors import InvalidDataError

    x = np.arange(40, dtype=np.uint8).reshape(10, 4)
    y = np.zeros(10, int)
    with pytest.raises(InvalidDataError, match="1 feature rows appear in both members and non-members"):
        AuditData((x[:5], y[:5]), (np.r_[x[5:9], x[:1]].astype(np.float32), y[5:]))
    with pytest.raises(InvalidDataError, match="both members and non-members"):
        AuditData((np.zeros((1, 4), np.float32), y[:1]), (np.full((1, 4), -0.0, np.float32), y[:1]))
    with pytest.raises(InvalidDataError, match="population and the members"):
        AuditData((x[:5], y[:5]), (x[5:8], y[5:8]), (np.r_[x[8:], x[:1]], y[:3]))
    ok = AuditData((x[:5], y[:5]), (x[5:8], y[5:8]), (x[8:], y[8:]))
    assert len(ok.population) == 2


def test_npz_caps_and_truncation(tmp_path):
    from audit_sdk.errors import InvalidDataError

    x = np.random.default_rng(0).random((100, 8))
    y = np.arange(100) % 3
    p = tmp_path / "d.npz"
    np.savez(p, x_members=x[:50], y_members=y[:50], x_non_members=x[50:], y_non_members=y[50:])
    assert len(load_npz(p).members) == 50
    with pytest.raises(InvalidDataError, match=r"over the 0 MiB cap.*AUDIT_SDK_MAX_DATA_BYTES"):
        load_npz(p, max_bytes=1000)
    np.savez(p, x_members=x[:50], y_members=y[:50], x_non_members=x[50:], y_non_members=y[50:], x_population=x[:2])
    with pytest.raises(InvalidDataError, match=r"missing keys \['y_population'\]"):
        load_npz(p)


def test_overlap_is_reported_beside_other_problems():
    import numpy as np

    from audit_sdk import AuditData
    from audit_sdk.errors import InvalidDataError

    x = np.random.default_rng(0).random((10, 4)).astype("float32")
    with pytest.raises(InvalidDataError, match=r"negative values .*10 feature rows appear in both members and non-members"):
        AuditData((x, np.zeros(10, int)), (x, np.full(10, -1)))
