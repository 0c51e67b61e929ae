"""ONNX causal language models: ``input_ids`` (+ optional ``attention_mask``, ``position_ids``) -> logits (batch, time, vocab).

    target = OnnxLMTarget("lm.onnx")
    stats = target.token_stats(data.members.x)   # per-token log-probabilities

Dynamic or fixed shapes: a fixed time axis is filled with padding (masked when the graph takes an
``attention_mask``; a causal model's logits at real positions do not see right padding anyway), a
fixed batch axis with dummy rows. Extra outputs (KV caches) are ignored. ``looks_like_causal_lm``
is the cheap check (graph only, no session) the ``make_target`` hook uses to claim a file before
the classifier adapter does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from audit_sdk.errors import InvalidModelError, InvalidParameterError
from audit_sdk.sequence import SequenceTarget

from .onnx import _ort, session_setup

__all__ = ["OnnxLMTarget", "looks_like_causal_lm"]

_ID_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_KNOWN_INPUTS = ("input_ids", "attention_mask", "position_ids")


def looks_like_causal_lm(path: str | Path) -> bool:
    """True when the graph has an integer ``input_ids`` input and a first output of rank 3 (batch, time, vocab)."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not ours to judge: the classifier adapter reports unreadable files
        return False
    g = model.graph
    init = {i.name for i in g.initializer}
    inputs = {i.name: i for i in g.input if i.name not in init}
    ids = inputs.get("input_ids")
    if ids is None or ids.type.tensor_type.elem_type not in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
        return False
    if not g.output:
        return False
    shape = g.output[0].type.tensor_type.shape
    return len(shape.dim) == 3


class OnnxLMTarget(SequenceTarget):
    """A causal LM exported to ONNX, queried through onnxruntime.

    Args:
        path: the ``.onnx`` file.
        batch_size: sequences per ``session.run`` (a fixed batch axis overrides it).
        device: ``auto`` (CUDA when it really loads), ``cpu`` or ``cuda``.
        output: name of the logits output (default: ``logits`` if present, else the first output).

    Raises:
        InvalidModelError: a missing file, an unknown input (e.g. ``past_key_values``: export without
            the cache), or an output that is not (batch, time, vocab).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        batch_size: int = 64,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        output: str | None = None,
        intra_op_threads: int = 0,
    ) -> None:
        ort = _ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidModelError(f"ONNX model {str(self.path)!r} does not exist; pass the path to an exported .onnx file.")
        if batch_size < 1:
            raise InvalidParameterError(f"batch_size must be >= 1; got {batch_size}.")
        providers, so = session_setup(device, intra_op_threads)
        try:
            self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as exc:
            raise InvalidModelError(f"{self.path} is not a loadable ONNX model ({type(exc).__name__}: {str(exc).strip()[:200]}).") from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        unknown = [n for n in inputs if n not in _KNOWN_INPUTS]
        if unknown or "input_ids" not in inputs:
            raise InvalidModelError(
                f"{self.path}: inputs {list(inputs)}; a causal LM target feeds only {list(_KNOWN_INPUTS)} "
                "(export the model without past_key_values / KV-cache inputs)."
            )
        self.inputs = inputs
        ids = inputs["input_ids"]
        if ids.type not in _ID_TYPES:
            raise InvalidModelError(f"{self.path}: input_ids has type {ids.type}; expected int64 or int32.")
        self._id_dtype = _ID_TYPES[ids.type]
        dims = list(ids.shape) + [None, None]
        self._fixed_batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
        self._fixed_time = dims[1] if isinstance(dims[1], int) and dims[1] > 0 else None
        outs = self.session.get_outputs()
        names = [o.name for o in outs]
        if output is not None and output not in names:
            raise InvalidParameterError(f"output {output!r} is not among the model's outputs {names}.")
        self.output_name = output or ("logits" if "logits" in names else names[0])
        oshape = next(o.shape for o in outs if o.name == self.output_name)
        if len(oshape) != 3:
            raise InvalidModelError(
                f"{self.path}: output {self.output_name!r} has rank {len(oshape)}; a causal LM returns (batch, time, vocab). "
                f"Choose the logits output with output= (outputs: {names})."
            )
        self.batch_size = int(self._fixed_batch or batch_size)
        self.max_length = self._fixed_time
        self.providers = tuple(self.session.get_providers())
        v = oshape[2]
        if not (isinstance(v, int) and v > 0):
            probe = self._next_token_logits(np.zeros((1, 2), np.int64), np.ones((1, 2), np.int64))
            v = probe.shape[-1]
        self.vocab_size = int(v)
        self._check_causal()

    def _check_causal(self) -> None:
        """Refuse a bidirectional model (e.g. a token classifier with the same input and output shapes).

        A causal LM's logits at a position never depend on later tokens: change the second half
        of a probe sequence and the first half's logits must stay the same.
        """
        t = min(8, self.max_length or 8)
        if t < 2:
            return
        rng = np.random.default_rng(0)
        a = rng.integers(0, max(1, min(self.vocab_size, 1000)), (1, t))
        b = a.copy()
        b[:, t // 2 :] = (b[:, t // 2 :] + 1) % max(1, min(self.vocab_size, 1000))
        mask = np.ones((1, t), np.int64)
        la, lb = self._next_token_logits(a, mask), self._next_token_logits(b, mask)
        if not np.allclose(la[:, : t // 2], lb[:, : t // 2], atol=1e-4, rtol=1e-4):
            raise InvalidModelError(
                f"{self.path}: the logits at a position change when later tokens change, so this is not a causal language model "
                "(a bidirectional model such as a token classifier?). LM attacks need next-token probabilities."
            )

    def _next_token_logits(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        b, t = ids.shape
        B = self._fixed_batch or b
        T = self._fixed_time or t
        if b > B:  # a fixed batch axis smaller than the bucket: split
            return np.concatenate([self._next_token_logits(ids[i : i + B], mask[i : i + B]) for i in range(0, b, B)])
        ids_f = np.zeros((B, T), dtype=self._id_dtype)
        ids_f[:b, :t] = ids
        mask_f = np.zeros((B, T), dtype=self._id_dtype)
        mask_f[:b, :t] = mask
        mask_f[b:, 0] = 1  # dummy rows: one token, so no row is fully masked
        feed: dict[str, np.ndarray] = {"input_ids": ids_f}
        if "attention_mask" in self.inputs:
            feed["attention_mask"] = mask_f.astype(_ID_TYPES.get(self.inputs["attention_mask"].type, np.int64))
        if "position_ids" in self.inputs:
            pos = np.broadcast_to(np.arange(T), (B, T))
            feed["position_ids"] = np.ascontiguousarray(pos).astype(_ID_TYPES.get(self.inputs["position_ids"].type, np.int64))
        try:
            out = self.session.run([self.output_name], feed)[0]
        except Exception as exc:
            raise InvalidModelError(f"onnxruntime failed on ids of shape {ids_f.shape}: {str(exc).strip()[:200]}.") from exc
        if out.ndim != 3 or out.shape[0] != B or out.shape[1] != T:
            raise InvalidModelError(f"{self.path}: logits of shape {out.shape} for ids {ids_f.shape}; expected (batch, time, vocab).")
        return out[:b, :t]

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"path": str(self.path), "providers": list(self.providers), "inputs": list(self.inputs)}
