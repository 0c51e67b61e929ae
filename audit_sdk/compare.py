"""Defense x attack comparison grids: train one architecture under several defenses, attack each model.

    cfg = audit_sdk.config.load_config("grid.yaml")      # needs `data`, `attacks` and `compare`
    comparison = run_comparison(cfg)
    print(comparison.summary()); comparison.to_html("out/compare.html")

Each cell names Defense instances from the registry, so every registered defense works here:
defenses acting at a training point (input, objective, gradient, parameters) go to the Trainer
that ``make_trainer`` offers for the grid's architecture (``audit_sdk.training``; torch for the
named ones), which calls ``transform_data`` and the training callbacks; defenses acting at the
``output`` point wrap the served model (``wrap_target``). A cell with output defenses only reuses
the exported undefended baseline rather than training again. Utility is the served model's
accuracy on members (train) and non-members (held out, never trained on). Cells run through
``RunContext.executor.map``, so a process pool or a cluster backend runs them in parallel.

Needs an adapter that can train the architecture (torch for cnn/mlp/lenet) and export it to ONNX,
and onnxruntime when models are audited as ONNX files.
"""

from __future__ import annotations

import json
import re
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .audit_report import AuditReport
from .digest import data_digest, spec_digest
from .errors import InvalidParameterError
from .executors import LocalExecutor, TaskFailure
from .report_model import format_table, json_default

if TYPE_CHECKING:
    from .config import AuditConfig
    from .context import ComponentRegistry, RunContext
    from .data import AuditData

__all__ = ["CellTask", "Comparison", "run_comparison"]


@dataclass
class Comparison:
    """The audited models of a grid, one AuditReport per cell (``report.label`` is the cell label)."""

    reports: list[AuditReport]
    config: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    failures: list[dict[str, str]] = field(default_factory=list)

    def table(self) -> list[dict[str, Any]]:
        """One row per cell: utility, accountant epsilon, and each attack's headline metrics."""
        rows = []
        for rep in self.reports:
            row: dict[str, Any] = {
                "cell": rep.label,
                "defenses": ",".join(rep.target.get("trained_with", []) + rep.target.get("defenses", [])) or "none",
                **{k: v for k, v in rep.utility.items()},
                "accountant_eps": rep.theoretical_epsilon(),
            }
            for res in rep.results:
                if res.kind == "membership":
                    m = res.metrics
                    row[f"{res.attack}:auc"] = m["auc"]
                    row[f"{res.attack}:tpr@1%"] = m["tpr_at_fpr"]["0.01"]
                    row[f"{res.attack}:eps_lb"] = m["epsilon_lower_bound"]
                else:
                    row[f"{res.attack}:ssim"] = res.metrics["ssim"]
            rows.append(row)
        return rows

    def long_rows(self) -> list[dict[str, Any]]:
        """One row per (cell, attack): the terminal view of the table."""
        rows = []
        for rep in self.reports:
            base: dict[str, Any] = {
                "cell": rep.label,
                "train_acc": rep.utility.get("train_accuracy"),
                "test_acc": rep.utility.get("test_accuracy"),
                "accountant_eps": rep.theoretical_epsilon(),
            }
            for res in rep.results:
                m = res.metrics
                if res.kind == "membership":
                    rows.append(
                        {
                            **base,
                            "attack": res.attack,
                            "auc": m["auc"],
                            "tpr@1%": m["tpr_at_fpr"]["0.01"],
                            "eps_lb": m["epsilon_lower_bound"],
                        }
                    )
                else:
                    rows.append({**base, "attack": res.attack, "ssim": m["ssim"], "psnr": m["psnr"]})
                base = {k: None for k in base} | {"cell": ""}
        return rows

    def summary(self) -> str:
        """A plain-text privacy-utility table, one line per (cell, attack)."""
        rows = self.long_rows()
        if not rows:
            return "(no cells)"
        out = format_table(rows)
        for f in self.failures:
            out += f"\nFAILED cell {f['cell']}: {f['error']}"
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "kind": "comparison",
            "seconds": round(self.seconds, 3),
            "config": self.config,
            "table": self.table(),
            "failures": self.failures,
            "cells": [r.to_dict() for r in self.reports],
        }

    def to_json(self, path: str | Path) -> Path:
        from .fileio import write_text_atomic

        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2, default=json_default))

    def to_html(self, path: str | Path, *, title: str = "audit-sdk comparison") -> Path:
        from .report import render_html

        if not self.reports and self.failures:
            from .executors import TaskError

            first = self.failures[0]
            raise TaskError(
                f"every cell of the comparison failed, so there is nothing to report; {len(self.failures)} failure(s), "
                f"the first: cell {first.get('cell')!r}: {first.get('error')}"
            )
        return render_html(self.reports, path, title=title, extra_config=self.config or None)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "cell"


def _task_key(label: str, args: tuple[Any, ...], data_digest: str) -> str:
    """Executor key naming everything a cell's result depends on (an executor with a result
    cache must never return another grid's cell under the same label)."""
    spec = json.dumps([label, args, data_digest], sort_keys=True, default=str)
    return f"{_slug(label)}-{spec_digest(spec, length=20)}"


_RESULT_FIELDS = (
    "attack",
    "params",
    "kind",
    "scores",
    "truth",
    "labels",
    "reconstructions",
    "originals",
    "data_range",
    "extra",
    "seconds",
    "bound",  # how the epsilon lower bound is computed (audit.dp: one-run): part of the result, not a default
)
_REPORT_FIELDS = ("target", "data", "seed", "seconds", "privacy", "sections", "config", "timings", "policy", "label", "utility")


def _report_to_tree(report: AuditReport) -> dict[str, Any]:
    """An AuditReport as plain numbers, strings, arrays and containers (what a result cache stores)."""
    tree = {k: getattr(report, k) for k in _REPORT_FIELDS}
    tree["results"] = [{k: getattr(r, k) for k in _RESULT_FIELDS} for r in report.results]
    return tree


def _report_from_tree(tree: dict[str, Any]) -> AuditReport:
    from .results import AttackResult

    results = [AttackResult(**{k: r.get(k) for k in _RESULT_FIELDS if r.get(k) is not None or k == "data_range"}) for r in tree["results"]]
    return AuditReport(results=results, **{k: tree[k] for k in _REPORT_FIELDS})


def _split_defenses(defenses: list[Any]) -> tuple[list[Any], list[Any]]:
    """(training-time defenses, output defenses); a defense acting at both points is in both."""
    train = [d for d in defenses if set(getattr(d, "points", ())) - {"output"}]
    out = [d for d in defenses if "output" in getattr(d, "points", ())]
    return train, out


@dataclass(frozen=True)
class CellTask:
    """Everything one grid cell needs, as plain picklable data (a worker process or a Ray task gets one).

    Attributes:
        label: the cell's label (also names its model file).
        defense_specs: ``(defense name, options)`` pairs, built into Defense instances in the worker.
        data: the audit data; cells train on ``data.members``.
        train: the training options (``architecture`` plus TrainConfig fields).
        attacks: ``(attack name, options)`` pairs.
        seed: seeds the model, its training and the attacks.
        out_dir: where ``models/<label>.onnx`` is written.
        audit_format: ``onnx``, ``torch`` or ``auto`` (which served forms the attacks read).
        baseline_model: the exported undefended model a cell with output defenses only serves, else None.
        registry: the registry (None in a worker process: rebuilt from entry points).
        cache_dir: where attacks cache reference models.
        progress: show progress (only inline: a worker process shows nothing itself).
    """

    label: str
    defense_specs: list[tuple[str, dict[str, Any]]]
    data: AuditData
    train: dict[str, Any]
    attacks: list[tuple[str, dict[str, Any]]]
    seed: int
    out_dir: str
    audit_format: str
    baseline_model: str | None
    registry: ComponentRegistry | None = None
    cache_dir: str | None = None
    progress: bool = False

    def key(self, data_digest: str) -> str:
        """Executor key naming everything the cell's result depends on (see ``_task_key``)."""
        return _task_key(
            self.label, (self.defense_specs, self.train, self.attacks, self.seed, self.audit_format, self.baseline_model), data_digest
        )


def _run_cell(task: CellTask | str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """One grid cell: build the defenses, train (or reuse the baseline), serve, audit; the report as a tree.

    Module-level and returning plain data, so it runs in worker processes or on Ray and its
    result can be cached by an executor with a ``cache_dir`` (a resumed grid skips finished cells).
    Takes a ``CellTask``; the former positional form ``_run_cell(label, defense_specs, data, train,
    attacks, seed, out_dir, audit_format, baseline_model, registry, cache_dir=None, progress=False)``
    still works.
    """
    from .registry import get_registry
    from .run import RunContext, load_target, run_audit
    from .target import CAPABILITIES_FOR_ACCESS
    from .training import TrainConfig, make_trainer

    if not isinstance(task, CellTask):
        task = CellTask(task, *args, **kwargs)
    elif args or kwargs:
        raise InvalidParameterError("_run_cell takes one CellTask, or the positional fields of one; not both.")
    label, data, train, seed = task.label, task.data, task.train, task.seed
    reg = task.registry if task.registry is not None else get_registry()
    defenses = [reg.create("defense", n, p) for n, p in task.defense_specs]
    train_defs, out_defs = _split_defenses(defenses)
    models = Path(task.out_dir) / "models"
    models.mkdir(parents=True, exist_ok=True)
    privacy: dict[str, Any] = {}
    info: dict[str, Any] = {}
    if train_defs or task.baseline_model is None:
        # the architecture is built and trained by whichever adapter answers make_trainer for it (torch for cnn/mlp/lenet)
        cfg = TrainConfig.coerce({**{k: v for k, v in train.items() if k != "architecture"}, "seed": seed, "device": "cpu"})
        options = {"input_shape": data.feature_shape, "n_classes": data.n_classes, "train": cfg.model_dump()}
        trainer = make_trainer(train["architecture"], options, registry=reg)
        model = trainer.build(seed)
        t0 = time.perf_counter()
        result = trainer.train(model, data.members.x, data.members.y, cfg, defenses=train_defs, rng=seed)
        info["train_seconds"] = round(time.perf_counter() - t0, 3)
        privacy = {name: rep for name, rep in result.defenses.items() if rep}
        if result.notes:
            privacy["notes"] = list(result.notes)
        model_path = trainer.export_onnx(result.model, models / f"{_slug(label)}.onnx", example=data.members.x[:2])
        trained: Any = result.model
    else:
        model_path = Path(task.baseline_model)  # the exported baseline, served through its output defenses
        trained = None
    served_targets = []
    if task.audit_format in ("onnx", "auto") or trained is None:
        served_targets.append(load_target(str(model_path), registry=reg, input_shape=data.feature_shape))
    if task.audit_format in ("torch", "auto") and trained is not None:
        served_targets.append(load_target(trained, registry=reg, input_shape=data.feature_shape))
    for d in out_defs:
        served_targets = [d.wrap_target(t) for t in served_targets]
    primary = served_targets[0]
    # Each attack runs on the first served form that offers the access it needs (ONNX first).
    plan: list[list[tuple[str, dict[str, Any]]]] = [[] for _ in served_targets]
    skipped = []
    for name, params in task.attacks:
        access = getattr(reg.get("attack", name), "access", "black-box")
        need = CAPABILITIES_FOR_ACCESS.get(access, frozenset({access}))
        if access == "training":
            params = _training_recipe(reg.get("attack", name), params, train, train_defs)
        for i, t in enumerate(served_targets):
            if need <= set(t.capabilities):
                plan[i].append((name, params))
                break
        else:
            skipped.append(f"{name} (needs {access} access)")
    utility = {
        "train_accuracy": primary.accuracy(data.members.x, data.members.y),
        "test_accuracy": primary.accuracy(data.non_members.x, data.non_members.y),
    }
    report = None
    for t, planned in zip(served_targets, plan):
        if not planned:
            continue
        ctx = RunContext(registry=reg, cache_dir=Path(task.cache_dir) if task.cache_dir else None, progress=task.progress)
        part = run_audit(
            t, data, attacks=planned, rng=seed, registry=reg, context=ctx, privacy=privacy or None, label=label, progress=task.progress
        )
        if report is None:
            report = part
        else:
            report.results += part.results
            report.sections += part.sections
            report.timings.update({k: v for k, v in part.timings.items() if k != "total"})
            report.timings["total"] = report.timings.get("total", 0.0) + part.timings.get("total", 0.0)
            report.seconds += part.seconds
    if report is None:
        raise InvalidParameterError(f"cell {label!r}: no attack fits the served model ({', '.join(skipped)}).")
    report.utility = utility
    report.target = {
        **primary.describe(),
        "model_file": str(model_path),
        "trained_with": [d.name for d in train_defs],
        "defenses": [d.name for d in out_defs],
        "skipped_attacks": skipped,
        **info,
    }
    return _report_to_tree(report)


def _training_recipe(cls: Any, params: dict[str, Any], train: dict[str, Any], train_defs: list[Any]) -> dict[str, Any]:
    """Options of a training-access attack (``audit.dp``) filled from the cell: its defense and training set-up.

    A cell's DP-SGD is audited with the cell's own options and training configuration; options the
    config gives the attack explicitly win. A cell without a training defense audits plain training.
    """
    fields = getattr(cls.Params, "model_fields", {})
    auto: dict[str, Any] = {k: v for k, v in train.items() if k in fields and k != "architecture"}
    if "defense" in fields:
        gradient = [d for d in train_defs if "gradient" in getattr(d, "points", ())]
        chosen = gradient[0] if gradient else (train_defs[0] if train_defs else None)
        auto["defense"] = chosen.name if chosen is not None else None
        if "defense_params" in fields:
            auto["defense_params"] = chosen.params.model_dump() if chosen is not None else {}
    return {**auto, **params}


def run_comparison(
    config: AuditConfig | dict[str, Any] | str | Path,
    *,
    data: AuditData | None = None,
    registry: ComponentRegistry | None = None,
    context: RunContext | None = None,
    out_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> Comparison:
    """Train and audit every cell of ``config.compare``; return the Comparison.

    Args:
        config: an AuditConfig (or mapping / file path) with ``data``, ``attacks`` and ``compare``.
        data: audit data (default: the config's ``data``); cells train on ``data.members``.
        context: supplies the registry and the executor that runs the cells (default: the
            config's executor).
        out_dir: where models are written (default: the config's ``output.dir``).
        cache_dir: where attacks cache reference models across cells and runs (default: the
            context's, else a temporary directory per process).
        progress: show a progress bar over cells (rich, stderr).

    Raises:
        InvalidParameterError: the config has no ``compare`` section, or names unknown components.
    """
    from .config import AuditConfig, load_config, parse_config
    from .progress import progress_enabled, track
    from .registry import get_registry
    from .run import RunContext

    reg = registry or (context.registry if context is not None else get_registry())
    if isinstance(config, (str, Path)):
        cfg = load_config(config, registry=reg)
    elif isinstance(config, AuditConfig):
        cfg = parse_config(config, registry=reg)
    else:
        cfg = parse_config(config, registry=reg)
    if cfg.compare is None:
        raise InvalidParameterError("the config has no `compare` section; add one (see `audit-sdk config example`).")
    data = data if data is not None else cfg.load_data()
    cells = cfg.compare.expanded_cells()
    if not cells:
        raise InvalidParameterError("the comparison has no cells; set compare.baseline: true or add cells/sweeps.")
    labels = [c.label for c in cells]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise InvalidParameterError(f"compare cells need unique labels; repeated: {', '.join(dupes)}.")
    out = Path(out_dir if out_dir is not None else cfg.output.dir)
    own = None
    if context is not None:
        ctx = context
    else:
        ctx = RunContext(registry=reg, progress=progress, cache_dir=Path(cache_dir) if cache_dir is not None else None)
        own = ctx.executor = cfg.executor.make()
    inline = isinstance(ctx.executor, LocalExecutor) and ctx.executor.workers <= 1
    reg_arg = reg if inline else None  # workers rebuild the registry from entry points
    train = cfg.compare.train.model_dump()
    attacks = cfg.attack_specs()

    def specs(cell: Any) -> list[tuple[str, dict[str, Any]]]:
        return [(d.name, dict(d.params)) for d in cell.defenses]

    def needs_training(cell: Any) -> bool:
        if not cell.defenses:
            return True
        return bool(_split_defenses([reg.get("defense", d.name) for d in cell.defenses])[0])

    def plain(cell: Any) -> bool:  # the undefended model with the grid's own training options
        return not cell.defenses and not cell.train.model_dump(exclude_none=True)

    phase1 = [c for c in cells if needs_training(c)]
    phase2 = [c for c in cells if not needs_training(c)]
    hidden_baseline = bool(phase2) and not any(plain(c) for c in phase1)
    if hidden_baseline:
        from .config import CellSpec

        phase1 = [CellSpec(label="_baseline"), *phase1]
    digest = data_digest(data)
    t0 = time.perf_counter()
    stack = ExitStack()
    bar = stack.enter_context(track("comparison cells", len(phase1) + len(phase2), enabled=progress or None))

    def tick(done: int, total: int) -> None:
        bar.advance()

    reports: dict[str, Any] = {}
    failures: list[dict[str, str]] = []
    try:
        for phase, baseline in ((phase1, None), (phase2, "?")):
            if not phase:
                continue
            if baseline is not None:
                base = next((reports[c.label] for c in phase1 if plain(c) and c.label in reports), None)
                if base is None:
                    failures += [
                        {"cell": c.label, "error": "the undefended baseline failed, so output defenses had no model"} for c in phase
                    ]
                    continue
                baseline = base.target["model_file"]
            cache = str(ctx.cache_dir) if ctx.cache_dir is not None else None
            tasks = [
                CellTask(
                    label=c.label,
                    defense_specs=specs(c),
                    data=data,
                    train=c.train.apply(train),
                    attacks=attacks,
                    seed=cfg.seed,
                    out_dir=str(out),
                    audit_format=cfg.compare.audit_format,
                    baseline_model=baseline,
                    registry=reg_arg,
                    cache_dir=cache,
                    progress=progress_enabled(progress or None) and inline,  # a worker process shows nothing itself
                )
                for c in phase
            ]
            keys = [t.key(digest) for t in tasks]
            results = ctx.executor.map(_run_cell, [(t,) for t in tasks], keys=keys, progress=tick, return_failures=True)
            for c, r in zip(phase, results):
                if isinstance(r, TaskFailure):
                    failures.append({"cell": c.label, "error": r.error})
                else:
                    reports[c.label] = _report_from_tree(r)
    finally:
        stack.close()
        if own is not None:
            own.close()
    ordered = [reports[c.label] for c in cells if c.label in reports]
    return Comparison(reports=ordered, config=cfg.to_dict(), seconds=time.perf_counter() - t0, failures=failures)
