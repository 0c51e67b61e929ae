"""``audit-sdk audit MODEL --data DATA.npz [--attacks ...] [--config FILE] [--fail-on RULE] --out DIR``.

Writes DIR/report.json and DIR/report.html; ``--fail-on`` rules (repeatable, and ``fail_on`` in a
config) make it exit 1 naming the failing rule, so a pipeline can block a release on privacy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ._common import Problems, add_target_options, parse_params, report_failures, split_names, target_options

#: What `audit-sdk audit` runs when neither --attacks nor a config names attacks: a cheap baseline and
#: the two reference attacks (which share their reference models, sized to --budget).
DEFAULT_ATTACKS = ("mia.loss-threshold", "mia.lira", "mia.rmia")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``5m``, ``1.5h`` -> seconds (> 0)."""
    from ..errors import InvalidParameterError

    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    t = str(text).strip().lower()
    scale = units.get(t[-1:], None)
    try:
        value = float(t[:-1] if scale else t) * (scale or 1.0)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise InvalidParameterError(f"--budget {text!r}: expected a positive duration such as 300, 90s, 5m or 1h.")
    return value


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "audit",
        help="run attacks on a model (an .onnx file) and write DIR/report.json and DIR/report.html",
        description="Audit a model. Options given on the command line override the config file's.",
    )
    p.add_argument(
        "model",
        nargs="?",
        help="path to the model (.onnx), or anything an installed adapter recognises (default: the config's target.model)",
    )
    p.add_argument(
        "--data",
        help=".npz with x_members, y_members, x_non_members, y_non_members [, x_population, y_population] (default: the config's data)",
    )
    p.add_argument("--config", metavar="FILE", help="YAML or JSON audit config (see `audit-sdk config example`)")
    p.add_argument(
        "--attacks",
        nargs="+",
        metavar="NAME",
        help="attack names, space- or comma-separated (default: the config's, else " + " ".join(DEFAULT_ATTACKS) + ")",
    )
    p.add_argument(
        "--param", action="append", metavar="NAME.KEY=VALUE", help="an attack option, e.g. mia.loss-threshold.calibration=per-class"
    )
    p.add_argument(
        "--budget",
        metavar="DURATION",
        help="time for the reference models of mia.lira / mia.rmia / shadow attacks whose n_references is not set, e.g. 5m, 90s "
        "(default 5m): the number of models (8-128) and, on a slow machine, their epochs are chosen to fit, measured on the first ones",
    )
    p.add_argument("--seed", type=int, help="seed for every attack (default: the config's, else 0)")
    p.add_argument("--batch-size", type=int, help="inputs per model query (default 1024)")
    add_target_options(p)
    p.add_argument("--out", help="output directory (default: the config's output.dir, else audit-sdk-out)")
    p.add_argument(
        "--fail-on",
        action="append",
        metavar="RULE",
        help="privacy gate: exit 1 when the rule holds, e.g. 'mia.loss-threshold.tpr_at_fpr.0.01 > 0.05' (repeatable)",
    )
    p.add_argument("--privacy", metavar="FILE", help="JSON file of the DP training run's figures (epsilon, delta, ...) shown in the report")
    p.add_argument("--no-html", action="store_true", help="do not write report.html")
    p.add_argument("--json", action="store_true", help="print report.json to stdout instead of the table; writes files only with --out")
    p.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors (and --json output); no progress bar")
    p.add_argument(
        "--executor", choices=["local", "ray"], help="where fan-out work (reference models) runs (default: the config's, else local)"
    )
    p.add_argument("--workers", type=int, help="local worker processes, or CPUs of a local Ray (0: all; default: the config's, else 1)")
    p.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster ('auto', 'ray://head:10001'); implies --executor ray")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import AuditConfig, load_config
    from ..data import load_npz
    from ..errors import InvalidParameterError, PolicyViolationError
    from ..gate import describe_outcome, parse_rules, validate_rule_targets
    from ..run import run_audit
    from .helpers import registry as cli_registry

    # `--attacks a b model.onnx` hands the model to --attacks (nargs="+"): say so, not "unknown attack"
    for name in split_names(args.attacks):
        if Path(name).exists() or name.lower().endswith((".onnx", ".npz", ".pt", ".pkl", ".joblib")):
            raise InvalidParameterError(
                f"--attacks got {name!r}, which looks like a file, not an attack name: --attacks takes every word after it. "
                f"Put the model first (audit-sdk audit {name} --data DATA.npz --attacks NAME ...) or end the list with --."
            )
    # Check everything the user typed before any work, and report every problem at once.
    problems = Problems()
    problems.positive("--batch-size", args.batch_size)
    problems.positive("--workers", args.workers, zero_ok=True)
    problems.positive("--seed", args.seed, zero_ok=True)
    reg = cli_registry(args)
    cfg: AuditConfig | None = None
    if args.config:
        with problems.check():
            cfg = load_config(args.config, registry=reg)
    model = args.model or (cfg.target.model if cfg is not None and cfg.target is not None else None)
    if model is None and not (args.config and cfg is None):
        problems.add("no model to audit: pass MODEL, or a --config with target.model")
    elif isinstance(model, str) and Path(model).suffix.lower() == ".onnx" and not Path(model).is_file():
        problems.add(f"model file {model!r} does not exist")
    data = None
    with problems.check():
        if args.data:
            data = load_npz(args.data)
        elif cfg is not None and cfg.data is not None:
            data = cfg.load_data()
        elif not (args.config and cfg is None):
            raise InvalidParameterError("no audit data: pass --data DATA.npz, or a --config with a data section")

    attacks: list[tuple[str, dict[str, Any]]] = []
    params: dict[str, dict[str, Any]] = {}
    defaults = False
    with problems.check():
        params = parse_params(args.param)
    if args.attacks:
        names = split_names(args.attacks)
        for n in names:
            with problems.check():
                full = reg.get("attack", n).name
                attacks.append((full, params.get(n, params.get(full, {}))))
        if not names:
            problems.add("--attacks names no attack; pass at least one (see `audit-sdk plugins`)")
    elif cfg is not None:
        attacks = [(reg.get("attack", n).name, p) for n, p in cfg.attack_specs()]
        attacks = [(n, {**p, **params.get(n, {})}) for n, p in attacks]
    elif not args.config:
        attacks = [(n, params.get(n, {})) for n in DEFAULT_ATTACKS]
        defaults = True  # those that cannot run on this model and data are skipped, with a note in the report
    known = {n for n, _ in attacks}
    for comp in params:
        with problems.check():
            if comp not in known and reg.get("attack", comp).name not in known:
                raise InvalidParameterError(f"--param names {comp!r}, which is not among the attacks run ({', '.join(sorted(known))})")
    for name, p in attacks:  # options validated now, not when the attack's turn comes
        with problems.check():
            reg.create("attack", name, p)

    extras = {"budget_seconds": parse_duration(args.budget)} if args.budget else {}

    rules_text = list(cfg.fail_on if cfg is not None else []) + list(args.fail_on or [])
    rules = []
    with problems.check():
        rules = parse_rules(rules_text)
        if attacks:
            validate_rule_targets(rules, [n for n, _ in attacks])  # usage error before any attack spends time

    privacy = None
    if args.privacy:
        try:
            privacy = json.loads(Path(args.privacy).read_text(encoding="utf-8"))
            if not isinstance(privacy, dict):
                problems.add(f'--privacy {args.privacy!r}: expected a JSON object like {{"epsilon": 3.0, "delta": 1e-5}}')
        except (OSError, ValueError, RecursionError) as exc:
            problems.add(f"--privacy {args.privacy!r}: cannot read JSON ({exc})")

    out = Path(args.out or (cfg.output.dir if cfg is not None else "audit-sdk-out"))
    # --json prints the report; it writes files (report, artefacts, cache) only where --out or a config says
    write_files = not args.json or bool(args.out) or cfg is not None
    if write_files:
        problems.out_dir(out)
    problems.raise_if_any()
    assert data is not None and model is not None

    seed = args.seed if args.seed is not None else (cfg.seed if cfg is not None else 0)
    batch = args.batch_size or (cfg.target.batch_size if cfg is not None and cfg.target is not None else 1024)
    from ..executors import resolve_executor
    from ..run import RunContext

    # scale flags override the config's executor; artefacts (per-example scores, reconstructions) go
    # under --out, and reference models are cached in --out/cache so a later audit reuses them
    executor = resolve_executor(
        args.executor, workers=args.workers, address=args.ray_address, base=cfg.executor if cfg is not None else None
    )
    show_progress = not (args.quiet or args.json) and sys.stderr.isatty()
    try:
        report = run_audit(
            model,
            data,
            attacks=attacks,
            rng=seed,
            registry=reg,
            target_options={"batch_size": batch, **target_options(args)},
            config=cfg,
            privacy=privacy,
            progress=None,  # the CLI's mode: bars in a terminal, lines in a log, nothing with --quiet
            context=RunContext(
                registry=reg,
                executor=executor,
                cache_dir=out / "cache" if write_files else None,
                out_dir=out if write_files else None,
                progress=show_progress,
                extras=extras,
            ),
            on_attack_error="record",
            skip_unrunnable=defaults,
        )
    finally:
        executor.close()
    violation: PolicyViolationError | None = None
    if rules:
        try:
            report.check_policy(rules_text)
        except PolicyViolationError as exc:
            violation = exc
        except InvalidParameterError:
            if not report.failures:
                raise  # a rule naming a failed attack cannot be checked; the failure is reported below
    write_json = (cfg.output.json_report if cfg is not None else True) and write_files
    write_html = (cfg.output.html if cfg is not None else True) and not args.no_html and write_files
    path = report.to_json(out / "report.json") if write_json else None
    html = report.to_html(out / "report.html") if write_html else None
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    elif not args.quiet:
        print(report.summary())
        for note in report.notes:
            if note.startswith("skipped "):
                print(note)
        for r in report.results:  # what the SDK chose for the reference attacks, and why
            for line in _reference_choices(r.extra):
                print(f"{r.attack}: {line}")
        for o in report.policy:
            print(describe_outcome(o))
        print()
        if path is not None:
            print(f"report: {path}")
        if html is not None:
            print(f"html:   {html}")
    failed = report_failures(report, path)
    if failed:
        return failed
    if violation is not None:
        raise violation
    return 0


def _reference_choices(extra: dict[str, Any]) -> list[str]:
    lines = []
    if "reference_setting" in extra:
        lines.append(f"{extra['n_references']} references, {extra['reference_setting']}")
    sel = extra.get("architecture_selection")
    if sel:
        best = next((c for c in sel["candidates"] if c.get("architecture") == sel["chosen"]), sel["candidates"][0])
        lines.append(
            f"reference architecture {sel['chosen']} (surrogate; top-1 agreement with the target {best['top1_agreement']:.3f}, "
            f"total variation {best['total_variation']:.3f}, best of {', '.join(str(c.get('architecture')) for c in sel['candidates'])})"
        )
    elif extra.get("reference_model"):
        lines.append(f"reference models: {extra['reference_model']}")
    esel = extra.get("epochs_selection")
    if esel:
        tried = ", ".join(str(c["epochs"]) for c in esel["candidates"])
        lines.append(f"reference training length {esel['chosen']} epochs (closest confidence distribution to the target's; tried {tried})")
    if extra.get("budget"):
        lines.append(str(extra["budget"]["note"]))
    return lines
