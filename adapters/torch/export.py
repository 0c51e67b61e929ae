"""Export a torch classifier to ONNX with a dynamic batch axis, checked against torch."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from audit_sdk.errors import InvalidModelError
from audit_sdk.fileio import atomic_path

__all__ = ["export_onnx"]


def export_onnx(model: torch.nn.Module, example: Any, path: str | Path, *, opset: int = 17, check: bool = True, atol: float = 1e-4) -> Path:
    """Write ``model`` as ONNX (input ``input``, output ``logits``, batch axis dynamic).

    Args:
        example: one or more example inputs (numpy or tensor) with the batch axis.
        check: run the file in onnxruntime on ``example`` (and a batch of a different size) and
            compare with torch.

    Raises:
        InvalidModelError: the export fails or the ONNX outputs differ from torch's.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    x = torch.as_tensor(np.asarray(example), dtype=torch.float32)
    if x.ndim < 2:
        raise InvalidModelError(f"example must have a batch axis; got shape {tuple(x.shape)}.")
    try:
        with atomic_path(p, suffix=".onnx") as tmp, warnings.catch_warnings():  # a failed export leaves no half-written model
            # The TorchScript exporter is deprecated in favour of torch.export, which still fails
            # on plain Sequential models with dynamic batch axes; its warning is not the user's concern.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (x,),
                str(tmp),
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    except Exception as exc:
        raise InvalidModelError(f"ONNX export of {type(model).__name__} failed: {type(exc).__name__}: {exc}") from exc
    if check:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        xs = torch.cat([x, x[:1]]) if len(x) > 1 else torch.cat([x, x])
        with torch.no_grad():
            ref = model(xs).numpy()
        got = sess.run(None, {"input": xs.numpy()})[0]
        if got.shape != ref.shape or not np.allclose(got, ref, atol=atol, rtol=1e-3):
            raise InvalidModelError(
                f"ONNX export of {type(model).__name__} disagrees with torch (max abs diff "
                f"{float(np.abs(got - ref).max()) if got.shape == ref.shape else 'shape ' + str(got.shape)}); "
                "the model likely has data-dependent control flow."
            )
    return p
