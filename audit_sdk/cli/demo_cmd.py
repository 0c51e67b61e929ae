"""``audit-sdk demo``: on the embedded digits data, train a memorising baseline and defended models,
export them to ONNX, run the registered membership and inversion attacks, write the HTML report.

Defended rows use whatever is registered: ``defense.dp-sgd`` and ``defense.suppress`` (skipped
with a note when absent). Everything goes through the comparison grid (``audit_sdk.compare``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

#: Defended models of the demo, when their defenses are registered: (label, defense, options
#: applied when the defense's Params has them, training changes). On 250 training digits DP-SGD
#: needs a larger learning rate and batch to learn at all (epsilon 8: test accuracy ~0.65 against
#: the baseline's ~0.8; at the baseline's lr 2e-3 it stays near chance); suppress uses its defaults.
DEMO_DEFENSES: tuple[tuple[str, str, dict[str, Any], dict[str, Any]], ...] = (
    ("dp-sgd eps=8", "defense.dp-sgd", {"target_epsilon": 8.0}, {"lr": 1e-2, "batch_size": 64}),
    ("suppress", "defense.suppress", {}, {}),
)


#: Attack options the demo applies where an attack's Params has them, to stay within a few minutes
#: on two cores: fewer, shorter-trained reference models, shorter inversion optimisations and
#: fewer reconstructed samples than a real audit would use.
DEMO_ATTACK_OPTIONS: dict[str, Any] = {
    "n_references": 4,
    "reference_epochs": 30,
    "iterations": 100,
    "eval_epochs": 15,
    "epochs": 40,
    "n_samples": 16,
    "n_batches": 2,
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="train digits models (memorising baseline, DP-SGD, suppress), export to ONNX, attack them, write the HTML report",
    )
    p.add_argument("--out", default=None, help="output directory (default: audit-sdk-out/demo, or audit-sdk-out/demo-lm with --lm)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, training and attacks (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per model (default 60; the --lm demo picks its own)")
    p.add_argument(
        "--lm",
        action="store_true",
        help="the language-model demo: a tiny GPT on standard-library docstrings with inserted canaries, with and without DP-SGD",
    )
    p.add_argument(
        "--attacks", nargs="+", metavar="NAME", help="attacks to run (default: every registered membership and inversion attack)"
    )
    p.add_argument("--no-defenses", action="store_true", help="train and audit the baseline only")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1: the demo's models are tiny)")
    p.add_argument("--json", action="store_true", help="print comparison.json to stdout")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the report path")
    p.set_defaults(func=run)


def demo_config(reg: Any, *, out: str, seed: int, epochs: int, attacks: list[str] | None, defenses: bool, say: Any) -> dict[str, Any]:
    """The comparison config the demo runs (registry-driven: rows appear as defenses land)."""
    from ._common import split_names

    if attacks:
        names = [reg.get("attack", n).name for n in split_names(attacks)]
    else:
        names = [
            n for n in reg.names("attack") if getattr(reg.get("attack", n), "result_kind", "membership") in ("membership", "reconstruction")
        ]
    attack_specs = []
    for n in names:
        fields = reg.get("attack", n).Params.model_fields
        # a training-access attack (audit.dp) re-runs each cell's own recipe: the cell sets its options
        shared = {} if getattr(reg.get("attack", n), "access", "") == "training" else DEMO_ATTACK_OPTIONS
        attack_specs.append({"name": n, "params": {k: v for k, v in shared.items() if k in fields}})
    cells = []
    if defenses:
        registered = set(reg.names("defense"))
        for label, name, wanted, train in DEMO_DEFENSES:
            if name not in registered:
                say(f"note: {name} is not registered; skipping the {label} row")
                continue
            fields = reg.get("defense", name).Params.model_fields
            params = {k: v for k, v in wanted.items() if k in fields}
            # Epoch-indexed schedules (e.g. suppress's end_epoch) must fit a shorter --epochs.
            for k, f in fields.items():
                if k.endswith("_epoch") and isinstance(f.default, int) and f.default > epochs:
                    params[k] = max(1, epochs)
            cells.append({"label": label, "defenses": [{"name": name, "params": params}], "train": train})
    return {
        "data": {"source": "digits", "n_members": 250, "n_non_members": 250, "n_population": 1000, "label_noise": 0.1},
        "attacks": attack_specs,
        "seed": seed,
        "output": {"dir": out},
        "compare": {"train": {"architecture": "cnn", "epochs": epochs, "batch_size": 32, "lr": 2e-3}, "baseline": True, "cells": cells},
    }


def run(args: argparse.Namespace) -> int:
    from ..compare import run_comparison
    from ..config import parse_config
    from ..data import save_npz
    from .helpers import registry as cli_registry

    quiet = args.quiet or args.json

    def say(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    from ..errors import InvalidParameterError

    if args.lm:  # owned by a plugin (the language-model plugin), reached through the run_demo hook
        reg = cli_registry(args)
        opts = {"out": args.out or "audit-sdk-out/demo-lm", "seed": args.seed, "epochs": args.epochs, "threads": args.threads}
        code = reg.pm.hook.run_demo(kind="lm", options=opts | {"quiet": quiet, "no_defenses": args.no_defenses})
        if code is None:
            raise InvalidParameterError("no installed plugin provides the 'lm' demo (audit_sdk.plugins.lm); reinstall audit-sdk.")
        return int(code)
    args.out = args.out or "audit-sdk-out/demo"
    args.epochs = 60 if args.epochs is None else args.epochs
    t0 = time.perf_counter()
    import torch

    if args.threads < 1:
        raise InvalidParameterError(f"--threads must be >= 1; got {args.threads}.")

    # The demo's models are tiny: one intra-op thread is as fast on an idle machine and an order of
    # magnitude faster on a busy one (threads spin-waiting for each other; measured 10x on 2 cores).
    torch.set_num_threads(args.threads)
    from ._common import Problems

    problems = Problems()
    problems.out_dir(args.out)
    problems.raise_if_any()
    reg = cli_registry(args)
    out = Path(args.out)
    raw = demo_config(reg, out=str(out), seed=args.seed, epochs=args.epochs, attacks=args.attacks, defenses=not args.no_defenses, say=say)
    cfg = parse_config(raw, registry=reg, source="demo config")
    data = cfg.load_data()
    out.mkdir(parents=True, exist_ok=True)
    save_npz(data, out / "data.npz")
    rows = ["none (memorising baseline)"] + [c.label for c in (cfg.compare.cells if cfg.compare else [])]
    say(f"training a CNN on {len(data.members)} digits for each of: {', '.join(rows)}")
    say(f"attacks: {', '.join(n for n, _ in cfg.attack_specs())}")
    comparison = run_comparison(
        cfg, data=data, registry=reg, out_dir=out, cache_dir=out / "cache", progress=not quiet and sys.stderr.isatty()
    )
    comparison.to_json(out / "comparison.json")
    html = comparison.to_html(out / "report.html", title="audit-sdk demo: digits")
    if args.json:
        sys.stdout.write(json.dumps(comparison.to_dict(), indent=2, default=str) + "\n")
    say("")
    say(comparison.summary())
    say("")
    for rep in comparison.reports:
        if rep.target.get("skipped_attacks"):
            say(f"note: {rep.label}: skipped {', '.join(rep.target['skipped_attacks'])}")
    say(f"models: {out / 'models'}\ndata:   {out / 'data.npz'}\n({time.perf_counter() - t0:.1f}s in all)")
    if not args.json:
        print(f"report: {html.resolve()}")
    for f in comparison.failures:
        sys.stderr.write(f"audit-sdk: demo row {f['cell']} failed: {f['error']}\n")
    return 0 if not comparison.failures else 3
