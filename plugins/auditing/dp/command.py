"""``audit-sdk dp-audit [--model mlp] [--data DATA.npz] [--target-epsilon EPS] [--fail-on-violation] [--out DIR]``.

Checks a DP training recipe's privacy claim with canaries (``audit.dp`` through
``audit_sdk.audit_dp``): trains the model again with canaries, bounds epsilon from below and
compares the bound with the claimed epsilon and every accountant's. ``--fail-on-violation`` makes it
exit 1 when the canaries prove more leakage than the claim allows (a broken DP implementation or
accounting), so a pipeline can gate on it.

The command is added through ``register_commands`` (by ``audit_sdk.plugins.dp.commands``, which
keeps the DP commands together in ``--help``); its choices and defaults are audit.dp's own Params.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import Any

from audit_sdk.cli.helpers import Problems, add_compute_options, check_choice, jsonable, parse_key_values, registry

from ._plugin import DPAudit

__all__ = ["add_parser", "choices"]


def choices(option: str, *, exclude: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The values audit.dp's Params allow for ``option``: its default first, then the others in declared order."""
    field = DPAudit.Params.model_fields[option]
    values = [v for v in typing.get_args(field.annotation) if v not in exclude]
    return (field.default, *[v for v in values if v != field.default]) if field.default in values else tuple(values)


def _default(option: str) -> Any:
    return DPAudit.Params.model_fields[option].default


#: Enumerated options, checked in ``run`` so that a bad value is one clear error line. The
#: command trains a named architecture, so audit.dp's ``from-target`` is not offered.
MODELS = choices("architecture", exclude=("from-target",))
CANARIES = choices("canary")
THREAT_MODELS = choices("threat_model")
MODES = choices("mode")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "dp-audit",
        help="check a DP training recipe's epsilon claim with canaries (audit.dp): an empirical epsilon lower bound",
        description=(
            "Train the model again with canaries and bound epsilon from below; the verdict says whether the bound is "
            "consistent with the claimed epsilon and every accountant's. Options left out take audit.dp's defaults "
            "(see `audit-sdk plugins`)."
        ),
    )
    p.add_argument("--model", default="mlp", metavar="NAME", help=f"architecture trained: {', '.join(MODELS)} (default mlp)")
    p.add_argument(
        "--data",
        metavar="DATA.npz",
        help=".npz with x_members, y_members (the training set), x_non_members, y_non_members (held out) "
        "[, x_population, y_population] (default: the embedded digits, 80%% train, 20%% test)",
    )
    p.add_argument(
        "--defense", default="defense.dp-sgd", help="training defense audited (default defense.dp-sgd; 'none' for plain training)"
    )
    p.add_argument(
        "--target-epsilon", type=float, metavar="EPS", help="DP-SGD budget (calibrates the noise unless --noise-multiplier is given)"
    )
    p.add_argument("--noise-multiplier", type=float, metavar="SIGMA", help="DP-SGD noise std / clip norm")
    p.add_argument("--max-grad-norm", type=float, metavar="C", help="DP-SGD clip bound (default 1.0)")
    p.add_argument("--delta", type=float, help="delta of the claim (the defense's; with --defense none, of the lower bound; default 1e-5)")
    p.add_argument(
        "--defense-param",
        action="append",
        metavar="KEY=VALUE",
        help="another defense option, VALUE read as JSON when it parses, e.g. accountant=acct.pld (repeatable)",
    )
    p.add_argument("--canaries", type=int, metavar="M", help=f"number of canaries in one-run mode (default {_default('canaries')})")
    p.add_argument("--canary", metavar="KIND", help=f"what a canary is: {', '.join(CANARIES)} (default {_default('canary')})")
    p.add_argument(
        "--threat-model",
        metavar="MODEL",
        help=f"{', '.join(THREAT_MODELS)} (default {_default('threat_model')}{': every released update' if _default('threat_model') == 'white-box' else ''})",
    )
    p.add_argument("--mode", metavar="MODE", help=f"{', '.join(MODES)} (default {_default('mode')})")
    p.add_argument(
        "--runs",
        type=int,
        metavar="N",
        help=f"training runs in multi-run mode (default {_default('runs')}; 32 runs prove at most ~1.0 at 95%%)",
    )
    p.add_argument("--epochs", type=int, metavar="N", help=f"training epochs (default {_default('epochs')})")
    p.add_argument("--batch-size", type=int, metavar="N", help=f"training batch size (default {_default('batch_size')})")
    p.add_argument("--lr", type=float, help=f"learning rate (default {_default('lr'):g})")
    p.add_argument("--confidence", type=float, metavar="P", help=f"confidence of the lower bound (default {_default('confidence'):g})")
    p.add_argument("--seed", type=int, help=f"seeds canaries, inclusion and training (default {_default('seed')})")
    p.add_argument(
        "--out", metavar="DIR", help="write DIR/report.json and DIR/report.html; training runs are cached in DIR/cache (resumable)"
    )
    p.add_argument("--json", action="store_true", help="print the audit (verdict, epsilon_lower_bound, accountants, ...) as JSON")
    p.add_argument(
        "--fail-on-violation",
        action="store_true",
        help="exit 1 when the lower bound exceeds the claimed epsilon (the DP implementation or its accounting is broken)",
    )
    add_compute_options(p)
    p.set_defaults(func=run)


def _num(v: Any, fmt: str = ".4g") -> str:
    return "-" if v is None else format(float(v), fmt)


def run(args: argparse.Namespace) -> int:
    from audit_sdk import RunContext
    from audit_sdk.dp_audit_api import audit_dp
    from audit_sdk.errors import InvalidParameterError, PolicyViolationError

    check_choice("--model", args.model, MODELS)
    check_choice("--canary", args.canary, CANARIES)
    check_choice("--threat-model", args.threat_model, THREAT_MODELS)
    check_choice("--mode", args.mode, MODES)
    reg = registry(args)

    # the defense and its options: fail fast, before any training, on a name or option it does not take
    defense: str | None = None if args.defense.strip().lower() in ("none", "") else args.defense
    extra = parse_key_values("--defense-param", args.defense_param, example="accountant=acct.pld or max_grad_norm=0.5")
    dp_flags = {"target_epsilon": args.target_epsilon, "noise_multiplier": args.noise_multiplier, "max_grad_norm": args.max_grad_norm}
    options: dict[str, Any] = {}
    defense_params: dict[str, Any] = {}
    if defense is None:
        given = [f"--{k.replace('_', '-')}" for k, v in dp_flags.items() if v is not None] + (["--defense-param"] if extra else [])
        if given:
            raise InvalidParameterError(f"--defense none takes no defense options; got {', '.join(given)}.")
        if args.delta is not None:
            options["delta"] = args.delta
    else:
        cls = reg.get("defense", defense)  # unknown names fail here, naming the nearest
        defense = cls.name
        defense_params = {k: v for k, v in dp_flags.items() if v is not None}
        if args.delta is not None:
            defense_params["delta"] = args.delta
        defense_params.update(extra)
        if defense == "defense.dp-sgd" and defense_params.get("target_epsilon") is None and defense_params.get("noise_multiplier") is None:
            raise InvalidParameterError("audit-sdk dp-audit --defense defense.dp-sgd needs --target-epsilon or --noise-multiplier.")
        reg.create("defense", defense, defense_params)  # validates the options (unknown keys, ranges)

    data = None
    if args.data:
        from audit_sdk import load_npz

        data = load_npz(args.data)
    for key in ("canaries", "canary", "threat_model", "mode", "runs", "epochs", "batch_size", "lr", "confidence", "seed"):
        if getattr(args, key) is not None:  # left out: audit.dp's default
            options[key] = getattr(args, key)
    seed = args.seed if args.seed is not None else 0

    out = Path(args.out) if args.out else None
    problems = Problems()
    problems.out_dir(out)
    problems.raise_if_any()
    show_progress = not (args.json or args.quiet) and sys.stderr.isatty()
    # with --out, each finished training run is cached under DIR/cache: a rerun (or an interrupted
    # multi-run audit) picks up where it stopped
    context = RunContext(registry=reg, cache_dir=out / "cache" if out is not None else None, out_dir=out, progress=show_progress)
    try:
        report = audit_dp(
            args.model,
            data,
            defense=defense,
            defense_params=defense_params,
            rng=seed,
            registry=reg,
            context=context,
            progress=None,  # the CLI's mode: bars in a terminal, lines in a log, nothing with --quiet
            label=f"{args.model}, {defense or 'no defense'}",
            **options,
        )
    finally:
        context.executor.close()
    result = report.results[0]
    audit: dict[str, Any] = dict(result.extra["dp_audit"])
    lb = float(result.metrics["epsilon_lower_bound"])
    audit["epsilon_lower_bound"] = lb

    path = html = None
    if out is not None:
        path = report.to_json(out / "report.json")
        html = report.to_html(out / "report.html")
    if args.json:
        sys.stdout.write(json.dumps(jsonable(audit), indent=2) + "\n")
    else:
        print(f"verdict: {audit['verdict']}: {audit['text']}")
        print(
            f"epsilon lower bound: {lb:.4g} at {audit['confidence']:.0%} confidence, delta {audit['delta']:g} "
            f"({audit['mode']}, {audit['canaries']} {audit['canary']} canar{'y' if audit['canaries'] == 1 else 'ies'}, "
            f"{audit['threat_model']}, {audit['runs']} training run{'s' if audit['runs'] != 1 else ''})"
        )
        claimed = audit.get("claimed_epsilon")
        own = audit.get("defense_epsilon")
        source = f"{audit['defense']} reports {_num(own)}" if own is not None else (audit.get("defense") or "no defense")
        if claimed is not None and own is not None and claimed < own:
            source = f"the tightest upper bound; {source}"
        print(f"claimed epsilon:     {_num(claimed) if claimed is not None else 'none'} ({source})")
        accts = audit.get("accountants") or {}
        if accts:
            width = max(len("accountant"), *(len(n) for n in accts))
            print(f"  {'accountant'.ljust(width)}  {'epsilon':>10}  upper bound")
            for name, a in sorted(accts.items()):
                if a.get("epsilon") is None:
                    print(f"  {name.ljust(width)}  {'-':>10}  error: {a.get('error', 'no epsilon')}")
                else:
                    print(f"  {name.ljust(width)}  {_num(a['epsilon']):>10}  {'yes' if a.get('upper_bound') else 'no (approximation)'}")
        acc = audit.get("test_accuracy")
        print(f"test accuracy:       {_num(acc, '.3f')} (training {audit.get('training_seconds', 0.0):.1f} s)")
        if path is not None:
            print(f"report: {path}")
        if html is not None:
            print(f"html:   {html}")
    if args.fail_on_violation and audit["verdict"] == "violated":
        raise PolicyViolationError(
            f"audit.dp: the canaries prove epsilon >= {lb:.4g} at {audit['confidence']:.0%} confidence, "
            f"but the run claims epsilon = {_num(audit.get('claimed_epsilon'))} (delta {audit['delta']:g})",
            rules=["audit.dp verdict == violated"],
        )
    return 0
