"""Inversion attacks: batched optimisation speed, our optimiser vs MindArmour's, gradient-leakage sweep.

    python benchmarks/inversion.py                    # all three tables (about 2 minutes on 1 CPU thread)
    python benchmarks/inversion.py --only speed --n 64 --iterations 100 --device cuda
    python benchmarks/inversion.py --only quality
    python benchmarks/inversion.py --only sweep

1. speed: representation inversion of N images in one batched optimisation vs N runs of one image
   (MindArmour's way), same iterations; images/s and the speed-up. Models: the digits LeNet
   (1x8x8) and an MNIST-sized LeNet-5 (1x28x28, random weights: the cost does not depend on them).
2. quality: Adam (ours) vs MindArmour's fixed signed step (0.01 x range) at equal iterations, same
   loss and start, on the trained digits LeNet; SSIM and final loss per layer. Also MindArmour's
   loss weights (1, 0.2, 5) vs our defaults (1, 0.01, 0.01).
3. sweep: gradient inversion SSIM on a fresh digits CNN as the batch grows and as DP-SGD noise
   (clip norm 1) rises.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def _table(title: str, header: list[str], rows: list[list[object]]) -> None:
    def fmt(v: object) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    cells = [header] + [[fmt(v) for v in r] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    print(f"\n{title}")
    for j, r in enumerate(cells):
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def _digits(seed: int = 0):
    from audit_sdk.adapters.torch.recipes import digits_setup

    return digits_setup(n_members=250, n_non_members=250, n_population=1000, architecture="lenet", epochs=60, seed=seed)


def speed(args: argparse.Namespace, setup) -> None:
    from audit_sdk.adapters.torch import make_model
    from audit_sdk.plugins.inversion.representation import invert_representation, layer_forward

    dev = torch.device(args.device)
    rows = []
    cases = [("digits LeNet 1x8x8", setup.model, torch.from_numpy(setup.data.members.x[: args.n]))]
    big = make_model("lenet", input_shape=(1, 28, 28), n_classes=10, seed=0)
    cases.append(("LeNet-5 1x28x28", big, torch.rand(args.n, 1, 28, 28, generator=torch.Generator().manual_seed(0))))
    for label, model, x in cases:
        model = model.to(dev).eval()
        for q in model.parameters():
            q.requires_grad_(False)
        x = x.to(dev)
        for layer in ("3", None):
            f = layer_forward(model, layer)
            with torch.no_grad():
                phi = f(x)
            kw = dict(bounds=(0.0, 1.0), iterations=args.iterations)
            invert_representation(f, phi[:2], tuple(x.shape[1:]), **{**kw, "iterations": 5})  # warm-up

            def sync() -> None:
                if dev.type == "cuda":
                    torch.cuda.synchronize()

            t0 = time.perf_counter()
            invert_representation(f, phi, tuple(x.shape[1:]), generator=torch.Generator().manual_seed(0), **kw)
            sync()
            t_batch = time.perf_counter() - t0
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(0)
            for i in range(len(x)):
                invert_representation(f, phi[i : i + 1], tuple(x.shape[1:]), generator=gen, **kw)
            sync()
            t_single = time.perf_counter() - t0
            rows.append(
                [
                    label,
                    layer or "logits",
                    len(x),
                    args.iterations,
                    t_batch,
                    t_single,
                    len(x) / t_batch,
                    len(x) / t_single,
                    t_single / t_batch,
                ]
            )
    # gradient inversion: K single-image shared gradients attacked in one vmap'd optimisation vs K runs
    from audit_sdk.plugins.inversion.gradient import invert_gradients, shared_gradients

    cnn = make_model("cnn", input_shape=(1, 8, 8), n_classes=10, seed=0).to(dev).eval()
    k = min(args.n, 16)
    xg = torch.from_numpy(setup.data.members.x[:k]).to(dev).reshape(k, 1, 1, 8, 8)
    yg = torch.from_numpy(setup.data.members.y[:k]).to(dev).reshape(k, 1)
    shared = shared_gradients(cnn, xg, yg)
    gkw = dict(labels=yg.cpu(), n_classes=10, bounds=(0.0, 1.0), iterations=args.iterations)
    invert_gradients(cnn, {n: g[:1] for n, g in shared.items()}, (1, 8, 8), 1, **{**gkw, "labels": yg[:1].cpu(), "iterations": 3})
    t0 = time.perf_counter()
    invert_gradients(cnn, shared, (1, 8, 8), 1, **gkw)
    t_batch = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(k):
        invert_gradients(cnn, {n: g[i : i + 1] for n, g in shared.items()}, (1, 8, 8), 1, **{**gkw, "labels": yg[i : i + 1].cpu()})
    t_single = time.perf_counter() - t0
    rows.append(["gradient inv., digits CNN", "all", k, args.iterations, t_batch, t_single, k / t_batch, k / t_single, t_single / t_batch])
    _table(
        f"1. Batched inversion vs one image at a time ({args.device}, {torch.get_num_threads()} thread(s))",
        ["model", "layer", "images", "iters", "batched s", "one at a time s", "batched img/s", "single img/s", "speed-up"],
        rows,
    )


def quality(args: argparse.Namespace, setup) -> None:
    from audit_sdk.adapters.torch import TorchTarget
    from audit_sdk.plugins.inversion.representation import RepresentationInversion

    target = TorchTarget(setup.model, device="cpu")
    rows = []
    for layer in ("1", "4", "5", None):
        for iters in (50, 100, 200):
            common = dict(layer=layer, iterations=iters, n_samples=32, sets="members", evaluate=False)
            ours = RepresentationInversion(optimizer="adam", **common).run(target, setup.data, rng=0)
            ma = RepresentationInversion(optimizer="signed-step", **common).run(target, setup.data, rng=0)
            rows.append(
                [
                    layer or "logits",
                    iters,
                    ma.metrics["ssim"],
                    ours.metrics["ssim"],
                    ma.extra["loss_trace"][-1],
                    ours.extra["loss_trace"][-1],
                ]
            )
    base = ours.extra["baseline"]
    _table(
        "2a. Same loss (weights 1, 0.01, 0.01), same start, equal iterations: MindArmour signed step vs Adam (ours)",
        ["layer", "iters", "SSIM signed-step", "SSIM adam", "loss signed-step", "loss adam"],
        rows,
    )
    print(f"    baselines: blank image SSIM {base['blank_ssim']:.3f}, population mean image SSIM {base['mean_image_ssim']:.3f}")
    rows = []
    for layer in ("1", "4", None):
        ma = RepresentationInversion(
            layer=layer, loss_weights=(1, 0.2, 5), optimizer="signed-step", iterations=100, n_samples=32, sets="members", evaluate=False
        )
        ours = RepresentationInversion(layer=layer, n_samples=32, sets="members", evaluate=False)
        rows.append(
            [layer or "logits", ma.run(target, setup.data, rng=0).metrics["ssim"], ours.run(target, setup.data, rng=0).metrics["ssim"]]
        )
    _table(
        "2b. MindArmour's exact set-up (weights 1, 0.2, 5; signed step; 100 iters) vs our defaults (1, 0.01, 0.01; Adam; 200 iters)",
        ["layer", "SSIM MindArmour", "SSIM ours"],
        rows,
    )


def sweep(args: argparse.Namespace, setup) -> None:
    from audit_sdk.adapters.torch import TorchTarget, make_model
    from audit_sdk.plugins.inversion.gradient import GradientInversion

    target = TorchTarget(make_model("cnn", input_shape=(1, 8, 8), n_classes=10, seed=0), device="cpu")
    sizes, noises = [1, 2, 4, 8, 16], [0.0, 0.001, 0.01, 0.1, 1.0]
    r = GradientInversion(
        batch_size=1,
        n_batches=args.batches,
        iterations=args.grad_iterations,
        evaluate=False,
        max_grad_norm=1.0,
        sweep_batch_sizes=sizes,
        sweep_noise_multipliers=noises,
    ).run(target, setup.data, rng=0)
    cell = {(s["batch_size"], s["noise_multiplier"]): s for s in r.extra["sweep"]}
    rows = [[b] + [cell[(b, s)]["ssim"] for s in noises] + [cell[(b, 0.0)]["label_accuracy"]] for b in sizes]
    _table(
        f"3. Gradient inversion SSIM (fresh digits CNN, clip norm 1, {args.batches} shared gradients per cell, {args.grad_iterations} iters); "
        f"population-mean-image baseline {r.extra['baseline']['mean_image_ssim']:.3f}, blank {r.extra['baseline']['blank_ssim']:.3f}",
        ["batch"] + [f"sigma={s:g}" for s in noises] + ["label acc (sigma=0)"],
        rows,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["speed", "quality", "sweep"], default=None)
    ap.add_argument("--n", type=int, default=64, help="images in the batched-vs-single comparison")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--grad-iterations", type=int, default=300)
    ap.add_argument("--batches", type=int, default=2, help="shared gradients attacked per sweep cell")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    setup = _digits()
    np.set_printoptions(precision=3)
    if args.only in (None, "speed"):
        speed(args, setup)
    if args.only in (None, "quality"):
        quality(args, setup)
    if args.only in (None, "sweep"):
        sweep(args, setup)


if __name__ == "__main__":
    main()
