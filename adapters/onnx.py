"""ONNX Runtime adapter: audit an exported model as a black box.

    target = OnnxTarget("model.onnx", batch_size=2048)
    probs = target.predict_proba(x)

CUDA is used only when its provider really loads (probed once per process with onnxruntime's
logging silenced); otherwise the CPU provider runs with no provider-failure noise in the log.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import numpy as np

from audit_sdk._markers import hookimpl
from audit_sdk.errors import BackendUnavailableError, InvalidModelError, InvalidParameterError
from audit_sdk.target import Target

__all__ = ["OnnxTarget", "available_providers"]

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
}


def _ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailableError('ONNX models need onnxruntime: pip install "audit-sdk[onnx]".') from exc
    return ort


@functools.lru_cache(maxsize=1)
def available_providers() -> tuple[str, ...]:
    """Execution providers that really work here: CUDA only if a session can be created on it.

    onnxruntime-gpu lists CUDAExecutionProvider even without a GPU and then logs an error when it
    fails to load; we probe once, silently, on a one-node graph.
    """
    ort = _ort()
    listed = ort.get_available_providers()
    if "CUDAExecutionProvider" not in listed:
        return ("CPUExecutionProvider",)
    try:
        import ctypes.util

        if ctypes.util.find_library("cuda") is None and not Path("/dev/nvidia0").exists():
            return ("CPUExecutionProvider",)
        from onnx import TensorProto, helper

        node = helper.make_node("Identity", ["x"], ["y"])
        graph = helper.make_graph(
            [node],
            "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        so = ort.SessionOptions()
        so.log_severity_level = 4
        prev = 2
        ort.set_default_logger_severity(4)
        try:
            sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
            ok = "CUDAExecutionProvider" in sess.get_providers()
        finally:
            ort.set_default_logger_severity(prev)
        return ("CUDAExecutionProvider", "CPUExecutionProvider") if ok else ("CPUExecutionProvider",)
    except Exception:  # any failure to load CUDA means CPU, silently
        return ("CPUExecutionProvider",)


class OnnxTarget(Target):
    """A classifier exported to ONNX, queried through an onnxruntime InferenceSession.

    Args:
        path: the ``.onnx`` file.
        batch_size: inputs per ``session.run``.
        outputs: ``"logits"``, ``"probabilities"`` or ``"auto"`` (probabilities if every row of a
            probe batch is non-negative and sums to 1, else logits).
        output_index: which graph output holds the class scores.
        device: ``"auto"`` (CUDA when it really loads), ``"cpu"`` or ``"cuda"``.
        intra_op_threads: onnxruntime threads (0: its default).
        io_binding: run through an ``IOBinding`` (inputs copied to the device once per batch,
            outputs allocated there; None: only when the session runs on CUDA, where it saves
            onnxruntime's per-call staging copies). Same numbers either way.

    Raises:
        InvalidModelError: the file is missing, is not a valid ONNX model, or its output is not
            (batch, classes).
    """

    capabilities = frozenset({"labels", "probabilities", "logits"})

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 1024,
        outputs: Literal["auto", "logits", "probabilities"] = "auto",
        output_index: int = 0,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        intra_op_threads: int = 0,
        io_binding: bool | None = None,
    ) -> None:
        ort = _ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidModelError(f"ONNX model {str(self.path)!r} does not exist; pass the path to an exported .onnx file.")
        if batch_size < 1:
            raise InvalidParameterError(f"batch_size must be >= 1; got {batch_size}.")
        if outputs not in ("auto", "logits", "probabilities"):
            raise InvalidParameterError(f"outputs must be 'auto', 'logits' or 'probabilities'; got {outputs!r}.")
        providers = list(available_providers())
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device == "cuda" and "CUDAExecutionProvider" not in providers:
            raise BackendUnavailableError("device='cuda' but the CUDA execution provider cannot load here; use device='auto' or 'cpu'.")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if intra_op_threads:
            so.intra_op_num_threads = intra_op_threads
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as exc:
            raise InvalidModelError(
                f"{self.path} is not a loadable ONNX model ({type(exc).__name__}: {str(exc).strip()[:200]}). "
                "Re-export it (audit_sdk.adapters.torch.export_onnx) or check the file is not truncated."
            ) from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise InvalidModelError(
                f"{self.path} has {len(inputs)} inputs {[i.name for i in inputs]}; audit-sdk needs a single-input classifier."
            )
        inp = inputs[0]
        self.input_name = inp.name
        if inp.type not in _ORT_TYPES:
            raise InvalidModelError(f"{self.path}: input type {inp.type} is not supported; expected a float or integer tensor.")
        self.input_dtype = np.dtype(_ORT_TYPES[inp.type])
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in inp.shape[1:])
        outs = self.session.get_outputs()
        if not 0 <= output_index < len(outs):
            raise InvalidParameterError(f"output_index {output_index} out of range; the model has {len(outs)} outputs.")
        self.output_name = outs[output_index].name
        self.batch_size = int(batch_size)
        self.providers = tuple(self.session.get_providers())
        self._device_type = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        self.io_binding = (self._device_type == "cuda") if io_binding is None else bool(io_binding)
        shape = outs[output_index].shape
        n_classes = shape[-1] if len(shape) == 2 and isinstance(shape[-1], int) else None
        if n_classes is None:
            probe = self._predict_raw(np.zeros((1, *[d or 1 for d in self.input_shape]), dtype=self.input_dtype))
            if probe.ndim != 2:
                raise InvalidModelError(f"{self.path}: output {self.output_name!r} has shape {probe.shape}; expected (batch, classes).")
            n_classes = probe.shape[1]
        self.n_classes = int(n_classes)
        self._outputs_mode = outputs
        self.outputs_logits = outputs != "probabilities"
        if outputs == "probabilities":
            self.capabilities = frozenset({"labels", "probabilities"})
        elif outputs == "auto":
            # Decide once, on a fixed probe batch, before any query is answered.
            probe_x = np.random.default_rng(0).uniform(0, 1, size=(4, *[d or 1 for d in self.input_shape]))
            self._detect(self._predict_raw(probe_x.astype(self.input_dtype)))

    def _detect(self, raw: np.ndarray) -> None:
        if raw.ndim != 2:
            raise InvalidModelError(f"{self.path}: output {self.output_name!r} has shape {raw.shape}; expected (batch, classes).")
        is_prob = bool((raw >= 0).all() and np.allclose(raw.sum(axis=1), 1.0, atol=1e-3))
        self.outputs_logits = not is_prob
        self.capabilities = frozenset({"labels", "probabilities", "logits"}) if not is_prob else frozenset({"labels", "probabilities"})
        self._outputs_mode = "logits" if not is_prob else "probabilities"

    def _run_bound(self, x: np.ndarray) -> np.ndarray:
        ort = _ort()
        binding = self.session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), self._device_type, 0)
        binding.bind_ortvalue_input(self.input_name, value)
        binding.bind_output(self.output_name, self._device_type)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def _predict_raw(self, x: np.ndarray) -> np.ndarray:
        try:
            if self.io_binding:
                return self._run_bound(x)
            out = self.session.run([self.output_name], {self.input_name: x})[0]
        except Exception as exc:
            raise InvalidModelError(
                f"onnxruntime failed on a batch of shape {x.shape} dtype {x.dtype}: {str(exc).strip()[:200]}. "
                f"The model expects {self.input_shape} {self.input_dtype}."
            ) from exc
        return out

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"path": str(self.path), "providers": list(self.providers), "outputs": self._outputs_mode, "io_binding": self.io_binding})
        return d


@hookimpl
def make_target(model: Any, options: dict[str, Any]) -> Target | None:
    if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx"):
        known = {"batch_size", "outputs", "output_index", "device", "intra_op_threads", "io_binding"}
        return OnnxTarget(model, **{k: v for k, v in options.items() if k in known})
    return None
