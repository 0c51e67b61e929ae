"""Token data: the PAD-padded form, npz loading with lengths / masks, and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from audit_sdk import InvalidDataError, load_npz
from audit_sdk.sequence import PAD, pad_sequences, sequence_lengths, to_token_array


def test_pad_and_lengths():
    x = pad_sequences([[1, 2, 3], [4]])
    assert x.tolist() == [[1, 2, 3], [4, PAD, PAD]]
    assert sequence_lengths(x).tolist() == [3, 1]
    assert to_token_array([[5, 6, 0], [7, 0, 0]], lengths=[2, 1]).tolist() == [[5, 6, PAD], [7, PAD, PAD]]
    assert to_token_array([[5, 6, 0], [7, 0, 0]], mask=[[1, 1, 0], [1, 0, 0]]).tolist() == [[5, 6, PAD], [7, PAD, PAD]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mask": [[1, 0, 1], [1, 1, 1]]}, "not right padding"),
        ({"lengths": [4, 1]}, r"lengths must be \(n,\) integers in \[1, 3\]"),
        ({"lengths": [1, 1], "mask": [[1, 0, 0], [1, 0, 0]]}, "not both"),
    ],
)
def test_bad_token_arrays(kwargs, match):
    with pytest.raises(InvalidDataError, match=match):
        to_token_array([[1, 2, 3], [4, 5, 6]], **kwargs)
    with pytest.raises(InvalidDataError, match="negative token ids"):
        to_token_array([[1, -3, 2]])
    with pytest.raises(InvalidDataError, match="integer array"):
        to_token_array(np.zeros((2, 3), np.float32))


def test_load_npz_token_data_with_lengths_masks_and_no_labels(tmp_path):
    p = tmp_path / "text.npz"
    rng = np.random.default_rng(0)
    np.savez(
        p,
        x_members=rng.integers(0, 50, (4, 6)),
        len_members=np.array([6, 3, 2, 5]),
        x_non_members=rng.integers(0, 50, (3, 8)),
        mask_non_members=(np.arange(8)[None] < np.array([[8], [4], [2]])).astype(np.int8),
        x_population=pad_sequences([[1, 2], [3, 4, 5]]),
    )
    d = load_npz(p)
    assert d.members.x.shape == (4, 8) and d.non_members.x.shape == (3, 8) and d.population.x.shape == (2, 8)
    assert sequence_lengths(d.members.x).tolist() == [6, 3, 2, 5]
    assert sequence_lengths(d.non_members.x).tolist() == [8, 4, 2]
    assert (d.members.y == 0).all() and d.members.x.dtype == np.int64


def test_load_npz_token_data_errors_name_the_array(tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, x_members=np.ones((2, 3), np.int64), len_members=np.array([4, 1]), x_non_members=np.ones((2, 3), np.int64) * 2)
    with pytest.raises(InvalidDataError, match="x_members: lengths"):
        load_npz(p)
    np.savez(p, x_members=np.ones((2, 3), np.int64), len_members=np.array([3, 1]))
    with pytest.raises(InvalidDataError, match="x_non_members"):
        load_npz(p)
