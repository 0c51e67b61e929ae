"""The language-model adapter plugin: claims causal LMs for ``audit_sdk.load_target``.

An ``.onnx`` file whose graph takes ``input_ids`` and returns (batch, time, vocab) logits becomes an
:class:`~audit_sdk.adapters.onnx_lm.OnnxLMTarget`; a torch module marked ``is_causal_lm = True``
(e.g. :class:`~audit_sdk.adapters.torch.lm.TinyGPT`), or any module passed with ``causal_lm=True``
(a Hugging Face causal LM), a ``TorchLMTarget``. Runs before the
classifier adapters (``tryfirst``) and answers None for everything else. Importing it imports
neither torch nor onnxruntime.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from audit_sdk import hookimpl
from audit_sdk.target import Target


@hookimpl(tryfirst=True)
def make_target(model: Any, options: dict[str, Any]) -> Target | None:
    if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx") and Path(model).is_file():
        from .onnx_lm import OnnxLMTarget, looks_like_causal_lm

        if looks_like_causal_lm(model):
            known = {"batch_size", "device", "output", "intra_op_threads"}
            return OnnxLMTarget(model, **{k: v for k, v in (options or {}).items() if k in known})
        return None
    torch = sys.modules.get("torch")
    if (
        torch is not None
        and isinstance(model, torch.nn.Module)
        and (getattr(model, "is_causal_lm", False) or (options or {}).get("causal_lm"))
    ):
        from .torch.lm import TorchLMTarget

        known = {"batch_size", "device", "vocab_size"}
        return TorchLMTarget(model, **{k: v for k, v in (options or {}).items() if k in known})
    return None
