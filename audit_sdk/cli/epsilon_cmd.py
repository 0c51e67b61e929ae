"""``audit-sdk epsilon``: privacy spent by DP-SGD (like TF Privacy's compute_dp_sgd_privacy) or by a list of events."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

#: largest events file read (bytes)
MAX_EVENTS_FILE = 1 << 20
#: longest decaying schedule expanded step by step
MAX_SCHEDULE_STEPS = 10_000_000
#: most distinct noise multipliers of a schedule accounted one by one (more are rounded down onto a grid)
MAX_DISTINCT = 1000


def add_parser(sub: Any) -> None:
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
    p.set_defaults(func=run)


def read_events(path: str) -> tuple[list[Any], str | None, dict[str, Any]]:
    """Events from a small JSON or YAML file (safe-loaded, size-capped).

    The file is a list of ``{"kind": ..., params..., "sample_rate": q, "count": n}`` or an object
    ``{"accountant": NAME, "options": {...}, "events": [...]}``.

    Returns:
        ((PrivacyEvent, sample_rate, count) entries, accountant name or None, accountant options).
    """
    from ..errors import InvalidParameterError
    from ..interfaces import PrivacyEvent

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


def history(args: argparse.Namespace) -> list[Any]:
    """The steps these arguments describe, as (PrivacyEvent, sample_rate, count)."""
    from ..errors import InvalidParameterError
    from ..interfaces import PrivacyEvent

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
    from ..plugins.dp.mechanisms import AdaGaussian

    mech = AdaGaussian(noise_multiplier=args.noise_multiplier, decay_policy=args.decay_policy, noise_decay_rate=args.decay_rate)
    import numpy as np

    sig = args.noise_multiplier * mech.factors(np.arange(args.steps))
    vals = np.unique(sig)
    pos = vals[vals > 0]
    if len(vals) > MAX_DISTINCT and pos.size:
        # Too many distinct multipliers to account one by one: round them down onto a geometric grid with
        # at most MAX_DISTINCT points (less noise can only charge more, so the answer stays an upper bound).
        step = max(1e-4, math.log(pos.max() / pos.min()) / MAX_DISTINCT)
        sig = np.where(sig > 0, np.exp(np.floor(np.log(np.where(sig > 0, sig, 1.0)) / step + 1e-12) * step), 0.0)
    vals, counts = np.unique(sig, return_counts=True)
    return [(PrivacyEvent("gaussian", {"noise_multiplier": float(v)}), args.sample_rate, int(c)) for v, c in zip(vals, counts)]


def run(args: argparse.Namespace) -> int:
    from ..registry import get_registry

    options: dict[str, Any] = {}
    if args.events is not None:
        steps, file_name, options = read_events(args.events)
        name = args.accountant or file_name or "acct.dp-accounting"
    else:
        steps = history(args)
        name = args.accountant or "acct.rdp"
    acct = get_registry().create("accountant", name, options or None)
    acct.extend(steps)
    k = args.max_examples_per_user
    if k != 1:
        group = getattr(acct, "group_epsilon", None)
        if group is None:
            from ..errors import InvalidParameterError

            raise InvalidParameterError(f"{acct.name} has no group_epsilon; use --accountant acct.rdp with --max-examples-per-user.")
        eps = group(args.delta, k)
    else:
        eps = acct.epsilon(args.delta)
    certified = bool(getattr(acct, "is_upper_bound", True))
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
