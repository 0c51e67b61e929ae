"""Defenses on digits: privacy-utility tables for every defense of issue 6.

    python benchmarks/defenses.py                    # all tables (about a minute on 1 CPU thread)
    python benchmarks/defenses.py --only suppress    # suppress | output | morphing
    python benchmarks/defenses.py --json rows.json   # also write every row

The model is the memorising digits CNN of the test suite (250 members with 10% flipped labels,
80 epochs of Adam): train accuracy 1.0, so membership leaks. Accuracy is measured on the 1000
population digits; attacks are mia.loss-threshold (confidence) and mia.label-only (labels).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import audit_sdk
from audit_sdk.adapters.torch import TrainConfig, Trainer, evaluate_accuracy, export_onnx, make_model
from audit_sdk.adapters.torch.recipes import digits_setup
from audit_sdk.data import load_digits_data
from audit_sdk.plugins.defenses.morphing import MorphedLearning, reverse_engineering_curve
from audit_sdk.plugins.defenses.suppress import SuppressPrivacy
from audit_sdk.plugins.defenses.utility import privacy_utility_rows, sweep_output_defense

COMMON = dict(n_members=250, n_non_members=250, n_population=1000, epochs=80, label_noise=0.1, seed=0)
ATTACKS = ["mia.loss-threshold", "mia.label-only"]


def table(rows: list[dict[str, Any]], cols: list[str]) -> None:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "-" if v is None else str(v)

    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for x in cells:
        print("  ".join(v.ljust(w) for v, w in zip(x, widths)))
    print()


def suppress_rows() -> list[dict[str, Any]]:
    rows = []
    for s_end in (None, 0.5, 0.8, 0.9, 0.95):
        defs = () if s_end is None else (SuppressPrivacy(start_epoch=5, end_epoch=40, mask_times=140, sparse_end=s_end),)
        t0 = time.perf_counter()
        setup = digits_setup(**COMMON, defenses=defs)
        secs = time.perf_counter() - t0
        pop = setup.data.population
        for r in privacy_utility_rows(
            setup.model,
            setup.data,
            attacks=ATTACKS,
            x_test=pop.x,
            y_test=pop.y,
            defense=None if s_end is None else "defense.suppress",
            strength=s_end,
        ):
            r["train_s"] = secs
            r["sparsity"] = defs[0].report_["overall_sparsity"] if defs else 0.0
            rows.append(r)
    return rows


def output_rows() -> list[dict[str, Any]]:
    setup = digits_setup(**COMMON)
    pop = setup.data.population
    with tempfile.TemporaryDirectory() as tmp:
        target = audit_sdk.load_target(str(export_onnx(setup.model, setup.data.members.x[:2], Path(tmp) / "m.onnx")))
        rows = privacy_utility_rows(target, setup.data, attacks=ATTACKS, x_test=pop.x, y_test=pop.y)
        for name, param, values, base in [
            ("defense.top-k", "k", [1, 3], {}),
            ("defense.rounding", "decimals", [0, 1, 2], {}),
            ("defense.output-noise", "scale", [0.05, 0.3, 1.0, 3.0], {"seed": 0}),
        ]:
            rows += sweep_output_defense(
                target,
                setup.data,
                defense=name,
                param=param,
                values=values,
                base_params=base,
                attacks=ATTACKS,
                x_test=pop.x,
                y_test=pop.y,
                include_baseline=False,
            )
        lo = audit_sdk.get_registry().create("defense", "defense.label-only")
        rows += privacy_utility_rows(target, setup.data, defense=lo, attacks=ATTACKS, x_test=pop.x, y_test=pop.y)
    return rows


def morphing_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    d = load_digits_data()
    perm = np.random.default_rng(0).permutation(len(d.y))
    x, y = d.x[perm], d.y[perm]
    xtr, ytr, xte, yte = x[:1200], y[:1200], x[1200:], y[1200:]
    cfg = TrainConfig(epochs=30, batch_size=64, lr=2e-3, device="cpu", seed=0)
    rows = []
    for arch in ("cnn", "mlp"):
        m = make_model(arch, input_shape=xtr.shape[1:], n_classes=10, seed=0)
        Trainer(cfg).fit(m, xtr, ytr)
        rows.append({"model": arch, "setting": "original data", "accuracy": evaluate_accuracy(m, xte, yte, device="cpu")})
        for mode in ("trainable", "frozen"):
            mole = MorphedLearning(block_size=16, seed=1, aug_layer=mode)
            m2 = make_model(arch, input_shape=xtr.shape[1:], n_classes=10, seed=0)
            rep = Trainer(cfg, defenses=[mole]).fit(m2, xtr, ytr).defenses["defense.morphing"]
            rows.append(
                {
                    "model": arch,
                    "setting": f"morphed, aug layer {mode}",
                    "accuracy": evaluate_accuracy(m2, mole.morph(xte), yte, device="cpu"),
                    "compute_overhead": rep["compute_overhead"],
                    "data_size_overhead": rep["data_size_overhead"],
                    "aug_layer_bytes": rep["aug_layer_bytes"],
                }
            )
    mole = MorphedLearning(block_size=16, seed=1).fit(xtr.shape[1:])
    curve = []
    for knows in (True, False):
        for r in reverse_engineering_curve(mole, xtr, xte[:200], [1, 2, 4, 8, 16, 64, 256], knows_blocks=knows, rng=0):
            curve.append({"attacker": "knows blocks" if knows else "dense", **r})
    return rows, curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["suppress", "output", "morphing"])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    mia_cols = ["defense", "strength", "accuracy", "attack", "status", "auc", "advantage", "tpr_at_0.01"]
    if args.only in (None, "suppress"):
        print("== defense.suppress (strength = sparse_end) ==")
        out["suppress"] = suppress_rows()
        table(out["suppress"], mia_cols + ["sparsity", "train_s"])
    if args.only in (None, "output"):
        print("== output defenses on the ONNX export ==")
        out["output"] = output_rows()
        table(out["output"], mia_cols)
    if args.only in (None, "morphing"):
        rows, curve = morphing_rows()
        print("== defense.morphing: accuracy (digits, 1200 train / 597 test) and overhead ==")
        table(rows, ["model", "setting", "accuracy", "compute_overhead", "data_size_overhead", "aug_layer_bytes"])
        print("== defense.morphing: reverse-engineering attacker, block_size 16 ==")
        table(curve, ["attacker", "n_pairs", "mse", "ssim", "psnr", "relative_l2"])
        out["morphing"], out["reverse_engineering"] = rows, curve
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
