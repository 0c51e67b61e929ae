"""Reference (shadow) models shared by the membership attacks: trained once, cached on disk.

LiRA, RMIA and the Shokri shadow-model classifier all need models trained like the target on
data like the target's. This module trains them through the torch adapter and the run's executor
and caches each one by a content hash of (architecture, training data, seed, training config), so
every attack of an audit, and every later audit with the same cache directory, reuses them; an
interrupted run resumes from what is already on disk.

Two reference sets exist:

- ``offline``: model i is trained on a random half of the population (the half depends only on
  ``reference_seed`` and i, so 4 models are the first 4 of 16 and are shared);
- ``online``: the pool is the target points (members and non-members, unlabelled as such) plus the
  population, and each pool point is in exactly half of the models (Carlini et al. 2022).

The architecture is a model factory from ``RunContext.extras["model_factory"]`` (a callable
``factory(input_shape, n_classes, seed) -> torch.nn.Module``; module-level, so worker processes can
import it), a named default (``cnn``, ``mlp``, ``lenet``), ``auto`` (the factory when given, else a
surrogate sized from the input shape), or ``from-target``: the target's ONNX graph converted with
the optional onnx2torch package and re-initialised (falls back to ``auto`` when onnx2torch is not
installed, saying so in the result).

torch is imported inside the functions, never at module import.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidDataError, InvalidParameterError
from audit_sdk.executor import LocalExecutor
from audit_sdk.fileio import atomic_write
from audit_sdk.target import Target

__all__ = ["ReferenceParams", "ReferenceSet", "get_reference_set"]

#: Bump when training or caching changes in a way that invalidates cached models.
_CACHE_VERSION = 1


class ReferenceParams(BaseModel):
    """Options of the reference models (shared by every attack that trains them)."""

    model_config = ConfigDict(extra="forbid")

    n_references: int = Field(8, ge=1, le=1024, description="number of reference (shadow) models")
    architecture: Literal["auto", "factory", "cnn", "mlp", "lenet", "from-target"] = Field(
        "auto", description="reference architecture: RunContext.extras['model_factory'], a default, or the ONNX graph via onnx2torch"
    )
    reference_epochs: int = Field(40, ge=1, description="training epochs of each reference model (match the target's)")
    reference_batch_size: int = Field(32, ge=1)
    reference_lr: float = Field(2e-3, gt=0)
    reference_optimizer: Literal["sgd", "momentum", "adam"] = "adam"
    reference_weight_decay: float = Field(0.0, ge=0)
    reference_seed: int = Field(0, ge=0, description="seeds the data halves and initialisations (fixed, so attacks share models)")

    def train_config(self) -> dict[str, Any]:
        return {
            "epochs": self.reference_epochs,
            "batch_size": self.reference_batch_size,
            "lr": self.reference_lr,
            "optimizer": self.reference_optimizer,
            "weight_decay": self.reference_weight_decay,
        }


# --------------------------------------------------------------------------- builders (picklable)
def _build_named(name: str, input_shape: tuple[int, ...], n_classes: int, seed: int) -> Any:
    from audit_sdk.adapters.torch import make_model

    return make_model(name, input_shape=input_shape, n_classes=n_classes, seed=seed)


def _build_factory(factory: Callable[..., Any], input_shape: tuple[int, ...], n_classes: int, seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    model = factory(input_shape, n_classes, seed)
    if not isinstance(model, torch.nn.Module):
        raise InvalidParameterError(f"model_factory returned {type(model).__name__}; it must return a torch.nn.Module.")
    return model


def _build_reinit(template: Any, input_shape: tuple[int, ...], n_classes: int, seed: int) -> Any:
    from audit_sdk.adapters.torch.models import reinitialised

    return reinitialised(template, seed)


@dataclass
class _Arch:
    builder: Callable[[int], Any]
    identity: str
    note: str | None = None


def _default_name(input_shape: tuple[int, ...]) -> str:
    return "cnn" if len(input_shape) == 3 and min(input_shape[1:]) >= 4 else "mlp"


def _resolve_arch(params: ReferenceParams, target: Target, data: AuditData, context: Any) -> _Arch:
    if data.input_names:  # token ids: an image/tabular network trained on them would be a meaningless reference
        raise InvalidParameterError(
            f"reference models need a trainer for this model family (a model with named inputs {list(data.input_names)}, e.g. a "
            "text classifier), and none is installed; use mia.loss-threshold, mia.threshold or mia.classifier (target-split)."
        )
    shape = tuple(int(s) for s in data.feature_shape)
    n_classes = max(int(data.n_classes), int(getattr(target, "n_classes", 0) or 0))
    factory = (getattr(context, "extras", None) or {}).get("model_factory")
    note = None
    choice = params.architecture
    if choice == "from-target":
        template = _onnx_template(target)
        if template is not None:
            builder = functools.partial(_build_reinit, template, shape, n_classes)
            return _Arch(builder, f"onnx2torch:{_model_identity(builder)}")
        note = (
            "architecture='from-target' could not derive a torch model from the target (it needs an ONNX target, the optional "
            "onnx2torch package: pip install \"audit-sdk[onnx2torch]\", and a graph it can convert); used 'auto' instead"
        )
        choice = "auto"
    if choice == "factory" and factory is None:
        raise InvalidParameterError(
            "architecture='factory' but RunContext.extras has no 'model_factory'; pass "
            "RunContext(extras={'model_factory': f}) with f(input_shape, n_classes, seed) -> torch.nn.Module, or use 'auto'."
        )
    if choice in ("factory", "auto") and factory is not None:
        builder = functools.partial(_build_factory, factory, shape, n_classes)
        name = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', type(factory).__name__)}"
        return _Arch(builder, f"factory:{name}:{_model_identity(builder)}", note)
    name = _default_name(shape) if choice in ("auto", "factory") else choice
    builder = functools.partial(_build_named, name, shape, n_classes)
    return _Arch(builder, f"named:{name}:{_model_identity(builder)}", note)


def _model_identity(builder: Callable[[int], Any]) -> str:
    """The architecture as text (module tree and parameter shapes): part of the cache key."""
    model = builder(0)
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    return hashlib.sha256((repr(model) + repr(shapes)).encode()).hexdigest()[:16]


def _onnx_template(target: Target) -> Any:
    path = getattr(target, "path", None)
    if path is None or not str(path).endswith(".onnx"):
        return None
    try:
        import onnx2torch  # optional extra; never a default dependency
    except ImportError:
        return None
    try:
        return onnx2torch.convert(str(path))
    except Exception:  # an unsupported op: fall back to the surrogate (the note says so)
        return None


# --------------------------------------------------------------------------- training task
def _train_reference(
    builder: Callable[[int], Any], x: np.ndarray, y: np.ndarray, config: dict[str, Any], seed: int, path: str, threads: int | None
) -> str:
    """Train one reference model and save its state_dict at ``path`` (skipped when it exists)."""
    if Path(path).is_file():
        return path
    import torch

    from audit_sdk.adapters.torch import TrainConfig, Trainer

    if threads:
        torch.set_num_threads(threads)
    model = builder(seed)
    # "auto": the GPU when there is one (the cache stores CPU tensors either way)
    Trainer(TrainConfig(**{"device": "auto", **config}, seed=seed)).fit(model, x, y)
    with atomic_write(path) as fh:  # an interrupted run never leaves a half-written model behind
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, fh)
    return path


def _loadable(path: str, notes: list[str]) -> bool:
    """Whether the cached model at ``path`` loads; a damaged one is deleted (and noted) so it is retrained."""
    if not Path(path).is_file():
        return False
    import torch

    try:
        torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any damage (empty, truncated, foreign file) means "train it again"
        Path(path).unlink(missing_ok=True)
        notes.append(f"cached reference model {Path(path).name} could not be loaded ({type(exc).__name__}); deleted and retrained")
        return False
    return True


def _hash_arrays(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- the reference set
@dataclass
class ReferenceSet:
    """Trained reference models and which pool points each was trained on.

    Attributes:
        kind: ``offline`` (pool = population) or ``online`` (pool = target points + population).
        pool_x, pool_y: the pool; in ``online`` sets the first ``n_target`` rows are the target
            points in ``AuditData.combined()`` order.
        masks: (n_models, n_pool) bool, True where the model trained on the pool point.
        paths: the cached state_dict of each model.
        trained: how many models this call trained (the rest came from the cache).
    """

    kind: str
    builder: Callable[[int], Any]
    pool_x: np.ndarray
    pool_y: np.ndarray
    masks: np.ndarray
    paths: list[str]
    n_target: int = 0
    trained: int = 0
    notes: list[str] = field(default_factory=list)
    _memo: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_models(self) -> int:
        return len(self.paths)

    def predict_proba(self, x: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
        """Class probabilities of every reference model on ``x``: (n_models, n, n_classes), float64."""
        key = _hash_arrays(np.asarray(x))
        if key in self._memo:
            return self._memo[key]
        import torch

        from audit_sdk.target import softmax

        xa = np.ascontiguousarray(x, dtype=np.float32)
        out = []
        for i, path in enumerate(self.paths):
            model = self.builder(i)
            model.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
            model.eval()
            with torch.no_grad():
                z = np.concatenate([model(torch.from_numpy(xa[j : j + batch_size])).float().numpy() for j in range(0, len(xa), batch_size)])
            out.append(softmax(z))
        res = np.stack(out)
        self._memo[key] = res
        return res


@contextlib.contextmanager
def _progress(context: Any, description: str, total: int) -> Iterator[Callable[[int, int], None] | None]:
    if not getattr(context, "progress", False) or total == 0:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, _total: int) -> None:
            bar.update(task, completed=done)

        yield update


def offline_masks(n_pool: int, n_models: int, seed: int) -> np.ndarray:
    """Model i trains on a random half of the pool, drawn from (seed, i) only: sets of different sizes share models."""
    masks = np.zeros((n_models, n_pool), bool)
    for i in range(n_models):
        perm = np.random.default_rng(np.random.SeedSequence([seed, 0x0FF, i])).permutation(n_pool)
        masks[i, perm[: n_pool // 2]] = True
    return masks


def online_masks(n_pool: int, n_models: int, seed: int) -> np.ndarray:
    """Each pool point is in exactly half of the models (Carlini et al. 2022's ``keep`` masks)."""
    u = np.random.default_rng(np.random.SeedSequence([seed, 0x0A, n_models])).uniform(size=(n_models, n_pool))
    return u.argsort(axis=0) < n_models // 2


def reference_problems(params: ReferenceParams, data: AuditData, *, kind: str, attack_name: str) -> list[str]:
    """What would stop ``get_reference_set`` (checked before any attack runs, see ``Attack.check``)."""
    out = []
    if data.population is None or len(data.population) < 4:
        out.append(
            f"{attack_name} trains reference models on population data, but the AuditData has "
            f"{0 if data.population is None else len(data.population)} population samples. Pass population=(x, y): "
            "data from the same distribution as the training set, disjoint from members and non-members."
        )
    if kind == "online" and params.n_references < 2:
        out.append(f"{attack_name}: online mode needs n_references >= 2 (half IN, half OUT); got {params.n_references}.")
    return out


def get_reference_set(
    params: ReferenceParams,
    target: Target,
    data: AuditData,
    *,
    kind: Literal["offline", "online"],
    context: Any,
    attack_name: str,
) -> ReferenceSet:
    """Train (or load from the cache) the reference models an attack needs.

    Models are cached under ``context.cache_dir / "mia-reference"``; without a cache directory a
    temporary one lives as long as the process. Training runs through ``context.executor.map``
    with one task per missing model, keyed by its cache key.

    Raises:
        InvalidDataError: no population data (reference models are trained on it).
    """
    problems = reference_problems(params, data, kind=kind, attack_name=attack_name)
    if problems:
        raise (InvalidParameterError if "online mode" in problems[0] else InvalidDataError)(problems[0])
    assert data.population is not None  # reference_problems refuses data without one
    arch = _resolve_arch(params, target, data, context)
    pop = data.population
    if kind == "offline":
        pool_x, pool_y, n_target = pop.x, pop.y, 0
        masks = offline_masks(len(pop), params.n_references, params.reference_seed)
    else:
        x, y, _ = data.combined()
        pool_x, pool_y, n_target = np.concatenate([x, pop.x]), np.concatenate([y, pop.y]), len(y)
        masks = online_masks(len(pool_y), params.n_references, params.reference_seed)
    cache_root = getattr(context, "cache_dir", None)
    if cache_root is None:
        cache_root = Path(_session_tmp()) / "cache"
    cache = Path(cache_root) / "mia-reference"
    cache.mkdir(parents=True, exist_ok=True)
    config = params.train_config()
    paths, keys, tasks = [], [], []
    healed: list[str] = []
    executor = getattr(context, "executor", None) or LocalExecutor(1)
    threads = 1 if getattr(executor, "workers", 1) > 1 else None
    for i in range(params.n_references):
        xi, yi = pool_x[masks[i]], pool_y[masks[i]]
        seed = int(np.random.SeedSequence([params.reference_seed, 0x5EED, i]).generate_state(1)[0])
        key_src = json.dumps(
            {"v": _CACHE_VERSION, "arch": arch.identity, "data": _hash_arrays(xi, yi), "seed": seed, "config": config}, sort_keys=True
        )
        key = hashlib.sha256(key_src.encode()).hexdigest()[:32]
        path = str(cache / f"{key}.pt")
        paths.append(path)
        if not _loadable(path, healed):
            keys.append(key)
            tasks.append((arch.builder, xi, yi, config, seed, path, threads))
    if tasks:
        with _progress(context, f"{attack_name}: training {len(tasks)} {kind} reference models", len(tasks)) as cb:
            executor.map(_train_reference, tasks, keys=keys, progress=cb)
        # An executor with a result cache may answer a key from an earlier run whose model file
        # was since deleted: train those here rather than fail later on a missing file.
        for t in tasks:
            if not Path(t[5]).is_file():
                _train_reference(*t)
    builder_seeds = [
        int(np.random.SeedSequence([params.reference_seed, 0x5EED, i]).generate_state(1)[0]) for i in range(params.n_references)
    ]
    ref = ReferenceSet(
        kind=kind,
        builder=_SeededBuilder(arch.builder, builder_seeds),
        pool_x=pool_x,
        pool_y=pool_y,
        masks=masks,
        paths=paths,
        n_target=n_target,
        trained=len(tasks),
        notes=([arch.note] if arch.note else []) + healed,
    )
    return ref


@dataclass
class _SeededBuilder:
    """Builds model i with the seed it was trained with (loading overwrites the weights anyway)."""

    builder: Callable[[int], Any]
    seeds: list[int]

    def __call__(self, i: int) -> Any:
        return self.builder(self.seeds[i])


_TMP: list[str] = []


def _session_tmp() -> str:
    """A process-lifetime temporary directory for runs without a cache_dir (removed at exit)."""
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="audit-sdk-mia-"))
        atexit.register(shutil.rmtree, _TMP[0], True)
    return _TMP[0]


def describe(ref: ReferenceSet) -> dict[str, Any]:
    """Figures about a reference set for ``AttackResult.extra``."""
    return {
        "reference_kind": ref.kind,
        "n_references": ref.n_models,
        "references_trained": ref.trained,
        "references_from_cache": ref.n_models - ref.trained,
        **({"reference_notes": ref.notes} if ref.notes else {}),
    }
