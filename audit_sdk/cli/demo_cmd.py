"""``audit-sdk demo``: train a digits model that memorises, export it to ONNX, audit it."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="train a small model on scikit-learn's digits, export to ONNX, audit it, write the report")
    p.add_argument("--out", default="audit-sdk-out/demo", help="output directory (default: audit-sdk-out/demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=60)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..adapters.torch import export_onnx
    from ..adapters.torch.recipes import digits_setup
    from ..data import save_npz
    from ..registry import get_registry
    from ..run import run_audit

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print("training a CNN on 250 digits (it will memorise them)...")
    setup = digits_setup(seed=args.seed, epochs=args.epochs)
    print(f"  train accuracy {setup.train_accuracy:.3f}, test accuracy {setup.test_accuracy:.3f} ({time.perf_counter() - t0:.1f}s)")
    onnx_path = export_onnx(setup.model, setup.data.members.x[:2], out / "model.onnx")
    save_npz(setup.data, out / "data.npz")
    reg = get_registry()
    attacks = [n for n in reg.names("attack") if getattr(reg.get("attack", n), "access", "") in ("black-box", "label-only")]
    print(f"auditing {onnx_path} with {', '.join(attacks)}...")
    report = run_audit(str(onnx_path), setup.data, attacks=attacks, rng=args.seed, registry=reg)
    path = report.to_json(out / "report.json")
    print()
    print(report.summary())
    print(f"\nmodel: {onnx_path}\ndata: {out / 'data.npz'}\nreport: {path}\n({time.perf_counter() - t0:.1f}s in all)")
    return 0
