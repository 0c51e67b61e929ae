"""Signed files: only what this user's runs wrote is read back (no planted pickle is ever unpickled)."""

from __future__ import annotations

import os
import pickle
import stat

import numpy as np
import pytest

from audit_sdk.errors import InvalidDataError
from audit_sdk.signing import key_path, read_signed, write_signed


@pytest.fixture
def own_key(tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIT_SDK_KEY_FILE", str(tmp_path / "keys" / "cache.key"))
    return tmp_path / "keys" / "cache.key"


def test_round_trip_and_a_private_key(own_key, tmp_path) -> None:
    write_signed(tmp_path / "m.pkl", b"payload")
    assert read_signed(tmp_path / "m.pkl") == b"payload"
    assert key_path() == own_key and len(own_key.read_bytes()) == 32
    assert stat.S_IMODE(os.stat(own_key).st_mode) == 0o600


def test_a_planted_altered_or_foreign_file_is_refused(own_key, tmp_path, monkeypatch) -> None:
    planted = tmp_path / "planted.pkl"
    planted.write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(InvalidDataError, match="not a file audit-sdk signed"):
        read_signed(planted)
    path = write_signed(tmp_path / "m.pkl", b"model bytes")
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(InvalidDataError, match="signature mismatch"):
        read_signed(path)
    write_signed(tmp_path / "mine.pkl", b"model bytes")
    monkeypatch.setenv("AUDIT_SDK_KEY_FILE", str(tmp_path / "other" / "cache.key"))  # another user's key
    with pytest.raises(InvalidDataError, match="signature mismatch"):
        read_signed(tmp_path / "mine.pkl")


def test_a_planted_pickle_in_the_reference_cache_is_deleted_not_unpickled(own_key, tmp_path) -> None:
    from sklearn.datasets import load_digits

    from audit_sdk.training import make_trainer

    d = load_digits()
    x, y = (d.data / 16).astype(np.float32)[:200], d.target[:200]
    trainer = make_trainer(
        {"family": "sklearn", "estimator": "LogisticRegression", "params": {"max_iter": 200}}, {"input_shape": (64,), "n_classes": 10}
    )
    model = trainer.fit(trainer.build(0), x, y, seed=0)
    path = str(tmp_path / f"ref{trainer.file_suffix}")
    trainer.save(model, path)
    np.testing.assert_allclose(trainer.predict_proba(trainer.load(path, 0), x), trainer.predict_proba(model, x))

    class Boom:
        def __reduce__(self):
            return (os.mkdir, (str(tmp_path / "code-ran"),))

    with open(path, "wb") as fh:
        pickle.dump(Boom(), fh)
    with pytest.raises(InvalidDataError):
        trainer.load(path, 0)
    assert not (tmp_path / "code-ran").exists()
