"""The one atomic-write helper: a failed write leaves the previous file and no debris."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from audit_sdk.fileio import atomic_path, atomic_write, write_text_atomic


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "report.json", json.dumps({"v": 1}))
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(path, "w") as fh:
        fh.write('{"v": 2, "half')
        raise RuntimeError("disk full")
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary file left


def test_binary_writers_and_modes(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "sub" / "a.npz") as fh:  # folders are created
        np.savez(fh, x=np.arange(3))
    with np.load(tmp_path / "sub" / "a.npz") as z:
        assert z["x"].tolist() == [0, 1, 2]
    mode = stat.S_IMODE(os.stat(tmp_path / "sub" / "a.npz").st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # as open() would have made it, not mkstemp's 0600
    with atomic_path(tmp_path / "m.onnx", suffix=".onnx") as tmp:
        assert tmp.name.endswith(".onnx") and tmp.parent == tmp_path
        tmp.write_bytes(b"model")
    assert (tmp_path / "m.onnx").read_bytes() == b"model"


def test_report_json_goes_through_it(tmp_path: Path, monkeypatch) -> None:
    import audit_sdk.fileio as fileio
    from audit_sdk.run import AuditReport

    calls = []
    real = fileio.write_text_atomic
    monkeypatch.setattr(fileio, "write_text_atomic", lambda p, t, **k: calls.append(p) or real(p, t, **k))
    AuditReport(target={}, data={}, results=[]).to_json(tmp_path / "report.json")
    assert calls == [tmp_path / "report.json"]
