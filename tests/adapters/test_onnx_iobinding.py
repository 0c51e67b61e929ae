"""OnnxTarget's IOBinding path (used on CUDA) gives the same numbers as session.run; GPU checks skip without CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audit_sdk.adapters.onnx import OnnxTarget


@pytest.fixture(scope="module")
def linear_onnx(tmp_path_factory) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.normal(size=(5, 3)).astype(np.float32)
    b = rng.normal(size=3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 3])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "linear.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def test_io_binding_matches_plain_run_on_cpu(linear_onnx: Path) -> None:
    x = np.random.default_rng(1).normal(size=(257, 5)).astype(np.float32)
    y = np.random.default_rng(2).integers(0, 3, size=257)
    plain = OnnxTarget(linear_onnx, device="cpu", batch_size=100)
    bound = OnnxTarget(linear_onnx, device="cpu", batch_size=100, io_binding=True)
    assert plain.io_binding is False and bound.io_binding is True  # auto: only on CUDA
    assert bound.describe()["io_binding"] is True
    np.testing.assert_array_equal(bound.logits(x), plain.logits(x))
    np.testing.assert_array_equal(bound.loss(x, y), plain.loss(x, y))
    np.testing.assert_array_equal(bound.logits(x[:, :5][::2]), plain.logits(x[::2]))  # non-contiguous input


@pytest.mark.gpu
def test_cuda_session_uses_io_binding_and_matches_cpu(linear_onnx: Path) -> None:
    x = np.random.default_rng(1).normal(size=(4096, 5)).astype(np.float32)
    gpu = OnnxTarget(linear_onnx, device="cuda")
    cpu = OnnxTarget(linear_onnx, device="cpu")
    assert gpu.providers[0] == "CUDAExecutionProvider" and gpu.io_binding is True
    np.testing.assert_allclose(gpu.predict_proba(x), cpu.predict_proba(x), rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
def test_torch_training_runs_on_cuda_by_default() -> None:
    from audit_sdk.adapters.torch import TrainConfig, Trainer, make_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 10, size=256)
    model = make_model("mlp", input_shape=(1, 8, 8), n_classes=10, seed=0)
    result = Trainer(TrainConfig(epochs=2, device="auto")).fit(model, x, y)
    assert next(result.model.parameters()).device.type == "cuda"
    assert all(h["loss"] is not None and np.isfinite(h["loss"]) for h in result.history)
