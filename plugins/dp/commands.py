"""The DP commands: ``audit-sdk epsilon``, ``calibrate`` and ``dp-audit`` (through ``register_commands``).

``epsilon``: privacy spent by DP-SGD (like TF Privacy's compute_dp_sgd_privacy) or by a list of
events. ``calibrate``: the noise multiplier that meets a target (epsilon, delta). Both work with
any registered accountant through the core contract (``audit_sdk.interfaces.Accountant``,
``audit_sdk.accounting``), and a decaying noise is ``dp.ada-gaussian``'s own schedule
(``Mechanism.schedule``). ``dp-audit`` lives beside audit.dp's Params
(``audit_sdk.plugins.auditing.dp.command``); it is registered here so ``--help`` keeps the order
epsilon, dp-audit, calibrate.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from audit_sdk import hookimpl
from audit_sdk.accounting import MAX_SCHEDULE_STEPS, PrivacyEvent, Step, calibrate_noise_multiplier
from audit_sdk.cli.helpers import add_compute_options, registry
from audit_sdk.errors import InvalidParameterError

from .mechanisms import AdaGaussian

__all__ = ["history", "read_events"]

#: largest events file read (bytes)
MAX_EVENTS_FILE = 1 << 20
#: most distinct noise multipliers of a schedule accounted one by one (more are rounded down onto a grid)
MAX_DISTINCT = 1000


def add_epsilon_parser(sub: Any) -> None:
    p = sub.add_parser("epsilon", help="epsilon spent by T Poisson-sampled Gaussian steps (DP-SGD), or by the events in a file")
    p.add_argument(
        "--accountant",
        default=None,
        help="acct.rdp (default), acct.pld, acct.gdp, acct.zcdp, acct.dp-accounting (default with --events); bare names work",
    )
    p.add_argument("--noise-multiplier", type=float, help="noise std / clip norm (sigma0 with --decay-policy)")
    p.add_argument("--sample-rate", type=float, help="batch size / dataset size")
    p.add_argument("--steps", type=int, help="number of training steps")
    p.add_argument("--delta", type=float, required=True, help="the delta of (epsilon, delta)-DP, e.g. 1e-5 (below 1 / dataset size)")
    p.add_argument("--decay-policy", choices=["time", "step", "exp"], help="noise decays as dp.ada-gaussian's schedule")
    p.add_argument("--decay-rate", type=float, default=6e-6, help="decay rate of --decay-policy (default 6e-6)")
    p.add_argument(
        "--events",
        metavar="FILE",
        help='JSON/YAML list of events, e.g. [{"kind": "gaussian", "noise_multiplier": 1.1, "sample_rate": 0.01, "count": 1000}] '
        "(instead of --noise-multiplier/--sample-rate/--steps)",
    )
    p.add_argument("--max-examples-per-user", type=int, default=1, metavar="K", help="user-level epsilon for users with up to K examples")
    p.add_argument("--json", action="store_true", help="print JSON: {epsilon, accountant, certified, optimal_order (RDP)}")
    add_compute_options(p)
    p.set_defaults(func=run_epsilon)


def read_events(path: str) -> tuple[list[Any], str | None, dict[str, Any]]:
    """Events from a small JSON or YAML file (safe-loaded, size-capped).

    The file is a list of ``{"kind": ..., params..., "sample_rate": q, "count": n}`` or an object
    ``{"accountant": NAME, "options": {...}, "events": [...]}``.

    Returns:
        ((PrivacyEvent, sample_rate, count) entries, accountant name or None, accountant options).
    """
    f = Path(path)
    if not f.is_file():
        raise InvalidParameterError(f"--events {path}: no such file.")
    if f.stat().st_size > MAX_EVENTS_FILE:
        raise InvalidParameterError(f"--events {path}: larger than {MAX_EVENTS_FILE} bytes; an events file lists a few events.")
    text = f.read_text(encoding="utf-8", errors="replace")
    try:
        if f.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise InvalidParameterError(
            f"--events {path}: not valid {'YAML' if f.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: {exc}"
        ) from exc
    name: str | None = None
    options: dict[str, Any] = {}
    if isinstance(data, dict) and "events" in data:
        name, options = data.get("accountant"), data.get("options") or {}
        if (name is not None and not isinstance(name, str)) or not isinstance(options, dict):
            raise InvalidParameterError(f'--events {path}: "accountant" must be a name and "options" an object.')
        data = data["events"]
    if not isinstance(data, list) or not data or not all(isinstance(e, dict) and isinstance(e.get("kind"), str) for e in data):
        raise InvalidParameterError(
            f'--events {path}: expected a non-empty list of {{"kind": ..., ...}} objects; got {type(data).__name__}.'
        )
    out = []
    for e in data:
        params = {k: v for k, v in e.items() if k not in ("kind", "sample_rate", "count")}
        q, c = e.get("sample_rate", 1.0), e.get("count", 1)
        if isinstance(q, bool) or not isinstance(q, (int, float)) or isinstance(c, bool) or not isinstance(c, int):
            raise InvalidParameterError(f"--events {path}: sample_rate must be a number and count an integer; got {e!r}.")
        out.append((PrivacyEvent(e["kind"], params), float(q), c))
    return out, name, options


def history(args: argparse.Namespace) -> list[Step]:
    """The steps these arguments describe, as (PrivacyEvent, sample_rate, count).

    A decaying noise (``--decay-policy``) is dp.ada-gaussian's schedule; with more than
    ``MAX_DISTINCT`` distinct multipliers they are rounded down onto a geometric grid (less noise
    can only charge more, so the answer stays an upper bound).
    """
    missing = [f"--{n.replace('_', '-')}" for n in ("noise_multiplier", "sample_rate", "steps") if getattr(args, n, None) is None]
    if missing:
        raise InvalidParameterError(f"missing {', '.join(missing)} (or pass --events FILE).")
    if args.steps < 0:
        raise InvalidParameterError(f"--steps must be >= 0; got {args.steps}.")
    if not (args.noise_multiplier >= 0):
        raise InvalidParameterError(f"--noise-multiplier must be >= 0; got {args.noise_multiplier}.")
    if args.decay_policy is None:
        return [(PrivacyEvent("gaussian", {"noise_multiplier": args.noise_multiplier}), args.sample_rate, args.steps)]
    if not (math.isfinite(args.decay_rate) and args.decay_rate >= 0):
        raise InvalidParameterError(f"--decay-rate must be a finite number >= 0; got {args.decay_rate}.")
    if args.steps > MAX_SCHEDULE_STEPS:
        raise InvalidParameterError(
            f"--decay-policy over {args.steps} steps is too long to expand (at most {MAX_SCHEDULE_STEPS}); use fewer steps."
        )
    mech = _decaying(args, args.noise_multiplier)
    return [(ev, args.sample_rate, c) for ev, c in mech.schedule(args.steps, max_distinct=MAX_DISTINCT)]


def _decaying(args: argparse.Namespace, noise_multiplier: float) -> AdaGaussian:
    return AdaGaussian(noise_multiplier=noise_multiplier, decay_policy=args.decay_policy, noise_decay_rate=args.decay_rate)


def run_epsilon(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {}
    if args.events is not None:
        steps, file_name, options = read_events(args.events)
        name = args.accountant or file_name or "acct.dp-accounting"
    else:
        steps = history(args)
        name = args.accountant or "acct.rdp"
    acct = registry(args).create("accountant", name, options or None)
    acct.extend(steps)
    k = args.max_examples_per_user
    eps = acct.group_epsilon(args.delta, k) if k != 1 else acct.epsilon(args.delta)
    certified = bool(acct.is_upper_bound)
    out: dict[str, Any] = {"epsilon": eps, "accountant": acct.name, "certified": certified}
    if k != 1:
        out["max_examples_per_user"] = k
    order = getattr(acct, "optimal_order", None)
    if order is not None and k == 1:
        out["optimal_order"] = order
    if not certified:
        out["note"] = f"{acct.name} is an approximation, not an upper bound"
    if args.json:
        print(json.dumps(out))
    else:
        extra = f" (optimal RDP order {order:g})" if order is not None and k == 1 else ""
        who = f", users with up to {k} examples" if k != 1 else ""
        print(f"epsilon = {eps:.6g} at delta = {args.delta:g} [{acct.name}{who}]{extra}")
        if "note" in out:
            print(f"note: {out['note']}")
    return 0


# --------------------------------------------------------------------------- calibrate
def add_calibrate_parser(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="noise multiplier (or sigma0 of a decay schedule) meeting a target epsilon")
    p.add_argument("--target-epsilon", type=float, required=True, help="the epsilon the noise must meet")
    p.add_argument("--sample-rate", type=float, required=True, help="batch size / dataset size")
    p.add_argument("--steps", type=int, required=True, help="number of training steps")
    p.add_argument("--delta", type=float, required=True, help="the delta of (epsilon, delta)-DP, e.g. 1e-5 (below 1 / dataset size)")
    p.add_argument("--accountant", default="acct.rdp", help="acct.rdp (default), acct.pld, acct.gdp, acct.zcdp; bare names work")
    p.add_argument("--decay-policy", choices=["time", "step", "exp"], help="calibrate sigma0 of dp.ada-gaussian's schedule")
    p.add_argument("--decay-rate", type=float, default=6e-6, help="decay rate of --decay-policy (default 6e-6)")
    p.add_argument(
        "--allow-approximate", action="store_true", help="allow an accountant that is not an upper bound (acct.gdp; certified: false)"
    )
    p.add_argument("--json", action="store_true", help="print JSON: {noise_multiplier, accountant, epsilon, certified}")
    add_compute_options(p)
    p.set_defaults(func=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from audit_sdk.progress import track

    acct = registry(args).create("accountant", args.accountant)
    mechanism = _decaying(args, 1.0) if args.decay_policy is not None else None
    # a decaying schedule composes a heterogeneous history per trial (tens of seconds): show it is alive
    with track(f"calibrating {'sigma0' if mechanism else 'the noise multiplier'} ({acct.name}, {args.steps} steps)"):
        sigma = calibrate_noise_multiplier(
            acct,
            target_epsilon=args.target_epsilon,
            delta=args.delta,
            sample_rate=args.sample_rate,
            steps=args.steps,
            mechanism=mechanism,
            allow_approximate=args.allow_approximate,
        )
    ns = argparse.Namespace(
        noise_multiplier=sigma, sample_rate=args.sample_rate, steps=args.steps, decay_policy=args.decay_policy, decay_rate=args.decay_rate
    )
    eps = acct.epsilon_if(history(ns), delta=args.delta)
    out = {"noise_multiplier": sigma, "accountant": acct.name, "epsilon": eps, "certified": bool(acct.is_upper_bound)}
    if args.json:
        print(json.dumps(out))
    else:
        what = "sigma0" if args.decay_policy else "noise multiplier"
        print(
            f"{what} = {sigma:.6g} (epsilon {eps:.6g} <= {args.target_epsilon:g} at delta {args.delta:g}, {args.steps} steps, "
            f"sample rate {args.sample_rate:g}) [{acct.name}]"
        )
    return 0


@hookimpl
def register_commands(subparsers: Any) -> None:
    from ..auditing.dp import command as dp_audit

    add_epsilon_parser(subparsers)
    dp_audit.add_parser(subparsers)
    add_calibrate_parser(subparsers)
