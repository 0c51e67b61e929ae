"""Reference (shadow) models shared by the membership attacks: trained once, cached on disk.

LiRA, RMIA and the Shokri shadow-model classifier all need models trained like the target on
data like the target's. They are trained through the ``make_trainer`` hook (any framework: torch
networks, scikit-learn / LightGBM / XGBoost estimators), many at once where the trainer can
(torch: one vectorised ensemble), through the run's executor, and cached by a content hash of
(trainer identity, training data, seed), so every attack of an audit, and every later audit with
the same cache directory, reuses them; an interrupted run resumes from what is already on disk.

Two reference sets exist:

- ``offline``: model i is trained on a random half of the population (the half depends only on
  ``reference_seed`` and i, so 4 models are the first 4 of 16 and are shared);
- ``online``: the pool is the target points (members and non-members, unlabelled as such) plus the
  population if there is one, and each pool point is in exactly half of the models (Carlini et
  al. 2022): models 2k and 2k+1 train on complementary halves, so any even prefix keeps the
  property and smaller sets are prefixes of larger ones. Without a population this is the only
  setting, and it needs nothing but the audited points.

The reference model is, in order: ``reference_model`` (a spec as data, e.g. ``{family: sklearn,
estimator: RandomForestClassifier, params: {...}}`` or ``{family: torch, architecture: cnn}``),
``RunContext.extras["model_factory"]`` (``factory(input_shape, n_classes, seed) -> nn.Module``), a
named architecture, the target's own estimator family (a scikit-learn target), the target's ONNX
graph via onnx2torch (``from-target``), or, with ``architecture="auto"``, the torch candidate that
agrees best with the target's outputs on data the candidate did not train on (the report names it
and its agreement). A tree-ensemble ONNX target with no ``reference_model`` is refused: a neural
surrogate of a forest would be a guess.

With ``n_references`` left unset the number of models (8 to 128) and, on a slow machine, the
epochs are chosen to fit a time budget (``RunContext.extras["budget_seconds"]``, default 300 s,
``audit-sdk audit --budget``): measured on the first models, then grown in rounds sized by the
last round's speed; the result says what was chosen.

No framework is imported here.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk.cache import ResultCache
from audit_sdk.context import RunContext
from audit_sdk.data import AuditData
from audit_sdk.digest import array_digest, spec_digest
from audit_sdk.errors import InvalidDataError, InvalidParameterError
from audit_sdk.executors import LocalExecutor
from audit_sdk.fileio import atomic_path
from audit_sdk.target import Target
from audit_sdk.training import Trainer, make_trainer

__all__ = ["DEFAULT_BUDGET_SECONDS", "ReferenceParams", "ReferenceSet", "get_reference_set"]

#: Bump when training or caching changes in a way that invalidates cached models.
_CACHE_VERSION = 2
#: Time budget of a reference set whose size is left to the SDK (seconds).
DEFAULT_BUDGET_SECONDS = 300.0
#: Sizes a budgeted set chooses between: at least the first, at most the last.
_MIN_AUTO, _MAX_AUTO = 8, 128
#: Most models trained per task (one vectorised group: larger groups train a model faster, smaller
#: ones lose less to an interruption). Model i does not depend on the group that trains it.
_GROUP = 32
_DEFAULT_EPOCHS = 40


class ReferenceParams(BaseModel):
    """Options of the reference models (shared by every attack that trains them)."""

    model_config = ConfigDict(extra="forbid")

    n_references: int | None = Field(
        None, ge=1, le=1024, description=f"number of reference models (default: {_MIN_AUTO}-{_MAX_AUTO}, as many as the time budget allows)"
    )
    architecture: Literal["auto", "factory", "cnn", "mlp", "lenet", "from-target"] = Field(
        "auto",
        description="torch reference architecture: auto picks the candidate that agrees best with the target (or the model_factory / "
        "the target's own estimator family when known), a default, or the ONNX graph via onnx2torch",
    )
    reference_model: dict[str, Any] | None = Field(
        None,
        description="the reference model as data, e.g. {family: sklearn, estimator: RandomForestClassifier, params: {n_estimators: 50}}, "
        "{family: lightgbm|xgboost, params: {...}} or {family: torch, architecture: cnn, options: {hidden: 64}}",
    )
    reference_epochs: int | None = Field(
        None, ge=1, description=f"training epochs of each torch reference model (default {_DEFAULT_EPOCHS}, fewer if the budget needs it)"
    )
    reference_batch_size: int = Field(32, ge=1)
    reference_lr: float = Field(2e-3, gt=0)
    reference_optimizer: Literal["sgd", "momentum", "adam"] = "adam"
    reference_weight_decay: float = Field(0.0, ge=0)
    reference_seed: int = Field(0, ge=0, description="seeds the data halves and initialisations (fixed, so attacks share models)")

    def train_config(self, epochs: int | None = None) -> dict[str, Any]:
        return {
            "epochs": epochs or self.reference_epochs or _DEFAULT_EPOCHS,
            "batch_size": self.reference_batch_size,
            "lr": self.reference_lr,
            "optimizer": self.reference_optimizer,
            "weight_decay": self.reference_weight_decay,
        }


#: Options every reference attack shares (an attack's own options never split its reference set).
_SHARED_FIELDS = set(ReferenceParams.model_fields) - {"n_references"}


# --------------------------------------------------------------------------- choosing the trainer
@dataclass
class _Choice:
    trainer: Trainer
    notes: list[str] = field(default_factory=list)
    selection: dict[str, Any] | None = None
    explicit: bool = True  # False: a surrogate chosen by the SDK


_ML_OPS = ("TreeEnsemble", "LinearClassifier", "SVMClassifier", "LinearRegressor", "SVMRegressor")


def onnx_ml_ops(target: Target) -> list[str]:
    """The ``ai.onnx.ml`` model operators (trees, linear models, SVMs) in an ONNX target's graph."""
    path = getattr(target, "path", None)
    if path is None or not str(path).endswith(".onnx"):
        return []
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:
        return []
    return sorted({n.op_type for n in graph.node if n.domain == "ai.onnx.ml" and n.op_type.startswith(_ML_OPS)})


def _options(data: AuditData, target: Target, train: dict[str, Any]) -> dict[str, Any]:
    shape = tuple(int(s) for s in data.feature_shape)
    n_classes = max(int(data.n_classes), int(getattr(target, "n_classes", 0) or 0))
    return {"input_shape": shape, "n_classes": n_classes, "train": train}


def _resolve_trainer(
    params: ReferenceParams, target: Target, data: AuditData, context: RunContext | None, train: dict[str, Any]
) -> _Choice:
    registry = context.registry if context is not None else None
    opts = _options(data, target, train)
    factory = (context.extras if context is not None else {}).get("model_factory")
    choice = params.architecture
    if params.reference_model is not None:
        t = make_trainer(params.reference_model, opts, registry=registry)
        return _Choice(t, [f"reference models: {t.describe()} (from reference_model)"])
    if choice == "factory" and factory is None:
        raise InvalidParameterError(
            "architecture='factory' but RunContext.extras has no 'model_factory'; pass "
            "RunContext(extras={'model_factory': f}) with f(input_shape, n_classes, seed) -> torch.nn.Module, or use 'auto'."
        )
    if choice in ("factory", "auto") and factory is not None:
        return _Choice(make_trainer(factory, {**opts, "family": "torch"}, registry=registry))
    if choice in ("cnn", "mlp", "lenet"):
        return _Choice(make_trainer({"family": "torch", "architecture": choice}, opts, registry=registry))
    estimator = getattr(target, "estimator", None)
    if estimator is not None:  # a scikit-learn / LightGBM / XGBoost target: its own family and hyperparameters
        t = make_trainer(estimator, opts, registry=registry)
        return _Choice(t, [f"reference models: {t.describe()} (the target estimator's class and parameters)"])
    ml_ops = onnx_ml_ops(target)
    if ml_ops:
        raise InvalidParameterError(
            f"the target is a {'/'.join(ml_ops)} ONNX model (not a neural network); name its family for the reference models, e.g. "
            '--param mia.lira.reference_model=\'{"family": "sklearn", "estimator": "RandomForestClassifier", '
            '"params": {"n_estimators": 100}}\' (families: sklearn, lightgbm, xgboost).'
        )
    notes: list[str] = []
    if choice == "from-target":
        template = _onnx_template(target)
        if template is not None:
            return _Choice(make_trainer(template, opts, registry=registry), ["reference models: the target's ONNX graph, re-initialised"])
        notes.append(
            "architecture='from-target' could not derive a torch model from the target (it needs an ONNX target, the optional "
            "onnx2torch package: pip install \"audit-sdk[onnx2torch]\", and a graph it can convert); used 'auto' instead"
        )
    cands = _candidates(opts["input_shape"])
    trainers = [make_trainer(c, opts, registry=registry) for c in cands]
    return _Choice(trainers[0], notes, selection={"candidates": trainers}, explicit=False)


def _candidates(shape: tuple[int, ...]) -> list[dict[str, Any]]:
    if len(shape) == 3 and min(shape[1:]) >= 4:
        return [{"family": "torch", "architecture": a} for a in ("cnn", "lenet", "mlp")]
    return [{"family": "torch", "architecture": "mlp", "options": {"hidden": h}} for h in (128, 32, 512)]


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
def _small_model_threads(workers: int = 1) -> int:
    """Threads for training / querying small models: one per two cores per worker, at least one
    (oversubscribed OpenMP threads spin, and on a busy machine that costs many times the work)."""
    return max(1, (os.cpu_count() or 1) // (2 * max(1, workers)))


@contextlib.contextmanager
def _threads(trainer: Trainer, threads: int | None) -> Iterator[None]:
    """Limit torch's intra-op threads while ``trainer`` (a torch one) works; restored afterwards."""
    if not threads or getattr(trainer, "family", "") != "torch":
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_reference(
    trainer: Trainer, xs: list[np.ndarray], ys: list[np.ndarray], seeds: list[int], paths: list[str], threads: int | None
) -> list[str]:
    """Train a group of reference models at once and save each at its path (skipping those on disk)."""
    todo = [i for i, p in enumerate(paths) if not Path(p).is_file()]
    if not todo:
        return paths
    with _threads(trainer, threads):
        models = trainer.fit_many([xs[i] for i in todo], [ys[i] for i in todo], [seeds[i] for i in todo])
    for i, model in zip(todo, models):
        with atomic_path(paths[i], suffix=trainer.file_suffix) as tmp:  # an interrupted run never leaves a half-written model
            trainer.save(model, str(tmp))
    return paths


# --------------------------------------------------------------------------- the reference set
@dataclass
class ReferenceSet:
    """Trained reference models and which pool points each was trained on.

    Attributes:
        kind: ``offline`` (pool = population) or ``online`` (pool = target points [+ population]).
        trainer: the ``audit_sdk.training.Trainer`` that made (and loads) the models.
        pool_x, pool_y: the pool; in ``online`` sets the first ``n_target`` rows are the target
            points in ``AuditData.combined()`` order.
        masks: (n_models, n_pool) bool, True where the model trained on the pool point.
        paths, seeds: the cached file and the seed of each model.
        trained: how many models this call trained (the rest came from the cache).
        info: what was chosen and why (architecture, agreement with the target, budget).
    """

    kind: str
    trainer: Trainer
    pool_x: np.ndarray
    pool_y: np.ndarray
    masks: np.ndarray
    paths: list[str]
    seeds: list[int]
    n_target: int = 0
    trained: int = 0
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    _memo: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n_models(self) -> int:
        return len(self.paths)

    @property
    def population_free(self) -> bool:
        """True when the pool is the audited points only (no population data)."""
        return self.kind == "online" and self.n_target == len(self.pool_y)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of every reference model on ``x``: (n_models, n, n_classes), float64."""
        key = array_digest(np.asarray(x))
        if key not in self._memo:
            models = [self.trainer.load(p, s) for p, s in zip(self.paths, self.seeds)]
            with _threads(self.trainer, _small_model_threads()):
                self._memo[key] = np.asarray(self.trainer.predict_proba_many(models, np.asarray(x)), dtype=np.float64)
        return self._memo[key]


@contextlib.contextmanager
def _progress(context: RunContext | None, description: str, total: int) -> Iterator[Callable[[int, int], None] | None]:
    if not (context is not None and context.progress) or total == 0:
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
    """Models 2k and 2k+1 train on complementary random halves: each pool point is IN for exactly half
    of any even number of models (Carlini et al. 2022's ``keep`` masks), and a set of 16 models is the
    first 16 of a set of 64 (so sets of different sizes share models)."""
    masks = np.zeros((n_models, n_pool), bool)
    for k in range((n_models + 1) // 2):
        perm = np.random.default_rng(np.random.SeedSequence([seed, 0x0A, k])).permutation(n_pool)
        masks[2 * k, perm[: n_pool // 2]] = True
        if 2 * k + 1 < n_models:
            masks[2 * k + 1] = ~masks[2 * k]
    return masks


def _model_seed(reference_seed: int, i: int) -> int:
    return int(np.random.SeedSequence([reference_seed, 0x5EED, i]).generate_state(1)[0])


class _Pool:
    """The pool, its masks and the cache paths of a trainer's models (extended as models are added)."""

    def __init__(self, kind: str, x: np.ndarray, y: np.ndarray, seed: int, cache: Path) -> None:
        self.kind, self.x, self.y, self.seed, self.cache = kind, x, y, seed, cache
        self.data_hash = array_digest(x, y)
        self.trained_paths: set[str] = set()
        #: notes on cached models that failed to load (deleted and retrained)
        self.healed: list[str] = []

    def cached(self, trainer: Trainer, masks: np.ndarray, i: int) -> bool:
        """Whether model ``i`` is cached and loads; a damaged file is deleted (and noted) so it is retrained."""
        path = self.path(trainer, masks[i], i)
        if not Path(path).is_file():
            return False
        try:
            trainer.load(path, _model_seed(self.seed, i))
        except Exception as exc:  # noqa: BLE001 - any damage (empty, truncated, foreign file) means "train it again"
            Path(path).unlink(missing_ok=True)
            self.healed.append(
                f"cached reference model {Path(path).name} could not be loaded ({type(exc).__name__}); deleted and retrained"
            )
            return False
        return True

    def masks(self, n: int) -> np.ndarray:
        return (offline_masks if self.kind == "offline" else online_masks)(len(self.y), n, self.seed)

    def path(self, trainer: Trainer, mask: np.ndarray, i: int) -> str:
        key_src = json.dumps(
            {
                "v": _CACHE_VERSION,
                "trainer": trainer.identity(),
                "data": self.data_hash,
                "mask": array_digest(mask),
                "seed": _model_seed(self.seed, i),
            },
            sort_keys=True,
        )
        return str(self.cache / f"{spec_digest(key_src)}{trainer.file_suffix}")

    def train(self, trainer: Trainer, indices: list[int], masks: np.ndarray, context: RunContext | None, label: str) -> int:
        """Train the models ``indices`` that are not cached yet; return how many were trained."""
        todo = [i for i in indices if not self.cached(trainer, masks, i)]
        if not todo:
            return 0
        self.trained_paths.update(self.path(trainer, masks[i], i) for i in todo)
        executor = context.executor if context is not None else LocalExecutor(1)
        workers = int(getattr(executor, "workers", 1) or 1)
        threads = _small_model_threads(workers)
        # groups of at most _GROUP models, and at least one group per worker so every worker has work
        # (model i is the same whichever group trains it, up to float rounding: each has its own seed and shuffle generator)
        size = max(1, min(_GROUP, -(-len(todo) // workers)))
        tasks, keys = [], []
        for g in range(0, len(todo), size):
            group = todo[g : g + size]
            paths = [self.path(trainer, masks[i], i) for i in group]
            seeds = [_model_seed(self.seed, i) for i in group]
            tasks.append((trainer, [self.x[masks[i]] for i in group], [self.y[masks[i]] for i in group], seeds, paths, threads))
            keys.append(spec_digest("|".join(paths)))
        with _progress(context, f"{label}: training {len(todo)} {self.kind} reference models", len(tasks)) as cb:
            executor.map(_train_reference, tasks, keys=keys, progress=cb)
        # An executor with a result cache may answer a key from an earlier run whose model files
        # were since deleted: train those here rather than fail later on a missing file.
        for t in tasks:
            if not all(Path(p).is_file() for p in t[4]):
                _train_reference(*t)
        return len(todo)


def _agreement(p_target: np.ndarray, p_model: np.ndarray) -> dict[str, float]:
    return {
        "top1_agreement": float((p_target.argmax(1) == p_model.argmax(1)).mean()),
        "total_variation": float(0.5 * np.abs(p_target - p_model).sum(1).mean()),
    }


def _select(choice: _Choice, pool: _Pool, target: Target, context: RunContext | None, label: str) -> tuple[Trainer, dict[str, Any], float]:
    """Train model 0 of each candidate; keep the one whose outputs are closest to the target's on
    the pool points it did not train on (OUT). Returns the trainer, the report and model 0's seconds."""
    assert choice.selection is not None
    mask0 = pool.masks(1)[0]
    held = ~mask0
    p_target = np.asarray(target.predict_proba(pool.x[held]), dtype=np.float64)
    rows, best, best_t = [], None, 0.0
    for cand in choice.selection["candidates"]:
        t0 = time.perf_counter()
        pool.train(cand, [0], mask0[None], context, f"{label} (architecture candidates)")
        seconds = time.perf_counter() - t0
        model = cand.load(pool.path(cand, mask0, 0), _model_seed(pool.seed, 0))
        agree = _agreement(p_target, np.asarray(cand.predict_proba(model, pool.x[held])))
        rows.append({**cand.describe(), **agree, "seconds": round(seconds, 3)})
        if best is None or agree["total_variation"] < rows[best]["total_variation"]:
            best, best_t = len(rows) - 1, seconds
    assert best is not None
    info = {
        "chosen": rows[best].get("architecture", rows[best].get("estimator")),
        "by": f"closest outputs to the target's (total variation) on {int(held.sum())} {'population' if pool.kind == 'offline' else 'pool'} points "
        "the candidate did not train on",
        "candidates": rows,
    }
    return choice.selection["candidates"][best], info, best_t


def _select_epochs(
    trainer: Trainer, epochs: int, pool: _Pool, n_target: int, target: Target, context: RunContext | None, label: str, t_base: float | None
) -> tuple[int, dict[str, Any], float | None]:
    """Pick the training length whose model 0 memorises like the target: the distribution of its
    logit-scaled confidence on the audited points (half of them in its training half, as half are
    the target's members) closest to the target's (1-D Wasserstein distance)."""
    from scipy.stats import wasserstein_distance

    from ._common import logit_confidence

    mask0 = pool.masks(1)[0]
    xt, yt = pool.x[:n_target], pool.y[:n_target]
    phi_target = logit_confidence(np.asarray(target.predict_proba(xt), dtype=np.float64), yt)
    rows: list[dict[str, Any]] = []
    times: dict[int, float] = {}
    todo = sorted({max(1, epochs // 2), epochs, 2 * epochs})
    while todo:
        e = todo.pop(0)
        cand = _with_epochs(trainer, e)
        t0 = time.perf_counter()
        pool.train(cand, [0], mask0[None], context, f"{label} (training-length candidates)")
        times[e] = time.perf_counter() - t0
        model = cand.load(pool.path(cand, mask0, 0), _model_seed(pool.seed, 0))
        phi = logit_confidence(np.asarray(cand.predict_proba(model, xt), dtype=np.float64), yt)
        rows.append({"epochs": e, "wasserstein": float(wasserstein_distance(np.clip(phi_target, -50, 50), np.clip(phi, -50, 50)))})
        # the longest so far fits best: the target trained longer still; keep doubling (up to 8x)
        if not todo and e < 8 * epochs and min(rows, key=lambda r: float(r["wasserstein"]))["epochs"] == e:
            todo.append(2 * e)
    best = min(rows, key=lambda r: float(r["wasserstein"]))
    best_e = int(best["epochs"])
    info = {
        "chosen": best_e,
        "by": f"closest distribution of logit-scaled confidence to the target's on the {n_target} audited points (Wasserstein)",
        "candidates": rows,
    }
    t = times[best_e] if best_e != epochs or t_base is None else t_base
    return best_e, info, t


_MIN_POPULATION = 4


def reference_problems(params: ReferenceParams, data: AuditData, *, kind: str, attack_name: str) -> list[str]:
    """What would stop ``get_reference_set``, found without training (the attacks' ``Attack.check``)."""
    out = []
    if data.input_names:  # token ids: an image/tabular network trained on them would be a meaningless reference
        out.append(
            f"{attack_name}: reference models need a trainer for this model family (a model with named inputs "
            f"{list(data.input_names)}, e.g. a text classifier), and none is installed; use mia.loss-threshold, mia.threshold "
            "or mia.classifier (target-split)."
        )
    pop = data.population
    if kind == "offline" and (pop is None or len(pop) < _MIN_POPULATION):
        out.append(
            f"{attack_name} in offline mode trains reference models on population data, but the AuditData has "
            f"{0 if pop is None else len(pop)} population samples. Use mode='online' (trains them on halves of the audited points), "
            "or pass population=(x, y): data from the same distribution, disjoint from members and non-members."
        )
    if kind == "online" and params.n_references is not None and params.n_references < 2:
        out.append(f"{attack_name}: online mode needs n_references >= 2 (half IN, half OUT); got {params.n_references}.")
    return out


def get_reference_set(
    params: ReferenceParams,
    target: Target,
    data: AuditData,
    *,
    kind: Literal["offline", "online"],
    context: RunContext | None,
    attack_name: str,
) -> ReferenceSet:
    """Train (or load from the cache) the reference models an attack needs.

    Models are cached under ``context.cache_dir / "mia-reference"``; without a cache directory a
    temporary one lives as long as the process. Training runs through ``context.executor.map``
    in groups of up to 32 models (one vectorised ensemble each where the trainer can).

    Raises:
        InvalidDataError: offline mode without population data.
        InvalidParameterError: online mode with fewer than 2 references; a tree-model ONNX target
            without ``reference_model``.
    """
    t_start = time.perf_counter()
    problems = reference_problems(params, data, kind=kind, attack_name=attack_name)
    if problems:
        raise (InvalidDataError if "population" in problems[0] else InvalidParameterError)(problems[0])
    pop = data.population
    has_pop = pop is not None and len(pop) >= _MIN_POPULATION
    if kind == "offline":
        assert pop is not None
        pool_x, pool_y, n_target = pop.x, pop.y, 0
    else:
        x, y, _ = data.combined()
        pool_x, pool_y, n_target = x, y, len(y)
        if has_pop:
            assert pop is not None
            pool_x, pool_y = np.concatenate([x, pop.x]), np.concatenate([y, pop.y])
    cache_root = context.cache_dir if context is not None else None
    if cache_root is None:
        cache_root = Path(_session_tmp()) / "cache"
    cache = Path(cache_root) / "mia-reference"
    cache.mkdir(parents=True, exist_ok=True)
    pool = _Pool(kind, pool_x, pool_y, params.reference_seed, cache)

    epochs = params.reference_epochs or _DEFAULT_EPOCHS
    choice = _resolve_trainer(params, target, data, context, params.train_config(epochs))
    budget = (
        None
        if params.n_references is not None
        else float((context.extras if context is not None else {}).get("budget_seconds", DEFAULT_BUDGET_SECONDS))
    )
    # what an earlier attack or run decided for this content (architecture, size, epochs): reused
    dkey_src = json.dumps(
        {
            "v": _CACHE_VERSION,
            "kind": kind,
            "data": pool.data_hash,
            "trainer": choice.trainer.identity(),
            "select": choice.selection is not None,
            "budget": budget,
            "params": params.model_dump(include=_SHARED_FIELDS, mode="json"),
        },
        sort_keys=True,
        default=str,
    )
    # the SDK's keyed store (atomic, no pickle, a damaged entry deleted and decided again)
    decisions, dkey = ResultCache(cache / "decisions", namespace="mia.reference/decision"), spec_digest(dkey_src)
    found, stored = decisions.get(dkey)
    decision: dict[str, Any] = dict(stored) if found else {}
    trainer = choice.trainer
    info: dict[str, Any] = {"reference_model": None}
    t_one: float | None = None
    if choice.selection is not None:
        cands = choice.selection["candidates"]
        if "selection" in decision:
            trainer = cands[int(decision["candidate"])]
            info["architecture_selection"] = decision["selection"]
        else:
            t0 = time.perf_counter()
            trainer, sel, t_one = _select(choice, pool, target, context, attack_name)
            decision |= {"candidate": cands.index(trainer), "selection": sel}
            info["architecture_selection"] = sel
            info["selection_seconds"] = round(time.perf_counter() - t0, 2)
    if params.reference_epochs is None and kind == "online" and _has_epochs(trainer):
        if "epochs_selection" in decision:
            chosen = int(decision["epochs_selection"]["chosen"])
        else:
            chosen, esel, t_one = _select_epochs(trainer, epochs, pool, n_target, target, context, attack_name, t_one)
            decision["epochs_selection"] = esel
        info["epochs_selection"] = decision["epochs_selection"]
        if chosen != epochs:
            trainer, epochs = _with_epochs(trainer, chosen), chosen
    info["reference_model"] = trainer.describe()

    if budget is None:
        n = int(params.n_references)  # type: ignore[arg-type]
    elif "n_references" in decision:
        n = int(decision["n_references"])
        if decision.get("epochs") not in (None, epochs):
            trainer = _with_epochs(trainer, int(decision["epochs"]))
        info["budget"] = decision["budget_info"]
    else:
        share = 0.8 * budget  # the rest: queries, scoring and the other attacks
        new_epochs = epochs
        if t_one is None:  # time one model (it is model 0 of the set, so nothing is wasted)
            t0 = time.perf_counter()
            pool.train(trainer, [0], pool.masks(1), context, attack_name)
            t_one = time.perf_counter() - t0
        left = share - (time.perf_counter() - t_start)
        # guess: a vectorised group trains ~2x faster per model than one model alone (the first group corrects it)
        if params.reference_epochs is None and t_one > 0.02 and _MIN_AUTO * t_one / 2 > left and _has_epochs(trainer):
            new_epochs = max(_DEFAULT_EPOCHS // 5, int(epochs * max(left, 0.0) / (_MIN_AUTO * t_one / 2)))
            if new_epochs != epochs:
                trainer = _with_epochs(trainer, new_epochs)
        masks = pool.masks(_MAX_AUTO)
        t0 = time.perf_counter()
        k = pool.train(trainer, list(range(_MIN_AUTO)), masks, context, attack_name)
        # seconds per model of a vectorised group; with the first group cached (and no decision on disk)
        # the one-model time stands in for it (an over-estimate: fewer models, never a blown budget)
        per_model = (time.perf_counter() - t0) / k if k else t_one
        n = _MIN_AUTO
        rounds = [{"models": _MIN_AUTO, "seconds_per_model": round(per_model, 3)}]
        # Grow in rounds, each sized by the last round's seconds per model: a larger vectorised
        # group trains a model in less time than the first small one (and the machine's load
        # changes), so one estimate from the first models would leave much of the budget unused.
        while n < _MAX_AUTO and per_model > 0:
            left = share - (time.perf_counter() - t_start)
            more = min(_MAX_AUTO - n, int(left / per_model))
            more -= more % 2 if kind == "online" else 0
            if more < 2:
                break
            t0 = time.perf_counter()
            k = pool.train(trainer, list(range(n, n + more)), masks, context, attack_name)
            if k:
                per_model = (time.perf_counter() - t0) / k
            n += more
            rounds.append({"models": more, "seconds_per_model": round(per_model, 3)})
        info["budget"] = {
            "budget_seconds": budget,
            "n_references": n,
            "epochs": new_epochs if _has_epochs(trainer) else None,
            "seconds_per_model": round(per_model, 3),
            "one_model_seconds": round(t_one, 3),
            "rounds": rounds,
            "note": f"{n} reference models{f' of {new_epochs} epochs' if _has_epochs(trainer) else ''} fit the {budget:.0f} s budget "
            f"({per_model:.2f} s per model in the last round of training)",
        }
        decision |= {"n_references": n, "epochs": new_epochs, "budget_info": info["budget"]}
    masks = pool.masks(n)
    pool.train(trainer, list(range(n)), masks, context, attack_name)
    paths = [pool.path(trainer, masks[i], i) for i in range(n)]
    if decision and not found:
        decisions.put(dkey, json.loads(json.dumps(decision, default=str)))  # plain JSON types: read back the same
    notes = list(choice.notes) + list(getattr(trainer, "notes", []) or []) + pool.healed
    return ReferenceSet(
        kind=kind,
        trainer=trainer,
        pool_x=pool_x,
        pool_y=pool_y,
        masks=masks,
        paths=paths,
        seeds=[_model_seed(params.reference_seed, i) for i in range(n)],
        n_target=n_target,
        trained=len(pool.trained_paths.intersection(paths)),
        notes=notes,
        info=info,
    )


def _has_epochs(trainer: Trainer) -> bool:
    return getattr(trainer, "family", "") == "torch"


def _with_epochs(trainer: Trainer, epochs: int) -> Trainer:
    """The same trainer with ``epochs`` training epochs (a budget's choice)."""
    change = getattr(trainer, "with_train", None)
    return change(epochs=epochs) if callable(change) else trainer


_TMP: list[str] = []


def _session_tmp() -> str:
    """A process-lifetime temporary directory for runs without a cache_dir (removed at exit)."""
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="audit-sdk-mia-"))
        atexit.register(shutil.rmtree, _TMP[0], True)
    return _TMP[0]


def describe(ref: ReferenceSet) -> dict[str, Any]:
    """Figures about a reference set for ``AttackResult.extra``."""
    setting = (
        "online, no population: references trained on random halves of the audited points (each point IN for half of them)"
        if ref.population_free
        else "online: references trained on random halves of the audited points and the population"
        if ref.kind == "online"
        else "offline: references trained on random halves of the population"
    )
    return {
        "reference_kind": ref.kind,
        "reference_setting": setting,
        "n_references": ref.n_models,
        "references_trained": ref.trained,
        "references_from_cache": ref.n_models - ref.trained,
        **ref.info,
        **({"reference_notes": ref.notes} if ref.notes else {}),
    }
