"""Hypothesis fuzz of data loading and configs: any input ends in a result or a typed error, never another exception."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from audit_sdk.config import load_config
from audit_sdk.data import AuditData, load_npz
from audit_sdk.errors import InvalidDataError, InvalidParameterError

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

dtypes = st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_, np.int8, np.float16, np.uint64, np.complex64, "U2"])
arrays = hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))


@FUZZ
@given(xm=arrays, ym=arrays, xn=arrays, yn=arrays)
def test_audit_data_accepts_or_names_the_problem(xm, ym, xn, yn):
    try:
        data = AuditData((xm, ym), (xn, yn))
    except InvalidDataError as exc:
        assert str(exc).startswith("invalid audit data:")
        return
    # accepted: then it is well-formed
    assert data.members.x.ndim >= 2 and data.members.y.ndim == 1 and len(data.members) > 0
    assert data.members.y.min() >= 0 and data.n_classes > int(max(data.members.y.max(), data.non_members.y.max()))


def _valid_npz() -> bytes:
    g = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(
        buf,
        x_members=g.random((4, 3), dtype=np.float32),
        y_members=np.arange(4) % 2,
        x_non_members=g.random((4, 3), dtype=np.float32) + 2,
        y_non_members=np.arange(4) % 2,
    )
    return buf.getvalue()


VALID = _valid_npz()


@FUZZ
@given(cut=st.integers(0, len(VALID)), flips=st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=4))
def test_damaged_npz_loads_or_fails_typed(cut, flips, tmp_path_factory):
    raw = bytearray(VALID[:cut] if cut < len(VALID) else VALID)
    for pos, value in flips:
        if pos < len(raw):
            raw[pos] = value
    path = Path(tmp_path_factory.mktemp("fuzz")) / "d.npz"
    path.write_bytes(bytes(raw))
    try:
        data = load_npz(path)
    except InvalidDataError:
        return
    assert len(data.members) == 4  # only an undamaged (or harmlessly damaged) file loads


@FUZZ
@given(header=st.dictionaries(st.sampled_from(["descr", "fortran_order", "shape"]), st.one_of(
    st.text(max_size=8), st.booleans(), st.tuples(st.integers(-5, 10**12)), st.integers())))  # fmt: skip
def test_lying_npy_headers_are_refused_before_allocating(header, tmp_path_factory):
    path = Path(tmp_path_factory.mktemp("fuzz")) / "d.npz"
    head = repr(header).encode()
    npy = b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head + b"\x00" * 16
    with zipfile.ZipFile(path, "w") as z:
        for key in ("x_members", "y_members", "x_non_members", "y_non_members"):
            z.writestr(key + ".npy", npy)
    with pytest.raises(InvalidDataError):
        load_npz(path)


yaml_text = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)


@FUZZ
@given(value=yaml_text)
def test_configs_load_or_fail_typed(value, tmp_path_factory):
    import yaml

    path = Path(tmp_path_factory.mktemp("fuzz")) / "c.yaml"
    path.write_text(yaml.safe_dump(value))
    try:
        load_config(path)
    except InvalidParameterError as exc:
        assert "\n" not in str(exc).strip() or len(str(exc)) < 5000


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_text_configs_load_or_fail_typed(text, tmp_path_factory):
    path = Path(tmp_path_factory.mktemp("fuzz")) / "c.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        load_config(path)
    except InvalidParameterError:
        pass
