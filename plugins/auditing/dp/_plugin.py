"""The ``audit.dp`` attack class: train with canaries, bound epsilon from below, compare with every accountant."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from audit_sdk import Attack, AttackResult
from audit_sdk.context import RunContext
from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidDataError, InvalidParameterError
from audit_sdk.executor import LocalExecutor
from audit_sdk.fileio import atomic_write
from audit_sdk.progress import track
from audit_sdk.target import Target

from . import _training
from ._canaries import make_canaries
from ._params import DPAuditParams
from ._report import accountant_epsilons

__all__ = ["DPAudit"]


class DPAudit(Attack):
    """DP audit: train with canaries, bound epsilon from below, compare with every accountant.

    audit = DPAudit(canaries=1000, defense_params={"target_epsilon": 8.0})
    result = audit_sdk.run_attack(audit, audit_sdk.load_target(model), data)
    """

    name = "audit.dp"
    summary = "DP audit: canaries in one (or many) training runs give an epsilon lower bound to check the accountant's claim."
    access = "training"

    class Params(DPAuditParams):
        """audit.dp's options (declared in ``_params``, which the training code and the command share)."""

    params: Params

    def run(self, target: Target, data: AuditData, *, rng: Any = None, context: RunContext | None = None) -> AttackResult:
        p = self.params
        from audit_sdk.registry import get_registry

        registry = context.registry if context is not None else get_registry()
        if p.threat_model == "white-box" and p.canary != "gradient":
            raise InvalidParameterError(
                f"audit.dp: the white-box threat model scores gradient canaries (canary='gradient'); {p.canary!r} canaries are "
                "inputs, scored by their loss on the final model: use threat_model='black-box' with them."
            )
        builder = _training._builder(p, target, data)
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
        cache = _training._cache_dir(context)
        t0 = time.perf_counter()
        if p.mode == "one-run":
            include = gen.random(m) < 0.5
            runs = [
                _training._train_and_score(
                    builder, data, train_x, train_y, cx, cy, include, p, defense, train_cfg, p.seed, cache, registry.pm
                )
            ]
            scores, truth = np.asarray(runs[0]["scores"]), include
        else:
            include_runs = np.zeros(p.runs, bool)
            include_runs[gen.permutation(p.runs)[: p.runs // 2]] = True
            seeds = [int(np.random.SeedSequence([p.seed, 0x5EED, j]).generate_state(1)[0]) for j in range(p.runs)]
            executor = context.executor if context is not None else None
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
                    runs = executor.map(_training._train_and_score, tasks, progress=bar)
                else:
                    runs = []
                    for t in tasks:
                        runs.append(_training._train_and_score(*t))
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
        if context is not None and context.out_dir is not None:
            out = Path(context.out_dir) / "audit.dp"
            out.mkdir(parents=True, exist_ok=True)
            with atomic_write(out / "canary_scores.npz") as fh:
                np.savez(fh, scores=scores, included=truth)
        return result
