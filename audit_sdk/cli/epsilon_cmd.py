"""``audit-sdk epsilon``: privacy spent by DP-SGD (like TF Privacy's compute_dp_sgd_privacy)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("epsilon", help="epsilon spent by T Poisson-sampled Gaussian steps (DP-SGD) at a given delta")
    p.add_argument("--accountant", default="acct.rdp", help="acct.rdp (default), acct.pld, acct.gdp, acct.zcdp; bare names work")
    p.add_argument("--noise-multiplier", type=float, required=True, help="noise std / clip norm (sigma0 with --decay-policy)")
    p.add_argument("--sample-rate", type=float, required=True, help="batch size / dataset size")
    p.add_argument("--steps", type=int, required=True, help="number of training steps")
    p.add_argument("--delta", type=float, required=True, help="the delta of (epsilon, delta)-DP, e.g. 1e-5 (below 1 / dataset size)")
    p.add_argument("--decay-policy", choices=["time", "step", "exp"], help="noise decays as dp.ada-gaussian's schedule")
    p.add_argument("--decay-rate", type=float, default=6e-6, help="decay rate of --decay-policy (default 6e-6)")
    p.add_argument("--json", action="store_true", help="print JSON: {epsilon, accountant, optimal_order (RDP)}")
    p.set_defaults(func=run)


def history(args: argparse.Namespace) -> list[Any]:
    """The steps these arguments describe, as (PrivacyEvent, sample_rate, count)."""
    from ..errors import InvalidParameterError
    from ..interfaces import PrivacyEvent

    if args.steps < 0:
        raise InvalidParameterError(f"--steps must be >= 0; got {args.steps}.")
    if args.noise_multiplier < 0:
        raise InvalidParameterError(f"--noise-multiplier must be >= 0; got {args.noise_multiplier}.")
    if args.decay_policy is None:
        return [(PrivacyEvent("gaussian", {"noise_multiplier": args.noise_multiplier}), args.sample_rate, args.steps)]
    from ..plugins.dp.mechanisms import AdaGaussian

    mech = AdaGaussian(noise_multiplier=args.noise_multiplier, decay_policy=args.decay_policy, noise_decay_rate=args.decay_rate)
    import numpy as np

    sig = args.noise_multiplier * mech.factors(np.arange(args.steps))
    vals, counts = np.unique(sig, return_counts=True)
    return [(PrivacyEvent("gaussian", {"noise_multiplier": float(v)}), args.sample_rate, int(c)) for v, c in zip(vals, counts)]


def run(args: argparse.Namespace) -> int:
    from ..registry import get_registry

    acct = get_registry().create("accountant", args.accountant)
    acct.extend(history(args))
    eps = acct.epsilon(args.delta)
    out: dict[str, Any] = {"epsilon": eps, "accountant": acct.name}
    order = getattr(acct, "optimal_order", None)
    if order is not None:
        out["optimal_order"] = order
    if not getattr(acct, "is_upper_bound", True):
        out["note"] = f"{acct.name} is an approximation, not an upper bound"
    if args.json:
        print(json.dumps(out))
    else:
        extra = f" (optimal RDP order {order:g})" if order is not None else ""
        print(f"epsilon = {eps:.6g} at delta = {args.delta:g} [{acct.name}]{extra}")
        if "note" in out:
            print(f"note: {out['note']}")
    return 0
