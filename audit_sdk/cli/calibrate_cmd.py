"""``audit-sdk calibrate``: the noise multiplier that meets a target (epsilon, delta)."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: Any) -> None:
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..registry import get_registry

    acct = get_registry().create("accountant", args.accountant)
    schedule = None
    if args.decay_policy is not None:
        from ..plugins.dp.mechanisms import AdaGaussian

        schedule = AdaGaussian(decay_policy=args.decay_policy, noise_decay_rate=args.decay_rate).factors
    from ..progress import track

    kw = {"allow_approximate": True} if args.allow_approximate else {}
    # a decaying schedule composes a heterogeneous history per trial (tens of seconds): show it is alive
    with track(f"calibrating {'sigma0' if schedule else 'the noise multiplier'} ({acct.name}, {args.steps} steps)"):
        sigma = acct.calibrate(
            target_epsilon=args.target_epsilon, delta=args.delta, sample_rate=args.sample_rate, steps=args.steps, schedule=schedule, **kw
        )
    from .epsilon_cmd import history

    ns = argparse.Namespace(
        noise_multiplier=sigma, sample_rate=args.sample_rate, steps=args.steps, decay_policy=args.decay_policy, decay_rate=args.decay_rate
    )
    fresh = type(acct)(acct.params)
    fresh.extend(history(ns))
    eps = fresh.epsilon(args.delta)
    out = {"noise_multiplier": sigma, "accountant": acct.name, "epsilon": eps, "certified": bool(getattr(acct, "is_upper_bound", True))}
    if args.json:
        print(json.dumps(out))
    else:
        what = "sigma0" if args.decay_policy else "noise multiplier"
        print(
            f"{what} = {sigma:.6g} (epsilon {eps:.6g} <= {args.target_epsilon:g} at delta {args.delta:g}, {args.steps} steps, "
            f"sample rate {args.sample_rate:g}) [{acct.name}]"
        )
    return 0
