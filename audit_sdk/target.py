"""The Target protocol: what an attack may ask of a model, whatever framework serves it.

A Target answers batched queries on numpy arrays. Adapters implement it for ONNX Runtime,
torch and scikit-learn (``audit_sdk.load_target`` picks one through the ``make_target`` hook);
output defenses wrap one Target in another.

Capabilities (``Target.capabilities``):

- ``labels``: ``predict_labels`` (every target);
- ``probabilities``: ``predict_proba`` and ``loss`` (black-box);
- ``logits``: ``logits`` (raw scores before softmax);
- ``white-box``: ``gradients`` and ``representations`` (torch);
- ``gradients``: the model can produce a shared training gradient (torch);
- ``sequence``: ``token_stats`` of token sequences (a causal language model, see ``audit_sdk.sequence``);
- ``trainable``: the model's architecture can be re-initialised and trained again (torch), which
  ``training`` attacks need (``audit.dp`` trains its own runs with canaries).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np

from .data import pack_inputs
from .errors import AccessError, InvalidDataError, InvalidModelError

__all__ = ["CAPABILITIES_FOR_ACCESS", "Target", "check_access", "softmax", "cross_entropy"]

#: Capabilities a target needs for an attack of each access level.
CAPABILITIES_FOR_ACCESS: dict[str, frozenset[str]] = {
    "label-only": frozenset({"labels"}),
    "black-box": frozenset({"labels", "probabilities"}),
    "white-box": frozenset({"labels", "probabilities", "white-box"}),
    "gradients": frozenset({"gradients"}),
    "training": frozenset({"trainable"}),
    # causal language models: per-token log-probabilities of given sequences (audit_sdk.sequence)
    "sequence": frozenset({"sequence"}),
}


def _row_max(z: np.ndarray) -> np.ndarray:
    # numpy reduces a short last axis (10 classes) element by element: 5x slower than reducing
    # the transposed copy along its long axis, on every query of every attack
    return np.ascontiguousarray(z.T).max(axis=0)


def _row_sum(z: np.ndarray) -> np.ndarray:
    return z @ np.ones(z.shape[1], dtype=z.dtype)  # BLAS gemv: 4-7x faster than z.sum(axis=1) here


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable, in float64."""
    z = np.array(logits, dtype=np.float64)  # a fresh float64 copy, then everything in place
    z -= _row_max(z)[:, None]
    np.exp(z, out=z)
    z /= _row_sum(z)[:, None]
    return z


def cross_entropy(probs: np.ndarray, y: np.ndarray, *, eps: float = 1e-12) -> np.ndarray:
    """Per-example cross-entropy -log p[y] with probabilities clipped at ``eps``."""
    p = np.clip(np.asarray(probs, dtype=np.float64)[np.arange(len(y)), np.asarray(y, dtype=np.int64)], eps, 1.0)
    return -np.log(p)


def check_access(target: Target, access: str, *, attack_name: str = "this attack", alternatives: list[str] | None = None) -> None:
    """Raise AccessError if ``target`` cannot serve an attack with ``access``.

    Args:
        alternatives: names of attacks that would fit the target, to suggest.
    """
    need = CAPABILITIES_FOR_ACCESS.get(access)
    if need is None:
        raise AccessError(f"{attack_name} declares unknown access {access!r}; expected one of {sorted(CAPABILITIES_FOR_ACCESS)}.")
    missing = need - set(target.capabilities)
    if missing:
        hint = f" Attacks that fit this target: {', '.join(alternatives)}." if alternatives else ""
        if access == "training":
            hint = " It trains the architecture again: pass a torch.nn.Module (audit_sdk.audit_dp) or run `audit-sdk dp-audit`." + hint
        raise AccessError(
            f"{attack_name} needs {access} access ({', '.join(sorted(missing))}) but {target.describe().get('kind', 'the target')} "
            f"offers only {', '.join(sorted(target.capabilities))}.{hint}"
        )


class Target(ABC):
    """A model an attacker can query, with numpy in and numpy out.

    Subclasses implement ``_predict_raw``; everything else has a default built on it. Inputs are
    validated against ``input_shape`` and ``input_dtype`` once per call, and outputs are checked
    for NaN/inf, so a wrong model/data pairing fails loudly instead of scoring garbage.
    """

    #: Per-sample input shape (without the batch axis); None entries are free.
    input_shape: tuple[int | None, ...] = ()
    #: numpy dtype the model expects.
    input_dtype: np.dtype = np.dtype(np.float32)
    #: Names of the model's inputs when it takes several (a text classifier's ``input_ids``,
    #: ``attention_mask``); None for a single-input model. Such a target takes named inputs: a
    #: mapping of arrays or the structured array ``audit_sdk.data.pack_inputs`` makes of one.
    input_names: tuple[str, ...] | None = None
    #: Number of classes the model predicts.
    n_classes: int = 0
    #: What the target can answer (see the module docstring).
    capabilities: frozenset[str] = frozenset({"labels", "probabilities"})
    #: Queries are sent in batches of this size.
    batch_size: int = 1024

    # ----------------------------------------------------------------- to implement
    @abstractmethod
    def _predict_raw(self, x: np.ndarray) -> np.ndarray:
        """Return the model's raw output for a batch ``x`` that passed validation.

        Raw means what the model returns: probabilities or logits (see ``outputs_logits``).
        """

    #: Whether ``_predict_raw`` returns logits (True) or probabilities (False).
    outputs_logits: bool = True

    # ----------------------------------------------------------------- public API
    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for reports."""
        return {
            "kind": type(self).__name__,
            "input_shape": list(self.input_shape),
            "input_dtype": str(self.input_dtype),
            "n_classes": self.n_classes,
            "capabilities": sorted(self.capabilities),
        }

    def check_input(self, x: Any) -> np.ndarray:
        """Validate and convert a batch of inputs.

        Features fed to an integer input must hold integral values (a float pixel in [0, 1] cast to
        int would become 0 and the audit would score garbage). Named inputs (a mapping, or a
        structured array from ``pack_inputs``) are packed and passed on to ``check_named_input``.

        Raises:
            InvalidDataError: wrong rank or shape, non-numeric dtype, non-integral values for an
                integer input, or NaN/inf.
        """
        if isinstance(x, Mapping):
            x = pack_inputs(x)
        arr = np.asarray(x)
        if arr.dtype.names is not None:
            return self.check_named_input(arr)
        if arr.dtype.kind not in "biuf":
            raise InvalidDataError(f"inputs must be numeric; got dtype {arr.dtype}. Convert features to float32.")
        expected = tuple(self.input_shape)
        if expected and (arr.ndim != len(expected) + 1 or any(e is not None and e != a for e, a in zip(expected, arr.shape[1:]))):
            raise InvalidDataError(
                f"inputs of shape {arr.shape[1:]} (per sample) do not fit the model, which expects {expected}. "
                "Reshape the data (e.g. add a channel axis: x[:, None]) or check you loaded the right model."
            )
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InvalidDataError("inputs contain NaN or inf; clean or impute them before auditing.")
        if arr.dtype != self.input_dtype:
            if self.input_dtype.kind in "iu" and arr.dtype.kind == "f" and arr.size and not np.array_equal(arr, np.round(arr)):
                raise InvalidDataError(
                    f"the model takes {self.input_dtype} inputs but the features are non-integral {arr.dtype} values "
                    f"(e.g. {float(arr.flat[np.flatnonzero(arr != np.round(arr))[0]]):.4g}); casting would truncate them. "
                    "Pass the integers the model was trained on (e.g. pixels 0..255, token ids)."
                )
            with np.errstate(over="ignore"):  # reported below, as a typed error
                arr = arr.astype(self.input_dtype)
            if self.input_dtype.kind == "f" and not np.isfinite(arr).all():  # e.g. 1e5 overflows float16
                raise InvalidDataError(
                    f"inputs overflow the model's {self.input_dtype} input (values beyond its range); rescale the features."
                )
        return arr

    def check_named_input(self, x: np.ndarray) -> np.ndarray:
        """Validate named inputs (a structured array); a single-input target refuses them."""
        raise InvalidDataError(
            f"the data holds named inputs {list(x.dtype.names or ())} but {type(self).__name__} takes one input array; "
            "pass plain features, or a model with those inputs."
        )

    def _batched_raw(self, x: np.ndarray) -> np.ndarray:
        arr = self.check_input(x)
        if len(arr) == 0:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        bs = max(1, int(self.batch_size))
        outs = [self._predict_raw(arr[i : i + bs]) for i in range(0, len(arr), bs)]
        out = np.concatenate(outs, axis=0) if len(outs) > 1 else outs[0]
        if out.ndim != 2 or out.shape[0] != len(arr):
            raise InvalidModelError(
                f"model returned shape {out.shape} for {len(arr)} inputs; expected (n, n_classes). "
                "Export a classifier whose first output is (batch, classes)."
            )
        if not np.isfinite(out).all():
            raise InvalidModelError(
                "model outputs contain NaN or inf; the model is numerically broken on these inputs "
                "(check input scaling and the exported weights)."
            )
        return out

    def logits(self, x: Any) -> np.ndarray:
        """Raw scores (n, n_classes). Raises AccessError if the model serves probabilities only."""
        if "logits" not in self.capabilities:
            raise AccessError(f"{type(self).__name__} does not expose logits; use predict_proba.")
        return self._batched_raw(x)

    def predict_proba(self, x: Any) -> np.ndarray:
        """Class probabilities (n, n_classes), float64, rows summing to 1."""
        if "probabilities" not in self.capabilities:
            raise AccessError(f"{type(self).__name__} serves labels only; use a label-only attack (e.g. mia.label-only).")
        raw = self._batched_raw(x)
        if self.outputs_logits:
            return softmax(raw)
        p = np.asarray(raw, dtype=np.float64)
        return p

    def predict_labels(self, x: Any) -> np.ndarray:
        """Predicted class per input (n,), int64."""
        return np.asarray(self._batched_raw(x).argmax(axis=1), dtype=np.int64)

    def accuracy(self, x: Any, y: Any) -> float:
        """Top-1 accuracy of the labels this target serves on (x, y): the one accuracy of the SDK.

        Raises:
            InvalidDataError: no inputs, or not one label per input.
        """
        ya = np.asarray(y)
        n = len(x) if hasattr(x, "__len__") else 0
        if len(ya) == 0 or len(ya) != n:
            raise InvalidDataError(f"accuracy needs one label per input and at least one input; got {n} inputs, {len(ya)} labels.")
        return float((self.predict_labels(x) == ya).mean())

    def check_labels(self, y: Any) -> np.ndarray:
        """Validate labels against the model's classes."""
        arr = np.asarray(y)
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise InvalidDataError(f"labels must be a 1-D integer array; got shape {arr.shape} dtype {arr.dtype}.")
        if len(arr) and self.n_classes and (arr.min() < 0 or arr.max() >= self.n_classes):
            raise InvalidDataError(
                f"labels span [{arr.min()}, {arr.max()}] but the model predicts {self.n_classes} classes "
                f"[0, {self.n_classes - 1}]. Remap the labels or check you loaded the right model."
            )
        return arr.astype(np.int64)

    def loss(self, x: Any, y: Any) -> np.ndarray:
        """Per-example cross-entropy loss (n,). From logits when available (exact), else from probabilities."""
        y_arr = self.check_labels(y)
        if len(y_arr) != len(np.asarray(x)):
            raise InvalidDataError(f"{len(np.asarray(x))} inputs but {len(y_arr)} labels; pass one label per input.")
        if "logits" in self.capabilities and self.outputs_logits:
            z = self._batched_raw(x).astype(np.float64)
            m = _row_max(z)
            lse = m + np.log(_row_sum(np.exp(z - m[:, None])))
            return lse - z[np.arange(len(y_arr)), y_arr]
        return cross_entropy(self.predict_proba(x), y_arr)

    # White-box capabilities: implemented by framework adapters that can.
    def gradients(self, x: Any, y: Any) -> np.ndarray:
        """Per-example loss gradients w.r.t. the parameters, flattened (n, n_params)."""
        raise AccessError(f"{type(self).__name__} is not white-box; use a torch model (TorchTarget) for gradients.")

    def representations(self, x: Any, *, layer: str) -> np.ndarray:
        """The activations of ``layer`` for inputs ``x``."""
        raise AccessError(f"{type(self).__name__} is not white-box; use a torch model (TorchTarget) for representations.")
