"""Running attacks: the shared context and the audit pipeline.

    report = audit_sdk.run_audit("model.onnx", data, attacks=["mia.loss-threshold"], rng=0)
    print(report.summary())
    report.to_json("out/report.json")
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._rng import RNGLike, as_generator
from .data import AuditData
from .errors import InvalidModelError, InvalidParameterError
from .executor import Executor, LocalExecutor
from .interfaces import Attack
from .registry import Registry, get_registry
from .results import AttackResult
from .target import CAPABILITIES_FOR_ACCESS, Target, check_access

__all__ = ["AuditReport", "RunContext", "load_target", "run_attack", "run_audit", "SCHEMA_VERSION"]

#: Version of the report.json schema.
SCHEMA_VERSION = 1


@dataclass
class RunContext:
    """Resources shared by the attacks of one run.

    Attributes:
        registry: components and the plugin manager (hooks are called through ``registry.pm.hook``).
        executor: runs fan-out work (reference models).
        cache_dir: where trained reference models are cached (None: no cache).
        out_dir: where artefacts (per-sample scores, images) are written (None: nowhere).
        progress: show progress bars.
        extras: anything an attack family shares between its attacks (e.g. a model factory).
    """

    registry: Registry
    executor: Executor = field(default_factory=LocalExecutor)
    cache_dir: Path | None = None
    out_dir: Path | None = None
    progress: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


def load_target(model: Any, *, registry: Registry | None = None, **options: Any) -> Target:
    """Wrap ``model`` (an .onnx path, a torch module, a scikit-learn estimator, ...) in a Target.

    Adapters claim models through the ``make_target`` hook, so third-party adapters work here too.

    Raises:
        InvalidModelError: no adapter recognises the model.
    """
    if isinstance(model, Target):
        return model
    reg = registry or get_registry()
    target = reg.pm.hook.make_target(model=model, options=dict(options))
    if target is None:
        raise InvalidModelError(
            f"no adapter can load a {type(model).__name__} ({str(model)[:80]!r}). Supported: a path to an .onnx file, "
            "a torch.nn.Module, or a scikit-learn estimator with predict_proba; other frameworks plug in through "
            "the make_target hook."
        )
    return target


def _alternatives(reg: Registry, target: Target) -> list[str]:
    caps = set(target.capabilities)
    out = []
    for name in reg.names("attack"):
        cls = reg.get("attack", name)
        if CAPABILITIES_FOR_ACCESS.get(getattr(cls, "access", "black-box"), frozenset({"?"})) <= caps:
            out.append(name)
    return out


def run_attack(
    attack: Attack, target: Target, data: AuditData, *, rng: RNGLike = None, context: RunContext | None = None
) -> AttackResult:
    """Run one attack after checking access and data against the target; time it; fire the hook."""
    ctx = context or RunContext(registry=get_registry())
    check_access(target, attack.access, attack_name=attack.name, alternatives=_alternatives(ctx.registry, target))
    if target.n_classes and data.n_classes > target.n_classes:
        target.check_labels(np.r_[data.members.y, data.non_members.y])
    target.check_input(data.members.x[:1])
    t0 = time.perf_counter()
    result = attack.run(target, data, rng=rng, context=ctx)
    result.seconds = time.perf_counter() - t0
    ctx.registry.pm.hook.on_attack_finished(attack=attack, result=result)
    return result


@dataclass
class AuditReport:
    """Results of an audit, with a table view and JSON (schema_version 1)."""

    target: dict[str, Any]
    data: dict[str, Any]
    results: list[AttackResult]
    seed: int | None = None
    seconds: float = 0.0
    privacy: dict[str, Any] | None = None
    sections: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        from . import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "audit_sdk_version": __version__,
            "python": platform.python_version(),
            "seed": self.seed,
            "seconds": round(self.seconds, 4),
            "target": self.target,
            "data": {k: self.data[k] for k in ("members", "non_members", "population") if k in self.data} | self.data,
            "privacy": self.privacy,
            "attacks": [r.to_dict() for r in self.results],
            "sections": [{k: v for k, v in s.items() if k != "html"} for s in self.sections],
        }

    def to_json(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2, default=_json_default))
        return p

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for r in self.results:
            m = r.metrics
            if r.kind == "membership":
                rows.append(
                    {
                        "attack": r.attack,
                        "auc": m["auc"],
                        "advantage": m["advantage"],
                        "tpr@0.1%": m["tpr_at_fpr"]["0.001"],
                        "tpr@1%": m["tpr_at_fpr"]["0.01"],
                        "eps_lb": m["epsilon_lower_bound"],
                        "seconds": r.seconds,
                    }
                )
            else:
                rows.append({"attack": r.attack, "ssim": m["ssim"], "psnr": m["psnr"], "rel_l2": m["relative_l2"], "seconds": r.seconds})
        return rows

    def summary(self) -> str:
        """A plain-text table of the headline metrics, one row per attack."""
        rows = self.rows()
        if not rows:
            return "(no attacks run)"
        cols: list[str] = []
        for r in rows:
            cols += [c for c in r if c not in cols]
        fmt = [[c] + [_fmt(r.get(c, "")) for r in rows] for c in cols]
        widths = [max(len(v) for v in col) for col in fmt]
        lines = ["  ".join(col[i].ljust(w) for col, w in zip(fmt, widths)) for i in range(len(rows) + 1)]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.4g}"
    return str(v)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def run_audit(
    target: Any,
    data: AuditData,
    *,
    attacks: Sequence[str | Attack | tuple[str, dict[str, Any]]] = ("mia.loss-threshold",),
    rng: RNGLike = 0,
    registry: Registry | None = None,
    context: RunContext | None = None,
    target_options: dict[str, Any] | None = None,
) -> AuditReport:
    """Audit ``target`` on ``data`` with each attack and return the report.

    No global state: two audits in one process do not share anything but the (read-only) plugin
    classes.

    Args:
        target: a Target, or anything ``load_target`` accepts (an .onnx path, a torch module, ...).
        attacks: attack names, ``(name, params)`` pairs or Attack instances.
        rng: seed for every attack; each attack gets its own stream derived from it.
    """
    reg = registry or (context.registry if context else get_registry())
    tgt = load_target(target, registry=reg, **{"input_shape": data.feature_shape, **(target_options or {})})
    attack_objs: list[Attack] = []
    for a in attacks:
        if isinstance(a, Attack):
            attack_objs.append(a)
        elif isinstance(a, tuple):
            attack_objs.append(reg.create("attack", a[0], a[1]))
        elif isinstance(a, str):
            attack_objs.append(reg.create("attack", a))
        else:
            raise InvalidParameterError(f"attacks must be names, (name, params) pairs or Attack objects; got {type(a).__name__}.")
    if not attack_objs:
        raise InvalidParameterError("no attacks to run; pass at least one attack name (see `audit-sdk plugins`).")
    # Refuse mismatched access up front, before any attack spends time.
    for att in attack_objs:
        check_access(tgt, att.access, attack_name=att.name, alternatives=_alternatives(reg, tgt))
    ctx = context or RunContext(registry=reg)
    seed_seq = np.random.SeedSequence(int(as_generator(rng).integers(0, 2**63 - 1)))
    t0 = time.perf_counter()
    results = []
    for att, child in zip(attack_objs, seed_seq.spawn(len(attack_objs))):
        results.append(run_attack(att, tgt, data, rng=np.random.default_rng(child), context=ctx))
    report = AuditReport(
        target=tgt.describe(),
        data=data.summary(),
        results=results,
        seed=rng if isinstance(rng, int) else None,
        seconds=time.perf_counter() - t0,
    )
    for sections in reg.pm.hook.report_sections(report=report):
        report.sections.extend(sections or [])
    return report

