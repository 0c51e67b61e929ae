"""``audit-sdk audit MODEL --data DATA.npz [--attacks ...] --out DIR``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._common import parse_params, split_names


def add_parser(sub: Any) -> None:
    p = sub.add_parser("audit", help="run attacks on a model (an .onnx file) and write DIR/report.json")
    p.add_argument("model", help="path to the model (.onnx), or anything an installed adapter recognises")
    p.add_argument("--data", required=True, help=".npz with x_members, y_members, x_non_members, y_non_members [, x_population, y_population]")
    p.add_argument("--attacks", nargs="+", default=["mia.loss-threshold"], metavar="NAME", help="attack names, space- or comma-separated")
    p.add_argument("--param", action="append", metavar="NAME.KEY=VALUE", help="an attack option, e.g. mia.loss-threshold.calibration=per-class")
    p.add_argument("--seed", type=int, default=0, help="seed for every attack (default 0)")
    p.add_argument("--batch-size", type=int, default=1024, help="inputs per model query")
    p.add_argument("--out", default="audit-sdk-out", help="output directory (default: audit-sdk-out)")
    p.add_argument("--json", action="store_true", help="print report.json to stdout instead of the table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import load_npz
    from ..registry import get_registry
    from ..run import run_audit

    reg = get_registry()
    names = split_names(args.attacks)
    params = parse_params(args.param)
    resolved = {n: reg.get("attack", n).name for n in names}  # fails fast on unknown names
    for comp in params:
        if comp not in resolved and comp not in resolved.values():
            reg.get("attack", comp)
    attacks = [(resolved[n], params.get(n, params.get(resolved[n], {}))) for n in names]
    data = load_npz(args.data)
    report = run_audit(args.model, data, attacks=attacks, rng=args.seed, registry=reg, target_options={"batch_size": args.batch_size})
    out = Path(args.out)
    path = report.to_json(out / "report.json")
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    else:
        print(report.summary())
        print(f"\nreport: {path}")
    return 0
