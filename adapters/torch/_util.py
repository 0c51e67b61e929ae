from __future__ import annotations

from typing import Any

import torch

from audit_sdk.errors import BackendUnavailableError, InvalidParameterError


def resolve_device(device: Any = "auto") -> torch.device:
    """``auto`` picks CUDA when it is available, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("device='cuda' but torch sees no CUDA device; use device='auto' or 'cpu'.")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise InvalidParameterError(f"unknown device {device!r}; expected 'auto', 'cpu' or 'cuda[:N]'.") from exc
