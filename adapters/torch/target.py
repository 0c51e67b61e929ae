"""TorchTarget: a torch classifier with white-box access (gradients, representations)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from audit_sdk.errors import InvalidDataError, InvalidParameterError
from audit_sdk.target import Target

from ._util import resolve_device

__all__ = ["TorchTarget"]


class TorchTarget(Target):
    """Wrap an ``nn.Module`` that maps (batch, *input_shape) to logits (batch, classes).

        target = TorchTarget(model, input_shape=(1, 8, 8))
        grads = target.gradients(x[:4], y[:4])      # (4, n_params), per example

    Args:
        model: the classifier (put in eval mode for queries).
        input_shape: per-sample input shape; inferred from the first layer when omitted
            (Linear: (in_features,); Conv: (in_channels, None, None)).
        n_classes: inferred from a probe forward pass when omitted.
        batch_size: inputs per forward pass.
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
    """

    capabilities = frozenset({"labels", "probabilities", "logits", "white-box", "gradients", "trainable"})
    outputs_logits = True

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        input_shape: Sequence[int | None] | None = None,
        n_classes: int | None = None,
        batch_size: int = 1024,
        device: Any = "auto",
    ) -> None:
        if batch_size < 1:
            raise InvalidParameterError(f"batch_size must be >= 1; got {batch_size}.")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.input_dtype = np.dtype(np.float32)
        self.input_shape = tuple(input_shape) if input_shape is not None else self._infer_shape()
        if n_classes is None:
            last = [m for m in self.model.modules() if isinstance(m, torch.nn.Linear)]
            if last:
                n_classes = last[-1].out_features
            elif self.input_shape:
                probe = np.zeros((1, *[d or 8 for d in self.input_shape]), dtype=np.float32)
                n_classes = int(self._predict_raw(probe).shape[1])
            else:
                raise InvalidParameterError("cannot infer n_classes from this model; pass n_classes= (and input_shape=).")
        self.n_classes = int(n_classes)

    def _infer_shape(self) -> tuple[int | None, ...]:
        # Only the first leaf module tells the input shape (a Flatten first hides it).
        first = next((m for m in self.model.modules() if not list(m.children())), None)
        if isinstance(first, torch.nn.Linear):
            return (first.in_features,)
        if isinstance(first, torch.nn.Conv2d):
            return (first.in_channels, None, None)
        if isinstance(first, torch.nn.Conv1d):
            return (first.in_channels, None)
        return ()

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)

    @torch.no_grad()
    def _predict_raw(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        return self.model(self._tensor(x)).float().cpu().numpy()

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({"device": str(self.device), "n_params": int(sum(p.numel() for p in self.model.parameters()))})
        return d

    def gradients(self, x: Any, y: Any) -> np.ndarray:
        """Per-example gradients of the cross-entropy loss w.r.t. all parameters, flattened (n, P).

        Vectorised with ``torch.func.vmap`` over the batch (no Python loop over samples).
        """
        from torch.func import functional_call, grad, vmap

        xa = self.check_input(x)
        ya = self.check_labels(y)
        if len(xa) != len(ya):
            raise InvalidDataError(f"{len(xa)} inputs but {len(ya)} labels.")
        params = {k: v.detach() for k, v in self.model.named_parameters()}

        def loss_one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
            out = functional_call(self.model, p, (xi.unsqueeze(0),))
            return torch.nn.functional.cross_entropy(out, yi.unsqueeze(0))

        g = vmap(grad(loss_one), in_dims=(None, 0, 0))
        outs = []
        for i in range(0, len(xa), self.batch_size):
            xb = self._tensor(xa[i : i + self.batch_size])
            yb = torch.from_numpy(ya[i : i + self.batch_size]).to(self.device)
            gd = g(params, xb, yb)
            outs.append(torch.cat([gd[k].reshape(len(xb), -1) for k in params], dim=1).cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, sum(p.numel() for p in params.values())), np.float32)

    def layer_names(self) -> list[str]:
        """Names accepted by ``representations(layer=...)``."""
        return [n for n, _ in self.model.named_modules() if n]

    @torch.no_grad()
    def representations(self, x: Any, *, layer: str) -> np.ndarray:
        """Output of the sub-module ``layer`` (a name from ``layer_names()``) for inputs ``x``."""
        modules = dict(self.model.named_modules())
        if layer not in modules or not layer:
            raise InvalidParameterError(f"unknown layer {layer!r}; expected one of {self.layer_names()}.")
        xa = self.check_input(x)
        captured: list[torch.Tensor] = []
        handle = modules[layer].register_forward_hook(lambda _m, _i, out: captured.append(out.detach().cpu()))
        try:
            self.model.eval()
            for i in range(0, len(xa), self.batch_size):
                self.model(self._tensor(xa[i : i + self.batch_size]))
        finally:
            handle.remove()
        return torch.cat(captured).numpy()
