"""`audit-sdk audit --executor/--workers/--ray-address` build the run's executor (issue 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import audit_sdk.executors as executor_mod
from audit_sdk.cli import main
from audit_sdk.executor import LocalExecutor


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory) -> tuple[Path, Path]:
    from onnx import TensorProto, helper, numpy_helper

    tmp = tmp_path_factory.mktemp("scale-cli")
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    (tmp / "m.onnx").write_bytes(model.SerializeToString())
    x = rng.normal(size=(80, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=80)
    np.savez(tmp / "d.npz", x_members=x[:40], y_members=y[:40], x_non_members=x[40:], y_non_members=y[40:])
    return tmp / "m.onnx", tmp / "d.npz"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    seen: list[tuple] = []

    def spy(name: str = "local", *, workers=1, **options):
        seen.append((name, workers, options))
        return LocalExecutor(1)  # the audit itself runs inline; the spy only records the request

    monkeypatch.setattr(executor_mod, "make_executor", spy)
    return seen


def _audit(model_and_data, tmp_path, *flags: str) -> int:
    m, d = model_and_data
    return main(["audit", str(m), "--data", str(d), "--out", str(tmp_path), "--no-html", "--quiet", *flags])


def test_workers_flag_builds_a_local_pool(model_and_data, tmp_path, calls) -> None:
    assert _audit(model_and_data, tmp_path, "--executor", "local", "--workers", "2") == 0
    assert calls == [("local", 2, {})]
    assert (tmp_path / "report.json").is_file()


def test_ray_address_implies_ray(model_and_data, tmp_path, calls) -> None:
    assert _audit(model_and_data, tmp_path, "--ray-address", "auto") == 0
    assert calls == [("ray", 1, {"address": "auto"})]


def test_no_flags_use_the_config_or_the_inline_default(model_and_data, tmp_path, calls) -> None:
    assert _audit(model_and_data, tmp_path) == 0
    assert calls == [("local", 1, {})]  # no config, no flags: one inline worker


def test_bad_combinations_are_usage_errors(model_and_data, tmp_path, capsys) -> None:
    assert _audit(model_and_data, tmp_path, "--executor", "local", "--ray-address", "auto") == 2
    assert "needs the ray executor" in capsys.readouterr().err
    assert _audit(model_and_data, tmp_path, "--executor", "dask") == 2
    assert "invalid choice: 'dask'" in capsys.readouterr().err
