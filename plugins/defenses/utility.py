"""Privacy-utility rows: a defended model's test accuracy next to the attacks' results.

Framework-free: it works on any Target, so a curve over an output defense's strength is

    rows = sweep_output_defense(target, data, defense="defense.output-noise", param="scale",
                                values=[0.0, 0.05, 0.2], attacks=["mia.loss-threshold"],
                                x_test=x_test, y_test=y_test)

and a training-time defense (``defense.suppress``, ``defense.morphing``, ``defense.dp-sgd``)
contributes one call of ``privacy_utility_rows`` per trained model. Every row is flat and
JSON-able: ``{defense, strength, accuracy, attack, status, auc, advantage, tpr_at_0.001,
tpr_at_0.01, epsilon_lower_bound}``; an attack whose access the target does not offer (e.g. a
confidence attack on a label-only target) gives ``status="refused"`` with the reason, not an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from audit_sdk.data import AuditData
from audit_sdk.errors import AccessError, InvalidParameterError
from audit_sdk.interfaces import Attack, Defense
from audit_sdk.registry import Registry, get_registry
from audit_sdk.rng import RNGLike, as_generator
from audit_sdk.run import RunContext, load_target, run_attack
from audit_sdk.target import Target

__all__ = ["accuracy", "privacy_utility_rows", "sweep_output_defense"]


def accuracy(target: Target, x: Any, y: Any) -> float:
    """Top-1 accuracy of the labels ``target`` serves on (x, y) (``Target.accuracy``)."""
    return target.accuracy(x, y)


def _attack_objects(attacks: Sequence[str | Attack | tuple[str, Mapping[str, Any]]], reg: Registry) -> list[Attack]:
    out: list[Attack] = []
    for a in attacks:
        if isinstance(a, Attack):
            out.append(a)
        elif isinstance(a, tuple):
            out.append(reg.create("attack", a[0], dict(a[1])))
        elif isinstance(a, str):
            out.append(reg.create("attack", a))
        else:
            raise InvalidParameterError(f"attacks must be names, (name, params) pairs or Attack objects; got {type(a).__name__}.")
    if not out:
        raise InvalidParameterError("no attacks given; pass at least one attack name (see `audit-sdk plugins`).")
    return out


def privacy_utility_rows(
    target: Any,
    data: AuditData,
    *,
    attacks: Sequence[str | Attack | tuple[str, Mapping[str, Any]]],
    x_test: Any,
    y_test: Any,
    defense: str | Defense | None = None,
    strength: float | None = None,
    rng: RNGLike = 0,
    registry: Registry | None = None,
) -> list[dict[str, Any]]:
    """Score one (possibly defended) model: one row per attack, each with the model's test accuracy.

    Args:
        target: a Target or anything ``audit_sdk.load_target`` accepts.
        defense: the defense the model carries (a name or a Defense: its name is recorded), or None
            for the undefended baseline. An output Defense object is applied here (``wrap_target``).
        strength: the defense's strength knob for the curve's x axis (default: the defense's own).
        x_test, y_test: held-out data for the accuracy, in the form the served target takes
            (original records when ``defense`` is a Defense object acting at the output, e.g. a
            ``defense.morphing`` whose ``wrap_target`` morphs each query).
    """
    reg = registry or get_registry()
    tgt = target if isinstance(target, Target) else load_target(target, registry=reg, input_shape=data.feature_shape)
    name = "none"
    if isinstance(defense, Defense):
        name = defense.name
        if "output" in defense.points:
            tgt = defense.wrap_target(tgt)
        if strength is None:
            strength = getattr(defense, "strength", None)
    elif isinstance(defense, str):
        name = defense
    acc = accuracy(tgt, x_test, y_test)
    ctx = RunContext(registry=reg)
    seeds = np.random.SeedSequence(int(as_generator(rng).integers(0, 2**63 - 1)))
    objs = _attack_objects(attacks, reg)
    rows = []
    for att, child in zip(objs, seeds.spawn(len(objs))):
        row: dict[str, Any] = {
            "defense": name,
            "strength": None if strength is None or not np.isfinite(strength) else float(strength),
            "accuracy": acc,
            "attack": att.name,
        }
        try:
            res = run_attack(att, tgt, data, rng=np.random.default_rng(child), context=ctx)
        except AccessError as exc:
            row.update({"status": "refused", "reason": str(exc)})
            rows.append(row)
            continue
        m = res.metrics
        row["status"] = "ok"
        if res.kind == "membership":
            row.update(
                {
                    "auc": m["auc"],
                    "advantage": m["advantage"],
                    **{f"tpr_at_{k}": v for k, v in m["tpr_at_fpr"].items()},
                    "epsilon_lower_bound": m["epsilon_lower_bound"],
                }
            )
        else:
            row.update({k: m[k] for k in ("ssim", "psnr", "relative_l2") if k in m})
        rows.append(row)
    return rows


def sweep_output_defense(
    target: Any,
    data: AuditData,
    *,
    defense: str,
    param: str,
    values: Sequence[Any],
    attacks: Sequence[str | Attack | tuple[str, Mapping[str, Any]]],
    x_test: Any,
    y_test: Any,
    base_params: Mapping[str, Any] | None = None,
    include_baseline: bool = True,
    rng: RNGLike = 0,
    registry: Registry | None = None,
) -> list[dict[str, Any]]:
    """Rows for an output defense at each value of one option, plus the undefended baseline.

    Raises:
        InvalidParameterError: ``defense`` is not an output defense, or a value is invalid.
    """
    reg = registry or get_registry()
    cls = reg.get("defense", defense)
    if set(cls.points) != {"output"}:
        raise InvalidParameterError(
            f"{cls.name} acts at {cls.points}, not at the output only; train one model per strength and call privacy_utility_rows for each."
        )
    tgt = target if isinstance(target, Target) else load_target(target, registry=reg, input_shape=data.feature_shape)
    rows: list[dict[str, Any]] = []
    if include_baseline:
        rows += privacy_utility_rows(tgt, data, attacks=attacks, x_test=x_test, y_test=y_test, rng=rng, registry=reg)
    for v in values:
        d = reg.create("defense", cls.name, {**dict(base_params or {}), param: v})
        val = float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
        rows += privacy_utility_rows(
            tgt, data, attacks=attacks, x_test=x_test, y_test=y_test, defense=d, strength=val, rng=rng, registry=reg
        )
    return rows
