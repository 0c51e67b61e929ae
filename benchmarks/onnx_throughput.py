"""OnnxTarget batched inference vs a bare onnxruntime ``session.run`` loop on the same batches.

    python benchmarks/onnx_throughput.py [--n 20000] [--batch-size 1024] [--repeats 5]

Prints a table: samples/s for each path and their ratio (goal: OnnxTarget >= 0.95 x bare).
Both paths use the same session options (one session each, same providers and threads) and the
same pre-built float32 batches; OnnxTarget additionally validates inputs, checks outputs for
NaN/inf and applies the softmax, which is the overhead measured.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def _interleaved_medians(fns, repeats: int) -> list[float]:
    """Median wall time of each fn, the fns run in turn within each repeat (fair under background load)."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", default="cnn", choices=["mlp", "cnn", "lenet"])
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from audit_sdk.adapters.onnx import OnnxTarget, available_providers
    from audit_sdk.adapters.torch import export_onnx, make_model

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(
            make_model(args.model, input_shape=(1, 28, 28), n_classes=10, seed=0),
            np.zeros((2, 1, 28, 28), np.float32),
            Path(tmp) / "m.onnx",
        )
        x = np.random.default_rng(0).random((args.n, 1, 28, 28), dtype=np.float32)
        batches = [x[i : i + args.batch_size] for i in range(0, len(x), args.batch_size)]

        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=list(available_providers()))
        name = sess.get_inputs()[0].name

        def bare() -> None:
            for b in batches:
                sess.run(None, {name: b})

        target = OnnxTarget(path, batch_size=args.batch_size)

        def ours_logits() -> None:
            target.logits(x)

        def ours_proba() -> None:
            target.predict_proba(x)

        t_bare, t_logits, t_proba = _interleaved_medians([bare, ours_logits, ours_proba], args.repeats)

    rows = [
        ("bare session.run loop", t_bare, 1.0),
        ("OnnxTarget.logits", t_logits, t_bare / t_logits),
        ("OnnxTarget.predict_proba", t_proba, t_bare / t_proba),
    ]
    print(
        f"model={args.model} 1x28x28, n={args.n}, batch={args.batch_size}, providers={','.join(target.providers)}, median of {args.repeats}"
    )
    print(f"{'path':<28}{'seconds':>10}{'samples/s':>14}{'ratio vs bare':>16}")
    for label, t, ratio in rows:
        print(f"{label:<28}{t:>10.4f}{args.n / t:>14.0f}{ratio:>16.3f}")


if __name__ == "__main__":
    main()
