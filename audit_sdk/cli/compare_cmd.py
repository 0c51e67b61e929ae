"""``audit-sdk compare --config grid.yaml``: train under each defense, attack each model, tabulate privacy vs utility."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="defense x attack grid: train the same architecture under each defense, run the attacks, write the privacy-utility table and plots",
    )
    p.add_argument("--config", required=True, metavar="FILE", help="YAML/JSON config with data, attacks and a compare section")
    p.add_argument("--out", help="output directory (default: the config's output.dir)")
    p.add_argument("--workers", type=int, help="cells trained in parallel (overrides the config's executor.workers)")
    p.add_argument("--threads", type=int, help="torch intra-op threads per process (small models: 1 is fastest)")
    p.add_argument("--json", action="store_true", help="print comparison.json to stdout instead of the table")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors (and --json output); no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..compare import run_comparison
    from ..config import load_config
    from ..errors import InvalidParameterError
    from .helpers import registry as cli_registry

    if args.threads is not None:
        if args.threads < 1:
            raise InvalidParameterError(f"--threads must be >= 1; got {args.threads}.")
        import torch

        torch.set_num_threads(args.threads)
    reg = cli_registry(args)
    cfg = load_config(args.config, registry=reg)
    if cfg.compare is None:
        raise InvalidParameterError(f"{args.config}: no `compare` section; add one (see `audit-sdk config example`).")
    if args.workers is not None:
        cfg = cfg.model_copy(update={"executor": cfg.executor.model_copy(update={"workers": args.workers})})
    out = Path(args.out or cfg.output.dir)
    from ._common import Problems

    problems = Problems()
    problems.positive("--workers", args.workers, zero_ok=True)
    problems.out_dir(out)
    problems.raise_if_any()
    comparison = run_comparison(cfg, registry=reg, out_dir=out, progress=not (args.quiet or args.json) and sys.stderr.isatty())
    path = comparison.to_json(out / "comparison.json")
    html = comparison.to_html(out / "comparison.html") if cfg.output.html else None
    if args.json:
        sys.stdout.write(json.dumps(comparison.to_dict(), indent=2, default=str) + "\n")
    elif not args.quiet:
        print(comparison.summary())
        print(f"\ncomparison: {path}")
        if html is not None:
            print(f"html:       {html}")
    for f in comparison.failures:
        sys.stderr.write(f"audit-sdk: cell {f['cell']} failed: {f['error']}\n")
    return 0 if not comparison.failures else 3
