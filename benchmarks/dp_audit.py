"""One-run DP audit (``audit.dp``) of the digits model: wall time against one DP-SGD training run.

    python benchmarks/dp_audit.py                          # mlp, 1,000 canaries, 2 threads, median of 3
    python benchmarks/dp_audit.py --models mlp cnn --repeats 5
    python benchmarks/dp_audit.py --no-random-label        # only the embedded 1437 / 360 split

Goal (issue 9): "One-run audit of the digits model with 1,000 canaries costs at most 1.5x one
training run."

Data: ``digits_dp_audit_data()`` (1437 members, 360 non-members). Training: DP-SGD
(``defense.dp-sgd``, ``--epsilon`` 8 by default, noise calibrated to it) with the audit's own
default training options, read from ``DPAudit.Params`` (epochs, batch size, lr, optimizer, seed).

- "train s" (a): one training run, the same Trainer + DP-SGD configuration on the members only
  (no canaries): model built, defense created, ``Trainer.fit``; wall time.
- "audit s" (b): ``audit_sdk.audit_dp`` end to end (``run_audit`` of ``audit.dp`` with
  ``--canaries`` canaries, one-run mode), for each canary kind / threat model; wall time.
- "audit/train" = (b) / (a), the goal's ratio; "own train s" = ``extra["dp_audit"]["training_seconds"]``,
  the audit's own training run on the members plus the included canaries (input canaries add
  about half of them to the training set, so that run takes more Poisson steps than (a));
  "audit/own" = (b) / own train s, the audit's overhead beyond training.

Random-label canaries are population inputs, which the 1437 / 360 split has too few of: their
row uses ``make_audit_data(load_digits_data(), n_members=437, n_non_members=360, n_population=1000)``
and has its own training baseline on those 437 members (``--no-random-label`` skips it).

Every configuration is warmed up once (the first training run imports torch._dynamo through
torch.optim, seconds), then the configurations run interleaved, ``--repeats`` times, so load
changes on a shared machine hit them alike; the table shows medians. The mlp trains in about
0.3 s, so a busy machine moves its ratios by +-0.3x: raise ``--repeats`` for a decision. A
configuration the library refuses (InvalidParameterError) is listed as refused, with the
library's message. ``member`` canaries are training examples left out with probability 1/2, so
that run trains on fewer rows than (a).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import torch

GOAL = 1.5
KINDS = [("gradient", "white-box"), ("gradient", "black-box"), ("ood", "black-box"), ("member", "black-box")]


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    cells = [[c] + [f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for r in rows] for c in cols]
    widths = [max(len(v) for v in col) for col in cells]
    lines = ["  ".join(col[i].ljust(w) for col, w in zip(cells, widths)) for i in range(len(rows) + 1)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["mlp"], choices=["mlp", "cnn", "lenet"])
    ap.add_argument("--canaries", type=int, default=1000)
    ap.add_argument("--epsilon", type=float, default=8.0, help="DP-SGD target_epsilon (noise calibrated to it)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-random-label", action="store_true", help="skip the random-label row (it needs population inputs)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import audit_sdk
    from audit_sdk.adapters.torch import TrainConfig, Trainer, make_model
    from audit_sdk.data import load_digits_data, make_audit_data
    from audit_sdk.dp_audit_api import digits_dp_audit_data
    from audit_sdk.errors import InvalidParameterError
    from audit_sdk.plugins.auditing.dp import DPAudit

    P = DPAudit.Params()  # the audit's defaults: the baseline trains exactly as the audit does
    train_cfg = {"epochs": P.epochs, "batch_size": P.batch_size, "lr": P.lr, "optimizer": P.optimizer, "device": "cpu"}
    defense_params = {"target_epsilon": args.epsilon}
    registry = audit_sdk.get_registry()
    datasets = {"digits": digits_dp_audit_data()}
    if not args.no_random_label:
        datasets["digits+pop"], _ = make_audit_data(load_digits_data(), n_members=437, n_non_members=360, n_population=1000, rng=0)

    def train_once(model_name: str, data: Any) -> Any:
        model = make_model(model_name, input_shape=data.feature_shape, n_classes=data.n_classes, seed=0)
        dp = registry.create("defense", P.defense, defense_params)
        # the same plugin manager as the audit's: neither side pays for re-reading entry points
        return Trainer(TrainConfig(**train_cfg, seed=P.seed), defenses=[dp], pm=registry.pm).fit(model, data.members.x, data.members.y)

    def audit_once(model_name: str, data: Any, canary: str, threat: str) -> Any:
        report = audit_sdk.audit_dp(
            model_name,
            data,
            defense=P.defense,
            defense_params=defense_params,
            canaries=args.canaries,
            canary=canary,
            threat_model=threat,
            registry=registry,
        )
        return report.results[0]

    # configurations: (model, data set, canary, threat model); canary None = the training baseline
    configs: list[tuple[str, str, str | None, str | None]] = []
    for name in args.models:
        configs.append((name, "digits", None, None))
        configs += [(name, "digits", c, t) for c, t in KINDS]
        if not args.no_random_label:
            configs += [(name, "digits+pop", None, None), (name, "digits+pop", "random-label", "black-box")]

    def run(cfg: tuple[str, str, str | None, str | None]) -> tuple[float, Any]:
        name, ds, canary, threat = cfg
        t0 = time.perf_counter()
        out = train_once(name, datasets[ds]) if canary is None else audit_once(name, datasets[ds], canary, threat or "")
        return time.perf_counter() - t0, out

    t_start = time.perf_counter()
    print(
        f"cpus={os.cpu_count()} threads={args.threads} load average={os.getloadavg()[0]:.2f} torch {torch.__version__}; "
        f"{args.canaries} canaries, DP-SGD target_epsilon={args.epsilon:g}, epochs={P.epochs} batch_size={P.batch_size} "
        f"lr={P.lr:g} {P.optimizer}; median of {args.repeats} interleaved runs after one warm-up each"
    )
    refused: dict[Any, str] = {}
    warm: dict[Any, float] = {}
    info: dict[Any, Any] = {}
    for cfg in configs:  # warm-up
        try:
            warm[cfg], info[cfg] = run(cfg)
        except InvalidParameterError as exc:
            refused[cfg] = str(exc).splitlines()[0]
    live = [c for c in configs if c not in refused]
    wall: dict[Any, list[float]] = {c: [] for c in live}
    own: dict[Any, list[float]] = {c: [] for c in live}
    scoring: dict[Any, list[float]] = {c: [] for c in live}
    for _ in range(args.repeats):
        for cfg in live:
            s, out = run(cfg)
            wall[cfg].append(s)
            info[cfg] = out
            if cfg[2] is not None:
                d = out.extra["dp_audit"]
                assert d["runs_from_cache"] == 0, "the audit's training run came from a cache: timing is meaningless"
                own[cfg].append(d["training_seconds"])
                scoring[cfg].append(d["scoring_seconds"])

    for ds, data in datasets.items():
        for name in args.models:
            base = info.get((name, ds, None, None))
            if base is None:
                continue
            rep = base.defenses[P.defense]
            print(
                f"  {name} on {ds}: {len(data.members)} members, {len(data.non_members)} non-members"
                + (f", {len(data.population)} population" if data.population is not None else "")
                + f"; DP-SGD sigma={rep['noise_multiplier']:.3f} q={rep['sample_rate']:.4f} steps={rep['steps']} "
                f"epsilon={rep['epsilon']:.3f} (delta={rep['delta']:g})"
            )

    rows: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for cfg in configs:
        name, ds, canary, threat = cfg
        if canary is None:
            continue
        base_cfg = (name, ds, None, None)
        a = statistics.median(wall[base_cfg]) if base_cfg in wall else float("nan")
        if cfg in refused:
            rows.append(
                {
                    "model": name,
                    "canary / threat": f"{canary} / {threat}",
                    "train s (a)": a,
                    "audit s (b)": "refused",
                    "audit/train": "-",
                    "goal": f"<= {GOAL}x: n/a",
                    "own train s": "-",
                    "audit/own": "-",
                    "score s": "-",
                    "n train": "-",
                    "eps LB": "-",
                    "claim": "-",
                    "verdict": "refused (below)",
                }
            )
            results.append({"model": name, "data": ds, "canary": canary, "threat_model": threat, "refused": refused[cfg]})
            continue
        b = statistics.median(wall[cfg])
        o = statistics.median(own[cfg])
        r = info[cfg]
        d = r.extra["dp_audit"]
        n_train = d["training_rows"]  # members (less member canaries) + included input canaries
        ratio = b / a
        rows.append(
            {
                "model": name,
                "canary / threat": f"{canary} / {threat}" + ("" if ds == "digits" else " *"),
                "train s (a)": a,
                "audit s (b)": b,
                "audit/train": f"{ratio:.2f}x",
                "goal": f"<= {GOAL}x: {'met' if ratio <= GOAL else 'NOT met'}",
                "own train s": o,
                "audit/own": f"{b / o:.2f}x",
                "score s": statistics.median(scoring[cfg]),
                "n train": n_train,
                "eps LB": float(d["epsilon_lower_bound"]),
                "claim": float(d["claimed_epsilon"] or float("inf")),
                "verdict": d["verdict"],
            }
        )
        results.append(
            {
                "model": name,
                "data": ds,
                "canary": canary,
                "threat_model": threat,
                "train_seconds": a,
                "audit_seconds": b,
                "ratio": ratio,
                "goal_met": ratio <= GOAL,
                "own_training_seconds": o,
                "scoring_seconds": statistics.median(scoring[cfg]),
                "epsilon_lower_bound": d["epsilon_lower_bound"],
                "verdict": d["verdict"],
                "warm_up_seconds": warm[cfg],
            }
        )
    print()
    print(
        _table(
            rows,
            [
                "model",
                "canary / threat",
                "train s (a)",
                "audit s (b)",
                "audit/train",
                "goal",
                "own train s",
                "audit/own",
                "score s",
                "n train",
                "eps LB",
                "claim",
                "verdict",
            ],
        )
    )
    print(
        "\n(a) DP-SGD training on the members, no canaries; (b) audit_sdk.audit_dp end to end; audit/train = (b) / (a).\n"
        "own train s: the audit's own training run, on n train = members + included input canaries (gradient canaries\n"
        "add no rows: they join each step's clipped sum); audit/own = (b) / own train s, the overhead beyond training;\n"
        "score s: scoring the canaries after training; claim: the tightest accountant's epsilon for the audited run."
    )
    if not args.no_random_label:
        print("* random-label: 437 members, 360 non-members, 1000 population inputs (canaries); (a) is training on those 437.")
    for cfg, msg in refused.items():
        print(f"refused: {cfg[0]} {cfg[2]} / {cfg[3]}: {msg}")
    print("warm-up (first) runs, s: " + ", ".join(f"{c[0]} {c[2] or 'train'}/{c[3] or c[1]} {s:.2f}" for c, s in warm.items()))
    print(f"total {time.perf_counter() - t_start:.0f}s; load average now {os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
