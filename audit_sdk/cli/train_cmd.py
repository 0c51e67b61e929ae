"""``audit-sdk train``: train a model with a defense (DP-SGD by default); write model.onnx and privacy.json."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from ..fileio import write_text_atomic


def add_parser(sub: Any) -> None:
    p = sub.add_parser("train", help="train a classifier with a defense (DP-SGD by default), export ONNX + privacy.json")
    p.add_argument("--defense", default="defense.dp-sgd", help="a registered defense (default defense.dp-sgd; 'none' for plain training)")
    p.add_argument("--data", help="NPZ with x, y (or x_members, y_members); default: the embedded digits (80%% train, 20%% validation)")
    p.add_argument("--model", default="cnn", help="mlp, cnn or lenet (default cnn)")
    p.add_argument("--target-epsilon", type=float, help="DP-SGD budget (calibrates the noise unless --noise-multiplier is given)")
    p.add_argument("--delta", type=float, default=1e-5, help="DP-SGD delta (default 1e-5; below 1 / training-set size)")
    p.add_argument(
        "--noise-multiplier",
        type=float,
        help="DP-SGD noise std / clip bound; with --target-epsilon, training stops when the budget is spent",
    )
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="per-sample gradient clip bound (default 1.0)")
    p.add_argument("--accountant", default="acct.rdp", help="privacy accountant: acct.rdp (default), acct.pld, acct.zcdp, acct.gdp")
    p.add_argument("--mechanism", default="dp.gaussian", help="dp.gaussian or dp.ada-gaussian")
    p.add_argument(
        "--adaptive-clipping", action="store_true", help="let the clip bound follow a quantile of per-sample norms (Andrew et al. 2021)"
    )
    p.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    p.add_argument(
        "--batch-size", type=int, default=256, help="(expected) batch size; DP-SGD samples each example with rate batch / n (default 256)"
    )
    p.add_argument("--lr", type=float, default=1e-2, help="learning rate (default 1e-2)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "sgd", "momentum"], help="optimizer (default adam)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data split, initialisation and sampling (default 0)")
    p.add_argument(
        "--param", action="append", metavar="NAME.KEY=VALUE", help="extra defense option, e.g. defense.dp-sgd.clipping=per-layer"
    )
    p.add_argument("--out", default="audit-sdk-out/train", help="output directory (default audit-sdk-out/train)")
    p.add_argument("--json", action="store_true", help="print privacy.json to stdout")
    p.set_defaults(func=run)


#: Architectures ``--model`` accepts.
MODELS = ("mlp", "cnn", "lenet")
#: More classes than this is a label-encoding mistake (a 1e9 label would build a 1e9-way output layer).
MAX_CLASSES = 100_000


def _load(path: str) -> tuple[Any, Any]:
    from ..data import _problems, read_npz
    from ..errors import InvalidDataError

    z = read_npz(path)  # size-capped, no pickle, truncation reported as such
    for xk, yk in (("x", "y"), ("x_train", "y_train"), ("x_members", "y_members")):
        if xk in z and yk in z:
            problems, xa, ya = _problems(f"{path} ({xk}, {yk})", z[xk], z[yk])
            if not problems and ya is not None and int(ya.max()) + 1 > MAX_CLASSES:
                problems.append(f"{path}: labels go up to {int(ya.max())}; expected class indices 0..K-1 (remap them)")
            if problems:
                raise InvalidDataError("invalid training data: " + "; ".join(problems) + ".")
            return xa, ya
    raise InvalidDataError(f"{path} holds {sorted(z)}; expected arrays x and y (or x_members and y_members).")


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def run(args: argparse.Namespace) -> int:
    from ..errors import InvalidParameterError
    from ..training import make_trainer
    from ..training_api import _digits_split, train
    from ._common import Problems, parse_params
    from .helpers import registry as cli_registry

    # every problem with the command line and the data, at once, before any training
    problems = Problems()
    problems.positive("--epochs", args.epochs)
    problems.positive("--batch-size", args.batch_size)
    problems.positive("--lr", args.lr)
    problems.positive("--delta", args.delta)
    problems.positive("--max-grad-norm", args.max_grad_norm)
    problems.positive("--target-epsilon", args.target_epsilon)
    problems.positive("--noise-multiplier", args.noise_multiplier, zero_ok=True)
    problems.positive("--seed", args.seed, zero_ok=True)
    if args.delta is not None and math.isfinite(args.delta) and args.delta >= 1:
        problems.add(f"--delta must be < 1; got {args.delta!r}")
    if args.model not in MODELS:
        problems.add(f"--model {args.model!r}: expected one of {', '.join(MODELS)}")
    x_val = y_val = None
    x = y = None
    with problems.check():
        if args.data:
            x, y = _load(args.data)
        elif args.seed >= 0:
            x, y, x_val, y_val = _digits_split(args.seed)
    problems.out_dir(args.out)
    problems.raise_if_any()
    assert x is not None and y is not None
    defense = None if args.defense in ("none", "") else args.defense
    extra = parse_params(args.param)
    options: dict[str, Any] = {}
    reg = cli_registry(args)
    if defense is not None:
        cls = reg.get("defense", defense)
        defense = cls.name
        if "output" in getattr(cls, "points", ()) and not ({"gradient", "objective", "parameters", "input", "data"} & set(cls.points)):
            raise InvalidParameterError(
                f"{cls.name} acts on the model's outputs when it is served, not on training: model.onnx would be "
                "undefended. Train without it (--defense none) and apply it when auditing (a config's `defenses:` "
                "section, or run_audit(..., defenses=[...]))."
            )
        options.update(extra.pop(cls.name, {}))
        if cls.name == "defense.dp-sgd":
            options.setdefault("delta", args.delta)
            options.setdefault("max_grad_norm", args.max_grad_norm)
            options.setdefault("accountant", args.accountant)
            options.setdefault("mechanism", args.mechanism)
            if args.target_epsilon is not None:
                options.setdefault("target_epsilon", args.target_epsilon)
            if args.noise_multiplier is not None:
                options.setdefault("noise_multiplier", args.noise_multiplier)
            if args.adaptive_clipping:
                options.setdefault("adaptive_clipping", True)
            if "target_epsilon" not in options and "noise_multiplier" not in options:
                raise InvalidParameterError("audit-sdk train --defense dp-sgd needs --target-epsilon or --noise-multiplier.")
        elif args.target_epsilon is not None or args.noise_multiplier is not None:
            raise InvalidParameterError(f"--target-epsilon / --noise-multiplier apply to defense.dp-sgd, not {cls.name}.")
    if extra:
        raise InvalidParameterError(f"--param names {sorted(extra)}, but the defense is {defense}.")
    if defense is not None:
        reg.create("defense", defense, options)  # options checked now, not after training
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = train(
        args.model,
        x,
        y,
        defense=defense,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        seed=args.seed,
        x_val=x_val,
        y_val=y_val,
        **options,
    )
    seconds = time.perf_counter() - t0
    # the adapter that trained the model evaluates and exports it (make_trainer answers for the trained model)
    n_classes = max(int(y.max()), int(y_val.max()) if y_val is not None and len(y_val) else 0) + 1
    trainer = make_trainer(result.model, {"input_shape": tuple(x.shape[1:]), "n_classes": n_classes})
    onnx_path = trainer.export_onnx(result.model, out / "model.onnx", example=x[:2])
    report: dict[str, Any] = dict(result.defenses.get(defense, {})) if defense else {}
    report.update(
        {
            "defense": defense,
            "model": args.model,
            "epochs_run": len(result.history),
            "train_accuracy": trainer.accuracy(result.model, x, y),
            "stop_reason": result.stop_reason,
            "notes": list(result.notes),
            "seconds": seconds,
            "onnx": str(onnx_path),
        }
    )
    if x_val is not None and y_val is not None:
        report["test_accuracy"] = trainer.accuracy(result.model, x_val, y_val)
    path = out / "privacy.json"
    write_text_atomic(path, json.dumps(_json_safe(report), indent=2))
    if args.json:
        print(json.dumps(_json_safe(report)))
    else:
        eps = report.get("epsilon")
        acc = f"test accuracy {report['test_accuracy']:.3f}, " if "test_accuracy" in report else ""
        priv = f"epsilon {eps:.4g} at delta {report.get('delta'):g} ({report.get('accountant')}), " if eps is not None else ""
        print(f"trained {args.model} with {defense or 'no defense'}: {priv}{acc}train accuracy {report['train_accuracy']:.3f}")
        if result.stop_reason:
            print(f"stopped early: {result.stop_reason}")
        for note in result.notes:
            print(f"note: {note}")
        print(f"model: {onnx_path}\nprivacy: {path}")
    return 0
