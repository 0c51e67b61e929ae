"""DP-SGD step time and accountant speed, side by side with Opacus (``bench`` extra) when installed.

    python benchmarks/dp_sgd.py                 # step times (2 threads) + accountants
    python benchmarks/dp_sgd.py --memory        # also peak RSS at batch 1024 (one subprocess per run)
    python benchmarks/dp_sgd.py --steps 5 --models mlp lenet
    python benchmarks/dp_sgd.py --models gpt --no-accountants   # the tiny GPT (Embedding, q/k/v/o Linear, LayerNorm)

Step time = median wall time of one optimizer step on a fixed batch, after warm-up; implementations
run round-robin, step by step, so load changes on a shared machine affect them alike. "non-private" is a
plain forward/backward/step; "ours" is defense.dp-sgd's per-sample clipping (ghost norms +
book-keeping, see plugins/defenses/_grad_sample.py) plus noise; Opacus runs its fastest modes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn


def make(name: str) -> tuple[nn.Module, tuple[int, ...], int]:
    torch.manual_seed(0)
    if name == "mlp":  # 64-128-10 on 8x8
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), (1, 8, 8), 256
    if name == "lenet":  # LeNet-5 on 1x28x28
        return (
            nn.Sequential(
                nn.Conv2d(1, 6, 5),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(6, 16, 5),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(256, 120),
                nn.ReLU(),
                nn.Linear(120, 84),
                nn.ReLU(),
                nn.Linear(84, 10),
            ),
            (1, 28, 28),
            256,
        )
    if name == "cnn":  # 4 convolutions, ~0.46M parameters, 3x32x32
        return (
            nn.Sequential(
                nn.Conv2d(3, 32, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, 64, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(64, 128, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(128, 256, 3, padding=1),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(256, 256),
                nn.ReLU(),
                nn.Linear(256, 10),
            ),
            (3, 32, 32),
            128,
        )
    if name == "gpt":  # the tiny GPT of the LM demo, a size up: 2 layers, d=128, vocab 256, 64 tokens (shape = (T,) of ids)
        from audit_sdk.adapters.torch.lm import TinyGPT

        return TinyGPT(vocab_size=256, d_model=128, n_layers=2, n_heads=4, max_len=64), (64,), 32
    raise SystemExit(f"unknown model {name}")


def batch(shape: tuple[int, ...], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g)


def lm_batch(T: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids (n, T) and next-token targets (n, T) of random byte text."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 256, (n, T + 1), generator=g)
    return ids[:, :-1].contiguous(), ids[:, 1:].contiguous()


def time_steps(step: Any, steps: int) -> float:
    for _ in range(2):
        step()
    ts = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def runner(impl: str, name: str, bs: int | None = None) -> Any:
    model, shape, default_bs = make(name)
    n = bs or default_bs
    lm = name == "gpt"
    x, y = lm_batch(shape[0], n) if lm else batch(shape, n)
    if lm:  # per-sequence mean next-token cross-entropy; the privacy unit is a sequence
        from audit_sdk.adapters.torch.lm import lm_loss

        def ce(out: torch.Tensor, t: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
            per = lm_loss(out, t)
            return per if reduction == "none" else per.mean()
    else:
        ce = nn.functional.cross_entropy
    if impl == "non-private":
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            ce(model(x), y).backward()
            opt.step()

        return step
    if impl == "ours":
        from audit_sdk.plugins.defenses._grad_sample import clipped_grad_sum
        from audit_sdk.plugins.dp.mechanisms import Gaussian

        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        mech = Gaussian(noise_multiplier=1.0)
        gen = torch.Generator().manual_seed(0)
        params = [p for p in model.parameters() if p.requires_grad]
        loss_fn = lambda out, t: ce(out, t, reduction="none")  # noqa: E731

        def step() -> None:
            res = clipped_grad_sum(model, loss_fn, x, y, clip=1.0)
            for p, g in zip(params, res.grads):
                p.grad = mech.perturb(g, sensitivity=1.0, step=0, rng=gen) / n
            opt.step()

        return step
    if impl.startswith("opacus-"):
        import warnings

        from opacus import PrivacyEngine

        mode = impl.split("-", 1)[1]
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pe = PrivacyEngine()
            if mode == "ghost":
                model, opt, crit, _ = pe.make_private(
                    module=model,
                    optimizer=opt,
                    data_loader=dl,
                    criterion=nn.CrossEntropyLoss(),
                    noise_multiplier=1.0,
                    max_grad_norm=1.0,
                    grad_sample_mode="ghost",
                    poisson_sampling=False,
                )

                def step() -> None:
                    opt.zero_grad(set_to_none=True)
                    out = model(x)
                    if lm:  # Opacus's ghost loss takes flattened tokens and the logits' shape (per-sequence unit)
                        crit(out.reshape(-1, out.shape[-1]), y.reshape(-1), shape=out.shape).backward()
                    else:
                        crit(out, y).backward()
                    opt.step()

                return step
            model, opt, _ = pe.make_private(
                module=model,
                optimizer=opt,
                data_loader=dl,
                noise_multiplier=1.0,
                max_grad_norm=1.0,
                grad_sample_mode=mode,
                poisson_sampling=False,
            )

        def step2() -> None:
            opt.zero_grad(set_to_none=True)
            ce(model(x), y).backward()
            opt.step()

        return step2
    raise SystemExit(f"unknown impl {impl}")


def have_opacus() -> bool:
    try:
        import opacus  # noqa: F401

        return True
    except ImportError:
        return False


def peak_rss(impl: str, name: str, bs: int) -> float:
    code = (
        "import resource, torch, sys; sys.path.insert(0, 'benchmarks'); torch.set_num_threads(2); import dp_sgd as b; "
        f"s = b.runner({impl!r}, {name!r}, {bs}); base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; s(); s(); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return float("nan")


def accountants() -> list[tuple[str, float, str]]:
    from audit_sdk import PrivacyEvent
    from audit_sdk.plugins.accountants.pld import PLDAccountant
    from audit_sdk.plugins.accountants.rdp import RDPAccountant

    q, sigma, steps, delta = 256 / 60000, 1.1, 15000, 1e-5
    ev = PrivacyEvent("gaussian", {"noise_multiplier": sigma})
    rows: list[tuple[str, float, str]] = []

    def timed(label: str, fn: Any, reps: int = 5) -> Any:
        out = fn()
        ts = []
        for _ in range(reps):
            t = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t)
        return label, statistics.median(ts) * 1e3, out

    def ours_rdp() -> float:
        a = RDPAccountant()
        a.step(ev, sample_rate=q, count=steps)
        return a.epsilon(delta)

    def ours_pld() -> float:
        a = PLDAccountant()
        a.step(ev, sample_rate=q, count=steps)
        return a.epsilon(delta)

    ref = None
    try:
        import dp_accounting
        from dp_accounting.pld import PLDAccountant as RefPLD

        def dpa(interval: float) -> float:
            a = RefPLD(value_discretization_interval=interval)
            a.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps)
            return a.get_epsilon(delta)

        ref = dpa(2e-5)
        rows.append(("dp_accounting PLD, interval 2e-5 (reference 'exact')", float("nan"), f"eps={ref:.5f}"))
    except ImportError:
        dpa = None  # type: ignore[assignment]
    for label, fn in [
        ("ours acct.rdp epsilon, 15000 steps (fresh accountant)", ours_rdp),
        ("ours acct.pld epsilon, 15000 steps", ours_pld),
    ]:
        lab, ms, eps = timed(label, fn)
        err = f", {100 * (eps - ref) / ref:+.2f}% vs reference" if ref and "pld" in label else ""
        rows.append((lab, ms, f"eps={eps:.5f}{err}"))
    lab, ms, s = timed(
        "ours acct.rdp calibrate sigma for eps=3",
        lambda: RDPAccountant().calibrate(target_epsilon=3.0, delta=delta, sample_rate=q, steps=steps),
    )
    rows.append((lab, ms, f"sigma={s:.5f}"))
    lab, ms, s = timed(
        "ours acct.pld calibrate sigma for eps=3",
        lambda: PLDAccountant().calibrate(target_epsilon=3.0, delta=delta, sample_rate=q, steps=steps),
        reps=1,
    )
    rows.append((lab, ms, f"sigma={s:.5f}"))
    if dpa is not None:
        for interval in (1e-3, 1e-4):
            lab, ms, eps = timed(f"dp_accounting PLD, interval {interval:g}", lambda iv=interval: dpa(iv), reps=1)
            rows.append((lab, ms, f"eps={eps:.5f}, {100 * (eps - ref) / ref:+.2f}% vs reference"))
    if have_opacus():
        from opacus.accountants import PRVAccountant
        from opacus.accountants import RDPAccountant as ORDP
        from opacus.accountants.utils import get_noise_multiplier

        def o_rdp() -> float:
            a = ORDP()
            a.history = [(sigma, q, steps)]
            return a.get_epsilon(delta)

        def o_prv() -> float:
            a = PRVAccountant()
            a.history = [(sigma, q, steps)]
            return a.get_epsilon(delta)

        for label, fn, reps in [("opacus RDP epsilon", o_rdp, 5), ("opacus PRV epsilon", o_prv, 3)]:
            lab, ms, eps = timed(label, fn, reps)
            err = f", {100 * (eps - ref) / ref:+.2f}% vs reference" if ref and "PRV" in label else ""
            rows.append((lab, ms, f"eps={eps:.5f}{err}"))
        lab, ms, s = timed(
            "opacus get_noise_multiplier (rdp) eps=3",
            lambda: get_noise_multiplier(target_epsilon=3.0, target_delta=delta, sample_rate=q, steps=steps, accountant="rdp"),
            reps=3,
        )
        rows.append((lab, ms, f"sigma={s:.5f}"))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["mlp", "lenet", "cnn", "gpt"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory", action="store_true", help="peak RSS at batch 1024 on the CNN (subprocesses)")
    ap.add_argument("--no-accountants", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    impls = ["non-private", "ours"] + (["opacus-ghost", "opacus-hooks"] if have_opacus() else [])
    results: dict[str, dict[str, float]] = {}
    print(f"DP-SGD step time, median of {args.steps} steps, {args.threads} threads, CPU (torch {torch.__version__})")
    print(f"{'model':8s} " + " ".join(f"{i:>14s}" for i in impls) + f" {'ours/non-priv':>14s} {'ours/opacus*':>13s}")
    for name in args.models:
        steps_of: dict[str, Any] = {}
        for impl in impls:
            try:
                steps_of[impl] = runner(impl, name)
                for _ in range(2):  # warm-up
                    steps_of[impl]()
            except Exception as exc:  # an Opacus mode that does not support a layer
                print(f"  ({impl} on {name} failed: {type(exc).__name__}: {str(exc)[:80]})")
        # round-robin, so load changes on a shared machine hit every implementation alike
        times: dict[str, list[float]] = {impl: [] for impl in steps_of}
        for _ in range(args.steps):
            for impl, step in steps_of.items():
                t = time.perf_counter()
                step()
                times[impl].append(time.perf_counter() - t)
        row = {impl: statistics.median(times[impl]) * 1e3 if impl in times else float("nan") for impl in impls}
        results[name] = row
        best_opacus = min([v for k, v in row.items() if k.startswith("opacus") and np.isfinite(v)] or [float("nan")])
        print(
            f"{name:8s} "
            + " ".join(f"{row[i]:12.1f}ms" for i in impls)
            + f" {row['ours'] / row['non-private']:13.2f}x {row['ours'] / best_opacus:12.2f}x"
        )
    print(
        "(* ratio to Opacus's fastest mode measured above; goal <= 0.8. ours/non-private goal on CNNs <= 1.5; "
        "on the tiny GPT (issue 18): <= 2x non-private and <= Opacus's best)"
    )
    if args.memory:
        print("\npeak RSS at batch 1024, CNN (MiB, whole process)")
        for impl in impls:
            print(f"  {impl:14s} {peak_rss(impl, 'cnn', 1024):8.0f}")
    if not args.no_accountants:
        print("\naccountants: q = 256/60000, sigma = 1.1, 15000 steps, delta = 1e-5 (median ms)")
        for label, ms, note in accountants():
            print(f"  {label:58s} {ms:9.1f} ms  {note}" if np.isfinite(ms) else f"  {label:58s} {'':9s}     {note}")
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
