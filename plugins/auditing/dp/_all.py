"""``audit.dp``: check a training run's privacy claim empirically, with canaries.

    report = audit_sdk.run_audit(model, data, attacks=[("audit.dp", {"defense_params": {"target_epsilon": 8.0}})])
    report.results[0].extra["dp_audit"]["verdict"]      # "consistent" or "violated"

The attack trains the target's architecture again (re-initialised) on the members plus ``m``
canaries, each included independently with probability 1/2, using the torch Trainer and any
training Defense (``defense.dp-sgd`` by default). It scores every canary and turns the scores
into an epsilon lower bound at the requested confidence:

- ``one-run`` (Steinke, Nasr and Jagielski 2023): one training run; the auditor guesses in / out
  for the most and least confident canaries (``audit_sdk.metrics.one_run_audit``);
- ``multi-run`` (Jagielski et al. 2020, Nasr et al. 2021): ``runs`` training runs, one canary,
  included in half of them; the canary's score per run gives a ROC and a Clopper-Pearson bound.

Canaries: ``random-label`` (population inputs with a wrong label), ``ood`` (uniform noise inputs
with random labels), ``member`` (m of the training examples themselves, each kept with probability
1/2: the real data, no extra rows, the hardest to detect), ``gradient`` (crafted per-example gradients: one random coordinate each, a
Dirac canary, of norm 10x the clip bound so clipping binds). Threat models: ``black-box`` sees
only the final model (input canaries: their loss; gradient canaries: the final parameters'
displacement along each canary); ``white-box`` sees every released update, as a federated-learning
server does, and scores gradient canaries by the gradient alignment: the released gradient along
each canary summed over steps (Steinke et al.), and its squared step-to-step change (noise that is
wrongly reused across steps cancels there). The bound takes the best statistic, paying for both.
Input canaries in the white-box model were tried and dropped: aligning every canary's own gradient
with each update costs a per-example gradient pass per step and proved weaker than Dirac canaries.

The result is a membership result over the canaries (truth = included) whose epsilon lower bound
is the one-run bound (``bound="one-run"``) or the multi-run ROC bound, with ``extra["dp_audit"]``:
the run's claimed epsilon, the epsilon of every registered accountant recomputed from the events
the defense charged, and the verdict ("violated" when the lower bound exceeds the claim: a bug in
the DP implementation or its accounting). torch is imported inside functions only.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from audit_sdk import Attack, AttackResult, hookimpl
from audit_sdk._rng import as_generator
from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidDataError, InvalidModelError, InvalidParameterError
from audit_sdk.executor import LocalExecutor
from audit_sdk.fileio import atomic_write, write_text_atomic
from audit_sdk.interfaces import Defense, PrivacyEvent
from audit_sdk.progress import track
from audit_sdk.run import _json_default
from audit_sdk.target import Target

from ..mia._reference import _build_named  # the same named-architecture builder as the reference models

__all__ = ["DPAudit", "accountant_epsilons", "make_canaries"]

_CACHE_VERSION = 1


class DPAudit(Attack):
    """DP audit: train with canaries, bound epsilon from below, compare with every accountant.

    audit = DPAudit(canaries=1000, defense_params={"target_epsilon": 8.0})
    result = audit_sdk.run_attack(audit, audit_sdk.load_target(model), data)
    """

    name = "audit.dp"
    summary = "DP audit: canaries in one (or many) training runs give an epsilon lower bound to check the accountant's claim."
    access = "training"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        mode: Literal["one-run", "multi-run"] = Field("one-run", description="one training run with m canaries, or many runs with one")
        canaries: int = Field(1000, ge=10, description="number of canaries m (one-run); each is included with probability 1/2")
        canary: Literal["random-label", "ood", "member", "gradient"] = Field(
            "gradient", description="what a canary is (gradient: Dirac gradients; member: training examples themselves)"
        )
        threat_model: Literal["black-box", "white-box"] = Field("white-box", description="final model only, or every released update")
        runs: int = Field(32, ge=2, description="training runs in multi-run mode (half with the canary; 32 prove at most ~1.0, 64 ~1.8)")
        defense: str | None = Field("defense.dp-sgd", description="training defense to audit (None: plain training)")
        defense_params: dict[str, Any] = Field(default_factory=dict, description="its options, e.g. {'target_epsilon': 8.0}")
        architecture: Literal["from-target", "mlp", "cnn", "lenet"] = Field(
            "from-target", description="re-initialised target, or a default"
        )
        epochs: int = Field(20, ge=1)
        batch_size: int = Field(128, ge=1)
        lr: float = Field(1e-2, gt=0)
        optimizer: Literal["sgd", "momentum", "adam"] = "adam"
        confidence: float = Field(0.95, gt=0, lt=1)
        delta: float | None = Field(None, ge=0, lt=1, description="delta of the claim tested (default: the defense's, else 1e-5)")
        guesses: int | None = Field(
            None, ge=1, description="fix the number of guesses in advance (default: best of a grid, Bonferroni-corrected)"
        )
        canary_norm: float | None = Field(
            None, gt=0, description="norm of gradient canaries (default: 10x the clip bound, so clipping binds)"
        )
        accountants: list[str] | None = Field(None, description="accountants to recompute epsilon with (default: every registered one)")
        seed: int = Field(0, ge=0, description="seeds canaries, inclusion and training")
        device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the audit's runs train (auto: CUDA when present)")

    params: Params

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: Any = None) -> AttackResult:
        p = self.params
        from audit_sdk.registry import get_registry

        registry = getattr(context, "registry", None) or get_registry()
        if p.threat_model == "white-box" and p.canary != "gradient":
            raise InvalidParameterError(
                f"audit.dp: the white-box threat model scores gradient canaries (canary='gradient'); {p.canary!r} canaries are "
                "inputs, scored by their loss on the final model: use threat_model='black-box' with them."
            )
        builder = _builder(p, target, data)
        defense = registry.create("defense", p.defense, p.defense_params) if p.defense else None
        if (
            defense is not None
            and "gradient" not in defense.points
            and "parameters" not in defense.points
            and "input" not in defense.points
        ):
            raise InvalidParameterError(
                f"audit.dp audits a training defense; {defense.name} acts at {', '.join(defense.points) or 'no'} point(s). "
                "Output defenses do not change training: audit the served model with the mia.* attacks instead."
            )
        gen = np.random.default_rng(np.random.SeedSequence([p.seed, 0xA0D17]))
        n_classes = max(int(data.n_classes), int(getattr(target, "n_classes", 0) or 0))
        m = p.canaries if p.mode == "one-run" else 1
        train_x, train_y = data.members.x, data.members.y
        if p.canary == "member":
            # in-distribution canaries: m training examples, each kept with probability 1/2 (the rest always)
            if m > len(train_y) - 1:
                raise InvalidDataError(f"canary='member' draws {m} canaries from {len(train_y)} members; use fewer canaries.")
            pick = gen.permutation(len(train_y))[:m]
            rest = np.ones(len(train_y), bool)
            rest[pick] = False
            cx, cy = train_x[pick], train_y[pick].astype(np.int64)
            train_x, train_y = train_x[rest], train_y[rest]
        else:
            cx, cy = make_canaries(p.canary, m, data, n_classes=n_classes, rng=gen)
        train_cfg = {"epochs": p.epochs, "batch_size": p.batch_size, "lr": p.lr, "optimizer": p.optimizer, "device": p.device}
        cache = _cache_dir(context)
        t0 = time.perf_counter()
        if p.mode == "one-run":
            include = gen.random(m) < 0.5
            runs = [_train_and_score(builder, data, train_x, train_y, cx, cy, include, p, defense, train_cfg, p.seed, cache, registry.pm)]
            scores, truth = np.asarray(runs[0]["scores"]), include
        else:
            include_runs = np.zeros(p.runs, bool)
            include_runs[gen.permutation(p.runs)[: p.runs // 2]] = True
            seeds = [int(np.random.SeedSequence([p.seed, 0x5EED, j]).generate_state(1)[0]) for j in range(p.runs)]
            executor = getattr(context, "executor", None)
            # the plugin manager cannot travel to worker processes; there each run builds its own
            inline = executor is None or (isinstance(executor, LocalExecutor) and executor.workers == 1)
            pm = registry.pm if inline else None
            tasks = [
                (builder, data, train_x, train_y, cx, cy, include_runs[j : j + 1], p, defense, train_cfg, seeds[j], cache, pm)
                for j in range(p.runs)
            ]
            # independent runs fan out through the run's executor (processes or Ray); each finished run is
            # also kept in the cache directory, so an interrupted audit resumes where it stopped
            with track(f"{self.name}: {p.runs} training runs", p.runs) as bar:
                if executor is not None:
                    runs = executor.map(_train_and_score, tasks, progress=bar)
                else:
                    runs = []
                    for t in tasks:
                        runs.append(_train_and_score(*t))
                        bar.advance()
            scores, truth = np.array([r["scores"][0] for r in runs]), include_runs
        seconds = time.perf_counter() - t0
        delta = p.delta if p.delta is not None else float(runs[0]["defense"].get("delta", 1e-5) if runs[0]["defense"] else 1e-5)
        alpha = 1.0 - p.confidence
        bound: dict[str, Any] = (
            {
                "bound": "one-run",
                "delta": delta,
                "alpha": alpha,
                "guesses": p.guesses,
                "alternatives": {k: np.asarray(v) for k, v in runs[0].get("alternatives", {}).items()} or None,
            }
            if p.mode == "one-run"
            else {"bound": "roc", "delta": delta, "alpha": alpha}
        )
        result = AttackResult(attack=self.name, params=p.model_dump(), kind="membership", scores=scores, truth=truth, bound=bound)
        lb = float(result.metrics["epsilon_lower_bound"])
        claims = [r["defense"].get("epsilon") for r in runs if r["defense"]]
        claimed = max((float(c) for c in claims if c is not None), default=math.inf)
        events = runs[0]["defense"].get("events", [])  # every run has the same configuration and charge
        accts = accountant_epsilons(events, delta=delta, registry=registry, names=p.accountants) if events else {}
        upper = [v["epsilon"] for v in accts.values() if v.get("epsilon") is not None and v.get("upper_bound")]
        tightest = min([claimed, *upper])
        if not math.isfinite(tightest):
            verdict, text = "no-claim", f"the run claims no differential privacy; the canaries prove epsilon >= {lb:.3g}"
        elif lb > tightest:
            verdict, text = (
                "violated",
                (
                    f"the canaries prove epsilon >= {lb:.3g} at {p.confidence:.0%} confidence, but the run claims epsilon = {tightest:.3g}: "
                    "the DP implementation or its accounting is broken"
                ),
            )
        else:
            verdict, text = "consistent", f"lower bound {lb:.3g} <= claimed epsilon {tightest:.3g} (consistent; not a proof of correctness)"
        result.extra = {
            "claimed_epsilon": tightest if math.isfinite(tightest) else None,
            "dp_audit": {
                "verdict": verdict,
                "text": text,
                "mode": p.mode,
                "canary": p.canary,
                "threat_model": p.threat_model,
                "canaries": int(len(scores)) if p.mode == "one-run" else 1,
                "runs": len(runs),
                "epsilon_lower_bound": lb,
                "confidence": p.confidence,
                "delta": delta,
                "claimed_epsilon": tightest if math.isfinite(tightest) else None,
                "defense": p.defense,
                "defense_epsilon": claimed if math.isfinite(claimed) else None,
                "accountants": accts,
                "training_seconds": float(sum(r["train_seconds"] for r in runs)),
                "scoring_seconds": float(sum(r["score_seconds"] for r in runs)),
                "audit_seconds": seconds,
                "test_accuracy": float(np.mean([r["test_accuracy"] for r in runs])) if runs[0].get("test_accuracy") is not None else None,
                "runs_from_cache": int(sum(bool(r.get("from_cache")) for r in runs)),
                "training_rows": int(runs[0]["training_rows"]),
                "steps": int(runs[0]["steps"]),
            },
        }
        if p.mode == "one-run":
            result.extra["dp_audit"]["one_run"] = result.metrics["one_run"]
        if getattr(context, "out_dir", None) is not None:
            out = Path(context.out_dir) / "audit.dp"
            out.mkdir(parents=True, exist_ok=True)
            with atomic_write(out / "canary_scores.npz") as fh:
                np.savez(fh, scores=scores, included=truth)
        return result


# --------------------------------------------------------------------------- canaries
def make_canaries(kind: str, m: int, data: AuditData, *, n_classes: int, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Build ``m`` canaries (inputs, labels); gradient canaries have no inputs (their rows are empty).

    ``random-label``: population inputs (then non-member inputs) with a label drawn uniformly among
    the wrong classes; ``ood``: inputs uniform over the members' value range, random labels.

    Raises:
        InvalidDataError: fewer population + non-member inputs than canaries for ``random-label``.
    """
    gen = as_generator(rng)
    if n_classes < 2:
        raise InvalidDataError(f"canaries need at least 2 classes; the data has {n_classes}.")
    x = data.members.x
    if kind == "gradient":
        return np.zeros((m, 0), np.float32), np.zeros(m, np.int64)
    if kind == "ood":
        lo, hi = float(np.min(x)), float(np.max(x))
        cx = gen.uniform(lo, hi, size=(m, *x.shape[1:])).astype(x.dtype if x.dtype.kind == "f" else np.float32)
        return cx, gen.integers(0, n_classes, m).astype(np.int64)
    if kind != "random-label":
        raise InvalidParameterError(f"canary must be 'random-label', 'ood' or 'gradient'; got {kind!r}.")
    pools = [s for s in (data.population, data.non_members) if s is not None]
    px = np.concatenate([s.x for s in pools]) if pools else x[:0]
    py = np.concatenate([s.y for s in pools]) if pools else data.members.y[:0]
    if len(px) < m:
        raise InvalidDataError(
            f"random-label canaries are population (then non-member) inputs, but the data has {len(px)} of them for {m} canaries. "
            "Pass more population data, fewer canaries, or canary='ood' (generated inputs)."
        )
    # population inputs first: non-member inputs also measure test accuracy, so they are used only when needed
    n_pop = len(data.population) if data.population is not None else 0
    pick = np.r_[gen.permutation(n_pop), n_pop + gen.permutation(len(px) - n_pop)][:m]
    shift = gen.integers(1, n_classes, m)
    return np.ascontiguousarray(px[pick]), ((py[pick].astype(np.int64) + shift) % n_classes).astype(np.int64)


def accountant_epsilons(
    events: list[dict[str, Any]], *, delta: float, registry: Any, names: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Epsilon at ``delta`` of the charged ``events`` under each accountant (every registered one by default).

    An accountant that cannot charge an event kind reports the error instead of a number.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in names if names is not None else registry.names("accountant"):
        cls = registry.get("accountant", name)
        try:
            acct = cls()
            for ev in events:
                acct.step(PrivacyEvent(ev["kind"], ev["params"]), sample_rate=float(ev["sample_rate"]), count=int(ev["count"]))
            out[cls.name] = {"epsilon": float(acct.epsilon(delta)), "upper_bound": bool(getattr(acct, "is_upper_bound", True))}
        except Exception as exc:  # an accountant that does not fit these events: reported, not fatal
            out[cls.name] = {"epsilon": None, "error": str(exc).splitlines()[0][:200]}
    return out


# --------------------------------------------------------------------------- architecture
def _builder(p: DPAudit.Params, target: Target, data: AuditData) -> Any:
    """``builder(seed) -> torch.nn.Module`` (picklable, so runs can go to worker processes)."""
    shape = tuple(int(s) for s in data.feature_shape)
    n_classes = max(int(data.n_classes), int(getattr(target, "n_classes", 0) or 0))
    if p.architecture != "from-target":
        return functools.partial(_build_named, p.architecture, shape, n_classes)
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


def _cache_dir(context: Any) -> Path | None:
    root = getattr(context, "cache_dir", None)
    if root is None:
        return None
    d = Path(root) / "dp-audit"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _key(p: DPAudit.Params, x: np.ndarray, y: np.ndarray, cx: np.ndarray, cy: np.ndarray, include: np.ndarray, seed: int, arch: str) -> str:
    h = hashlib.sha256()
    for a in (x, y, cx, cy, include):
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    spec = p.model_dump(exclude={"confidence", "guesses", "accountants", "delta"})
    h.update(json.dumps({"v": _CACHE_VERSION, "p": spec, "seed": seed, "arch": arch}, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


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


def _gradient_canaries(n_params: int, m: int, norm: float, seed: int) -> Any:
    """``m`` Dirac gradient canaries: distinct random coordinates of the flat parameter vector, as a sparse (m, n_params) tensor."""
    import torch

    if m > n_params:
        raise InvalidParameterError(
            f"{m} gradient canaries need {m} distinct coordinates, but the model has {n_params} parameters; use fewer canaries."
        )
    coords = np.random.default_rng(np.random.SeedSequence([seed, 0xD1AC])).choice(n_params, size=m, replace=False)
    index = torch.stack([torch.arange(m), torch.from_numpy(coords)])
    return torch.sparse_coo_tensor(index, torch.full((m,), float(norm)), (m, n_params), check_invariants=True).coalesce()


def _train_and_score(
    builder: Any,
    data: AuditData,
    x: np.ndarray,
    y: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    include: np.ndarray,
    p: DPAudit.Params,
    defense: Defense | None,
    train_cfg: dict[str, Any],
    seed: int,
    cache: Path | None,
    pm: Any = None,
) -> dict[str, Any]:
    """Train once on (x, y) plus the included canaries and score every canary; cached as JSON when ``cache`` is set."""
    import torch

    from audit_sdk.adapters.torch import TrainConfig, Trainer, evaluate_accuracy

    model = builder(seed)
    path = None
    if cache is not None:
        arch = repr(model) + repr([(k, tuple(v.shape)) for k, v in model.state_dict().items()])
        path = cache / f"{_key(p, x, y, cx, cy, include, seed, arch)}.json"
        if path.is_file():
            return {**json.loads(path.read_text()), "from_cache": True}
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
    if path is not None:
        write_text_atomic(path, json.dumps(out))  # an interrupted audit never leaves half a result
    return out


@hookimpl
def register_attacks() -> list[type[Attack]]:
    return [DPAudit]


@hookimpl
def report_sections(report: Any) -> list[dict[str, Any]]:
    """A "DP audit" section: the claim, every accountant's epsilon and the lower bound, per audit.dp result."""
    from html import escape

    out = []
    for res in getattr(report, "results", []):
        info = res.extra.get("dp_audit") if isinstance(res.extra, dict) else None
        if not info:
            continue

        def num(v: Any) -> str:
            return "–" if v is None else f"{v:.4g}" if isinstance(v, float) else escape(str(v))

        rows = "".join(
            f"<tr><td>{escape(name)}</td><td>{num(a.get('epsilon'))}</td>"
            f"<td>{'proven upper bound' if a.get('upper_bound') else escape(a.get('error', 'approximation'))}</td></tr>"
            for name, a in info["accountants"].items()
        )
        colour = {"violated": "#b00020", "consistent": "#1b5e20"}.get(info["verdict"], "#444")
        one = info.get("one_run") or {}
        how = (
            f"{one.get('correct')} of {one.get('guesses')} guesses right on {info['canaries']} canaries ({one.get('included')} included), "
            f"statistic {escape(str(one.get('statistic')))}"
            if one
            else f"{info['runs']} training runs, one canary in half of them"
        )
        html = (
            f"<p style='color:{colour}'><b>{escape(info['verdict'])}</b>: {escape(info['text'])}.</p>"
            f"<p>Empirical epsilon lower bound <b>{num(info['epsilon_lower_bound'])}</b> at {info['confidence']:.0%} confidence "
            f"(delta {num(info['delta'])}; {escape(info['mode'])}, {escape(info['canary'])} canaries, {escape(info['threat_model'])} "
            f"threat model; {how}). Claimed epsilon: {num(info['claimed_epsilon'])} (the defense reports {num(info['defense_epsilon'])}). "
            f"Test accuracy of the audited run: {num(info['test_accuracy'])}.</p>"
            f"<table><tr><th>accountant</th><th>epsilon</th><th></th></tr>{rows}</table>"
            if rows
            else f"<p style='color:{colour}'><b>{escape(info['verdict'])}</b>: {escape(info['text'])}.</p>"
        )
        out.append({"title": f"DP audit ({res.attack})", "html": html, "data": info})
    return out
