"""One training run of ``audit.dp``: the architecture, the cached run, the recorder of released updates.

The model-training calls go through the torch adapter's Trainer; torch is imported inside functions only.
"""

from __future__ import annotations

import copy
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from audit_sdk.cache import ResultCache
from audit_sdk.context import RunContext
from audit_sdk.data import AuditData
from audit_sdk.digest import array_digest
from audit_sdk.errors import InvalidModelError, InvalidParameterError
from audit_sdk.interfaces import Defense
from audit_sdk.run import _json_default
from audit_sdk.target import Target

from ._canaries import _gradient_canaries
from ._params import DPAuditParams

_CACHE_VERSION = 1


# --------------------------------------------------------------------------- architecture
def _builder(p: DPAuditParams, target: Target, data: AuditData) -> Any:
    """``builder(seed) -> torch.nn.Module`` (picklable, so runs can go to worker processes)."""
    shape = tuple(int(s) for s in data.feature_shape)
    n_classes = max(int(data.n_classes), int(getattr(target, "n_classes", 0) or 0))
    if p.architecture != "from-target":
        # the same picklable named-architecture builder as the reference models (torch adapter)
        from audit_sdk.adapters.torch.builders import build_named

        return functools.partial(build_named, p.architecture, {}, shape, n_classes)
    model = getattr(target, "model", None)
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency of the training access
        raise InvalidModelError('audit.dp trains with torch: pip install "audit-sdk[torch]"') from exc
    if not isinstance(model, torch.nn.Module):
        raise InvalidModelError(
            f"audit.dp with architecture='from-target' re-trains the target's torch model, but the target is "
            f"{target.describe().get('kind', type(target).__name__)}. Pass a torch.nn.Module, or set architecture to 'mlp', 'cnn' or 'lenet'."
        )
    from audit_sdk.adapters.torch.models import reinitialised

    return functools.partial(reinitialised, copy.deepcopy(model).cpu())


def _cache_dir(context: RunContext | None) -> Path | None:
    root = context.cache_dir if context is not None else None
    if root is None:
        return None
    d = Path(root) / "dp-audit"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _key(p: DPAuditParams, x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray, include: np.ndarray, seed: int, arch: str) -> str:
    spec = p.model_dump(exclude={"confidence", "guesses", "accountants", "delta"})
    return array_digest(x, y, cx, cy, include, spec={"v": _CACHE_VERSION, "p": spec, "seed": seed, "arch": arch}, length=32)


# --------------------------------------------------------------------------- one training run
class _Recorder(Defense):
    """Internal observer of a DP audit run: installs gradient canaries and records what the threat model sees."""

    name = "audit.dp-recorder"
    summary = "records released updates for audit.dp (internal)"
    points = ()

    def __init__(self, canaries: Any, include: np.ndarray, threat_model: str) -> None:
        super().__init__()
        self.canaries = canaries  # (m, n_params) gradient canaries, or None (input canaries)
        self.include = include
        self.threat_model = threat_model
        self.scores: Any = None

    def on_train_begin(self, ctx: Any) -> None:
        import torch

        params = [q for q in ctx.model.parameters() if q.requires_grad]
        self.theta0_ = torch.cat([q.detach().reshape(-1) for q in params]).clone()
        if self.canaries is not None:
            inc = torch.from_numpy(np.flatnonzero(self.include))
            ctx.gradient_canaries = self.canaries.index_select(0, inc).coalesce().to(ctx.device)
        self.scores = torch.zeros(len(self.include), dtype=torch.float64)
        self.changes = torch.zeros(len(self.include), dtype=torch.float64)
        self.last_: Any = None
        if self.canaries is not None:  # Dirac canaries: one non-zero coordinate each, rows in order
            self.coords_ = self.canaries.indices()[1].to(ctx.device)
            self.signs_ = self.canaries.values().sign().double()

    def on_step_end(self, ctx: Any) -> None:
        if self.threat_model != "white-box" or self.canaries is None:
            return
        import torch

        params = [q for q in ctx.model.parameters() if q.requires_grad]
        if any(q.grad is None for q in params):
            return
        released = torch.cat([q.grad.detach().reshape(-1) for q in params])
        a = released[self.coords_].double().cpu() * self.signs_  # the released gradient along each (Dirac) canary
        self.scores += a
        if self.last_ is not None:
            # step-to-step change: noise that does not change between steps (a bug) cancels here
            self.changes += (a - self.last_) ** 2
        self.last_ = a

    def on_train_end(self, ctx: Any) -> dict[str, Any]:
        if self.canaries is not None and bool(self.include.any()) and ctx.gradient_canary_steps == 0:
            raise InvalidParameterError(
                "audit.dp: the gradient defense never used the gradient canaries (TrainContext.gradient_canaries), so they "
                "cannot be detected and the audit would read as a false 'consistent'. Use canary='random-label' or 'ood', "
                "or make the defense sample and clip ctx.gradient_canaries like data (see defense.dp-sgd)."
            )
        return {}


def _train_and_score(
    builder: Any,
    data: AuditData,
    x: np.ndarray,
    y: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    include: np.ndarray,
    p: DPAuditParams,
    defense: Defense | None,
    train_cfg: dict[str, Any],
    seed: int,
    cache: Path | None,
    pm: Any = None,
) -> dict[str, Any]:
    """Train once on (x, y) plus the included canaries and score every canary; cached (``ResultCache``) when ``cache`` is set."""
    import torch

    from audit_sdk.adapters.torch import TrainConfig, Trainer, evaluate_accuracy

    model = builder(seed)
    store, key = None, ""
    if cache is not None:
        arch = repr(model) + repr([(k, tuple(v.shape)) for k, v in model.state_dict().items()])
        # the SDK's keyed store: atomic entries, no pickle, a damaged entry deleted and recomputed
        store, key = ResultCache(cache, namespace="audit.dp/run"), _key(p, x, y, cx, cy, include, seed, arch)
        hit, value = store.get(key)
        if hit:
            return {**value, "from_cache": True}
    d = copy.deepcopy(defense) if defense is not None else None  # a defense keeps per-run state
    n_params = sum(q.numel() for q in model.parameters() if q.requires_grad)
    gradient = p.canary == "gradient"
    if gradient:
        clip = float(getattr(getattr(d, "params", None), "max_grad_norm", 1.0) or 1.0)
        g = _gradient_canaries(n_params, len(include), p.canary_norm or 10.0 * clip, p.seed)
        xt, yt = x, y
    else:
        g = None
        xt = np.concatenate([x, cx[include]]).astype(np.float32)
        yt = np.concatenate([y, cy[include]]).astype(np.int64)
    cx_t = torch.from_numpy(np.ascontiguousarray(cx, dtype=np.float32)) if not gradient else None
    cy_t = torch.from_numpy(np.ascontiguousarray(cy, dtype=np.int64)) if not gradient else None
    rec = _Recorder(g, include, p.threat_model)
    t0 = time.perf_counter()
    trainer = Trainer(TrainConfig(**train_cfg, seed=seed), defenses=[*([d] if d is not None else []), rec], pm=pm)
    result = trainer.fit(model, xt, yt)
    train_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    if p.threat_model == "white-box":
        scores = rec.scores.numpy()
    elif gradient:
        theta = torch.cat([q.detach().reshape(-1) for q in model.parameters() if q.requires_grad]).double().cpu()
        scores = ((rec.theta0_.double().cpu() - theta)[rec.coords_.cpu()] * rec.signs_).numpy()  # displacement along each canary
    else:
        with torch.no_grad():
            model.eval()
            dev = next(model.parameters()).device
            losses = [
                torch.nn.functional.cross_entropy(model(cx_t[s : s + 2048].to(dev)), cy_t[s : s + 2048].to(dev), reduction="none")  # type: ignore[index]
                for s in range(0, len(cx), 2048)
            ]
            scores = -torch.cat(losses).double().cpu().numpy()
    score_seconds = time.perf_counter() - t1
    if not np.isfinite(scores).all():
        raise InvalidModelError("audit.dp: the trained model gives NaN or inf canary scores (training diverged); lower lr or epochs.")
    out = {
        "scores": [float(v) for v in scores],
        "alternatives": {"step-change": [float(v) for v in rec.changes.numpy()]} if p.threat_model == "white-box" else {},
        "defense": result.defenses.get(d.name, {}) if d is not None else {},
        "train_seconds": train_seconds,
        "score_seconds": score_seconds,
        "steps": result.steps,
        "training_rows": len(xt),
        "test_accuracy": evaluate_accuracy(model, data.non_members.x, data.non_members.y, device=p.device),
    }
    out = json.loads(json.dumps(out, default=_json_default))  # plain JSON types: the cached run reads back the same
    if store is not None:
        store.put(key, out)  # an interrupted audit resumes from the runs it finished
    return out
