"""Shared machinery of the inversion attacks: sample selection, bounds, image losses, the
evaluation classifier, baselines and the artefacts (``.npy`` arrays and an image grid).

torch, matplotlib and Pillow are imported inside the functions that need them: every plugin module
is imported when the registry is built, and ``import audit_sdk`` must stay light.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from audit_sdk.context import RunContext
from audit_sdk.data import AuditData, Split
from audit_sdk.digest import array_digest
from audit_sdk.errors import AccessError, AuditSDKWarning, BackendUnavailableError, InvalidParameterError
from audit_sdk.fileio import atomic_write
from audit_sdk.metrics import reconstruction_metrics, ssim
from audit_sdk.results import AttackResult
from audit_sdk.rng import derive_seed
from audit_sdk.target import Target
from audit_sdk.training import TrainConfig, make_trainer

if TYPE_CHECKING:
    import torch

__all__ = [
    "Selection",
    "as_images",
    "baseline_ssim",
    "eval_by_set",
    "evaluation_classifier",
    "model_device",
    "torch_seed",
    "class_means",
    "evaluation_accuracy",
    "input_bounds",
    "finish",
    "save_artifacts",
    "select_samples",
    "set_metrics",
    "require_torch",
    "torch_module",
    "total_variation",
]

SetChoice = Literal["members", "non_members", "both"]


class Selection:
    """The samples an attack reconstructs: features, labels, and which are members."""

    def __init__(self, x: np.ndarray, y: np.ndarray, is_member: np.ndarray) -> None:
        self.x, self.y, self.is_member = x, y, is_member

    def __len__(self) -> int:
        return len(self.y)


def select_samples(data: AuditData, which: SetChoice, n: int, gen: np.random.Generator) -> Selection:
    """Draw up to ``n`` samples from each chosen set, members first (without replacement)."""
    parts: list[tuple[Split, bool]] = []
    if which in ("members", "both"):
        parts.append((data.members, True))
    if which in ("non_members", "both"):
        parts.append((data.non_members, False))
    xs, ys, ms = [], [], []
    for split, member in parts:
        k = min(n, len(split))
        idx = np.sort(gen.choice(len(split), size=k, replace=False))
        xs.append(split.x[idx])
        ys.append(split.y[idx])
        ms.append(np.full(k, member))
    return Selection(np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.int64), np.concatenate(ms))


def input_bounds(bounds: Sequence[float] | None, data: AuditData) -> tuple[float, float]:
    """The box reconstructions are clipped into.

    Explicit ``bounds`` win; otherwise the attacker's domain knowledge is taken from the data the
    attacker may see (the population, else the audited sets' overall range).
    """
    if bounds is not None:
        lo, hi = float(bounds[0]), float(bounds[1])
    else:
        ref = data.population.x if data.population is not None else np.concatenate([data.members.x, data.non_members.x])
        lo, hi = float(np.min(ref)), float(np.max(ref))
    if not np.isfinite([lo, hi]).all() or hi <= lo:
        raise InvalidParameterError(
            f"input bounds must be finite with min < max; got ({lo}, {hi}). Pass input_bounds=[min, max] "
            "(e.g. [0, 1] for images scaled to the unit interval)."
        )
    return lo, hi


def require_torch(attack_name: str) -> None:
    """Fail with the extra to install when torch (the attacker's optimiser) is missing."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailableError(
            f'{attack_name} optimises with torch, which is not installed: pip install "audit-sdk[torch]".'
        ) from exc


def torch_module(target: Target, attack_name: str) -> torch.nn.Module:
    """The torch module behind a white-box target (TorchTarget.model)."""
    require_torch(attack_name)
    import torch

    model = getattr(target, "model", None)
    if not isinstance(model, torch.nn.Module):
        raise AccessError(
            f"{attack_name} optimises through the model and needs a torch module; {type(target).__name__} has none. "
            "Load the model with audit_sdk.load_target(torch_module), or use inversion.decoder for black-box targets."
        )
    return model


def model_device(model: torch.nn.Module) -> torch.device:
    import torch

    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Per-image smoothness prior (MindArmour / Mahendran & Vedaldi): mean squared difference of
    neighbouring rows plus neighbouring columns. Any H x W and any number of channels; for
    non-image inputs (rank < 3 per sample) the prior is zero."""
    if x.ndim < 4:
        return x.new_zeros(len(x))
    dh = (x[..., 1:, :] - x[..., :-1, :]) ** 2
    dw = (x[..., :, 1:] - x[..., :, :-1]) ** 2
    zero = x.new_zeros(len(x))
    th = dh.reshape(len(x), -1).mean(1) if dh.numel() else zero
    tw = dw.reshape(len(x), -1).mean(1) if dw.numel() else zero
    return th + tw


def class_means(split: Split, n_classes: int, fallback: np.ndarray | None = None) -> np.ndarray:
    """Mean image of each class (the overall mean for a class with no sample)."""
    x = split.x.astype(np.float64)
    overall = x.mean(0) if fallback is None else fallback
    onehot = np.eye(n_classes)[split.y]
    counts = onehot.sum(0)
    sums = np.tensordot(onehot.T, x, axes=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts.reshape(-1, *([1] * (x.ndim - 1)))
    means[counts == 0] = overall
    return means.astype(np.float32)


def set_metrics(originals: np.ndarray, recon: np.ndarray, is_member: np.ndarray, data_range: float) -> dict[str, Any]:
    """Core reconstruction metrics for members and non-members separately (where both are present)."""
    out: dict[str, Any] = {}
    for name, mask in (("members", is_member), ("non_members", ~is_member)):
        if mask.any():
            out[name] = reconstruction_metrics(as_images(originals[mask]), as_images(recon[mask]), data_range=data_range)
    if "members" in out and "non_members" in out:
        out["ssim_gap"] = out["members"]["ssim"] - out["non_members"]["ssim"]
    return out


def baseline_ssim(originals: np.ndarray, guess: np.ndarray, data_range: float) -> float:
    """Mean SSIM of a data-independent guess (broadcast to every original)."""
    g = np.broadcast_to(guess, originals.shape)
    return float(ssim(as_images(originals), as_images(g), data_range=data_range).mean())


def as_images(x: np.ndarray) -> np.ndarray:
    """Per-sample arrays as (N, C, H, W) for the core's image metrics; vectors become 1 x D images."""
    a = np.asarray(x)
    if a.ndim == 2:
        return a[:, None, None, :]
    if a.ndim == 3:
        return a[:, None]
    return a


# --------------------------------------------------------------------------- evaluation classifier
_EVAL_KEY = "inversion.evaluation-classifier"


def evaluation_classifier(data: AuditData, *, epochs: int, seed: int, context: RunContext | None = None) -> Any:
    """A classifier trained by the attacker on the population only (MindArmour's ``new_network``).

    It never saw members or non-members, so its accuracy on reconstructions measures whether they
    carry the class, not whether it memorised them. Cached in ``context.extras`` per population.
    Returns None when there is no population.
    """
    if data.population is None:
        return None
    pop = data.population
    key = f"{_EVAL_KEY}:{array_digest(pop.x, pop.y, length=24)}:{epochs}:{seed}"
    cache = context.extras if context is not None else None
    if isinstance(cache, dict) and key in cache:
        return cache[key]
    shape = tuple(pop.x.shape[1:])
    arch = "cnn" if len(shape) == 3 else "mlp"
    cfg = TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, optimizer="adam", seed=seed, device="cpu")
    trainer = make_trainer(
        arch,
        {"input_shape": shape, "n_classes": data.n_classes, "train": cfg.model_dump()},
        registry=context.registry if context is not None else None,
    )
    model = trainer.train(trainer.build(seed), pop.x.astype(np.float32), pop.y, cfg).model.eval()
    if isinstance(cache, dict):
        cache[key] = model
    return model


def evaluation_accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float] | None:
    """Top-1 accuracy and mean true-class confidence of the evaluation classifier on ``x``."""
    if model is None or len(x) == 0:
        return None
    import torch

    with torch.no_grad():
        p = torch.softmax(model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))), dim=1).numpy()
    return {
        "accuracy": float((p.argmax(1) == y).mean()),
        "confidence": float(p[np.arange(len(y)), y].mean()),
    }


def eval_by_set(
    model: Any, recon: np.ndarray, y: np.ndarray, is_member: np.ndarray, originals: np.ndarray | None = None
) -> dict[str, Any] | None:
    """Evaluation-classifier scores on the reconstructions (all, members, non-members) and, as the
    reference a perfect reconstruction would reach, on the originals."""
    if model is None:
        return None
    out: dict[str, Any] = {"all": evaluation_accuracy(model, recon, y)}
    if originals is not None:
        out["originals"] = evaluation_accuracy(model, originals, y)
    for name, mask in (("members", is_member), ("non_members", ~is_member)):
        if mask.any() and not mask.all():
            out[name] = evaluation_accuracy(model, recon[mask], y[mask])
    return out


def torch_seed(rng: np.random.Generator) -> int:
    return derive_seed(rng) % (2**63 - 1)


# --------------------------------------------------------------------------- artefacts
def _grid(originals: np.ndarray, recon: np.ndarray, lo: float, hi: float, max_rows: int = 16, pairs_per_row: int = 4) -> np.ndarray:
    """Originals beside reconstructions: each cell is [original | reconstruction], HWC float in [0, 1]."""
    n = min(len(originals), max_rows * pairs_per_row)
    o, r = originals[:n], recon[:n]
    if o.ndim == 3:
        o, r = o[:, None], r[:, None]
    c, h, w = o.shape[1:]
    if c not in (1, 3):
        o, r = o[:, :1], r[:, :1]
        c = 1

    def norm(a: np.ndarray) -> np.ndarray:
        return np.clip((a - lo) / (hi - lo), 0.0, 1.0).transpose(0, 2, 3, 1)

    o, r = norm(o), norm(r)
    pad = 1
    cell_w = 2 * w + 3 * pad + 2
    cols = min(n, pairs_per_row)
    rows = (n + cols - 1) // cols
    canvas = np.ones((rows * (h + 2 * pad), cols * cell_w, c), dtype=np.float64)
    for i in range(n):
        y0 = (i // cols) * (h + 2 * pad) + pad
        x0 = (i % cols) * cell_w + pad
        canvas[y0 : y0 + h, x0 : x0 + w] = o[i]
        canvas[y0 : y0 + h, x0 + w + pad : x0 + 2 * w + pad] = r[i]
    return canvas


def _write_png(path: Path, canvas: np.ndarray, scale: int) -> bool:
    img = np.repeat(np.repeat(canvas, scale, axis=0), scale, axis=1)
    u8 = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
    try:
        from PIL import Image

        # 2-D uint8 becomes mode L, (H, W, 3) uint8 mode RGB
        Image.fromarray(np.ascontiguousarray(u8[..., 0] if u8.shape[-1] == 1 else u8)).save(path)
        return True
    except ImportError:
        pass
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib import image as mpimg

        mpimg.imsave(path, u8[..., 0] if u8.shape[-1] == 1 else u8, cmap="gray" if u8.shape[-1] == 1 else None, vmin=0, vmax=255)
        return True
    except ImportError:
        return False


def save_artifacts(
    out_dir: Path | str | None,
    attack_name: str,
    *,
    reconstructions: np.ndarray,
    originals: np.ndarray,
    labels: np.ndarray,
    bounds: tuple[float, float],
    extra_arrays: dict[str, np.ndarray] | None = None,
) -> dict[str, str]:
    """Write ``reconstructions.npy``, ``originals.npy``, ``labels.npy`` and ``grid.png`` under
    ``out_dir/<attack name>/``; return their paths. Nothing is written when ``out_dir`` is None."""
    if out_dir is None:
        return {}
    d = Path(out_dir) / attack_name
    d.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    arrays = {"reconstructions": reconstructions, "originals": originals, "labels": labels, **(extra_arrays or {})}
    for key, arr in arrays.items():
        p = d / f"{key}.npy"
        with atomic_write(p) as fh:
            np.save(fh, np.asarray(arr), allow_pickle=False)
        paths[key] = str(p)
    if originals.ndim in (3, 4) and len(originals):
        h, w = originals.shape[-2:]
        scale = max(1, int(np.ceil(64 / max(h, w))))
        p = d / "grid.png"
        if _write_png(p, _grid(originals, reconstructions, *bounds), scale):
            paths["grid"] = str(p)
        else:
            warnings.warn(
                f'{attack_name}: no image library to draw grid.png; install one with pip install "audit-sdk[report]". '
                "The arrays were saved.",
                AuditSDKWarning,
                stacklevel=3,
            )
    return paths


def finish(
    attack: Any,
    *,
    reconstructions: np.ndarray,
    originals: np.ndarray,
    labels: np.ndarray,
    bounds: tuple[float, float],
    data_range: float,
    extra: dict[str, Any],
    context: RunContext | None,
) -> AttackResult:
    """Save the artefacts (when the run has an ``out_dir``) and build the reconstruction result."""
    extra["artifacts"] = save_artifacts(
        context.out_dir if context is not None else None,
        attack.name,
        reconstructions=reconstructions,
        originals=originals,
        labels=labels,
        bounds=bounds,
    )
    return AttackResult(
        attack=attack.name,
        params=attack.params.model_dump(),
        kind="reconstruction",
        reconstructions=reconstructions,
        originals=originals,
        labels=labels,
        data_range=data_range,
        extra=extra,
    )
